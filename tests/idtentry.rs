//! `#[idtentry]` (issue 13), checked on the kernel-flag object of `examples/kernel_module`,
//! which has a handler of every kind: the stubs' machine code, objtool 6.1 and 6.12 with the
//! kernel's full flag set, the ORC objtool generates from the stubs' unwind hints, a stub with
//! a broken hint, and `PtRegs`' layout. (Running them in ring 0 belongs to the QEMU kernel.)

mod kernel_object;

use std::collections::BTreeMap;
use std::process::Command;

use kernel_object::{
    KERNEL_TARGET, build_kernel, build_kernel_for, disassemble, kernel_objtool_flags,
    required_objtools, required_target, run_objtool, run_objtool_keep,
};

/// The stubs of the kernel module's handlers: (name, pushes -1 itself, returns).
const STUBS: &[(&str, bool, bool)] = &[
    ("asm_irqstack_km_exc_invalid_op", true, true),
    ("asm_irqstack_km_exc_general_protection", false, true),
    ("asm_irqstack_km_common_interrupt", false, true),
    ("asm_irqstack_km_sysvec_timer", true, true),
    ("asm_irqstack_km_exc_nmi", true, true),
    ("asm_irqstack_km_exc_double_fault", false, false),
];

#[test]
fn stubs_save_the_frame_swap_gs_for_user_mode_and_return_with_iretq() {
    if !required_target(KERNEL_TARGET) {
        return;
    }
    let obj = build_kernel("kernel-clean", &[], &[]);
    let funcs = disassemble(&obj);
    for (name, pushes_code, returns) in STUBS {
        let insns = funcs
            .get(*name)
            .unwrap_or_else(|| panic!("{name} not in the object: {:?}", funcs.keys()));
        let mut text: Vec<&str> = insns.iter().map(|(_, i)| i.as_str()).collect();
        if *returns {
            // objdump counts the padding after `iretq` (alignment, a next function's prefix)
            // into the stub.
            while text
                .last()
                .is_some_and(|i| *i == "int3" || i.contains("nop"))
            {
                text.pop();
            }
        }
        assert_eq!(
            text[0], "endbr64",
            "{name}: IBT wants endbr64 first: {text:#?}"
        );
        assert_eq!(text[1], "cld", "{name}: {text:#?}");
        assert_eq!(
            text[2] == "push 0xffffffffffffffff",
            *pushes_code,
            "{name}: orig_ax pushed by the stub only without a CPU code: {text:#?}"
        );
        let pushes = text.iter().filter(|i| i.starts_with("push r")).count();
        assert!(pushes >= 15, "{name}: every register saved: {text:#?}");
        let call = text
            .iter()
            .position(|i| i.starts_with("call"))
            .unwrap_or_else(|| panic!("{name}: no call"));
        // Every register but the three the stub sets (rdi, rsi, rbp) is cleared before the
        // call, so no value of the interrupted code reaches the handler.
        for reg in [
            "eax", "ecx", "edx", "ebx", "r8d", "r9d", "r10d", "r11d", "r12d", "r13d", "r14d",
            "r15d",
        ] {
            let xor = format!("xor {reg},{reg}");
            assert!(
                text[..call].contains(&xor.as_str()),
                "{name}: {reg} not cleared: {text:#?}"
            );
        }
        assert!(
            text[call].contains("__irqstack_idtentry_glue_"),
            "{name}: calls its glue directly: {}",
            text[call]
        );
        // A fence after the entry's swapgs decision, on both paths (SWAPGS speculation).
        let first_swapgs = text.iter().position(|i| *i == "swapgs").unwrap();
        assert_eq!(text[first_swapgs + 1], "lfence", "{name}: {text:#?}");
        let swapgs = text.iter().filter(|i| **i == "swapgs").count();
        if *returns {
            assert_eq!(swapgs, 2, "{name}: swapgs in and out: {text:#?}");
            assert_eq!(*text.last().unwrap(), "iretq", "{name}: {text:#?}");
            let pops = text[call..]
                .iter()
                .filter(|i| i.starts_with("pop r"))
                .count();
            assert_eq!(pops, 16, "{name}: record's rbp and 15 registers: {text:#?}");
        } else {
            assert_eq!(swapgs, 1, "{name}: {text:#?}");
            assert_eq!(
                text[call + 1],
                "int3",
                "{name}: a trap after a call that never returns"
            );
        }
    }
    // Device vectors: one 16-byte stub per vector 32..=255, each pushing its number and jumping
    // to the common stub.
    let table = funcs
        .get("asm_irqstack_km_common_interrupt_vectors")
        .expect("vector table");
    let pushes: Vec<&(u64, String)> = table
        .iter()
        .filter(|(_, i)| i.starts_with("push"))
        .collect();
    assert_eq!(pushes.len(), 224, "{table:#?}");
    let base = table[0].0;
    for (n, (addr, insn)) in pushes.iter().enumerate() {
        let vector = 32 + n as i64;
        let imm = if vector < 128 { vector } else { vector - 256 };
        let want = if imm < 0 {
            format!("push 0x{:x}", imm as u64)
        } else {
            format!("push 0x{imm:x}")
        };
        assert_eq!(*insn, want, "vector {vector}");
        assert_eq!(
            *addr,
            base + 16 * n as u64 + 4,
            "vector {vector}: after its endbr64"
        );
    }
    let jumps: Vec<&(u64, String)> = table.iter().filter(|(_, i)| i.starts_with("jmp")).collect();
    assert_eq!(jumps.len(), 224, "{table:#?}");
    assert!(
        jumps
            .iter()
            .all(|(_, i)| i.ends_with("asm_irqstack_km_common_interrupt-0x4")),
        "{jumps:#?}"
    );
}

