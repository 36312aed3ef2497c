#[irqstack::noinstr]
#[inline(always)]
fn entry() {}

fn main() {}
