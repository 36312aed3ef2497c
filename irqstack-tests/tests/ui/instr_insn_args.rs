fn main() {
    let _ = irqstack::instr_begin_insn!(nop);
    let _ = irqstack::instr_end_insn!(label = 1);
}
