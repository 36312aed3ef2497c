#[irqstack::on_irqstack(crate = ::irqstack, crate = ::irqstack)]
fn handler(vector: u32) -> u32 {
    vector
}

fn main() {}
