//! Property tests of the three expansion functions, called through `proc_macro2` as the compiler
//! would call them:
//!
//! - valid handlers (random signatures, attributes and `crate = ...` arguments) expand to one
//!   function with a trampoline and no error;
//! - valid handlers with a random set of mistakes injected, each on a line of its own, give
//!   exactly one error per mistake, each at the line of its mistake, all in one expansion, and
//!   the function is still emitted (so its callers do not cascade into more errors);
//! - the same for `#[noinstr]` and for the marker macros;
//! - chaos: random token trees, valid items truncated at any token, items with tokens deleted,
//!   inserted or replaced, and odd attributes and arguments never make an expansion panic; every
//!   output either is a successful expansion or carries a `compile_error!`.

use std::str::FromStr;

use proc_macro2::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};
use proptest::prelude::*;
use proptest::sample::{Index, select, subsequence};

fn ts(s: &str) -> TokenStream {
    TokenStream::from_str(s).unwrap_or_else(|e| panic!("test input does not lex: {e}\n{s}"))
}

/// Every `compile_error!` in `out`, at any depth: the line its span starts on, and its message.
fn errors(out: &TokenStream) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let tokens: Vec<TokenTree> = out.clone().into_iter().collect();
    for (i, tt) in tokens.iter().enumerate() {
        match tt {
            TokenTree::Ident(id) if id == "compile_error" => {
                let message = match tokens.get(i + 2) {
                    Some(TokenTree::Group(g)) => g.stream().to_string(),
                    _ => String::new(),
                };
                found.push((id.span().start().line, message));
            }
            TokenTree::Group(g) => found.extend(errors(&g.stream())),
            _ => {}
        }
    }
    found
}

/// Whether `out` contains the identifier `name` at any depth.
fn has_ident(out: &TokenStream, name: &str) -> bool {
    out.clone().into_iter().any(|tt| match tt {
        TokenTree::Ident(id) => id == name,
        TokenTree::Group(g) => has_ident(&g.stream(), name),
        _ => false,
    })
}

/// The one function item of `out`, besides `compile_error!` items.
fn the_fn(out: &TokenStream) -> syn::ItemFn {
    let file: syn::File = syn::parse2(out.clone())
        .unwrap_or_else(|e| panic!("output is not a list of items: {e}\n{out}"));
    let mut fns = file.items.into_iter().filter_map(|item| match item {
        syn::Item::Fn(f) => Some(f),
        syn::Item::Macro(m) if m.mac.path.is_ident("compile_error") => None,
        syn::Item::Macro(m)
            if m.mac
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "compile_error") =>
        {
            None
        }
        other => panic!("unexpected item in output: {}", quote::quote!(#other)),
    });
    let f = fns.next().expect("the output has no function");
    assert!(
        fns.next().is_none(),
        "the output has more than one function"
    );
    f
}

// ---------------------------------------------------------------------------------------------
// Valid handlers.

const ARG_TYPES: &[&str] = &[
    "u8",
    "u16",
    "u32",
    "u64",
    "usize",
    "i64",
    "bool",
    "char",
    "f32",
    "f64",
    "u128",
    "&mut Regs",
    "&'a u32",
    "&[u8]",
    "&str",
    "String",
    "[u64; 5]",
    "(u32, u64)",
    "*const u8",
    "Option<u64>",
    "fn(u32) -> u32",
    "::core::primitive::u32",
    "&dyn Fn()",
];
const RET_TYPES: &[&str] = &[
    "",
    "-> u64",
    "-> f64",
    "-> bool",
    "-> u128",
    "-> String",
    "-> (u64, u64)",
    "-> ()",
    "-> &'static str",
    "-> &'a u32",
    "-> Option<u64>",
];
const PATTERNS: &[&str] = &["a", "mut a", "_a"];
const FN_ATTRS: &[&str] = &[
    "#[doc = \"Handles it.\"]",
    "#[inline]",
    "#[cold]",
    "#[allow(unused)]",
    "#[must_use]",
    "#[cfg_attr(any(), inline)]",
    "#[unsafe(no_mangle)]",
];
const VIS: &[&str] = &["", "pub ", "pub(crate) "];
const QUALIFIERS: &[&str] = &["", "unsafe ", "extern \"C\" ", "unsafe extern \"sysv64\" "];
const CRATE_ARGS: &[&str] = &[
    "",
    "crate = ::irqstack",
    "crate = crate::facade",
    "crate = my_irqstack,",
];

/// Source of a valid handler, and the `#[on_irqstack]` arguments.
fn valid_handler() -> impl Strategy<Value = (String, String)> {
    (
        subsequence(FN_ATTRS, 0..=3),
        select(VIS),
        select(QUALIFIERS),
        prop::collection::vec((select(PATTERNS), select(ARG_TYPES)), 0..9),
        select(RET_TYPES),
        select(CRATE_ARGS),
    )
        .prop_map(|(attrs, vis, quals, args, ret, krate)| {
            let args: Vec<String> = args
                .iter()
                .enumerate()
                .map(|(i, (pat, ty))| format!("{pat}{i}: {ty}"))
                .collect();
            let src = format!(
                "{} {vis}{quals}fn handler<'a>({}) {ret} {{ todo!() }}",
                attrs.join(" "),
                args.join(", ")
            );
            (src, krate.to_string())
        })
}

// ---------------------------------------------------------------------------------------------
// Mistakes, each on a line of its own.

/// Mistakes in the item of `#[on_irqstack]`. Each is the text of one line; an absent mistake is
/// an empty line, so that the line numbers do not move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FnMistake {
    Twice,
    Const,
    Async,
    TypeParam,
    ConstParam,
    Receiver,
    ImplTrait,
    SelfType,
    Variadic,
    WhereBound,
    TypeMacro,
    ImplTraitReturn,
    Naked,
    SelfInBody,
}

