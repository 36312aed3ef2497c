//! Instrumentation markers at the byte level, in both record formats; label capture in Intel
//! and AT&T templates; duplication by inlining.

// Shared with the objtool tests of the `irqstack` package.
#[path = "../../tests/kernel_object/mod.rs"]
mod kernel_object;

use std::collections::BTreeMap;

use object::read::elf::{ElfFile64, SectionHeader as _};
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};

/// One record: where its relocation points (section index, offset) and, for the 6.14 format,
/// its type word.
#[derive(Debug, Clone, Copy)]
struct Record {
    section: object::SectionIndex,
    offset: u64,
    kind: Option<u32>,
}

/// Resolves the relocations of `name` to (section, offset) targets; `stride` is the entry size.
fn records(elf: &ElfFile64<'_>, name: &str, stride: u64) -> Vec<Record> {
    let sec = elf
        .section_by_name(name)
        .unwrap_or_else(|| panic!("no section {name}"));
    let data = sec.data().unwrap();
    assert_eq!(
        data.len() as u64 % stride,
        0,
        "{name}: size not a multiple of {stride}"
    );
    let relocs: BTreeMap<u64, object::Relocation> = sec.relocations().collect();
    assert_eq!(
        relocs.len() as u64,
        data.len() as u64 / stride,
        "{name}: one relocation per entry"
    );
    relocs
        .iter()
        .map(|(&off, r)| {
            assert_eq!(off % stride, 0, "{name}: relocation not at an entry start");
            assert_eq!(r.size(), 32, "{name}: 32-bit PC-relative word");
            assert!(r.has_implicit_addend() || r.addend() >= 0);
            assert!(
                matches!(
                    r.flags(),
                    object::RelocationFlags::Elf {
                        r_type: object::elf::R_X86_64_PC32
                    }
                ),
                "{name}: expected R_X86_64_PC32, got {:?}",
                r.flags()
            );
            let RelocationTarget::Symbol(sym) = r.target() else {
                panic!("{name}: relocation without symbol")
            };
            let sym = elf.symbol_by_index(sym).unwrap();
            let section = sym.section_index().expect("record points into a section");
            // `.long label - .`: S + A - P; the label is at S + A within its section.
            let offset = (sym.address() as i64 + r.addend()) as u64;
            let kind = (stride == 8).then(|| {
                let at = off as usize + 4;
                u32::from_le_bytes(data[at..at + 4].try_into().unwrap())
            });
            Record {
                section,
                offset,
                kind,
            }
        })
        .collect()
}

/// Call sites (`call rel32`: 0xE8 followed by a relocated word) of a section: offset of the call
/// instruction and the name of the callee.
fn calls(elf: &ElfFile64<'_>, section: object::SectionIndex) -> Vec<(u64, String)> {
    let sec = elf.section_by_index(section).unwrap();
    let data = sec.data().unwrap();
    sec.relocations()
        .filter(|(off, _)| *off >= 1 && data[*off as usize - 1] == 0xE8)
        .map(|(off, r)| {
            let name = match r.target() {
                RelocationTarget::Symbol(s) => {
                    let sym = elf.symbol_by_index(s).unwrap();
                    // A call into another section of this object names the section symbol.
                    match sym.kind() {
                        object::SymbolKind::Section => sym
                            .section_index()
                            .and_then(|i| elf.section_by_index(i).ok())
                            .and_then(|s| s.name().ok().map(str::to_owned))
                            .unwrap_or_default(),
                        _ => sym.name().unwrap_or_default().to_owned(),
                    }
                }
                _ => String::new(),
            };
            (off - 1, name)
        })
        .collect()
}

fn byte_at(elf: &ElfFile64<'_>, r: &Record) -> u8 {
    elf.section_by_index(r.section).unwrap().data().unwrap()[r.offset as usize]
}

const NOP: u8 = 0x90;
const CALL: u8 = 0xE8;
const LEAVE: u8 = 0xC9;

