#[irqstack::on_irqstack(, stack = 1, crate = , crate = ::irqstack extra)]
fn handler() {}

fn main() {}
