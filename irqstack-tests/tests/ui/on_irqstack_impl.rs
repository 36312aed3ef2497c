struct Device;

#[irqstack::on_irqstack]
impl Device {
    fn handle(&self) {}
}

fn main() {}
