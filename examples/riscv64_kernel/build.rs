//! Links the kernel at 0x80200000 (where OpenSBI enters S-mode on QEMU `virt`) with `link.ld`.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
}
