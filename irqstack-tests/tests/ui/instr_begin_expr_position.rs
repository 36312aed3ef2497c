fn main() {
    let x: u32 = irqstack::instr_begin!();
    let _ = x;
}
