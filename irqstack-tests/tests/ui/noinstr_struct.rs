#[irqstack::noinstr]
struct Entry {
    vector: u32,
}

fn main() {}
