//! Which registers a handler's arguments and return value use under the SysV x86-64 calling
//! convention, decided from the written types alone.
//!
//! The trampoline takes the body's arguments where the caller put them and adds the IRQ stack's
//! top-of-stack pointer as a last argument, so the fast ("register") form needs to know exactly
//! which register (or stack slot) that last argument lands in, and that no argument of the body is
//! passed on the stack (the body runs on the other stack and could not find it). That is certain
//! only for types whose classification a proc macro can read off their spelling: primitive
//! scalars, and pointers to sized pointees. Everything else uses the "block" form, which passes
//! pointers to an argument block and a result slot and works for any type.
//!
//! A pointer whose pointee is a named type (`&mut Regs`) is thin unless that type is unsized (a
//! `&Path` is two words). The spelling cannot tell, so such arguments are `MaybeThin`: the
//! expansion emits both forms and picks one with `size_of` at compile time.

use syn::{ReturnType, Type, TypePath};

/// How one argument is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// One general-purpose register (integers up to 64 bits, `bool`, `char`, thin pointers).
    Gpr,
    /// One SSE register (`f32`, `f64`).
    Sse,
    /// A pointer that is thin (one general-purpose register) if its pointee is sized.
    MaybeThin,
    /// Anything else: passed through the argument block.
    Other,
}

/// The primitive named by `ty`, if `ty` is spelled as one (`u64`, `core::primitive::u64`).
fn primitive(ty: &TypePath) -> Option<String> {
    if ty.qself.is_some() {
        return None;
    }
    let segs: Vec<String> = ty
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    if ty.path.segments.iter().any(|s| !s.arguments.is_none()) {
        return None;
    }
    match segs.as_slice() {
        [name] if ty.path.leading_colon.is_none() => Some(name.clone()),
        [krate, prim, name] if (krate == "core" || krate == "std") && prim == "primitive" => {
            Some(name.clone())
        }
        _ => None,
    }
}

fn strip(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => strip(&g.elem),
        Type::Paren(p) => strip(&p.elem),
        _ => ty,
    }
}

/// Classifies one argument type.
pub fn arg(ty: &Type) -> Arg {
    match strip(ty) {
        Type::Path(p) => match primitive(p).as_deref() {
            Some(
                "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize"
                | "bool" | "char",
            ) => Arg::Gpr,
            Some("f32" | "f64") => Arg::Sse,
            _ => Arg::Other,
        },
        Type::Reference(r) => pointee(&r.elem),
        Type::Ptr(p) => pointee(&p.elem),
        Type::BareFn(_) => Arg::Gpr,
        _ => Arg::Other,
    }
}

/// Thinness of a pointer, from its pointee.
fn pointee(elem: &Type) -> Arg {
    match strip(elem) {
        Type::Slice(_) | Type::TraitObject(_) => Arg::Other,
        // A tuple is as sized as its last field (`(u8, [u8])` is unsized); `()` is sized.
        Type::Tuple(t) => t.elems.last().map_or(Arg::Gpr, pointee),
        Type::Array(_) | Type::Reference(_) | Type::Ptr(_) | Type::BareFn(_) | Type::Never(_) => {
            Arg::Gpr
        }
        Type::Path(p) => match primitive(p).as_deref() {
            // Known unsized types: fat pointers, two registers.
            Some("str" | "Path" | "OsStr" | "CStr") => Arg::Other,
            Some(
                "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64"
                | "i128" | "isize" | "bool" | "char" | "f32" | "f64",
            ) => Arg::Gpr,
            _ => Arg::MaybeThin,
        },
        _ => Arg::MaybeThin,
    }
}

