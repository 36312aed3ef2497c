unsafe extern "C" {
    #[irqstack::on_irqstack]
    fn handler(vector: u32);
}

fn main() {}
