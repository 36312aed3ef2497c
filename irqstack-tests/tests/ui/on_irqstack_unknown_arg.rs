#[irqstack::on_irqstack(stack_size = 4096)]
fn handler(vector: u32) -> u32 {
    vector
}

fn main() {}
