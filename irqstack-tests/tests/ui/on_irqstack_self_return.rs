struct Device;

impl Device {
    #[irqstack::on_irqstack]
    fn create() -> Self {
        Device
    }
}

fn main() {}
