//! Links the kernel at 0x4020_0000 with `link.ld` (QEMU `virt` loads the ELF there; the 1 MiB DTB
//! sits below it, at the start of RAM, 0x4000_0000).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
}
