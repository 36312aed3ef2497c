fn main() {
    #[irqstack::on_irqstack]
    let vector = 32;
    let _ = vector;
}
