#[irqstack::noinstr]
const fn entry() {}

#[irqstack::noinstr]
async fn poll_entry() {}

fn main() {}