const FN_MISTAKES: &[FnMistake] = &[
    FnMistake::Twice,
    FnMistake::Const,
    FnMistake::Async,
    FnMistake::TypeParam,
    FnMistake::ConstParam,
    FnMistake::Receiver,
    FnMistake::ImplTrait,
    FnMistake::SelfType,
    FnMistake::Variadic,
    FnMistake::WhereBound,
    FnMistake::TypeMacro,
    FnMistake::ImplTraitReturn,
    FnMistake::Naked,
    FnMistake::SelfInBody,
];

/// The item, one line per slot (line numbers start at 1), with the chosen mistakes present, and
/// the lines of the mistakes. A slot is the line without its mistake, the mistake (if any) and the
/// line with it.
fn item_with(mistakes: &[FnMistake]) -> (String, Vec<usize>) {
    use FnMistake::*;
    const SLOTS: &[(&str, Option<FnMistake>, &str)] = &[
        ("#[doc = \"Handles it.\"]", None, ""),
        ("", Some(Twice), "#[irqstack::on_irqstack]"),
        ("#[inline]", None, ""),
        ("", Some(Naked), "#[unsafe(naked)]"),
        ("", Some(Const), "const"),
        ("", Some(Async), "async"),
        ("unsafe extern \"C\" fn handler", None, ""),
        ("<'a,", None, ""),
        ("", Some(TypeParam), "T: Copy,"),
        ("", Some(ConstParam), "const N: usize,"),
        (">(", None, ""),
        ("", Some(Receiver), "&self,"),
        ("a0: u64,", None, ""),
        ("", Some(ImplTrait), "a1: Option<impl Copy>,"),
        ("", Some(SelfType), "a2: &'a Self,"),
        ("", Some(TypeMacro), "a3: ty!(),"),
        ("a4: &'a mut [u8; 4],", None, ""),
        ("", Some(Variadic), "a5: ..."),
        (")", None, ""),
        ("-> u64", Some(ImplTraitReturn), "-> impl Copy"),
        ("where", None, ""),
        ("'a: 'a,", None, ""),
        ("", Some(WhereBound), "u32: Copy,"),
        ("{", None, ""),
        ("", Some(SelfInBody), "let _ = Self::X;"),
        ("struct L; impl L { fn f() -> Self { L } }", None, ""),
        ("a0 }", None, ""),
    ];
    let mut lines = Vec::new();
    let mut expected = Vec::new();
    for (i, (without, mistake, with)) in SLOTS.iter().enumerate() {
        match mistake {
            Some(m) if mistakes.contains(m) => {
                lines.push(*with);
                expected.push(i + 1);
            }
            _ => lines.push(*without),
        }
    }
    (lines.join("\n"), expected)
}

