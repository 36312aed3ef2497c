const fn entry() {
    irqstack::instr_begin!();
    irqstack::instr_end!();
}

fn main() {
    entry();
}
