//! The guest runtime: one 4 KiB page of machine code the host maps read-execute at
//! `RUNTIME_GVA`. There is no guest toolchain here (only the host target exists), and the
//! runtime is a few dozen bytes, so the page is *generated*: each routine is written below as
//! its instruction bytes with the assembly beside them.
//!
//! ```text
//! RT_BUILTIN_TABLE: dq trampoline_0, trampoline_1, ...      ; vmctx.builtins points here
//! RT_ENTRY:         call rax                                 ; the host set rax = entry trampoline,
//!                                                            ; rdi/rsi/rdx/rcx = its arguments
//!                   mov rax, [HCALL_GVA + 8*HCALL_DONE]      ; hypercall: the call returned
//!                   ud2                                      ; never resumed
//! trampoline_i:     mov rax, [HCALL_GVA + 8*i]               ; hypercall i; args already in
//!                   ret                                      ; rdi, rsi, rdx, rcx, r8, r9
//! ```
#![no_std]

pub mod fault;
pub mod wasi;

use wasce_hypercall::*;

/// `mov rax, [imm64]` (REX.W A1 moffs64): an 8-byte load, which is how a hypercall is made.
const fn load_abs(buf: &mut [u8; PAGE_SIZE as usize], at: usize, addr: u64) -> usize {
    buf[at] = 0x48;
    buf[at + 1] = 0xa1;
    let bytes = addr.to_le_bytes();
    let mut i = 0;
    while i < 8 {
        buf[at + 2 + i] = bytes[i];
        i += 1;
    }
    at + 10
}

const fn build() -> [u8; PAGE_SIZE as usize] {
    // int3 everywhere else: running off a routine faults.
    let mut page = [0xccu8; PAGE_SIZE as usize];
    // Builtin table.
    let mut i = 0;
    while i < HCALL_MAX_BUILTIN {
        let addr = (RUNTIME_GVA + RT_TRAMPOLINES + RT_TRAMPOLINE_SIZE * i).to_le_bytes();
        let mut k = 0;
        while k < 8 {
            page[(RT_BUILTIN_TABLE + 8 * i) as usize + k] = addr[k];
            k += 1;
        }
        i += 1;
    }
    // Entry stub.
    let mut at = RT_ENTRY as usize;
    page[at] = 0xff; // call rax
    page[at + 1] = 0xd0;
    at = load_abs(&mut page, at + 2, hcall_address(HCALL_DONE));
    page[at] = 0x0f; // ud2
    page[at + 1] = 0x0b;
    // Builtin trampolines.
    let mut i = 0;
    while i < HCALL_MAX_BUILTIN {
        let at = (RT_TRAMPOLINES + RT_TRAMPOLINE_SIZE * i) as usize;
        let end = load_abs(&mut page, at, hcall_address(i));
        page[end] = 0xc3; // ret
        i += 1;
    }
    page
}

/// The runtime page, ready to copy to `RUNTIME_GPA`.
pub static RUNTIME_PAGE: [u8; PAGE_SIZE as usize] = build();

/// Guest address of the entry stub.
pub const ENTRY_GVA: u64 = RUNTIME_GVA + RT_ENTRY;
/// Guest address of the builtin table (what `vmctx.builtins` holds in the VM).
pub const BUILTIN_TABLE_GVA: u64 = RUNTIME_GVA + RT_BUILTIN_TABLE;
/// Guest address of the exit-free WASI routines.
pub const WASI_ROUTINES_GVA: u64 = RUNTIME_GVA + RT_WASI;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_routines_fit_the_runtime_page() {
        assert!(RT_WASI as usize + wasi::routines().len() <= PAGE_SIZE as usize);
        assert_eq!(wasi::routine_offset("fd_write"), None);
        assert!(wasi::routine_offset("random_get").is_some_and(|o| (o as usize) < wasi::routines().len()));
    }

    #[test]
    fn entry_stub_bytes() {
        let e = RT_ENTRY as usize;
        assert_eq!(&RUNTIME_PAGE[e..e + 4], &[0xff, 0xd0, 0x48, 0xa1]);
        let addr = u64::from_le_bytes(RUNTIME_PAGE[e + 4..e + 12].try_into().unwrap());
        assert_eq!(addr, HCALL_GVA + 8 * HCALL_DONE);
        assert_eq!(&RUNTIME_PAGE[e + 12..e + 14], &[0x0f, 0x0b]);
    }

    #[test]
    fn builtin_table_points_at_trampolines() {
        for i in 0..HCALL_MAX_BUILTIN {
            let slot = (RT_BUILTIN_TABLE + 8 * i) as usize;
            let target = u64::from_le_bytes(RUNTIME_PAGE[slot..slot + 8].try_into().unwrap());
            let off = (target - RUNTIME_GVA) as usize;
            assert_eq!(&RUNTIME_PAGE[off..off + 2], &[0x48, 0xa1]);
            let addr = u64::from_le_bytes(RUNTIME_PAGE[off + 2..off + 10].try_into().unwrap());
            assert_eq!(hcall_number(HCALL_GPA + (addr - HCALL_GVA), 8), Some(i));
            assert_eq!(RUNTIME_PAGE[off + 10], 0xc3);
        }
    }
}
