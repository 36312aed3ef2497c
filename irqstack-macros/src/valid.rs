//! Checks that an item can be turned into an IRQ-stack handler. Every problem found is reported,
//! each at its own token, in one combined error.

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Error, FnArg, GenericParam, Item, ItemFn, ReturnType, Type, WherePredicate};

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
    /// The errors as `compile_error!`s, followed by `item` unchanged: callers of a broken item
    /// still type-check, so the user sees the error that matters and not a cascade.
    pub fn emit_with(self, item: impl ToTokens) -> proc_macro2::TokenStream {
        let mut out = self.0.map(|e| e.to_compile_error()).unwrap_or_default();
        item.to_tokens(&mut out);
        out
    }
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
        _ => ("this item", "put it on a free `fn` with a body"),
    };
    Error::new(
        first_token_span(item),
        format!(
            "`#[on_irqstack]` cannot be applied to {what}: it turns a function into an IRQ-stack handler; {hint}"
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
                 completion on the IRQ stack; call an async runtime from a plain fn instead"
            ),
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(Error::new_spanned(
            v,
            format!(
                "`#[{macro_name}]` cannot be used on a C-variadic function: the trampoline must \
                 know every argument; take a `core::ffi::VaList` or fixed arguments instead"
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
    }
    errors.finish()
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
