struct Device {
    count: u32,
}

impl Device {
    #[irqstack::on_irqstack]
    fn handle(device: &mut Self, vector: u32) {
        device.count += vector;
    }
}

fn main() {}
