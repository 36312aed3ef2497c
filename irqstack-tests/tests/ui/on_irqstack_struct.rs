#[irqstack::on_irqstack]
struct Handler {
    vector: u32,
}

fn main() {}
