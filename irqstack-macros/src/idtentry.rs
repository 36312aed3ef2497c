//! `#[idtentry]`: interrupt entry stubs for stable Rust, in the shape of Linux's `idtentry`
//! family (`DEFINE_IDTENTRY`, `_ERRORCODE`, `_IRQ`, `_SYSVEC`, `_IST`).
//!
//! Parse (the kind from the arguments), check (the signature the kind needs), expand:
//! - the handler `fn name(regs: &mut PtRegs[, code])`, kept out of line (`#[inline(never)]`
//!   unless it carries an `#[inline]` attribute of its own): it is ordinary, instrumentable code
//!   and stays in `.text`, called from the `noinstr` glue inside an instrumentation region, as
//!   Linux keeps `__func` apart from the `noinstr` function `DEFINE_IDTENTRY*` wraps around it.
//!   Inlined into the glue, its code would land in `.noinstr.text`, and a panic path at its end
//!   would end the glue with a call objtool 6.1 does not know to be noreturn ("falls through to
//!   next function");
//! - its glue, `extern "sysv64"`, in `.noinstr.text`: `irqentry_enter`, an instrumentation
//!   region around the handler (for `irq`/`sysvec`: on this CPU's IRQ stack unless the interrupt
//!   came from user mode or the stack is in use, the kernel's `_cond` rule, with
//!   `irq_enter_rcu`/`irq_exit_rcu` on the IRQ stack), `irqentry_exit`;
//! - the entry stub `asm_<name>` (the runtime's `idt_stub!` piece in `global_asm!`), declared
//!   for Rust as `unsafe extern "C" fn asm_<name>()` so that its address can go into the IDT;
//! - for `irq`: the table of per-vector stubs `asm_<name>_vectors` and
//!   `asm_<name>_entry(vector) -> Option<usize>`, the IDT address for a vector.
//!
//! `global_asm!` may only stand where items stand, and the handler may be defined in a block, so
//! the assembly goes into a module of its own, which reaches the glue by its link-time name.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::{Error, FnArg, Item, ItemFn, Path, ReturnType, Token, Type};

use crate::label;
use crate::valid;

/// What kind of vector the handler serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// An exception without an error code.
    Exception,
    /// An exception with an error code (`#[idtentry(error_code)]`).
    ErrorCode,
    /// Device interrupts, one stub per vector (`#[idtentry(irq)]`).
    Irq,
    /// A system vector: timer, IPIs (`#[idtentry(sysvec)]`).
    Sysvec,
    /// NMI, #MC, #DB, #DF: already on an IST stack (`#[idtentry(ist)]`, with `error_code` for
    /// #DF).
    Ist { error_code: bool },
}

struct Args {
    kind: Kind,
    krate: Path,
}

const KINDS: &str = "the kinds are `error_code`, `irq`, `sysvec`, `ist` and `ist, error_code` \
                     (none: an exception without an error code)";

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut words: Vec<syn::Ident> = Vec::new();
        let mut krate: Option<Path> = None;
        let mut errors = valid::Errors::default();
        while !input.is_empty() {
            if input.peek(Token![crate]) {
                let kw: Token![crate] = input.parse()?;
                let _: Token![=] = input
                    .parse()
                    .map_err(|_| Error::new_spanned(kw, "`crate` must be followed by `= path`"))?;
                krate = Some(input.call(Path::parse_mod_style)?);
            } else if input.peek(syn::Ident) {
                let ident: syn::Ident = input.parse()?;
                match ident.to_string().as_str() {
                    "error_code" | "irq" | "sysvec" | "ist" => {
                        if words.contains(&ident) {
                            errors.push(Error::new_spanned(
                                &ident,
                                format!("`{ident}` is given twice; keep one"),
                            ));
                        }
                        words.push(ident);
                    }
                    _ => errors.push(Error::new_spanned(
                        &ident,
                        format!("unknown kind of entry `{ident}`: {KINDS}"),
                    )),
                }
            } else {
                let tt: TokenTree = input.parse()?;
                errors.push(Error::new_spanned(
                    &tt,
                    format!("unexpected token: {KINDS}, or `crate = path`"),
                ));
            }
            if !input.is_empty() {
                let _: Token![,] = input.parse()?;
            }
        }
        let has = |w: &str| words.iter().any(|i| i == w);
        let kind = match (has("error_code"), has("irq"), has("sysvec"), has("ist")) {
            (false, false, false, false) => Kind::Exception,
            (true, false, false, false) => Kind::ErrorCode,
            (false, true, false, false) => Kind::Irq,
            (false, false, true, false) => Kind::Sysvec,
            (ec, false, false, true) => Kind::Ist { error_code: ec },
            _ => {
                errors.push(Error::new_spanned(
                    words.last().expect("two kinds at least"),
                    format!(
                        "these kinds do not go together: {KINDS}; device interrupts pass their \
                         vector, not an error code"
                    ),
                ));
                Kind::Exception
            }
        };
        errors.finish()?;
        Ok(Args {
            kind,
            krate: krate
                .unwrap_or_else(|| syn::parse_quote_spanned!(Span::call_site()=> ::irqstack)),
        })
    }
}

