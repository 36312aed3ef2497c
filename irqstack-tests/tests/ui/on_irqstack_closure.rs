fn main() {
    let handler = #[irqstack::on_irqstack]
    |vector: u32| vector;
    handler(1);
}