/// One `#[on_irqstack(...)]` argument: its text, whether it is an error by itself, and whether
/// it sets the crate path (a second one that does is an error too).
const ARGS: &[(&str, bool, bool)] = &[
    ("crate = ::irqstack", false, true),
    ("bogus", true, false),
    ("stack_size = 4096", true, false),
    ("crate", true, false),
    ("crate = \"irqstack\"", true, false),
    ("crate = ::irqstack::<u8>", true, false),
    ("crate = ::irqstack extra", true, true),
];

/// Attribute arguments, one per line from line `FIRST_ARG_LINE` (far from the item's lines), and
/// the lines where errors belong (a line twice if it has two errors).
const FIRST_ARG_LINE: usize = 100;
fn args_with(chosen: &[(&str, bool, bool)]) -> (String, Vec<usize>) {
    let mut src = "\n".repeat(FIRST_ARG_LINE - 1);
    let mut expected = Vec::new();
    let mut have_crate = false;
    for (i, (text, bad, sets_crate)) in chosen.iter().enumerate() {
        src.push_str(text);
        src.push_str(",\n");
        if *bad {
            expected.push(FIRST_ARG_LINE + i);
        }
        if *sets_crate && have_crate {
            expected.push(FIRST_ARG_LINE + i);
        }
        have_crate |= *sets_crate;
    }
    (src, expected)
}

/// Mistakes of `#[noinstr]`, as lines; line 1 is the attribute's argument.
const NOINSTR_MISTAKES: &[&str] = &[
    "#[inline]",
    "#[inline(always)]",
    "#[unsafe(link_section = \".text.x\")]",
    "#[irqstack::noinstr]",
    "#[noinstr]",
    "const",
    "async",
];

// ---------------------------------------------------------------------------------------------
// Chaos.

const IDENTS: &[&str] = &[
    "fn",
    "struct",
    "enum",
    "impl",
    "trait",
    "self",
    "Self",
    "crate",
    "const",
    "async",
    "unsafe",
    "extern",
    "pub",
    "where",
    "let",
    "dyn",
    "for",
    "mod",
    "static",
    "type",
    "T",
    "u32",
    "handler",
    "on_irqstack",
    "noinstr",
    "irqstack",
    "begin",
    "end",
    "stmt",
    "insn",
    "inline",
    "link_section",
    "_",
];
const PUNCTS: &[char] = &[
    '!', '#', '%', '&', '*', '+', ',', '-', '.', '/', ':', ';', '<', '=', '>', '?', '@', '^', '|',
    '~',
];

fn leaf() -> impl Strategy<Value = TokenTree> {
    prop_oneof![
        4 => select(IDENTS).prop_map(|s| TokenTree::Ident(Ident::new(s, Span::call_site()))),
        3 => (select(PUNCTS), any::<bool>()).prop_map(|(c, joint)| {
            let spacing = if joint { Spacing::Joint } else { Spacing::Alone };
            TokenTree::Punct(Punct::new(c, spacing))
        }),
        1 => any::<u32>().prop_map(|n| TokenTree::Literal(Literal::u32_unsuffixed(n))),
        1 => "[a-z ]{0,6}".prop_map(|s| TokenTree::Literal(Literal::string(&s))),
        1 => Just(TokenTree::Literal(Literal::character('x'))),
        1 => Just(TokenTree::Literal(Literal::f64_unsuffixed(1.5))),
        1 => Just(TokenTree::Ident(Ident::new_raw("type", Span::call_site()))),
    ]
}

fn token_tree() -> impl Strategy<Value = TokenTree> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        (
            select(
                &[
                    Delimiter::Parenthesis,
                    Delimiter::Brace,
                    Delimiter::Bracket,
                    Delimiter::None,
                ][..],
            ),
            prop::collection::vec(inner, 0..8),
        )
            .prop_map(|(d, v)| TokenTree::Group(Group::new(d, v.into_iter().collect())))
    })
}

fn random_stream() -> impl Strategy<Value = TokenStream> {
    prop::collection::vec(token_tree(), 0..16).prop_map(|v| v.into_iter().collect())
}

/// A token stream as a flat list: leaves, group openings and group closings.
#[derive(Clone, Debug)]
enum Event {
    Leaf(TokenTree),
    Open(Delimiter),
    Close,
}

fn flatten(ts: TokenStream, out: &mut Vec<Event>) {
    for tt in ts {
        match tt {
            TokenTree::Group(g) => {
                out.push(Event::Open(g.delimiter()));
                flatten(g.stream(), out);
                out.push(Event::Close);
            }
            leaf => out.push(Event::Leaf(leaf)),
        }
    }
}

