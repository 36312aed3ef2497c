//! `#[noinstr]`: the kernel's `noinstr` function attribute.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Error, Item};

use crate::valid;

pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = valid::Errors::default();
    if !attr.is_empty() {
        errors.push(Error::new_spanned(
            &attr,
            "`#[noinstr]` takes no arguments: write `#[noinstr]` (the section is always \
             `.noinstr.text`)",
        ));
    }
    let func = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(f)) => f,
        Ok(Item::Verbatim(tokens)) if valid::is_bodiless_fn(&tokens) => {
            errors.push(Error::new_spanned(
                valid::after_attrs(&tokens),
                "`#[noinstr]` needs a function with a body, and this declaration has none; put \
                 it on the function that implements it (a trait method's default body, or each \
                 impl's method)",
            ));
            return errors.emit_with(item);
        }
        Ok(other) => {
            errors.push(Error::new(
                valid::first_token_span(&other),
                "`#[noinstr]` can only be applied to a function with a body (it places the \
                 function's code in `.noinstr.text` for objtool); put it on a `fn` item",
            ));
            return errors.emit_with(item);
        }
        Err(_) => {
            errors.push(valid::not_an_item(&item, "noinstr"));
            return errors.emit_with(item);
        }
    };
    for attr in &func.attrs {
        let path = attr.path();
        let last = path.segments.last().map(|s| s.ident.to_string());
        if path.is_ident("inline") {
            errors.push(Error::new_spanned(
                attr,
                "`#[noinstr]` functions are never inlined (inlined code would leave \
                 `.noinstr.text`); remove this `#[inline]`",
            ));
        }
        if path.is_ident("link_section")
            || path.is_ident("unsafe") && quote!(#attr).to_string().contains("link_section")
        {
            errors.push(Error::new_spanned(
                attr,
                "`#[noinstr]` sets the section to `.noinstr.text`; remove this `link_section`",
            ));
        }
        if last.as_deref() == Some("noinstr") {
            errors.push(Error::new_spanned(
                attr,
                "`#[noinstr]` is applied twice; remove one of them",
            ));
        }
    }
    if let Some(c) = &func.sig.constness {
        errors.push(Error::new_spanned(
            c,
            "`#[noinstr]` cannot be used on a `const fn`: the attribute places run-time code in a \
             section; remove `const`",
        ));
    }
    if let Some(a) = &func.sig.asyncness {
        errors.push(Error::new_spanned(
            a,
            "`#[noinstr]` cannot be used on an `async fn`: the code of a future is not the code \
             of this function; remove `async`",
        ));
    }
    if errors.has_any() {
        return errors.emit_with(func);
    }
    let syn::ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    quote! {
        #(#attrs)*
        #[inline(never)]
        #[unsafe(link_section = ".noinstr.text")]
        #vis #sig #block
    }
}
