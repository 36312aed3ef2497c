#[irqstack::on_irqstack]
mod handlers {
    pub fn timer() {}
}

fn main() {}
