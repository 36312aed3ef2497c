#[irqstack::on_irqstack]
enum Vector {
    Timer,
    Keyboard,
}

fn main() {}
