macro_rules! vector {
    () => {
        u32
    };
}

#[irqstack::on_irqstack]
fn handler(_vector: vector!()) {}

fn main() {}
