//! AArch64 (user space, `aarch64-unknown-linux-gnu`): the trampoline and marker pieces
//! (`pieces`). The kernel-build features and `#[idtentry]` are x86-64 only for now; a build that
//! asks for them stops here with a message that says so.

mod pieces;
#[cfg(feature = "std")]
pub(crate) mod switch_frames;

#[cfg(feature = "call-padding")]
compile_error!(
    "irqstack: feature `call-padding` is supported on target_arch = \"x86_64\" only \
     (aarch64 has user-space support so far)"
);
#[cfg(feature = "inline-switch")]
compile_error!(
    "irqstack: feature `inline-switch` is supported on target_arch = \"x86_64\" only \
     (aarch64 has user-space support so far)"
);
#[cfg(feature = "linux-percpu")]
compile_error!(
    "irqstack: feature `linux-percpu` (Linux's x86 `%gs` per-CPU variables) is supported on \
     target_arch = \"x86_64\" only"
);
#[cfg(any(
    feature = "kernel-abi",
    feature = "rethunk",
    feature = "sls",
    feature = "ibt",
    feature = "objtool-legacy-hints"
))]
compile_error!(
    "irqstack: the kernel-build features (`kernel-abi`, `rethunk`, `sls`, `ibt`, \
     `objtool-legacy-hints`) are supported on target_arch = \"x86_64\" only \
     (aarch64 has user-space support so far)"
);
