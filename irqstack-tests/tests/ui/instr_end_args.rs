fn main() {
    irqstack::instr_begin!();
    irqstack::instr_end!("region");
}