/// The checks shared by both formats: every begin marks a NOP (a marker) or a trampoline's
/// `call`; every end marks a NOP or the instruction after that `call` (`leave`); every
/// trampoline region contains exactly the call of its shim, and every call to the instrumentable
/// function in `.noinstr.text` lies inside a region.
fn check_regions(elf: &ElfFile64<'_>, begins: &[Record], ends: &[Record]) {
    // Markers: the entry's (statements), entry_asm's (template pieces), the softirq's, and the
    // in-place path of every handler and of `run_on_irqstack`; one trampoline per handler (seven)
    // and one for the softirq's closure.
    // One begin has no end: the glue of the #DF handler, which never returns (the compiler
    // drops the unreachable end marker; no `ret` follows, so objtool has nothing to check).
    assert_eq!(begins.len(), ends.len() + 1, "{begins:?} {ends:?}");
    let mut open = 0;
    assert!(begins.len() >= 16, "begin records: {begins:?}");
    let noinstr = elf.section_by_name(".noinstr.text").unwrap().index();
    let all_calls = calls(elf, noinstr);
    let mut regions = Vec::new();
    let mut trampolines = 0;
    for b in begins {
        if b.section != noinstr {
            // The softirq closure's own markers, inlined into the closure shim (ordinary
            // code, where a region is allowed and means nothing).
            assert!(
                elf.section_by_index(b.section)
                    .unwrap()
                    .name()
                    .unwrap()
                    .starts_with(".text"),
                "{b:?}"
            );
            continue;
        }
        // The region ends at the closest end record after the begin.
        let Some(e) = ends
            .iter()
            .filter(|e| e.section == b.section && e.offset > b.offset)
            .min_by_key(|e| e.offset)
        else {
            open += 1;
            continue;
        };
        regions.push(b.offset..e.offset);
        let inside: Vec<_> = all_calls
            .iter()
            .filter(|(at, _)| *at >= b.offset && *at < e.offset)
            .collect();
        match byte_at(elf, b) {
            NOP => assert_eq!(byte_at(elf, e), NOP, "end of a marker region is a NOP"),
            CALL => {
                trampolines += 1;
                // The begin label is on the call itself, the end label on the next instruction.
                assert_eq!(e.offset, b.offset + 5, "end label right after the call");
                assert_eq!(byte_at(elf, e), LEAVE);
                assert_eq!(inside.len(), 1);
                assert!(inside[0].1.contains("shim"), "{inside:?}");
            }
            other => panic!("begin record points at byte {other:#x}, not a NOP or call"),
        }
    }
    assert!(
        open <= 1,
        "only the diverging handler's region may stay open: {open}"
    );
    // Seven `#[on_irqstack]` handlers, two more that `#[idtentry(irq)]` and `(sysvec)` switch
    // with (each in both forms the `&mut PtRegs` argument compiles: register and block, one
    // picked by `size_of`), and the closure.
    assert!(trampolines >= 10, "{trampolines} trampolines");
    let traced: Vec<_> = all_calls
        .iter()
        .filter(|(_, f)| f == "irqstack_km_trace")
        .collect();
    assert!(traced.len() >= 3, "{all_calls:?}");
    for (at, _) in traced {
        assert!(
            regions.iter().any(|r| r.contains(at)),
            "call to the traced function at {at:#x} outside every region {regions:x?}"
        );
    }
}