/// Rebuilds a stream from events, tolerating damage: a closing without an opening is dropped,
/// and groups still open at the end are closed there.
fn rebuild(events: &[Event]) -> TokenStream {
    let mut stack: Vec<(Delimiter, Vec<TokenTree>)> = vec![(Delimiter::None, Vec::new())];
    for ev in events {
        match ev {
            Event::Leaf(tt) => stack.last_mut().unwrap().1.push(tt.clone()),
            Event::Open(d) => stack.push((*d, Vec::new())),
            Event::Close if stack.len() > 1 => {
                let (d, v) = stack.pop().unwrap();
                let g = Group::new(d, v.into_iter().collect());
                stack.last_mut().unwrap().1.push(TokenTree::Group(g));
            }
            Event::Close => {}
        }
    }
    while stack.len() > 1 {
        let (d, v) = stack.pop().unwrap();
        let g = Group::new(d, v.into_iter().collect());
        stack.last_mut().unwrap().1.push(TokenTree::Group(g));
    }
    stack.pop().unwrap().1.into_iter().collect()
}

#[derive(Clone, Debug)]
enum Edit {
    Truncate(Index),
    Delete(Index),
    Insert(Index, TokenTree),
    Replace(Index, TokenTree),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Truncate),
        any::<Index>().prop_map(Edit::Delete),
        (any::<Index>(), leaf()).prop_map(|(i, t)| Edit::Insert(i, t)),
        (any::<Index>(), leaf()).prop_map(|(i, t)| Edit::Replace(i, t)),
    ]
}

fn apply(ts: TokenStream, edits: &[Edit]) -> TokenStream {
    let mut events = Vec::new();
    flatten(ts, &mut events);
    for e in edits {
        if events.is_empty() {
            break;
        }
        match e {
            Edit::Truncate(i) => events.truncate(i.index(events.len() + 1)),
            Edit::Delete(i) => {
                events.remove(i.index(events.len()));
            }
            Edit::Insert(i, t) => events.insert(i.index(events.len() + 1), Event::Leaf(t.clone())),
            Edit::Replace(i, t) => {
                let i = i.index(events.len());
                events[i] = Event::Leaf(t.clone());
            }
        }
    }
    rebuild(&events)
}

/// Items to damage: valid handlers and other items, with and without attributes.
const SEEDS: &[&str] = &[
    "fn handler(vector: u32, regs: &mut Regs) -> u64 { 0 }",
    "pub unsafe extern \"C\" fn handler<'a>(x: &'a [u8], ...) -> &'a u8 where 'a: 'a { &x[0] }",
    "#[inline] #[doc = \"x\"] const async fn handler<T: Copy, const N: usize>(self, t: T) -> impl Copy { t }",
    "struct S { a: u32 }",
    "impl S { fn f(&self) -> Self { *self } }",
    "trait T { fn f(x: u32); }",
    "unsafe extern \"C\" { fn f(x: u32); }",
    "|x: u32| x + 1",
    "let x = 3;",
    "mod m { pub fn f() {} }",
];

/// Odd attributes put in front of an item.
const ODD_ATTRS: &[&str] = &[
    "",
    "#[irqstack::on_irqstack]",
    "#[on_irqstack(crate = x)]",
    "#[noinstr]",
    "#[irqstack::noinstr(always)]",
    "#[inline(always)]",
    "#[inline]",
    "#[unsafe(link_section = \".x\")]",
    "#[link_section = \".x\"]",
    "#[cfg_attr(all(), inline)]",
    "#[doc]",
    "#[::]",
    "#[]",
    "#!",
    "#",
];

/// An item input: a valid handler or another seed, with an odd attribute in front, damaged by
/// a few edits (often none); or random tokens.
fn chaos_item() -> impl Strategy<Value = TokenStream> {
    let seed = prop_oneof![
        valid_handler().prop_map(|(src, _)| src),
        select(SEEDS).prop_map(String::from),
    ];
    prop_oneof![
        3 => (
            select(ODD_ATTRS),
            seed,
            prop_oneof![Just(Vec::new()), prop::collection::vec(edit(), 1..4)],
        )
            .prop_map(|(attr, seed, edits)| apply(ts(&format!("{attr} {seed}")), &edits)),
        1 => random_stream(),
    ]
}

