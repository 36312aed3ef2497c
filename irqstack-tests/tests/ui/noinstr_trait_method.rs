trait Entry {
    #[irqstack::noinstr]
    fn entry();
}

fn main() {}
