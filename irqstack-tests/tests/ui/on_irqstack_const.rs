#[irqstack::on_irqstack]
const fn handler(vector: u32) -> u32 {
    vector
}

fn main() {}
