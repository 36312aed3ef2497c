#[irqstack::on_irqstack]
async fn handler(vector: u32) -> u32 {
    vector
}

fn main() {}
