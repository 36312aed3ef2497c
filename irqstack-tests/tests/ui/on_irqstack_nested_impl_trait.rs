#[irqstack::on_irqstack]
fn handler(device: Option<impl Copy>) -> bool {
    device.is_some()
}

fn main() {}
