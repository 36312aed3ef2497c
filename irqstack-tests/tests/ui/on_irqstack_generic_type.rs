#[irqstack::on_irqstack]
fn handler<T: Copy>(value: T) -> T {
    value
}

fn main() {}
