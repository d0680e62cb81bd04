//! Signal handlers for faults in compiled code (SIGSEGV, SIGBUS, SIGILL, SIGFPE), run on an
//! alternate stack. A fault whose PC is in compiled code and listed in its module's trap table
//! becomes a trap; anything else is not ours and gets the default action (a crash with the
//! original signal).

use super::enter::{resume_address, TrapRecord, CURRENT, MAX_BACKTRACE};
use crate::code;
use std::sync::Once;


const SIGNALS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];
const ALT_STACK_SIZE: usize = 64 * 1024;

static INSTALL: Once = Once::new();

pub(super) fn ensure_installed() {
    INSTALL.call_once(|| {
        for sig in SIGNALS {
            // SAFETY: installing a handler with a zeroed, then filled, sigaction.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = handler as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    });
    ALT_STACK.with(|s| s.ensure());
}

/// A per-thread alternate signal stack, freed when the thread exits.
struct AltStack(std::cell::Cell<*mut libc::c_void>);

impl AltStack {
    fn ensure(&self) {
        if !self.0.get().is_null() {
            return;
        }
        // SAFETY: query the current alternate stack; install ours only if there is none.
        unsafe {
            let mut old: libc::stack_t = std::mem::zeroed();
            libc::sigaltstack(std::ptr::null(), &mut old);
            if old.ss_flags & libc::SS_DISABLE == 0 && old.ss_size >= ALT_STACK_SIZE {
                return;
            }
            let Ok(mem) = crate::os::map_anonymous(ALT_STACK_SIZE, libc::PROT_READ | libc::PROT_WRITE) else {
                return;
            };
            let mem = mem as *mut libc::c_void;
            let st = libc::stack_t { ss_sp: mem, ss_flags: 0, ss_size: ALT_STACK_SIZE };
            libc::sigaltstack(&st, std::ptr::null_mut());
            self.0.set(mem);
        }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let mem = self.0.get();
        if !mem.is_null() {
            // SAFETY: disable the alternate stack before unmapping the memory it used.
            unsafe {
                let st = libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
                libc::sigaltstack(&st, std::ptr::null_mut());
                libc::munmap(mem, ALT_STACK_SIZE);
            }
        }
    }
}

thread_local! {
    static ALT_STACK: AltStack = const { AltStack(std::cell::Cell::new(std::ptr::null_mut())) };
}

unsafe extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext for SA_SIGINFO handlers.
    let uc = unsafe { &mut *(ctx as *mut libc::ucontext_t) };
    let gregs = &mut uc.uc_mcontext.gregs;
    let pc = gregs[libc::REG_RIP as usize] as usize;
    let act = CURRENT.with(|c| c.get());
    let trap = if act.is_null() { None } else { code::lookup_trap(pc) };
    let Some(trap) = trap else {
        // Not a fault of compiled code: restore the default action; returning re-raises it.
        // SAFETY: resetting the disposition of the signal being handled.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
        return;
    };
    // SAFETY: siginfo is valid; si_addr is meaningful for SIGSEGV/SIGBUS.
    let fault_addr = unsafe { (*info).si_addr() } as usize;
    let mut record = TrapRecord { trap, pc, fault_addr, frames: [0; MAX_BACKTRACE], nframes: 0 };
    // Walk the frame-pointer chain of compiled code (every wasm function keeps rbp).
    let mut fp = gregs[libc::REG_RBP as usize] as usize;
    // SAFETY: `act` is the live activation of this thread, set by `call_entry`.
    let act = unsafe { &mut *act };
    while fp != 0 && fp.is_multiple_of(8) && fp < act.rbp as usize && record.nframes < MAX_BACKTRACE {
        // SAFETY: fp lies between the faulting frame and the entry frame on this thread's stack.
        let (next, ret) = unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) };
        if !code::is_wasm_pc(ret) {
            break;
        }
        record.frames[record.nframes] = ret;
        record.nframes += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    act.trap = Some(record);
    gregs[libc::REG_RIP as usize] = resume_address() as i64;
    gregs[libc::REG_RSP as usize] = act.rsp as i64;
    gregs[libc::REG_RBP as usize] = act.rbp as i64;
    gregs[libc::REG_RAX as usize] = 1;
}

