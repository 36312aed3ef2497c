fn main() {
    #[irqstack::noinstr]
    let vector = 32;
    let _ = vector;
}
