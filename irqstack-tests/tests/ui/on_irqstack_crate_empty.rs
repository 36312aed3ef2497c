#[irqstack::on_irqstack(crate = )]
fn handler() {}

fn main() {}