/// The handlers stay ordinary functions in `.text` (not inlined into the `noinstr` glue, whose
/// code is in `.noinstr.text`): each glue calls a function defined in a `.text` section of the
/// object (its handler, or an identical handler the compiler folded it with), as Linux's
/// `DEFINE_IDTENTRY*` keeps `__func` out of its `noinstr` wrapper.
#[test]
fn handlers_stay_out_of_line_in_text_and_the_glue_calls_them() {
    if !required_target(KERNEL_TARGET) {
        return;
    }
    let obj = build_kernel("kernel-clean", &[], &[]);
    let funcs = disassemble(&obj);
    let table = Command::new("objdump")
        .arg("-t")
        .arg(&obj)
        .output()
        .expect("objdump (binutils) is needed to read the object");
    let table = String::from_utf8_lossy(&table.stdout);
    // Defined symbols: name -> section (`objdump -t`: address, flags, section, size, name).
    let section_of: BTreeMap<&str, &str> = table
        .lines()
        .filter_map(|l| {
            let name = l.split_whitespace().last()?;
            let section = l.split_whitespace().find(|w| w.starts_with('.'))?;
            Some((name, section))
        })
        .collect();
    let in_text = |target: &str| {
        let name = target.split(['+', '-']).next().unwrap_or(target);
        let section = if name.starts_with(".text") {
            name
        } else {
            section_of.get(name).copied().unwrap_or("*UND*")
        };
        section.starts_with(".text")
    };
    for (stub, _, _) in STUBS {
        let handler = stub.strip_prefix("asm_").unwrap();
        let glue = format!("__irqstack_idtentry_glue_{handler}");
        let calls: Vec<&str> = funcs[&glue]
            .iter()
            .filter(|(_, i)| i.starts_with("call"))
            .filter_map(|(_, i)| i.split(" -> ").nth(1))
            .collect();
        assert!(
            calls.iter().any(|t| in_text(t)),
            "{glue} calls no function in .text (the handler was inlined into .noinstr.text?): \
             {:#?}",
            funcs[&glue]
        );
    }
}

