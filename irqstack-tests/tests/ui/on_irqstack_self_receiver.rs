struct Device {
    count: u32,
}

impl Device {
    #[irqstack::on_irqstack]
    fn handle(&mut self, vector: u32) {
        self.count += vector;
    }
}

fn main() {}
