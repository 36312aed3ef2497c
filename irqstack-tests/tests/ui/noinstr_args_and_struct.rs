#[irqstack::noinstr(always)]
struct Entry;

fn main() {}
