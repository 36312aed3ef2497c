#[irqstack::on_irqstack]
#[unsafe(naked)]
extern "C" fn handler() {
    core::arch::naked_asm!("ret")
}

fn main() {}
