#[irqstack::on_irqstack(bogus)]
const async fn handler<T>(value: T) -> T {
    value
}

fn main() {}
