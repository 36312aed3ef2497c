use irqstack::{PtRegs, idtentry};

// An error code handler without its error code.
#[idtentry(error_code)]
fn exc_page_fault(regs: &mut PtRegs) {
    let _ = regs;
}

// A shared frame instead of `&mut PtRegs`, and a vector of the wrong width.
#[idtentry(irq)]
fn common_interrupt(regs: &PtRegs, vector: u32) {
    let _ = (regs, vector);
}

// Handlers report through `regs`, they return nothing.
#[idtentry(sysvec)]
fn sysvec_timer(regs: &mut PtRegs) -> u64 {
    regs.ip
}

fn main() {}
