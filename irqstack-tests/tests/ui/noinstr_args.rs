#[irqstack::noinstr(section = ".text")]
fn entry() {}

fn main() {}
