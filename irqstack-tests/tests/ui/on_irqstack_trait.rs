#[irqstack::on_irqstack]
trait Device {
    fn handle(vector: u32);
}

fn main() {}
