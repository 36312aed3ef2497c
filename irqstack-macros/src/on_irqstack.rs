//! `#[on_irqstack]`: parse, check, expand.
//!
//! For a handler `fn h(a: A, b: B) -> R { body }` the expansion is one function `h` with the same
//! signature, attributes and visibility, containing:
//! - `__irqstack_body`: the user's body as an ordinary function (the in-place path calls it);
//! - one or two switch forms, each a shim (written without an ABI: the runtime's pieces give it
//!   the architecture's, `extern "sysv64-unwind"` on x86-64; it calls the body) and a naked
//!   trampoline (switches stacks, calls the shim directly):
//!   - the register form: the trampoline has the body's arguments plus the top-of-stack pointer
//!     last, so arguments stay in their registers (see `classify`);
//!   - the block form: arguments moved into a tuple on the caller's stack, passed by pointer, with
//!     an out pointer for the result where needed. Works for any types.
//! - `__irqstack_dispatch` (`#[inline(always)]`, the wrapper's whole body): ask the backend
//!   whether the IRQ stack is free; if so, call a trampoline and `finish` after it (user space:
//!   the trampoline itself claims and releases, also when the body panics, so the call is a
//!   tail call; kernel backends: `finish` releases, and their drop guard releases on a panic);
//!   if it is in use, run the body in place; on the thread's first use (std builds), tail-call
//!   `__irqstack_first_use`;
//! - `__irqstack_first_use` (`#[cold]`, never inlined): create the IRQ stack, then dispatch again.
//!   A function of its own so that the wrapper holds no argument across the creation call: an
//!   out-of-line wrapper then needs no callee-saved register for it (issue 15). The kernel
//!   backend's first-use variant is uninhabited, so there it is never compiled.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{Error, FnArg, Item, ItemFn, ReturnType, Type};

use crate::attr::Args;
use crate::classify::{self, Arg};
use crate::label;
use crate::valid;

/// Entry point. Never panics: every problem becomes a `compile_error!`.
pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = Args::parse(attr);
    let parsed = syn::parse2::<Item>(item.clone());
    let func = match parsed {
        Ok(Item::Fn(f)) => f,
        Ok(other) => return fallback(args.err(), valid::not_a_function(&other), item),
        Err(_) => {
            return fallback(args.err(), valid::not_an_item(&item, "on_irqstack"), item);
        }
    };
    let mut errors = valid::Errors::default();
    let args = args.map_err(|e| errors.push(e));
    if let Err(e) = valid::check_fn(&func, "on_irqstack") {
        errors.push(e);
    }
    match args {
        Ok(args) if !errors.has_any() => expand_fn(&args.krate, func),
        _ => errors.emit_with(func),
    }
}

/// Error output for input that is not a function: the error(s) and the item unchanged.
fn fallback(arg_err: Option<Error>, err: Error, item: TokenStream) -> TokenStream {
    let mut errors = valid::Errors::default();
    if let Some(e) = arg_err {
        errors.push(e);
    }
    errors.push(err);
    errors.emit_with(item)
}

/// What is known about a handler's signature.
struct Sig<'a> {
    krate: &'a syn::Path,
    /// The handler's name.
    ident: &'a syn::Ident,
    /// A hash of the handler's whole text (see `symbol_name`).
    fingerprint: u64,
    /// Argument types, in order.
    tys: Vec<&'a Type>,
    /// Names of the wrapper's arguments (`__irqstack_arg0`, ...).
    names: Vec<syn::Ident>,
    output: &'a ReturnType,
    /// `unsafe` if the handler is an `unsafe fn`.
    is_unsafe: bool,
    /// Whether the handler's ABI lets a panic unwind out of it (the Rust ABI, `"C-unwind"`,
    /// ...). If not, its shim and trampoline cannot unwind either (see `unwinds`).
    unwinds: bool,
    /// Lifetime parameters and where clause, copied to every generated function.
    generics: &'a syn::Generics,
}

