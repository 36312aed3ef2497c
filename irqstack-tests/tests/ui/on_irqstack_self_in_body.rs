struct Device;

impl Device {
    const VECTOR: u32 = 32;

    #[irqstack::on_irqstack]
    fn vector() -> u32 {
        struct Local;
        impl Local {
            fn new() -> Self {
                Local
            }
        }
        let _ = Local::new();
        assert_eq!(Self::VECTOR, 32);
        Self::VECTOR
    }
}

fn main() {
    let _ = Device::vector();
}
