//! Entering compiled code: `wasce_enter` saves the host frame in an `Activation` and calls an
//! entry trampoline. On a trap the signal handler rewrites the interrupted context to resume at
//! `wasce_enter_resume` on the saved frame, which returns 1 to the caller.

use super::signals;
use std::cell::Cell;
use wasce_compiler::Trap;

pub const MAX_BACKTRACE: usize = 32;

/// What the handler recorded about a trap.
#[derive(Clone, Copy, Debug)]
pub struct TrapRecord {
    pub trap: Trap,
    pub pc: usize,
    /// Faulting data address for memory faults (for diagnostics).
    #[allow(dead_code)]
    pub fault_addr: usize,
    /// Return addresses found by walking frame pointers from the faulting frame.
    pub frames: [usize; MAX_BACKTRACE],
    pub nframes: usize,
}

/// One entry into compiled code. `#[repr(C)]`: `wasce_enter` writes `rsp` and `rbp`.
#[repr(C)]
pub(super) struct Activation {
    pub rsp: u64,
    pub rbp: u64,
    pub trap: Option<TrapRecord>,
    pub prev: *mut Activation,
}

thread_local! {
    /// The innermost activation of this thread (null when not in wasm).
    pub(super) static CURRENT: Cell<*mut Activation> = const { Cell::new(std::ptr::null_mut()) };
    /// Whether this thread is executing compiled code right now: set while `call_entry` runs
    /// compiled code, cleared while compiled code has called out to the host (a builtin or a
    /// host function, `HostSection`). Only a fault while it is set can be a wasm trap.
    pub(super) static IN_WASM: Cell<bool> = const { Cell::new(false) };
}

/// Compiled code has called the host (a builtin, a host function): for as long as this lives,
/// a fault on this thread is the host's, never a wasm trap, whatever its PC.
pub struct HostSection {
    was_in_wasm: bool,
}

impl HostSection {
    pub fn enter() -> HostSection {
        HostSection { was_in_wasm: IN_WASM.replace(false) }
    }
}

impl Drop for HostSection {
    fn drop(&mut self) {
        IN_WASM.set(self.was_in_wasm);
    }
}

std::arch::global_asm!(
    ".text",
    ".globl wasce_enter",
    ".type wasce_enter,@function",
    "wasce_enter:",
    // (activation, trampoline, code, callee vmctx, caller vmctx, values) -> 0 | 1 (trapped)
    "push rbp",
    "mov rbp, rsp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "sub rsp, 8",
    "mov [rdi], rsp",
    "mov [rdi + 8], rbp",
    "mov rax, rsi",
    "mov rdi, rdx",
    "mov rsi, rcx",
    "mov rdx, r8",
    "mov rcx, r9",
    "call rax",
    "xor eax, eax",
    ".globl wasce_enter_resume",
    "wasce_enter_resume:",
    "add rsp, 8",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".size wasce_enter, . - wasce_enter",
);

unsafe extern "C" {
    fn wasce_enter(act: *mut u8, tramp: u64, code: u64, callee: u64, caller: u64, values: *mut u128) -> u64;
    fn wasce_enter_resume();
}

pub(super) fn resume_address() -> usize {
    wasce_enter_resume as *const () as usize
}

/// Call compiled code through an entry trampoline.
///
/// # Safety
/// `tramp` must be an entry trampoline for the callee's type, `code`/`callee` a function and its
/// vmctx, `caller` a live vmctx, and `values` must have a slot per parameter and result.
// The record is filled by the signal handler, which cannot allocate: it stays inline.
#[allow(clippy::result_large_err)]
pub unsafe fn call_entry(tramp: u64, code: u64, callee: u64, caller: u64, values: *mut u128) -> Result<(), TrapRecord> {
    signals::ensure_installed();
    let mut act = Activation { rsp: 0, rbp: 0, trap: None, prev: CURRENT.get() };
    CURRENT.set(&mut act);
    let was_in_wasm = IN_WASM.replace(true);
    // SAFETY: upheld by the caller; `act` outlives the call and is unlinked right after.
    let r = unsafe { wasce_enter(&mut act as *mut Activation as *mut u8, tramp, code, callee, caller, values) };
    IN_WASM.set(was_in_wasm);
    CURRENT.set(act.prev);
    if r == 0 {
        Ok(())
    } else {
        Err(act.trap.expect("trap resume without a trap record"))
    }
}
