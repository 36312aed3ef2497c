use irqstack::{PtRegs, idtentry};

#[idtentry]
fn exc_generic<T>(regs: &mut PtRegs) {
    let _ = regs;
}

#[idtentry]
async fn exc_async(regs: &mut PtRegs) {
    let _ = regs;
}

fn main() {}
