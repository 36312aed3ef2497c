#[irqstack::on_irqstack(crate = ::irqstack::<u8>)]
fn handler() {}

fn main() {}