/// Whether an argument of type `ty` can be handed to an `asm!` block in one general-purpose
/// register through the runtime's `AsmArg` conversion: integers up to 64 bits, `bool`, `char`,
/// references and raw pointers (thin, or fat in a branch that `size_of` rules out). Not floats
/// and not function pointers.
pub fn asm_arg(ty: &Type) -> bool {
    match strip(ty) {
        Type::Path(p) => matches!(
            primitive(p).as_deref(),
            Some(
                "u8" | "u16"
                    | "u32"
                    | "u64"
                    | "usize"
                    | "i8"
                    | "i16"
                    | "i32"
                    | "i64"
                    | "isize"
                    | "bool"
                    | "char"
            )
        ),
        Type::Reference(_) | Type::Ptr(_) => true,
        _ => false,
    }
}

/// Whether the return value comes back in registers (`rax`, `rdx`, `xmm0`), never through a
/// hidden pointer argument (which would take `rdi` and shift every argument by one register).
pub fn ret_in_registers(ret: &ReturnType) -> bool {
    let ty = match ret {
        ReturnType::Default => return true,
        ReturnType::Type(_, ty) => ty,
    };
    match strip(ty) {
        Type::Tuple(t) => t.elems.is_empty(),
        Type::Never(_) => true,
        // Thin or fat, a pointer is at most two integer words: rax (and rdx).
        Type::Reference(_) | Type::Ptr(_) | Type::BareFn(_) => true,
        Type::Path(p) => matches!(
            primitive(p).as_deref(),
            Some(
                "u8" | "u16"
                    | "u32"
                    | "u64"
                    | "u128"
                    | "usize"
                    | "i8"
                    | "i16"
                    | "i32"
                    | "i64"
                    | "i128"
                    | "isize"
                    | "bool"
                    | "char"
                    | "f32"
                    | "f64"
            )
        ),
        _ => false,
    }
}

/// How many integer argument registers every supported ABI has at least: six on SysV x86-64
/// (`rdi`..`r9`), eight on AAPCS64 (`x0`..`x7`) and on RISC-V (`a0`..`a7`). The proc macro names no register: it passes the position
/// of `tos` among them (`0..=5`, or `stack` for the seventh integer argument), and each
/// architecture's pieces in irqstack-rt map the position to its register.
pub const INT_ARG_REGS: usize = 6;
/// SysV passes the first eight floating-point arguments in `xmm0`..`xmm7`.
pub const SSE_REGS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Arg {
        arg(&syn::parse_str(s).unwrap())
    }

    #[test]
    fn classifies_spellings() {
        assert_eq!(a("u64"), Arg::Gpr);
        assert_eq!(a("::core::primitive::u8"), Arg::Gpr);
        assert_eq!(a("core::primitive::i32"), Arg::Gpr);
        assert_eq!(a("f64"), Arg::Sse);
        assert_eq!(a("i128"), Arg::Other);
        assert_eq!(a("&mut Regs"), Arg::MaybeThin);
        assert_eq!(a("&[u8]"), Arg::Other);
        assert_eq!(a("&str"), Arg::Other);
        assert_eq!(a("*const u32"), Arg::Gpr);
        assert_eq!(a("&mut [u8; 4]"), Arg::Gpr);
        assert_eq!(a("Foo"), Arg::Other);
        assert_eq!(a("(u64)"), Arg::Gpr);
        // A tuple is unsized when its last field is: a pointer to it is fat.
        assert_eq!(a("*const (u8, [u8])"), Arg::Other);
        assert_eq!(a("&(u8, str)"), Arg::Other);
        assert_eq!(a("&(u8, u64)"), Arg::Gpr);
        assert_eq!(a("&mut ()"), Arg::Gpr);
        assert_eq!(a("&(u8, Tail)"), Arg::MaybeThin);
    }

    #[test]
    fn classifies_returns() {
        let r = |s: &str| ret_in_registers(&syn::parse_str(s).unwrap());
        assert!(r(""));
        assert!(r("-> u128"));
        assert!(r("-> &str"));
        assert!(r("-> ()"));
        assert!(!r("-> Foo"));
        assert!(!r("-> (u64, u64)"));
        assert!(!r("-> Option<u64>"));
    }
}
