fn main() {
    let x: u32 = irqstack::instr_begin_insn!();
    let _ = x;
}
