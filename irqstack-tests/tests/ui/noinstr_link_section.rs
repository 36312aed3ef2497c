#[irqstack::noinstr]
#[unsafe(link_section = ".text.entry")]
fn entry() {}

fn main() {}
