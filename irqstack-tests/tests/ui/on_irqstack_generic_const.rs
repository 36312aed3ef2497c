#[irqstack::on_irqstack]
fn handler<const N: usize>(values: [u8; N]) -> usize {
    values.len()
}

fn main() {}
