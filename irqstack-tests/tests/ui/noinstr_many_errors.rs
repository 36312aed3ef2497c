#[irqstack::noinstr(always)]
#[inline]
#[irqstack::noinstr]
const async fn entry() {}

fn main() {}
