//! Fault delivery for standard KVM (kvm_intel, kvm_amd): the ring-0 exception handlers and the
//! IDT that points at them. There a triple fault resets the vCPU (on SVM, RIP becomes 0xfff0
//! and CR2 0), so the guest needs an IDT to report a fault intact. This is the only ring-0 code
//! of the guest, and it does one thing: tell the host which exception happened where.
//!
//! ```text
//! handler i (16 bytes each):  push 0            ; only if the CPU pushes no error code
//!                             push i            ; the vector
//!                             jmp common
//! common:                     mov rax, [HCALL_GVA + 8*HCALL_FAULT]   ; report; never resumed
//!                             ud2
//! ```
//!
//! The frame the host reads is then at the top of the fault stack (`TSS.RSP0`): vector, error
//! code, then what the CPU pushed (RIP, CS, RFLAGS, RSP, SS). Gates are 64-bit interrupt gates,
//! DPL 0 (an `int n` from ring 3 is a #GP, reported as such), selector 0x08 (the ring-0 code
//! segment); vectors from `FAULT_VECTORS` up are not present (#NP if ever raised).

use wasce_hypercall::*;

/// Ring-0 code segment selector (GDT entry 1).
pub const KERNEL_CS: u16 = 1 << 3;

/// Whether the CPU pushes an error code for exception `vector`.
pub const fn has_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

const fn build_handlers() -> [u8; PAGE_SIZE as usize] {
    let mut page = [0xccu8; PAGE_SIZE as usize];
    let mut v = 0;
    while v < FAULT_VECTORS {
        let mut at = (FAULT_STUB_SIZE * v) as usize;
        if !has_error_code(v) {
            page[at] = 0x6a; // push imm8 0
            page[at + 1] = 0;
            at += 2;
        }
        page[at] = 0x6a; // push imm8 v
        page[at + 1] = v as u8;
        at += 2;
        page[at] = 0xe9; // jmp rel32 common
        let rel = (FAULT_COMMON as i64 - (at as i64 + 5)) as i32;
        let b = rel.to_le_bytes();
        page[at + 1] = b[0];
        page[at + 2] = b[1];
        page[at + 3] = b[2];
        page[at + 4] = b[3];
        v += 1;
    }
    let at = super::load_abs(&mut page, FAULT_COMMON as usize, hcall_address(HCALL_FAULT));
    page[at] = 0x0f; // ud2
    page[at + 1] = 0x0b;
    page
}

const fn build_idt() -> [u8; PAGE_SIZE as usize] {
    let mut idt = [0u8; PAGE_SIZE as usize];
    let mut v = 0;
    while v < FAULT_VECTORS {
        let target = FAULT_GVA + FAULT_STUB_SIZE * v;
        let at = (16 * v) as usize;
        let t = target.to_le_bytes();
        idt[at] = t[0];
        idt[at + 1] = t[1];
        idt[at + 2] = KERNEL_CS as u8;
        idt[at + 3] = (KERNEL_CS >> 8) as u8;
        idt[at + 4] = 0; // IST 0: the stack in TSS.RSP0
        idt[at + 5] = 0x8e; // present, DPL 0, 64-bit interrupt gate
        idt[at + 6] = t[2];
        idt[at + 7] = t[3];
        idt[at + 8] = t[4];
        idt[at + 9] = t[5];
        idt[at + 10] = t[6];
        idt[at + 11] = t[7];
        v += 1;
    }
    idt
}

/// The handlers' page, ready to copy to `FAULT_GPA`.
pub static HANDLERS: [u8; PAGE_SIZE as usize] = build_handlers();
/// The IDT, ready to copy to `IDT_GPA`; its limit is `IDT_LIMIT`.
pub static IDT: [u8; PAGE_SIZE as usize] = build_idt();
pub const IDT_LIMIT: u16 = (16 * FAULT_VECTORS - 1) as u16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gate_reaches_a_handler_that_reports_its_vector() {
        for v in 0..FAULT_VECTORS {
            let g = &IDT[16 * v as usize..][..16];
            let target = u16::from_le_bytes([g[0], g[1]]) as u64
                | (u16::from_le_bytes([g[6], g[7]]) as u64) << 16
                | (u32::from_le_bytes(g[8..12].try_into().unwrap()) as u64) << 32;
            assert_eq!(target, FAULT_GVA + FAULT_STUB_SIZE * v);
            assert_eq!(u16::from_le_bytes([g[2], g[3]]), KERNEL_CS);
            assert_eq!(g[5], 0x8e);
            let mut at = (target - FAULT_GVA) as usize;
            if !has_error_code(v) {
                assert_eq!(&HANDLERS[at..at + 2], &[0x6a, 0]);
                at += 2;
            }
            assert_eq!(&HANDLERS[at..at + 2], &[0x6a, v as u8]);
            assert_eq!(HANDLERS[at + 2], 0xe9);
            let rel = i32::from_le_bytes(HANDLERS[at + 3..at + 7].try_into().unwrap()) as i64;
            assert_eq!((at as i64 + 7 + rel) as u64, FAULT_COMMON);
        }
        let c = FAULT_COMMON as usize;
        assert_eq!(&HANDLERS[c..c + 2], &[0x48, 0xa1]);
        assert_eq!(u64::from_le_bytes(HANDLERS[c + 2..c + 10].try_into().unwrap()), hcall_address(HCALL_FAULT));
        assert!(IDT[16 * FAULT_VECTORS as usize..].iter().all(|&b| b == 0), "no gate above the exceptions");
    }
}