/// Entry point. Never panics: every problem becomes a `compile_error!`.
pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = syn::parse2::<Args>(attr);
    let func = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(f)) => f,
        Ok(other) => {
            let mut errors = valid::Errors::default();
            if let Err(e) = args {
                errors.push(e);
            }
            errors.push(Error::new(
                valid::first_token_span(&other),
                "`#[idtentry]` generates the interrupt entry stub of a handler function; put it \
                 on a `fn(regs: &mut irqstack::PtRegs, ...)`",
            ));
            return errors.emit_with(item);
        }
        Err(_) => {
            let mut errors = valid::Errors::default();
            if let Err(e) = args {
                errors.push(e);
            }
            errors.push(valid::not_an_item(&item, "idtentry"));
            return errors.emit_with(item);
        }
    };
    let mut errors = valid::Errors::default();
    let args = args.map_err(|e| errors.push(e)).ok();
    if let Some(args) = &args {
        check_signature(&func, args.kind, &mut errors);
    }
    match args {
        Some(args) if !errors.has_any() => expand_fn(&args, &func),
        _ => errors.emit_with(func),
    }
}

/// What the kind's second parameter is, if it has one.
fn second_param(kind: Kind) -> Option<(&'static str, &'static str)> {
    match kind {
        Kind::ErrorCode | Kind::Ist { error_code: true } => Some(("u64", "error_code: u64")),
        Kind::Irq => Some(("u8", "vector: u8")),
        _ => None,
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Exception => "#[idtentry]",
        Kind::ErrorCode => "#[idtentry(error_code)]",
        Kind::Irq => "#[idtentry(irq)]",
        Kind::Sysvec => "#[idtentry(sysvec)]",
        Kind::Ist { error_code: false } => "#[idtentry(ist)]",
        Kind::Ist { error_code: true } => "#[idtentry(ist, error_code)]",
    }
}

