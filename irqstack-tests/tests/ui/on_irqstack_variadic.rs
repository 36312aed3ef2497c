#[irqstack::on_irqstack]
unsafe extern "C" fn handler(x: i32, _args: ...) -> i32 {
    x
}

fn main() {}
