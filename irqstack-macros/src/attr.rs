//! Parsing of attribute arguments: `#[on_irqstack]`, `#[on_irqstack(crate = path)]`.

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::{Error, Path, Token};

/// Arguments of `#[on_irqstack(...)]`.
pub struct Args {
    /// Path of the facade crate that generated code names (`::irqstack` by default).
    pub krate: Path,
}

impl Args {
    pub fn parse(tokens: TokenStream) -> Result<Args, Error> {
        syn::parse2::<RawArgs>(tokens).map(|raw| Args {
            krate: raw
                .krate
                .unwrap_or_else(|| syn::parse_quote_spanned!(Span::call_site()=> ::irqstack)),
        })
    }
}

struct RawArgs {
    krate: Option<Path>,
}

impl Parse for RawArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut krate = None;
        let mut errors: Option<Error> = None;
        let mut push = |e: Error| match &mut errors {
            Some(all) => all.combine(e),
            None => errors = Some(e),
        };
        while !input.is_empty() {
            if input.peek(Token![crate]) {
                let kw: Token![crate] = input.parse()?;
                if !input.peek(Token![=]) {
                    return Err(Error::new_spanned(
                        kw,
                        "expected `crate = path`, for example `#[on_irqstack(crate = ::my_irqstack)]`",
                    ));
                }
                let _: Token![=] = input.parse()?;
                let path = input.call(Path::parse_mod_style).map_err(|e| {
                    Error::new(
                        e.span(),
                        "`crate = ...` takes the path of the irqstack facade crate, for example \
                         `#[on_irqstack(crate = ::my_irqstack)]`",
                    )
                })?;
                if krate.is_some() {
                    push(Error::new_spanned(
                        &path,
                        "`crate` is given twice; keep one `crate = path` argument",
                    ));
                }
                krate = Some(path);
            } else {
                let tt: proc_macro2::TokenTree = input.parse()?;
                push(Error::new_spanned(
                    &tt,
                    "unknown argument to `#[on_irqstack]`: the only argument is `crate = path` \
                     (the path of the irqstack facade crate)",
                ));
                // Skip to the next comma so that one mistake gives one error.
                while !input.is_empty() && !input.peek(Token![,]) {
                    let _: proc_macro2::TokenTree = input.parse()?;
                }
            }
            if input.is_empty() {
                break;
            }
            let _: Token![,] = input.parse()?;
        }
        match errors {
            Some(e) => Err(e),
            None => Ok(RawArgs { krate }),
        }
    }
}