fn check_signature(f: &ItemFn, kind: Kind, errors: &mut valid::Errors) {
    let sig = &f.sig;
    let expected = match second_param(kind) {
        Some((_, p)) => format!("fn(regs: &mut irqstack::PtRegs, {p})"),
        None => "fn(regs: &mut irqstack::PtRegs)".to_owned(),
    };
    let name = kind_name(kind);
    if let Some(a) = &sig.asyncness {
        errors.push(Error::new_spanned(
            a,
            format!("{name} handlers cannot be `async`: an interrupt cannot wait"),
        ));
    }
    if let Some(c) = &sig.constness {
        errors.push(Error::new_spanned(
            c,
            format!("{name} handlers cannot be `const`"),
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(Error::new_spanned(
            v,
            format!("{name} handlers take {expected}, not C-variadic arguments"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(Error::new_spanned(
            &sig.generics,
            format!("{name} handlers cannot be generic: the entry stub calls one function; write {expected}"),
        ));
    }
    let inputs: Vec<&FnArg> = sig.inputs.iter().collect();
    let want = 1 + usize::from(second_param(kind).is_some());
    if inputs.len() != want {
        let span: &dyn quote::ToTokens = if inputs.is_empty() {
            &sig.ident
        } else {
            &sig.inputs
        };
        errors.push(Error::new_spanned(
            span,
            format!(
                "{name} handlers take {expected}: {want} parameter(s), found {}",
                inputs.len()
            ),
        ));
        return;
    }
    for (i, input) in inputs.iter().enumerate() {
        let FnArg::Typed(t) = input else {
            errors.push(Error::new_spanned(
                input,
                format!("{name} handlers are free functions: {expected}"),
            ));
            continue;
        };
        let ok = if i == 0 {
            is_mut_ptregs(&t.ty)
        } else {
            is_primitive(&t.ty, second_param(kind).map_or("", |p| p.0))
        };
        if !ok {
            errors.push(Error::new_spanned(
                &t.ty,
                format!("wrong parameter type for {name}: the handler is {expected}"),
            ));
        }
    }
    match &sig.output {
        ReturnType::Default => {}
        ReturnType::Type(_, ty) if matches!(**ty, Type::Never(_)) => {}
        ReturnType::Type(_, ty) => errors.push(Error::new_spanned(
            ty,
            format!("{name} handlers return nothing (or `!`): they report through `regs`"),
        )),
    }
}

fn is_mut_ptregs(ty: &Type) -> bool {
    let Type::Reference(r) = ty else {
        return false;
    };
    r.mutability.is_some()
        && matches!(&*r.elem, Type::Path(p) if p.qself.is_none()
            && p.path.segments.last().is_some_and(|s| s.ident == "PtRegs" && s.arguments.is_none()))
}

fn is_primitive(ty: &Type, want: &str) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.is_ident(want))
}

fn expand_fn(args: &Args, func: &ItemFn) -> TokenStream {
    let krate = &args.krate;
    let kind = args.kind;
    let name = &func.sig.ident;
    let vis = &func.vis;
    let glue = format_ident!("__irqstack_idtentry_glue_{}", name);
    let glue_symbol = format!("__irqstack_idtentry_glue_{name}");
    let stub = format_ident!("asm_{}", name);
    let stub_symbol = format!("asm_{name}");
    let asm_mod = format_ident!("__irqstack_idtentry_{}", name);
    let unsafety = func.sig.unsafety.is_some();
    let call = |args: TokenStream| {
        if unsafety {
            // SAFETY (of the generated block): the handler is an `unsafe fn`; its author
            // declared it for the entry stub to call, with the frame the stub built.
            quote!(unsafe { #name(#args) })
        } else {
            quote!(#name(#args))
        }
    };
    let diverges =
        matches!(&func.sig.output, ReturnType::Type(_, t) if matches!(**t, Type::Never(_)));
    let allow_unreachable = if diverges {
        quote!(#[allow(unreachable_code)])
    } else {
        quote!()
    };
    let hooks = quote!(#krate::__private::entry_hooks);
    let body = match kind {
        Kind::Exception | Kind::Ist { error_code: false } => {
            let c = call(quote!(regs));
            quote! { let _ = code; #c; }
        }
        Kind::ErrorCode | Kind::Ist { error_code: true } => {
            let c = call(quote!(regs, code));
            quote! { #c; }
        }
        Kind::Irq | Kind::Sysvec => {
            let (params, args_in, pass) = if kind == Kind::Irq {
                (
                    quote!(regs: &mut #krate::PtRegs, vector: u8),
                    quote!(regs, vector),
                    quote!(regs, code as u8),
                )
            } else {
                (
                    quote!(regs: &mut #krate::PtRegs),
                    quote!(regs),
                    quote!(regs),
                )
            };
            let c = call(args_in.clone());
            quote! {
                /// The handler between `irq_enter_rcu()` and `irq_exit_rcu()`.
                #[inline(always)]
                #allow_unreachable
                fn run(#params) {
                    #hooks::irq_enter_rcu();
                    #c;
                    #hooks::irq_exit_rcu();
                }
                /// The same on this CPU's IRQ stack (in place if it is in use already).
                #[#krate::on_irqstack(crate = #krate)]
                fn on_irq_stack(#params) {
                    run(#args_in)
                }
                let _ = code;
                // The kernel's `_cond` rule: an interrupt from user mode arrived on an empty
                // task stack and runs there; one from the kernel switches to the IRQ stack.
                if regs.user_mode() {
                    run(#pass);
                } else {
                    on_irq_stack(#pass);
                }
            }
        }
    };
    let code = match kind {
        Kind::Exception | Kind::Sysvec | Kind::Ist { error_code: false } => quote!(none),
        Kind::ErrorCode | Kind::Irq | Kind::Ist { error_code: true } => quote!(cpu),
    };
    let labels: Vec<String> = (0..6).map(|_| label::fresh()).collect();
    let stub_doc = if kind == Kind::Irq {
        format!(
            "The common entry stub of [`{name}`] (`#[idtentry(irq)]`): it expects the vector \
             pushed by a per-vector stub. Do not install it in the IDT: install \
             `asm_{name}_entry(vector)`. Never call it."
        )
    } else {
        format!(
            "The entry stub of [`{name}`] (`{}`): install its address in the IDT. Never call it.",
            kind_name(kind)
        )
    };
    let vectors = if kind == Kind::Irq {
        let table = format_ident!("asm_{}_vectors", name);
        let table_symbol = format!("asm_{name}_vectors");
        let entry = format_ident!("asm_{}_entry", name);
        let label = label::fresh();
        let table_doc = format!(
            "The per-vector entry stubs of [`{name}`], 16 bytes each, for vectors 32 to 255 in \
             order; see [`{entry}`]."
        );
        let entry_doc = format!(
            "The IDT address for device vector `vector` (32..=255) of [`{name}`]: its stub in \
             [`{table}`]; `None` below 32 (the exceptions)."
        );
        quote! {
            unsafe extern "C" {
                #[doc = #table_doc]
                #vis fn #table();
            }
            #[doc = #entry_doc]
            #vis fn #entry(vector: u8) -> ::core::option::Option<usize> {
                (vector >= 32).then(|| #table as usize + 16 * (vector as usize - 32))
            }
            #[doc(hidden)]
            #[allow(non_snake_case)]
            mod #asm_mod {
                ::core::arch::global_asm!(#krate::__private::idt_vectors!(
                    symbol = #table_symbol, common = #stub_symbol, label = #label
                ));
            }
        }
    } else {
        quote!()
    };
    let asm_mod_stub = format_ident!("{}_stub", asm_mod);
    let mut handler = func.clone();
    if !handler.attrs.iter().any(|a| a.path().is_ident("inline")) {
        handler.attrs.push(syn::parse_quote!(#[inline(never)]));
    }
    quote! {
        #handler

        /// Glue between the entry stub and the handler (generated by `#[idtentry]`).
        #[doc(hidden)]
        #[unsafe(export_name = #glue_symbol)]
        #[unsafe(link_section = ".noinstr.text")]
        #[inline(never)]
        #[allow(non_snake_case, unused_variables)]
        #allow_unreachable
        extern "sysv64" fn #glue(regs: &mut #krate::PtRegs, code: u64) {
            let state = #hooks::irqentry_enter(regs);
            #krate::instr_begin!();
            #body
            #krate::instr_end!();
            #hooks::irqentry_exit(regs, state);
        }

        unsafe extern "C" {
            #[doc = #stub_doc]
            #vis fn #stub();
        }

        #[doc(hidden)]
        #[allow(non_snake_case)]
        mod #asm_mod_stub {
            unsafe extern "sysv64" {
                #[link_name = #glue_symbol]
                fn glue();
            }
            ::core::arch::global_asm!(
                #krate::__private::idt_stub!(
                    symbol = #stub_symbol, code = #code, noreturn = #diverges,
                    labels = [#(#labels),*]
                ),
                glue = sym glue,
            );
        }

        #vectors
    }
}