fn load(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn records_in_the_v5_8_to_v6_13_format() {
    let data = load(&kernel_object::build("clean", &[], &[]));
    let elf = ElfFile64::<object::Endianness>::parse(&*data).unwrap();
    assert!(elf.section_by_name(".discard.annotate_insn").is_none());
    for name in [".discard.instr_begin", ".discard.instr_end"] {
        let sec = elf.section_by_name(name).unwrap();
        let hdr = sec.elf_section_header();
        assert_eq!(hdr.sh_type(elf.endian()), object::elf::SHT_PROGBITS);
        // Not allocated: the kernel's linker script discards `.discard.*`; objtool reads it.
        assert_eq!(
            hdr.sh_flags(elf.endian()) & u64::from(object::elf::SHF_ALLOC),
            0
        );
    }
    let begins = records(&elf, ".discard.instr_begin", 4);
    let ends = records(&elf, ".discard.instr_end", 4);
    check_regions(&elf, &begins, &ends);
}

#[test]
fn records_in_the_v6_14_annotate_format() {
    let data = load(&kernel_object::build(
        "annotate",
        &["objtool-annotate"],
        &[],
    ));
    let elf = ElfFile64::<object::Endianness>::parse(&*data).unwrap();
    assert!(elf.section_by_name(".discard.instr_begin").is_none());
    assert!(elf.section_by_name(".discard.instr_end").is_none());
    let sec = elf.section_by_name(".discard.annotate_insn").unwrap();
    let hdr = sec.elf_section_header();
    let e = elf.endian();
    assert_eq!(hdr.sh_type(e), object::elf::SHT_PROGBITS);
    assert_ne!(
        hdr.sh_flags(e) & u64::from(object::elf::SHF_MERGE),
        0,
        "\"M\" flag"
    );
    assert_eq!(hdr.sh_entsize(e), 8, "objtool warns unless sh_entsize == 8");
    let all = records(&elf, ".discard.annotate_insn", 8);
    assert!(all.len() >= 32, "{all:?}");
    // 3 = ANNOTYPE_INSTR_BEGIN, 4 = ANNOTYPE_INSTR_END; nothing else.
    let begins: Vec<_> = all.iter().copied().filter(|r| r.kind == Some(3)).collect();
    let ends: Vec<_> = all.iter().copied().filter(|r| r.kind == Some(4)).collect();
    assert_eq!(begins.len() + ends.len(), all.len(), "{all:?}");
    check_regions(&elf, &begins, &ends);
}

#[test]
fn inlined_markers_are_duplicated_with_their_records() {
    let data = load(&kernel_object::build_with(
        "duplication",
        &["duplication"],
        &[
            "--crate-type",
            "staticlib",
            "--config",
            "profile.release.lto=\"fat\"",
            "--config",
            "profile.release.opt-level=3",
        ],
        &[],
    ));
    let elf = ElfFile64::<object::Endianness>::parse(&*data).unwrap();
    // Which function each record falls in.
    let funcs: Vec<(String, object::SectionIndex, u64, u64)> = elf
        .symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text)
        .filter_map(|s| {
            Some((
                s.name().ok()?.to_owned(),
                s.section_index()?,
                s.address(),
                s.address() + s.size(),
            ))
        })
        .collect();
    let owner = |r: &Record| {
        funcs
            .iter()
            .find(|(_, sec, lo, hi)| *sec == r.section && (*lo..*hi).contains(&r.offset))
            .map(|(n, ..)| n.clone())
            .unwrap_or_default()
    };
    for (name, byte) in [(".discard.instr_begin", NOP), (".discard.instr_end", NOP)] {
        let mut per_fn: BTreeMap<String, usize> = BTreeMap::new();
        for r in records(&elf, name, 4) {
            let f = owner(&r);
            if f.starts_with("irqstack_km_dup_") {
                assert_eq!(byte_at(&elf, &r), byte, "{name} in {f}");
                *per_fn.entry(f).or_default() += 1;
            }
        }
        assert_eq!(per_fn.len(), 10, "{name}: {per_fn:?}");
        assert!(per_fn.values().all(|&n| n == 1), "{name}: {per_fn:?}");
    }
}

/// A user template that defines `2:` before a marker piece and refers to `2b` after it still
/// reaches its own label. The control shows the check can fail: a piece that reused the number
/// `2` would capture the reference.
#[test]
fn marker_pieces_never_capture_user_labels_intel() {
    let (before, after, captured, own): (usize, usize, usize, usize);
    // SAFETY: only `lea`s of code addresses into the output registers, NOPs and records in
    // discarded sections.
    unsafe {
        core::arch::asm!(
            "2:",
            "lea {before}, [rip + 2b]",
            irqstack::instr_begin_insn!(),
            "lea {after}, [rip + 2b]",
            irqstack::instr_end_insn!(),
            // Control: a hand-written piece that reuses label 2 captures the next `2b`.
            "2: nop",
            "lea {captured}, [rip + 2b]",
            "lea {own}, [rip + 2b]",
            before = out(reg) before,
            after = out(reg) after,
            captured = out(reg) captured,
            own = out(reg) own,
            options(nostack, preserves_flags),
        );
    }
    assert_eq!(before, after, "the marker captured the user's label 2");
    assert_ne!(
        before, captured,
        "control: reusing the label must capture it"
    );
    assert_eq!(captured, own);
}

#[test]
fn marker_pieces_never_capture_user_labels_att() {
    let (before, after): (usize, usize);
    // SAFETY: as above.
    unsafe {
        core::arch::asm!(
            "2:",
            "lea 2b(%rip), {before}",
            irqstack::instr_begin_insn!(),
            "lea 2b(%rip), {after}",
            irqstack::instr_end_insn!(),
            before = out(reg) before,
            after = out(reg) after,
            options(att_syntax, nostack, preserves_flags),
        );
    }
    assert_eq!(before, after, "the marker captured the user's label 2");
}

/// Each expansion of a piece has its own label number, never one made only of 0s and 1s.
#[test]
fn pieces_use_fresh_non_binary_labels() {
    let a: &str = irqstack::instr_begin_insn!();
    let b: &str = irqstack::instr_begin_insn!();
    let label = |s: &str| s.split(':').next().unwrap().to_owned();
    assert_ne!(label(a), label(b));
    for l in [label(a), label(b)] {
        assert!(l.chars().all(|c| c.is_ascii_digit()), "{l}");
        assert!(l.chars().any(|c| c != '0' && c != '1'), "{l}");
        assert!(a.contains("nop"));
    }
    let e: &str = irqstack::instr_end_insn!();
    assert!(e.contains(".discard.instr_end") || e.contains(".discard.annotate_insn"));
}