/// An attribute-argument input: a plausible list, damaged, or random tokens.
fn chaos_args() -> impl Strategy<Value = TokenStream> {
    prop_oneof![
        3 => Just(TokenStream::new()),
        2 => (
            subsequence(ARGS, 0..=ARGS.len()),
            prop::collection::vec(edit(), 0..3)
        )
            .prop_map(|(args, edits)| {
                let src: Vec<&str> = args.iter().map(|(a, _, _)| *a).collect();
                apply(ts(&src.join(", ")), &edits)
            }),
        1 => random_stream(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Valid handlers expand to one function, with a trampoline (the runtime's `trampoline_fn!`), keeping name and
    /// visibility, and no error.
    #[test]
    fn valid_handlers_expand((src, args) in valid_handler()) {
        let item = ts(&src);
        let out = crate::on_irqstack::expand(ts(&args), item.clone());
        prop_assert!(errors(&out).is_empty(), "unexpected error for {src}: {:?}", errors(&out));
        prop_assert!(has_ident(&out, "trampoline_fn"), "no trampoline for {src}");
        let f = the_fn(&out);
        let orig: syn::ItemFn = syn::parse2(item).unwrap();
        let (vis, orig_vis) = (&f.vis, &orig.vis);
        prop_assert_eq!(quote::quote!(#vis).to_string(), quote::quote!(#orig_vis).to_string());
        prop_assert_eq!(&f.sig.ident, &orig.sig.ident);
        prop_assert_eq!(f.sig.inputs.len(), orig.sig.inputs.len());
    }

    /// Any set of mistakes gives one error per mistake, at the mistake's line, all at once; the
    /// function is emitted still (without the trampoline).
    #[test]
    fn each_on_irqstack_mistake_gives_one_error_at_its_line(
        mistakes in subsequence(FN_MISTAKES, 0..=FN_MISTAKES.len()),
        args in subsequence(ARGS, 0..=3).prop_shuffle(),
    ) {
        let (item_src, mut expected) = item_with(&mistakes);
        let (args_src, arg_lines) = args_with(&args);
        expected.extend(arg_lines);
        expected.sort_unstable();
        let out = crate::on_irqstack::expand(ts(&args_src), ts(&item_src));
        let errs = errors(&out);
        let mut lines: Vec<usize> = errs.iter().map(|(l, _)| *l).collect();
        lines.sort_unstable();
        prop_assert_eq!(&lines, &expected, "errors: {:#?}\nitem:\n{}", errs, item_src);
        for (_, message) in &errs {
            prop_assert!(message.contains("on_irqstack") || message.contains("crate"), "{}", message);
        }
        let f = the_fn(&out);
        prop_assert_eq!(f.sig.ident.to_string(), "handler");
        prop_assert_eq!(has_ident(&out, "trampoline_fn"), expected.is_empty());
        // Re-emitted as rustc accepts it: no `const async`, no `...` once reported.
        prop_assert!(f.sig.constness.is_none() || f.sig.asyncness.is_none());
        prop_assert!(f.sig.variadic.is_none() || expected.is_empty());
    }

    /// `#[noinstr]`: one error per mistake at its line; valid functions go to `.noinstr.text`.
    #[test]
    fn each_noinstr_mistake_gives_one_error_at_its_line(
        with_args in any::<bool>(),
        mistakes in subsequence(NOINSTR_MISTAKES, 0..=NOINSTR_MISTAKES.len()),
    ) {
        let attr = if with_args {
            format!("{}always", "\n".repeat(FIRST_ARG_LINE - 1))
        } else {
            String::new()
        };
        let mut lines: Vec<String> = vec!["#[doc = \"Entry.\"]".into()];
        let mut expected = Vec::new();
        if with_args {
            expected.push(FIRST_ARG_LINE);
        }
        for m in NOINSTR_MISTAKES {
            if mistakes.contains(m) {
                expected.push(lines.len() + 1);
                lines.push((*m).to_string());
            } else {
                lines.push(String::new());
            }
        }
        lines.push("fn entry(x: u32) -> u32 { x }".into());
        let src = lines.join("\n");
        expected.sort_unstable();
        let out = crate::noinstr::expand(ts(&attr), ts(&src));
        let mut got: Vec<usize> = errors(&out).iter().map(|(l, _)| *l).collect();
        got.sort_unstable();
        prop_assert_eq!(&got, &expected, "{:#?}\n{}", errors(&out), src);
        let f = the_fn(&out);
        prop_assert_eq!(f.sig.ident.to_string(), "entry");
        prop_assert_eq!(has_ident(&out, "never"), expected.is_empty());
    }

    /// Markers: no user tokens expands to the piece, any user tokens to one error at them.
    #[test]
    fn markers_take_no_arguments(
        kind in select(&["begin", "end"][..]),
        form in select(&["stmt", "insn"][..]),
        user in prop_oneof![
            Just(String::new()),
            select(&["1", "nop", "label = 1", "\"region\"", "()", "begin, end", "{ x }"][..])
                .prop_map(String::from),
        ],
        random in random_stream(),
    ) {
        // The user's tokens start on line 4 of their own input.
        let user = ts(&format!("\n\n\n{user}"));
        let input = |user: TokenStream| {
            let mut input = ts(&format!("[::irqstack] {kind} {form}"));
            input.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, user))]);
            input
        };
        let out = crate::marker::expand(input(user.clone()));
        let errs = errors(&out);
        if user.is_empty() {
            prop_assert!(errs.is_empty(), "{:?}", errs);
            prop_assert!(has_ident(&out, "instr_insn"));
            prop_assert_eq!(has_ident(&out, "asm"), form == "stmt");
        } else {
            prop_assert_eq!(errs.len(), 1);
            prop_assert_eq!(errs[0].0, 4, "error not at the user's tokens: {:?}", errs);
            prop_assert!(errs[0].1.contains(&format!("instr_{kind}")), "{:?}", errs);
        }
        // Random user tokens: one error, or none if there are none.
        let random_is_empty = random.is_empty();
        let errs = errors(&crate::marker::expand(input(random)));
        prop_assert_eq!(errs.len(), usize::from(!random_is_empty));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Anything in, tokens out: either the expansion or a `compile_error!`; never a panic.
    #[test]
    fn on_irqstack_never_panics(args in chaos_args(), item in chaos_item()) {
        let out = crate::on_irqstack::expand(args, item);
        if errors(&out).is_empty() {
            prop_assert!(has_ident(&out, "trampoline_fn"), "{}", out);
            the_fn(&out);
        }
    }

    #[test]
    fn noinstr_never_panics(args in prop_oneof![Just(TokenStream::new()), random_stream()],
                            item in chaos_item()) {
        let out = crate::noinstr::expand(args, item);
        if errors(&out).is_empty() {
            prop_assert!(has_ident(&out, "never"), "{}", out);
            the_fn(&out);
        }
    }

    /// `#[idtentry]`: any arguments (a kind, `crate = path`, random tokens) and any item give
    /// the stub or a `compile_error!`, never a panic; valid output always has its stub.
    #[test]
    fn idtentry_never_panics(
        args in prop_oneof![
            Just(TokenStream::new()),
            Just(ts("error_code")),
            Just(ts("irq")),
            Just(ts("sysvec")),
            Just(ts("ist")),
            Just(ts("ist, error_code")),
            Just(ts("irq, sysvec")),
            random_stream(),
        ],
        item in prop_oneof![chaos_item(), Just(ts("fn h(regs: &mut PtRegs) {}")), Just(ts("fn h(regs: &mut PtRegs, c: u64) {}"))],
    ) {
        let out = crate::idtentry::expand(args, item);
        if errors(&out).is_empty() {
            prop_assert!(has_ident(&out, "idt_stub"), "{}", out);
        }
    }

    #[test]
    fn marker_never_panics(
        input in prop_oneof![
            random_stream(),
            (select(&["[::irqstack]", "[$crate]", "[]", "()", ""][..]),
             select(&["begin", "end", "middle", ""][..]),
             select(&["stmt", "insn", "expr", ""][..]),
             select(&["()", "(1)", "[]", "", "() extra"][..]))
                .prop_map(|(k, a, b, c)| ts(&format!("{k} {a} {b} {c}"))),
        ],
    ) {
        let out = crate::marker::expand(input);
        prop_assert!(!errors(&out).is_empty() || has_ident(&out, "instr_insn"), "{}", out);
    }
}

/// The span-line helper itself: errors from separately lexed streams count lines per stream.
#[test]
fn error_lines_are_per_input() {
    let out = crate::on_irqstack::expand(ts("\n\nbogus"), ts("\nconst fn f() {}"));
    let mut lines: Vec<usize> = errors(&out).iter().map(|(l, _)| *l).collect();
    lines.sort_unstable();
    assert_eq!(lines, [2, 3]);
}
