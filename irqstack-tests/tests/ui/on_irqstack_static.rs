#[irqstack::on_irqstack]
static HANDLER: fn() = || {};

fn main() {}
