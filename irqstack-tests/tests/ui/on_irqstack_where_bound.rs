#[irqstack::on_irqstack]
fn handler<'a>(value: &'a u32) -> u32
where
    u32: Copy,
{
    *value
}

fn main() {}
