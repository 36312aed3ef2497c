//! Parsing of attribute arguments: `#[on_irqstack]`, `#[on_irqstack(crate = path)]`.

use proc_macro2::{Span, TokenStream, TokenTree};
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
    /// Reads `arg, arg, ...`. Every bad argument gives one error at its first token and parsing
    /// goes on after the next comma, so that all mistakes are reported together.
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut krate: Option<Path> = None;
        let mut errors: Option<Error> = None;
        let mut push = |e: Error| match &mut errors {
            Some(all) => all.combine(e),
            None => errors = Some(e),
        };
        while !input.is_empty() {
            if input.peek(Token![,]) {
                let comma: Token![,] = input.parse()?;
                push(Error::new_spanned(
                    comma,
                    "unexpected `,`: remove it; arguments are separated by single commas, and \
                     the only one is `crate = path`",
                ));
                continue;
            }
            match parse_one(input) {
                Ok(path) => {
                    if krate.is_some() {
                        push(Error::new_spanned(
                            &path,
                            "`crate` is given twice; keep one `crate = path` argument",
                        ));
                    }
                    krate = Some(path);
                }
                Err(e) => {
                    push(e);
                    // Skip the rest of this argument so that one mistake gives one error.
                    while !input.is_empty() && !input.peek(Token![,]) {
                        let _: TokenTree = input.parse()?;
                    }
                }
            }
            if input.is_empty() {
                break;
            }
            if !input.peek(Token![,]) {
                let tt: TokenTree = input.parse()?;
                push(Error::new_spanned(
                    &tt,
                    "unexpected token after `crate = path`: separate arguments with commas; the \
                     only argument of `#[on_irqstack]` is `crate = path`",
                ));
                while !input.is_empty() && !input.peek(Token![,]) {
                    let _: TokenTree = input.parse()?;
                }
                if input.is_empty() {
                    break;
                }
            }
            let _: Token![,] = input.parse()?;
        }
        match errors {
            Some(e) => Err(e),
            None => Ok(RawArgs { krate }),
        }
    }
}

/// One argument: `crate = path`. On error, the input may be left anywhere inside the argument.
fn parse_one(input: ParseStream) -> syn::Result<Path> {
    const EXAMPLE: &str = "for example `#[on_irqstack(crate = ::my_irqstack)]`";
    if !input.peek(Token![crate]) {
        let tt: TokenTree = input.parse()?;
        return Err(Error::new_spanned(
            &tt,
            "unknown argument to `#[on_irqstack]`: the only argument is `crate = path` (the path \
             of the irqstack facade crate); remove this one",
        ));
    }
    let kw: Token![crate] = input.parse()?;
    if !input.peek(Token![=]) {
        return Err(Error::new_spanned(
            kw,
            format!(
                "`crate` must be followed by `= path`, the path of the irqstack facade crate, {EXAMPLE}"
            ),
        ));
    }
    let eq: Token![=] = input.parse()?;
    if input.is_empty() || input.peek(Token![,]) {
        return Err(Error::new_spanned(
            eq,
            format!("`crate =` needs the path of the irqstack facade crate after it, {EXAMPLE}"),
        ));
    }
    input.call(Path::parse_mod_style).map_err(|e| {
        Error::new(
            e.span(),
            format!(
                "`crate = ...` takes the path of the irqstack facade crate, without quotes or \
                 generic arguments, {EXAMPLE}"
            ),
        )
    })
}
