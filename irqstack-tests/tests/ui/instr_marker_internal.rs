fn main() {
    let _ = irqstack::__private::instr_marker!(begin);
}
