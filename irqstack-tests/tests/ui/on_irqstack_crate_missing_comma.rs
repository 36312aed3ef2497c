#[irqstack::on_irqstack(crate = ::irqstack bogus)]
fn handler() {}

fn main() {}
