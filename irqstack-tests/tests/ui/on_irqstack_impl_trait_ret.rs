#[irqstack::on_irqstack]
fn handler(vector: u32) -> impl Copy {
    vector
}

fn main() {}
