//! `instr_begin!`, `instr_end!`, `instr_begin_insn!`, `instr_end_insn!`.
//!
//! The facade's `macro_rules!` forward to `__instr_marker!` with `$crate` (so the generated code
//! names the facade however the user depends on it), the marker kind and the form, then the
//! user's tokens, which must be empty. This proc macro picks the fresh label; the record text
//! comes from the runtime's pieces, which follow the crate features (record format).

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::quote;
use syn::Error;

use crate::label;

/// Input: `[$crate] begin|end stmt|insn [user tokens]`.
pub fn expand(input: TokenStream) -> TokenStream {
    match parse(input) {
        Ok(out) => out,
        Err(e) => e.to_compile_error(),
    }
}

fn parse(input: TokenStream) -> Result<TokenStream, Error> {
    let mut iter = input.into_iter();
    let internal = || {
        Error::new(
            proc_macro2::Span::call_site(),
            "`__instr_marker!` is internal to irqstack; use `irqstack::instr_begin!()` and friends",
        )
    };
    let krate = match iter.next() {
        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Bracket => g.stream(),
        _ => return Err(internal()),
    };
    let kind = match iter.next() {
        Some(TokenTree::Ident(i)) if i == "begin" || i == "end" => i,
        _ => return Err(internal()),
    };
    let form = match iter.next() {
        Some(TokenTree::Ident(i)) if i == "stmt" || i == "insn" => i.to_string(),
        _ => return Err(internal()),
    };
    let user = match iter.next() {
        Some(TokenTree::Group(g)) => g.stream(),
        _ => return Err(internal()),
    };
    if !user.is_empty() {
        let name = match form.as_str() {
            "stmt" => format!("instr_{kind}!"),
            _ => format!("instr_{kind}_insn!"),
        };
        let what = if form == "stmt" {
            "the marker is the statement itself"
        } else {
            "it expands to the asm text of one marked NOP"
        };
        return Err(Error::new_spanned(
            user,
            format!("`{name}` takes no arguments ({what}); write `{name}()`"),
        ));
    }
    let label = label::fresh();
    let piece = quote!(#krate::__private::instr_insn!(#kind, #label));
    Ok(if form == "stmt" {
        quote! {
            {
                // SAFETY: a NOP carrying a label, and a record in a `.discard.*` section that
                // the linker drops; no register, memory, stack slot or flag changes.
                #[allow(unused_unsafe)]
                let () = unsafe {
                    ::core::arch::asm!(#piece, options(nomem, nostack, preserves_flags))
                };
            }
        }
    } else {
        piece
    })
}