impl Sig<'_> {
    /// A call of the body with the given argument names, inside `unsafe` if the body needs it.
    fn call_body(&self, names: &[syn::Ident]) -> TokenStream {
        if self.is_unsafe {
            // SAFETY (of the generated block): the handler is an `unsafe fn`, so its caller took
            // on the body's contract; the body receives the caller's arguments unchanged.
            quote!(unsafe { __irqstack_body(#(#names),*) })
        } else {
            quote!(__irqstack_body(#(#names),*))
        }
    }

    fn ret_ty(&self) -> TokenStream {
        match self.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => quote!(#ty),
        }
    }
}

fn expand_fn(krate: &syn::Path, func: ItemFn) -> TokenStream {
    let fingerprint = fingerprint(&quote!(#func).to_string());
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;

    let mut tys = Vec::new();
    let mut names = Vec::new();
    let mut wrapper_inputs = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        if let FnArg::Typed(t) = input {
            let name = format_ident!("__irqstack_arg{}", i);
            let ty = &t.ty;
            wrapper_inputs.push(quote!(#name: #ty));
            tys.push(&*t.ty);
            names.push(name);
        }
    }
    let info = Sig {
        krate,
        ident: &sig.ident,
        fingerprint,
        tys,
        names,
        output: &sig.output,
        is_unsafe: sig.unsafety.is_some(),
        unwinds: unwinds(&sig.abi),
        generics: &sig.generics,
    };
    // The ABI of the functions the wrapper tail-calls besides the trampoline (the first use, the
    // out-of-line in-place body): the handler's own if it cannot unwind, so that the wrapper
    // holds no abort-on-unwind landing pad around those calls (which would keep them from being
    // tail calls); none (Rust) otherwise.
    let tail_abi = if info.unwinds {
        quote!()
    } else {
        let abi = &sig.abi;
        quote!(#[allow(improper_ctypes_definitions)] #abi)
    };

    // The body as an ordinary nested function: the user's own parameter patterns, return type,
    // unsafety and lifetimes. It is what both the shims and the in-place path call.
    let body_fn = {
        let mut body_sig = sig.clone();
        body_sig.ident = syn::Ident::new("__irqstack_body", Span::call_site());
        body_sig.abi = None;
        quote! {
            #[allow(clippy::too_many_arguments)]
            #[inline]
            #body_sig #block
        }
    };

    let allow_unreachable_early = if matches!(&sig.output, ReturnType::Type(_, ty) if matches!(**ty, Type::Never(_)))
    {
        quote!(#[allow(unreachable_code, clippy::diverging_sub_expression)])
    } else {
        quote!()
    };
    let classes: Vec<Arg> = info.tys.iter().map(|t| classify::arg(t)).collect();
    let switched = if classes.contains(&Arg::Sse) {
        // Where a float travels depends on the target's ABI, which the proc macro cannot see:
        // SSE registers on hard-float targets, general registers on soft-float ones
        // (`x86_64-unknown-none`, the kernel's target), and the register that carries `tos`
        // moves with it. The generated code picks the form with `cfg`s:
        // - no SSE2: the ABI is soft-float for certain (hard-float needs SSE2);
        // - SSE2 on a hosted target: hard-float;
        // - SSE2 on `target_os = "none"`/`"uefi"`: either (a soft-float target may enable SSE2
        //   and still pass floats in general registers), so the block form, which passes only
        //   pointers and is right under both;
        // - any other architecture: the block form (the register forms follow SysV x86-64).
        let soft = switched_for(&info, &classes, FloatRegs::General);
        let hard = switched_for(&info, &classes, FloatRegs::Sse);
        let block = block_form(&info);
        quote! {
            #[cfg(all(target_arch = "x86_64", not(target_feature = "sse2")))]
            let __irqstack_ret = { #soft };
            #[cfg(all(
                target_arch = "x86_64",
                target_feature = "sse2",
                not(any(target_os = "none", target_os = "uefi"))
            ))]
            let __irqstack_ret = { #hard };
            #[cfg(any(
                not(target_arch = "x86_64"),
                all(target_feature = "sse2", any(target_os = "none", target_os = "uefi"))
            ))]
            let __irqstack_ret = { #block };
            __irqstack_ret
        }
    } else {
        switched_for(&info, &classes, FloatRegs::Sse)
    };

    // A handler the user put out of line (`#[inline(never)]`: a signal handler, a callback) runs
    // its in-place path through a function of its own, which the wrapper reaches by a
    // (conditional) tail call: the wrapper's entry then needs no register of its own for the
    // body's result (BENCHMARKS.md, "Out of line"). Inlinable handlers inline the body there.
    let out_of_line = attrs.iter().any(|a| {
        a.path().is_ident("inline") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "never")
    });
    let in_place_fn = if out_of_line {
        let call = info.call_body(&info.names);
        let sig = {
            let generics = &sig.generics;
            let where_clause = &sig.generics.where_clause;
            let output = &sig.output;
            let inputs = info
                .names
                .iter()
                .zip(&info.tys)
                .map(|(n, t)| quote!(#n: #t));
            quote!(#tail_abi fn __irqstack_in_place #generics (#(#inputs),*) #output #where_clause)
        };
        quote! {
            #[allow(clippy::too_many_arguments)]
            #[inline(never)]
            #allow_unreachable_early
            #sig {
                #call
            }
        }
    } else {
        quote!()
    };
    let in_place = {
        let begin = label::fresh();
        let end = label::fresh();
        let call = if out_of_line {
            let names = &info.names;
            quote!(__irqstack_in_place(#(#names),*))
        } else {
            info.call_body(&info.names)
        };
        quote! {
            // Markers around the body call: a NOP and a record each in kernel builds, nothing in
            // user space (see `__irqstack_rt_in_place_marker` in irqstack-rt).
            #krate::__private::in_place_marker!(begin, #begin);
            let __irqstack_ret = #call;
            #krate::__private::in_place_marker!(end, #end);
            __irqstack_ret
        }
    };

    // A `#[noinstr]` below this attribute puts the wrapper out of line itself (and rejects any
    // `#[inline]`), so it gets no `#[inline(always)]` then.
    // A diverging handler makes the code after the trampoline call unreachable. Only then is
    // the lint silenced: anywhere else it would hide the user's own warnings in the body.
    let diverges = matches!(&sig.output, ReturnType::Type(_, ty) if matches!(**ty, Type::Never(_)));
    let allow_unreachable = if diverges {
        quote!(#[allow(unreachable_code, clippy::diverging_sub_expression)])
    } else {
        quote!()
    };
    let has_inline = attrs.iter().any(|a| {
        a.path().is_ident("inline")
            || a.path()
                .segments
                .last()
                .is_some_and(|s| s.ident == "noinstr")
    });
    let inline = if has_inline {
        quote!()
    } else {
        quote!(#[inline(always)])
    };
    let wrapper_sig = {
        let unsafety = &sig.unsafety;
        let abi = &sig.abi;
        let ident = &sig.ident;
        let generics = &sig.generics;
        let where_clause = &sig.generics.where_clause;
        let output = &sig.output;
        let fn_token = &sig.fn_token;
        quote!(#unsafety #abi #fn_token #ident #generics (#(#wrapper_inputs),*) #output #where_clause)
    };

    // The dispatch and the first-use path: plain Rust functions with the wrapper's parameters
    // (no ABI, never `unsafe`: the body call inside is wrapped where needed).
    let inner_sig = |name: &str| {
        let ident = syn::Ident::new(name, Span::call_site());
        let generics = &sig.generics;
        let where_clause = &sig.generics.where_clause;
        let output = &sig.output;
        quote!(fn #ident #generics (#(#wrapper_inputs),*) #output #where_clause)
    };
    let dispatch_sig = inner_sig("__irqstack_dispatch");
    let first_use_sig = {
        let sig = inner_sig("__irqstack_first_use");
        quote!(#tail_abi #sig)
    };
    let names = &info.names;

    quote! {
        #(#attrs)*
        #inline
        #allow_unreachable
        #vis #wrapper_sig {
            #body_fn
            #in_place_fn
            // Claim the IRQ stack and switch to it, or run in place. Inlined into the wrapper
            // (and into `__irqstack_first_use`, std builds only).
            #[allow(clippy::too_many_arguments)]
            #[inline(always)]
            #allow_unreachable
            #dispatch_sig {
                match #krate::__private::enter() {
                    #krate::__private::Entered::Switch(__irqstack_switch) => {
                        #switched
                    }
                    #krate::__private::Entered::InPlace => {
                        #in_place
                    }
                    // The thread's first use (std builds; the kernel backend's `FirstUse` is
                    // uninhabited, so none of this is compiled there). A tail call: the
                    // arguments stay in their registers and the wrapper keeps nothing live
                    // across a call on this path.
                    #[allow(unreachable_patterns)]
                    #krate::__private::Entered::FirstUse(__irqstack_first) => {
                        __irqstack_first.run(move || __irqstack_first_use(#(#names),*))
                    }
                }
            }
            // Create the IRQ stack, then dispatch again (it never comes back here: the stack
            // then exists, or the thread runs in place for good).
            #[allow(clippy::too_many_arguments)]
            #[cold]
            #[inline(never)]
            #allow_unreachable
            #first_use_sig {
                #krate::__private::create_for_first_use();
                __irqstack_dispatch(#(#names),*)
            }
            __irqstack_dispatch(#(#names),*)
        }
    }
}

/// Where the target's ABI passes `f32`/`f64` arguments.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FloatRegs {
    /// SSE registers, `xmm0`..`xmm7` (hard-float).
    Sse,
    /// General-purpose registers, like integers (soft-float: `x86_64-unknown-none`).
    General,
}

/// The switched call for one ABI: the register form where every argument's register is known,
/// the block form otherwise, both (picked by `size_of`) for pointers that may be fat.
fn switched_for(info: &Sig<'_>, classes: &[Arg], floats: FloatRegs) -> TokenStream {
    let in_gpr = |c: &Arg| match c {
        Arg::Gpr | Arg::MaybeThin => true,
        Arg::Sse => floats == FloatRegs::General,
        Arg::Other => false,
    };
    let gprs = classes.iter().filter(|c| in_gpr(c)).count();
    let sses = classes
        .iter()
        .filter(|c| **c == Arg::Sse && floats == FloatRegs::Sse)
        .count();
    let register_form_possible = !classes.contains(&Arg::Other)
        && gprs <= classify::INT_ARG_REGS
        && sses <= classify::SSE_REGS
        && classify::ret_in_registers(info.output);
    let maybe_thin: Vec<&Type> = info
        .tys
        .iter()
        .zip(classes)
        .filter(|(_, c)| **c == Arg::MaybeThin)
        .map(|(t, _)| *t)
        .collect();

    if !register_form_possible {
        block_form(info)
    } else if maybe_thin.is_empty() {
        register_form(info, gprs)
    } else {
        // Pointers to named types: thin unless the type is unsized. Decide at compile time; the
        // condition is a constant, so only one branch survives optimization.
        let reg = register_form(info, gprs);
        let blk = block_form(info);
        quote! {
            if true #(&& ::core::mem::size_of::<#maybe_thin>() == ::core::mem::size_of::<usize>())* {
                #reg
            } else {
                #blk
            }
        }
    }
}

/// A link-time name for a trampoline that the runtime may define in `global_asm!` (builds with
/// feature `call-padding`, where it needs the padding before its symbol that a naked function
/// cannot have). It must be unique in the final link: the crate's name and version (cargo sets
/// them in the compiler's environment, where the proc macro reads them), the handler's name, a
/// hash of the handler's whole text (builds without cargo, such as the kernel's, have no crate
/// name to read: two crates would then need the same handler, word for word, to collide, and the
/// link would fail loudly rather than mix them up) and this expansion's number in the
/// compilation (as `__COUNTER__`). Only `[A-Za-z0-9_]`.
fn symbol_name(kind: &str, handler: &syn::Ident, fingerprint: u64) -> String {
    let clean = |s: String| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    let krate = std::env::var("CARGO_CRATE_NAME").unwrap_or_else(|_| "nocargo".into());
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    clean(format!(
        "__irqstack_trampoline_{kind}_{krate}_{version}_{handler}_{fingerprint:016x}_{}",
        label::fresh()
    ))
}

/// Whether a function with this ABI may unwind: the Rust ABI (none written) and the `-unwind`
/// ABIs. A panic that would leave any other (`extern "C"`, `extern "sysv64"`, ...) aborts.
fn unwinds(abi: &Option<syn::Abi>) -> bool {
    match abi {
        None => true,
        Some(abi) => abi
            .name
            .as_ref()
            .is_some_and(|n| n.value().ends_with("-unwind")),
    }
}

/// FNV-1a of a handler's text, for [`symbol_name`].
fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One trampoline and the shim it calls: a call of the runtime's `trampoline_fn!` piece, which
/// defines the trampoline as a naked function or, with `call-padding`, in `global_asm!` with 16
/// bytes of padding before it (the shim then gets a link-time name the assembly can call).
#[allow(clippy::too_many_arguments)]
fn trampoline(
    name: &syn::Ident,
    info: &Sig<'_>,
    tos: Option<usize>,
    (shim, shim_def): (&syn::Ident, TokenStream),
    params: &[TokenStream],
    output: TokenStream,
    (kind, inline): (&str, TokenStream),
) -> TokenStream {
    let krate = info.krate;
    let generics = info.generics;
    let begin = label::fresh();
    let end = label::fresh();
    let symbol = symbol_name(kind, info.ident, info.fingerprint);
    let shim_symbol = format!("{symbol}_shim");
    // A body of type `!` never comes back: the trampoline ends in a trap after its call.
    let diverges = matches!(info.output, ReturnType::Type(_, t) if matches!(**t, Type::Never(_)));
    // The position of `tos` among the integer argument registers, or `stack` for the seventh
    // integer argument (x86-64 passes it on the stack; AArch64 and RISC-V still in a register).
    let tos_arg = match tos {
        Some(pos) => {
            let pos = proc_macro2::Literal::usize_unsuffixed(pos);
            quote!(#pos)
        }
        None => quote!(stack),
    };
    let params_g = &generics.params;
    let generics_tokens = if params_g.is_empty() {
        quote!()
    } else {
        quote!(<#params_g>)
    };
    let where_clause = &generics.where_clause;
    let unwind = info.unwinds;
    quote_spanned! {Span::call_site()=>
        // The IRQ-stack switch; see `__irqstack_rt_trampoline` in irqstack-rt for every
        // instruction's reason and the CFI that lets unwinders cross it.
        #krate::__private::trampoline_fn! {
            inline = #inline,
            unwind = #unwind,
            name = #name,
            generics = [#generics_tokens],
            params = [#(#params),*],
            output = [#output],
            where = [#where_clause],
            tos = #tos_arg,
            begin = #begin,
            end = #end,
            body = #shim,
            shim = [#shim_def],
            symbol = #symbol,
            shim_symbol = #shim_symbol,
            noreturn = #diverges,
        }
    }
}

/// How the return value comes back, for the inline switch of kernel builds (feature
/// `inline-switch`): `none`, `gpr` (`rax`), `gpr2` (`rax` and `rdx`: 128-bit integers, pointers
/// that may be fat); `None` where the inline form does not apply (floats, aggregates, `!`).
fn ret_class(output: &ReturnType) -> Option<&'static str> {
    let ty = match output {
        ReturnType::Default => return Some("none"),
        ReturnType::Type(_, ty) => ty,
    };
    match &**ty {
        // A body that never returns keeps its trampoline (`call; int3`): after an inline
        // `call` the compiler would add its own trap for the unreachable rest, which objtool
        // reports. Such handlers are fatal paths, where a few instructions do not matter.
        Type::Never(_) => None,
        Type::Tuple(t) if t.elems.is_empty() => Some("none"),
        Type::Reference(_) | Type::Ptr(_) => Some("gpr2"),
        t if classify::asm_arg(t) => Some("gpr"),
        Type::Path(p) if p.path.is_ident("u128") || p.path.is_ident("i128") => Some("gpr2"),
        _ => None,
    }
}

/// The `inline = ...` argument of the runtime's `trampoline_fn!`: each argument's name and type
/// (they go in the SysV integer registers, in order), and the return class; or `none` where the
/// inline switch cannot pass the arguments (the runtime then keeps the trampoline).
fn inline_spec(tys: &Option<Vec<&Type>>, ret: Option<&str>) -> TokenStream {
    let (Some(tys), Some(ret)) = (tys, ret) else {
        return quote!(none);
    };
    if tys.len() > classify::INT_ARG_REGS {
        return quote!(none);
    }
    let names: Vec<syn::Ident> = (0..tys.len())
        .map(|i| format_ident!("__irqstack_in{}", i))
        .collect();
    let ret = format_ident!("{}", ret);
    quote!([#(#names: #tys),*] -> #ret)
}

/// Arguments stay in their registers; `tos` is one more argument after them.
fn register_form(info: &Sig<'_>, gprs: usize) -> TokenStream {
    let tys = &info.tys;
    let names = &info.names;
    let output = info.output;
    let generics = info.generics;
    let where_clause = &generics.where_clause;
    let tos = (gprs < classify::INT_ARG_REGS).then_some(gprs);
    let shim = format_ident!("__irqstack_shim_reg");
    let tramp_name = format_ident!("__irqstack_trampoline_reg");
    let call = info.call_body(names);
    let params: Vec<TokenStream> = tys.iter().map(|t| quote!(#t)).collect();
    let shim_def = quote! {
        #[allow(clippy::too_many_arguments)]
        fn #shim #generics (#(#names: #tys),*) #output #where_clause {
            #call
        }
    };
    let inline = inline_spec(
        &tys.iter()
            .map(|t| classify::asm_arg(t).then_some(*t))
            .collect::<Option<Vec<&Type>>>(),
        ret_class(output),
    );
    let tramp = trampoline(
        &tramp_name,
        info,
        tos,
        (&shim, shim_def),
        &params,
        quote!(#output),
        ("reg", inline),
    );
    quote! {
        #tramp
        // SAFETY: `__irqstack_switch` holds this thread's (CPU's) IRQ stack, claimed for this call
        // alone, and `tos()` is its 16-byte aligned (8 with `kernel-abi`) top slot. The
        // trampoline has the shim's signature plus `tos` as the last argument, so the shim
        // receives exactly these arguments. It saves rsp in the top slot, switches, calls the
        // shim and restores rsp before it returns or unwinds.
        let __irqstack_ret = unsafe { #tramp_name(#(#names,)* __irqstack_switch.tos()) };
        __irqstack_switch.finish();
        __irqstack_ret
    }
}

/// Arguments are moved into a tuple and passed by pointer; works for any signature.
fn block_form(info: &Sig<'_>) -> TokenStream {
    let tys = &info.tys;
    let names = &info.names;
    let generics = info.generics;
    let where_clause = &generics.where_clause;
    let ret_ty = info.ret_ty();
    // Return directly only for types that carry no lifetimes and come back in registers;
    // everything else goes through an out pointer (no hidden sret pointer, no elision puzzles).
    let direct = match info.output {
        ReturnType::Default => true,
        ReturnType::Type(_, ty) => {
            classify::ret_in_registers(info.output)
                && !matches!(**ty, Type::Reference(_) | Type::Ptr(_))
        }
    };
    let shim = format_ident!("__irqstack_shim_block");
    let tramp_name = format_ident!("__irqstack_trampoline_block");
    let call = info.call_body(names);
    let tuple_ty = quote!((#(#tys,)*));
    let unpack = quote! {
        // SAFETY: the wrapper passes a pointer to a tuple it owns and never touches again
        // (`ManuallyDrop`); reading moves the arguments out exactly once.
        let (#(#names,)*) = unsafe { __irqstack_args.read() };
    };
    // `tos` follows the one or two pointers.
    let tos = Some(if direct { 1 } else { 2 });
    if direct {
        let output = info.output;
        let shim_def = quote! {
            fn #shim #generics (__irqstack_args: *mut #tuple_ty) #output #where_clause {
                #unpack
                #call
            }
        };
        let tramp = trampoline(
            &tramp_name,
            info,
            tos,
            (&shim, shim_def),
            &[quote!(*mut #tuple_ty)],
            quote!(#output),
            (
                "block",
                inline_spec(
                    &Some(vec![&syn::parse_quote!(*mut #tuple_ty)]),
                    ret_class(output),
                ),
            ),
        );
        quote! {
            #tramp
            let mut __irqstack_args = ::core::mem::ManuallyDrop::new((#(#names,)*));
            // SAFETY: as for the register form; the argument tuple lives in this frame, on the
            // interrupted stack, which stays mapped and untouched while the body runs.
            let __irqstack_ret = unsafe {
                #tramp_name(&mut *__irqstack_args as *mut #tuple_ty, __irqstack_switch.tos())
            };
            __irqstack_switch.finish();
            __irqstack_ret
        }
    } else {
        let shim_def = quote! {
            fn #shim #generics (__irqstack_args: *mut #tuple_ty, __irqstack_out: *mut #ret_ty) #where_clause {
                #unpack
                let __irqstack_ret = #call;
                // SAFETY: the wrapper passes a valid, aligned, uninitialized slot for the result.
                unsafe { __irqstack_out.write(__irqstack_ret) };
            }
        };
        let tramp = trampoline(
            &tramp_name,
            info,
            tos,
            (&shim, shim_def),
            &[quote!(*mut #tuple_ty), quote!(*mut #ret_ty)],
            quote!(),
            (
                "block",
                inline_spec(
                    &Some(vec![
                        &syn::parse_quote!(*mut #tuple_ty),
                        &syn::parse_quote!(*mut #ret_ty),
                    ]),
                    Some("none"),
                ),
            ),
        );
        quote! {
            #tramp
            let mut __irqstack_args = ::core::mem::ManuallyDrop::new((#(#names,)*));
            let mut __irqstack_out = ::core::mem::MaybeUninit::<#ret_ty>::uninit();
            // SAFETY: as for the register form; the argument tuple and the result slot live in
            // this frame, on the interrupted stack, which stays mapped while the body runs.
            unsafe {
                #tramp_name(
                    &mut *__irqstack_args as *mut #tuple_ty,
                    __irqstack_out.as_mut_ptr(),
                    __irqstack_switch.tos(),
                )
            };
            __irqstack_switch.finish();
            // SAFETY: the trampoline returned normally, so the shim wrote the result.
            unsafe { __irqstack_out.assume_init() }
        }
    }
}
