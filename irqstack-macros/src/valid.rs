//! Checks that an item can be turned into an IRQ-stack handler. Every problem found is reported,
//! each at its own token, in one combined error.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Error, Expr, FnArg, GenericParam, Item, ItemFn, ReturnType, Stmt, Type, WherePredicate};

/// Collects errors so that one bad item reports all its problems at once.
#[derive(Default)]
pub struct Errors(Option<Error>);

impl Errors {
    pub fn push(&mut self, e: Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
    pub fn has_any(&self) -> bool {
        self.0.is_some()
    }
    pub fn finish(self) -> Result<(), Error> {
        self.0.map_or(Ok(()), Err)
    }
    /// The errors as `compile_error!`s, followed by `item`: callers of a broken item still
    /// type-check, so the user sees the error that matters and not a cascade.
    ///
    /// The item is kept as written, except for what would make rustc add an error of its own
    /// about the very thing already reported (see `for_reemit`). Input that is not an item (an
    /// attribute on a closure or other expression) is kept as one expression, a block, so that
    /// the `compile_error!`s do not change how it parses.
    pub fn emit_with(self, item: impl ToTokens) -> proc_macro2::TokenStream {
        let variadic_reported = self
            .0
            .iter()
            .flatten()
            .any(|e| e.to_string().contains(VARIADIC_REJECTED));
        let errors = self.0.map(|e| e.to_compile_error()).unwrap_or_default();
        let item = item.into_token_stream();
        if let Ok(f) = syn::parse2::<ItemFn>(item.clone()) {
            let f = for_reemit(f, variadic_reported);
            return quote!(#errors #f);
        }
        if syn::parse2::<Item>(item.clone()).is_err() && syn::parse2::<Expr>(item.clone()).is_ok() {
            return quote!({ #errors #item });
        }
        quote!(#errors #item)
    }
}

/// Part of the error for a C-variadic function; `Errors::emit_with` looks for it.
const VARIADIC_REJECTED: &str = "cannot be used on a C-variadic function";

/// `f` as it is emitted after an error about it: without what rustc would reject again.
/// - `const async fn`: rustc rejects the pair; we reported both keywords already. `const` goes
///   (`async` stays, as the body may `.await`).
/// - C-variadic (`...`), when reported: on stable rustc adds a feature-gate error for it; the
///   `...` parameter goes.
fn for_reemit(mut f: ItemFn, drop_variadic: bool) -> ItemFn {
    if f.sig.constness.is_some() && f.sig.asyncness.is_some() {
        f.sig.constness = None;
    }
    if drop_variadic {
        f.sig.variadic = None;
    }
    f
}

/// What `#[on_irqstack]` was put on, when it is not a function: the error names the item kind and
/// says what to do instead.
pub fn not_a_function(item: &Item) -> Error {
    let (what, hint) = match item {
        Item::Struct(_) => ("a struct", "put it on the `fn` that handles the interrupt"),
        Item::Enum(_) => ("an enum", "put it on the `fn` that handles the interrupt"),
        Item::Union(_) => ("a union", "put it on the `fn` that handles the interrupt"),
        Item::Impl(_) => (
            "an impl block",
            "put it on a free `fn` and call that from the impl's methods",
        ),
        Item::Trait(_) => ("a trait", "put it on a free `fn`"),
        Item::Mod(_) => ("a module", "put it on each handler `fn` in the module"),
        Item::Static(_) | Item::Const(_) => ("a static or const", "put it on a `fn`"),
        Item::Type(_) => ("a type alias", "put it on a `fn`"),
        Item::Use(_) => ("a `use` item", "put it on a `fn`"),
        Item::ForeignMod(_) => (
            "an `extern` block",
            "it needs the function's body; put it on a Rust `fn` that calls the foreign function",
        ),
        Item::Macro(_) => ("a macro invocation", "put it on a `fn`"),
        Item::Verbatim(tokens) if is_bodiless_fn(tokens) => {
            return Error::new_spanned(
                after_attrs(tokens),
                "`#[on_irqstack]` needs a function with a body, and this declaration has none; \
                 put it on the function that implements it (a trait method's default body, each \
                 impl's method, or a Rust `fn` that calls the foreign function)",
            );
        }
        _ => ("this item", "put it on a free `fn` with a body"),
    };
    Error::new(
        first_token_span(item),
        format!(
            "`#[on_irqstack]` cannot be applied to {what}: it turns a function into an IRQ-stack handler; {hint}"
        ),
    )
}

/// Whether `tokens` (an item syn keeps as verbatim tokens) is a function declaration without a
/// body: `fn f();` in a trait or an `extern` block.
pub fn is_bodiless_fn(tokens: &TokenStream) -> bool {
    let tokens: Vec<TokenTree> = after_attrs(tokens).into_iter().collect();
    let has_fn = tokens
        .iter()
        .any(|t| matches!(t, TokenTree::Ident(i) if i == "fn"));
    let ends_with_semi = matches!(tokens.last(), Some(TokenTree::Punct(p)) if p.as_char() == ';');
    has_fn && ends_with_semi
}

/// `tokens` without leading outer attributes (`#[...]`).
pub fn after_attrs(tokens: &TokenStream) -> TokenStream {
    let mut iter = tokens.clone().into_iter().peekable();
    while matches!(iter.peek(), Some(TokenTree::Punct(p)) if p.as_char() == '#') {
        iter.next();
        iter.next();
    }
    iter.collect()
}

/// The error for an attribute on something that does not parse as an item: a statement, a
/// closure or another expression (rustc passes those to attribute macros, after its own error
/// that such attributes are unstable). Points at the first token and says what to do instead.
pub fn not_an_item(tokens: &TokenStream, macro_name: &str) -> Error {
    let span = tokens
        .clone()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span());
    let what = if let Ok(Expr::Closure(_)) = syn::parse2::<Expr>(tokens.clone()) {
        "a closure"
    } else if let Ok(Stmt::Local(_)) = syn::parse2::<Stmt>(tokens.clone()) {
        "a `let` statement"
    } else if syn::parse2::<Expr>(tokens.clone()).is_ok() {
        "an expression"
    } else {
        "this code"
    };
    let fix = if macro_name == "on_irqstack" {
        "move the code into a `fn` item and put the attribute on it, or call \
         `irqstack::run_on_irqstack(|| ...)`"
    } else {
        "move the code into a `fn` item and put the attribute on it"
    };
    Error::new(
        span,
        format!(
            "`#[{macro_name}]` cannot be applied to {what}: it only applies to a function item \
             with a body; {fix}"
        ),
    )
}

/// The span of an item's first token after its outer attributes (its keyword, or `pub`).
pub fn first_token_span(item: &impl ToTokens) -> Span {
    let mut iter = item.to_token_stream().into_iter();
    while let Some(tt) = iter.next() {
        match &tt {
            // `#` of an outer attribute: skip it and its `[...]` group.
            proc_macro2::TokenTree::Punct(p) if p.as_char() == '#' => {
                iter.next();
            }
            _ => return tt.span(),
        }
    }
    Span::call_site()
}

/// Checks a function for everything the expansion cannot handle.
pub fn check_fn(f: &ItemFn, macro_name: &str) -> Result<(), Error> {
    let mut errors = Errors::default();
    let sig = &f.sig;
    if let Some(c) = &sig.constness {
        errors.push(Error::new_spanned(
            c,
            format!(
                "`#[{macro_name}]` cannot be used on a `const fn`: switching stacks is a run-time \
                 operation; remove `const`, or keep a `const fn` helper and call it from the handler"
            ),
        ));
    }
    if let Some(a) = &sig.asyncness {
        errors.push(Error::new_spanned(
            a,
            format!(
                "`#[{macro_name}]` cannot be used on an `async fn`: the body must run to \
                 completion on the IRQ stack; remove `async`, and block on any future inside \
                 the body"
            ),
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(Error::new_spanned(
            v,
            format!(
                "`#[{macro_name}]` {VARIADIC_REJECTED}: the trampoline must know every argument; \
                 take fixed arguments (or a `core::ffi::VaList`) instead"
            ),
        ));
    }
    for p in &sig.generics.params {
        match p {
            GenericParam::Lifetime(_) => {}
            GenericParam::Type(t) => errors.push(Error::new_spanned(
                t,
                format!(
                    "`#[{macro_name}]` cannot be used on a generic function: each handler needs \
                     one trampoline with a fixed signature; write a non-generic handler per type, \
                     or use `irqstack::run_on_irqstack(|| ...)` inside a generic function"
                ),
            )),
            GenericParam::Const(c) => errors.push(Error::new_spanned(
                c,
                format!(
                    "`#[{macro_name}]` cannot be used on a function with const generics: each \
                     handler needs one trampoline with a fixed signature; write a handler per \
                     value, or use `irqstack::run_on_irqstack(|| ...)` inside the generic function"
                ),
            )),
        }
    }
    if let Some(w) = &sig.generics.where_clause {
        for pred in &w.predicates {
            if !matches!(pred, WherePredicate::Lifetime(_)) {
                errors.push(Error::new_spanned(
                    pred,
                    format!(
                        "`#[{macro_name}]` supports only lifetime bounds in `where` clauses: the \
                         handler cannot be generic; remove this bound"
                    ),
                ));
            }
        }
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => errors.push(Error::new_spanned(
                r,
                format!(
                    "`#[{macro_name}]` cannot be used on a method: the trampoline is a free \
                     function that cannot name `self`; make the handler a free `fn` that takes \
                     the value as an ordinary argument, and call it from the method"
                ),
            )),
            FnArg::Typed(t) => check_type(&t.ty, "argument", macro_name, &mut errors),
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        check_type(ty, "return", macro_name, &mut errors);
    }
    for attr in &f.attrs {
        if attr.path().is_ident(macro_name)
            || attr
                .path()
                .segments
                .last()
                .is_some_and(|s| s.ident == macro_name)
        {
            errors.push(Error::new_spanned(
                attr,
                format!("`#[{macro_name}]` is applied twice; remove one of them"),
            ));
        }
        if is_naked(attr) {
            errors.push(Error::new_spanned(
                attr,
                format!(
                    "`#[{macro_name}]` cannot be used on a naked function: it runs a Rust body on \
                     the IRQ stack; remove `#[{macro_name}]` and switch stacks in your own \
                     assembly, or remove the naked attribute and write the body in Rust"
                ),
            ));
        }
    }
    check_body(&f.block, macro_name, &mut errors);
    errors.finish()
}

/// `#[naked]` or `#[unsafe(naked)]`.
fn is_naked(attr: &syn::Attribute) -> bool {
    match &attr.meta {
        syn::Meta::Path(p) => p.is_ident("naked"),
        syn::Meta::List(l) if l.path.is_ident("unsafe") => l
            .tokens
            .clone()
            .into_iter()
            .next()
            .is_some_and(|t| matches!(t, TokenTree::Ident(i) if i == "naked")),
        _ => false,
    }
}

/// The body becomes a nested function, which cannot name the `Self` of an impl around the
/// handler. Reports each `Self` of the body, also inside macro calls, except in items nested in
/// the body (they have a `Self` of their own).
fn check_body(block: &syn::Block, macro_name: &str, errors: &mut Errors) {
    struct Finder<'a> {
        errors: &'a mut Errors,
        macro_name: &'a str,
    }
    impl Finder<'_> {
        fn report(&mut self, span: Span) {
            self.errors.push(Error::new(
                span,
                format!(
                    "`#[{}]` moves the body into a nested function, where `Self` does not name \
                     the impl's type; write the type's name instead of `Self`",
                    self.macro_name
                ),
            ));
        }
        fn scan(&mut self, tokens: TokenStream) {
            for tt in tokens {
                match tt {
                    TokenTree::Ident(i) if i == "Self" => self.report(i.span()),
                    TokenTree::Group(g) => self.scan(g.stream()),
                    _ => {}
                }
            }
        }
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_item(&mut self, _: &'ast Item) {}
        fn visit_ident(&mut self, i: &'ast proc_macro2::Ident) {
            if i == "Self" {
                self.report(i.span());
            }
        }
        fn visit_macro(&mut self, m: &'ast syn::Macro) {
            self.visit_path(&m.path);
            self.scan(m.tokens.clone());
        }
    }
    Finder { errors, macro_name }.visit_block(block);
}

/// `impl Trait` and `Self` cannot be named by the nested items the expansion generates.
fn check_type(ty: &Type, position: &str, macro_name: &str, errors: &mut Errors) {
    struct Finder<'a> {
        errors: &'a mut Errors,
        position: &'a str,
        macro_name: &'a str,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            let (pos, fix) = if self.position == "argument" {
                (
                    "argument position",
                    "take a concrete type or `&dyn Trait` instead",
                )
            } else {
                (
                    "return position",
                    "return a concrete type or `Box<dyn Trait>` instead",
                )
            };
            self.errors.push(Error::new(
                t.span(),
                format!(
                    "`#[{}]` does not support `impl Trait` in {pos}: the trampoline needs a \
                     nameable type; {fix}",
                    self.macro_name
                ),
            ));
        }
        fn visit_ident(&mut self, i: &'ast proc_macro2::Ident) {
            if i == "Self" {
                self.errors.push(Error::new(
                    i.span(),
                    format!(
                        "`#[{}]` cannot be used where the signature names `Self`: the generated \
                         trampoline is a nested item that cannot see the impl; write the concrete \
                         type, or make the handler a free `fn`",
                        self.macro_name
                    ),
                ));
            }
        }
        fn visit_macro(&mut self, m: &'ast syn::Macro) {
            self.errors.push(Error::new_spanned(
                m,
                format!(
                    "`#[{}]` cannot classify a type written as a macro call; write the type out \
                     or use a type alias",
                    self.macro_name
                ),
            ));
        }
    }
    Finder {
        errors,
        position,
        macro_name,
    }
    .visit_type(ty);
}
