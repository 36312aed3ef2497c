#[irqstack::on_irqstack(crate == ::irqstack)]
fn handler() {}

fn main() {}
