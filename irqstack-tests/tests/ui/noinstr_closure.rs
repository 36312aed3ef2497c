fn main() {
    let entry = #[irqstack::noinstr]
    || 1;
    entry();
}
