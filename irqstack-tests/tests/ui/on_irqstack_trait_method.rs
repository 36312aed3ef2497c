trait Device {
    #[irqstack::on_irqstack]
    fn handle(vector: u32);
}

fn main() {}
