use irqstack::{PtRegs, idtentry};

#[idtentry(nmi)]
fn exc_nmi(regs: &mut PtRegs) {
    let _ = regs;
}

#[idtentry(irq, error_code)]
fn common_interrupt(regs: &mut PtRegs, vector: u8) {
    let _ = (regs, vector);
}

#[idtentry(sysvec)]
struct NotAFunction;

fn main() {}
