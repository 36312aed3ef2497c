#[irqstack::on_irqstack]
#[irqstack::on_irqstack]
fn handler(vector: u32) -> u32 {
    vector
}

fn main() {}
