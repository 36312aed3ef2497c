#[irqstack::on_irqstack(crate)]
fn handler(vector: u32) -> u32 {
    vector
}

fn main() {}
