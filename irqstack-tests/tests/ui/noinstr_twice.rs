#[irqstack::noinstr]
#[irqstack::noinstr]
fn entry() {}

fn main() {}
