fn main() {
    irqstack::instr_begin!(1);
    irqstack::instr_end!();
}
