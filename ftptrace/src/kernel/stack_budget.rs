//! The stack each function of the uprobe programs uses, read from the built
//! eBPF object: under 64 bytes, or a kernel that gives such a function a
//! per-CPU private stack (x86-64 from 6.14; Debian's 7.2 does for uprobe
//! programs) lets another task's run of it overwrite the stack when the
//! kernel preempts a uprobe program, which it may: a spilled pointer read
//! back as 0 oopsed 7.2 (`tests/src/jit.rs` checks the kernel's JIT in the
//! root tests). The budget is counted as the verifier does, the deepest
//! offset below the frame pointer that a function touches or hands out,
//! rounded up to 16.

use object::{Object, ObjectSection, ObjectSymbol, SectionKind};

use super::loader::OBJECT;

/// The kernel's `BPF_PRIV_STACK_MIN_SIZE`.
const PRIVATE_STACK_FROM: u64 = 64;

/// The deepest frame-pointer offset `code` (one function's instructions)
/// reaches: a load or store through `r10`, or a pointer `r10` plus a
/// constant in another register (a map key, a helper's buffer).
fn stack_depth(code: &[u8]) -> u64 {
    // A register's offset from the frame pointer, when it holds one.
    let mut from_fp: [Option<i64>; 11] = [None; 11];
    from_fp[10] = Some(0);
    let mut deepest = 0i64;
    let mut at = 0;
    while at + 8 <= code.len() {
        let insn = &code[at..at + 8];
        at += 8;
        let opcode = insn[0];
        let dst = usize::from(insn[1] & 0x0f);
        let src = usize::from(insn[1] >> 4);
        let off = i64::from(i16::from_le_bytes([insn[2], insn[3]]));
        let imm = i64::from(i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]));
        if opcode == 0x18 {
            // lddw: a 16-byte instruction that loads a constant.
            at += 8;
            from_fp[dst] = None;
            continue;
        }
        let base = match opcode & 0x07 {
            // LDX: through `src`, into `dst`.
            0x01 => {
                let base = from_fp[src];
                if dst < 10 {
                    from_fp[dst] = None;
                }
                base
            }
            // ST, STX: through `dst`.
            0x02 | 0x03 => from_fp[dst],
            // ALU64 and JMP: move, add a constant, or clobber.
            0x07 => {
                if dst < 10 {
                    from_fp[dst] = match (opcode, from_fp[src], from_fp[dst]) {
                        (0xbf, fp, _) => fp,
                        (0x07, _, Some(fp)) => Some(fp + imm),
                        _ => None,
                    };
                    if let Some(fp) = from_fp[dst] {
                        deepest = deepest.max(-fp);
                    }
                }
                continue;
            }
            0x05 => {
                // A call clobbers r0-r5.
                if opcode == 0x85 {
                    from_fp[..6].fill(None);
                }
                continue;
            }
            _ => {
                if dst < 10 {
                    from_fp[dst] = None;
                }
                continue;
            }
        };
        if let Some(fp) = base {
            deepest = deepest.max(-(fp + off));
        }
    }
    (deepest.max(0) as u64).div_ceil(16) * 16
}

/// The functions of the uprobe programs and the subprograms any program
/// calls (`.text`), with their stack depth.
fn uprobe_function_stacks(elf: &object::File) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    for section in elf.sections() {
        let name = section.name().unwrap_or_default();
        let uprobe = name.starts_with("uprobe") || name.starts_with("uretprobe");
        if section.kind() != SectionKind::Text || !(uprobe || name == ".text") {
            continue;
        }
        let code = section.data().expect("section data");
        for symbol in elf.symbols() {
            if symbol.section_index() != Some(section.index())
                || symbol.kind() != object::SymbolKind::Text
                || symbol.size() == 0
            {
                continue;
            }
            let start = symbol.address() as usize;
            let end = start + symbol.size() as usize;
            let name = symbol.name().unwrap_or_default().to_owned();
            found.push((name, stack_depth(&code[start..end])));
        }
    }
    found
}

#[test]
fn every_uprobe_function_stays_below_a_private_stack() {
    if OBJECT.is_empty() {
        eprintln!("skipped: built with AYA_BUILD_SKIP, no eBPF object to read");
        return;
    }
    let elf = object::File::parse(OBJECT).expect("the eBPF object is ELF");
    let stacks = uprobe_function_stacks(&elf);
    assert!(
        stacks.iter().any(|(name, _)| name == "tls_return"),
        "no uprobe program found in the object: {stacks:?}"
    );
    let over: Vec<_> = stacks
        .iter()
        .filter(|(_, depth)| *depth >= PRIVATE_STACK_FROM)
        .collect();
    assert!(
        over.is_empty(),
        "functions a uprobe program may run with {PRIVATE_STACK_FROM} bytes of stack or more: {over:?}"
    );
}

#[test]
fn stack_depth_counts_stores_loads_and_pointers_below_the_frame() {
    // *(u64 *)(r10 - 40) = r1; r2 = r10; r2 += -56; r0 = *(u32 *)(r10 - 4); exit
    let code: Vec<u8> = [
        [0x7b, 0x1a, 0xd8, 0xff, 0, 0, 0, 0],
        [0xbf, 0xa2, 0, 0, 0, 0, 0, 0],
        [0x07, 0x02, 0, 0, 0xc8, 0xff, 0xff, 0xff],
        [0x61, 0xa0, 0xfc, 0xff, 0, 0, 0, 0],
        [0x95, 0, 0, 0, 0, 0, 0, 0],
    ]
    .concat();
    assert_eq!(stack_depth(&code), 64);
    assert_eq!(stack_depth(&code[..8]), 48);
    // A store through a copied frame pointer plus a constant.
    let through_copy: Vec<u8> = [
        [0xbf, 0xa3, 0, 0, 0, 0, 0, 0],
        [0x07, 0x03, 0, 0, 0xf0, 0xff, 0xff, 0xff],
        [0x63, 0x13, 0xf8, 0xff, 0, 0, 0, 0],
    ]
    .concat();
    assert_eq!(stack_depth(&through_copy), 32);
}
