// A type that does not implement `irqstack::Backend`.
struct NotABackend;

irqstack::set_backend!(NotABackend);

fn main() {}