#[test]
fn objtool_generates_orc_from_the_stubs_hints() {
    let Some(tools) = required_objtools() else {
        return;
    };
    if !required_target(KERNEL_TARGET) {
        return;
    }
    for (ver, tool) in &tools {
        let obj = build_kernel_for(ver, false);
        let funcs = disassemble(&obj);
        let processed = run_objtool_keep(tool, &obj, &kernel_objtool_flags(ver));
        let dump = Command::new(tool)
            .env("SRCARCH", "x86")
            .arg("--dump=orc")
            .arg(&processed)
            .output()
            .expect("objtool --dump=orc");
        let _ = std::fs::remove_file(&processed);
        let dump = String::from_utf8_lossy(&dump.stdout);
        let orc: Vec<(u64, &str)> = dump
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(".noinstr.text+")?;
                let (off, state) = rest.split_once(':')?;
                Some((u64::from_str_radix(off, 16).ok()?, state))
            })
            .collect();
        let at = |addr: u64| -> &str {
            orc.iter()
                .rfind(|(off, _)| *off <= addr)
                .map(|(_, s)| *s)
                .unwrap_or("")
        };
        for (name, _, _) in STUBS {
            let insns = &funcs[*name];
            // Entry: the hardware frame (the "partial" register frame), from the IRET hint.
            let entry = at(insns[0].0);
            assert!(
                entry.contains("regs (partial)"),
                "objtool {ver}, {name} entry: {entry}"
            );
            // At the call: the full frame, from the REGS hint, 24 bytes up (record and pad).
            let call = insns.iter().find(|(_, i)| i.starts_with("call")).unwrap().0;
            let state = at(call);
            assert!(
                state.contains("type:regs") && !state.contains("partial"),
                "objtool {ver}, {name} at its call: {state}"
            );
            assert!(state.contains("sp:sp+24"), "objtool {ver}, {name}: {state}");
        }
    }
}

#[test]
fn a_broken_unwind_hint_is_flagged() {
    let Some(tools) = required_objtools() else {
        return;
    };
    if !required_target(KERNEL_TARGET) {
        return;
    }
    for (ver, tool) in &tools {
        let mut features = vec!["broken-hint"];
        if ver == "6.1" {
            features.push("objtool-legacy-hints");
        }
        let obj = build_kernel(&format!("kernel-broken-hint-{ver}"), &features, &[]);
        let w = run_objtool(tool, &obj, &kernel_objtool_flags(ver));
        assert!(
            w.len() == 1
                && w[0].contains("irqstack_km_broken_stub")
                && w[0].contains("unsupported unwind_hint sp base reg 11"),
            "objtool {ver}: {w:#?}"
        );
    }
}

#[test]
fn pt_regs_has_the_layout_of_linux_struct_pt_regs() {
    use core::mem::{offset_of, size_of};
    use irqstack::PtRegs;
    assert_eq!(size_of::<PtRegs>(), 168);
    let order = [
        offset_of!(PtRegs, r15),
        offset_of!(PtRegs, r14),
        offset_of!(PtRegs, r13),
        offset_of!(PtRegs, r12),
        offset_of!(PtRegs, bp),
        offset_of!(PtRegs, bx),
        offset_of!(PtRegs, r11),
        offset_of!(PtRegs, r10),
        offset_of!(PtRegs, r9),
        offset_of!(PtRegs, r8),
        offset_of!(PtRegs, ax),
        offset_of!(PtRegs, cx),
        offset_of!(PtRegs, dx),
        offset_of!(PtRegs, si),
        offset_of!(PtRegs, di),
        offset_of!(PtRegs, orig_ax),
        offset_of!(PtRegs, ip),
        offset_of!(PtRegs, cs),
        offset_of!(PtRegs, flags),
        offset_of!(PtRegs, sp),
        offset_of!(PtRegs, ss),
    ];
    assert_eq!(order.to_vec(), (0..21).map(|i| i * 8).collect::<Vec<_>>());
    assert!(
        PtRegs {
            cs: 0x33,
            ..PtRegs::default()
        }
        .user_mode()
    );
    assert!(
        !PtRegs {
            cs: 0x10,
            ..PtRegs::default()
        }
        .user_mode()
    );
}
