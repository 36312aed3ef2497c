#[irqstack::on_irqstack]
fn handler(device: impl Fn(u32) -> u32) -> u32 {
    device(32)
}

fn main() {}
