//! Signal handlers for faults in compiled code (SIGSEGV, SIGBUS, SIGILL, SIGFPE), run on an
//! alternate stack.
//!
//! A signal is a wasm trap only when all of these hold (`classify`):
//! * the kernel raised it for a fault of this thread (`si_code > 0`; not `kill`, `tgkill`,
//!   `sigqueue`);
//! * this thread is executing compiled code right now (`IN_WASM`: set by `call_entry`, cleared
//!   while compiled code has called out to a builtin or a host function);
//! * the PC is in compiled code and its module's trap table lists it, with a trap that this
//!   signal can stand for (a memory access for SIGSEGV/SIGBUS, a division for SIGFPE, `ud2`
//!   for SIGILL);
//! * for SIGSEGV/SIGBUS, the faulting address lies in a linear memory's reservation (its
//!   accessible part or its guard), the only place compiled code may legitimately fault on.
//!
//! Anything else is not ours: it goes to the handler that was installed before ours (saved when
//! ours was installed), with its own conventions (`SA_SIGINFO` or not); where that was the
//! default action (or "ignore", which the kernel does not honour for a fault), the default
//! action is restored and the fault re-raised, so a host crash stays a crash with its signal.

use super::enter::{resume_address, TrapRecord, CURRENT, IN_WASM, MAX_BACKTRACE};
use crate::code;
use std::sync::{Once, OnceLock};
use wasce_compiler::Trap;

const SIGNALS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];
const ALT_STACK_SIZE: usize = 64 * 1024;

static INSTALL: Once = Once::new();

/// The disposition each of `SIGNALS` had before ours (same order), for what is not a trap.
static PREVIOUS: [OnceLock<libc::sigaction>; 4] = [const { OnceLock::new() }; 4];

pub(super) fn ensure_installed() {
    INSTALL.call_once(|| {
        for (i, sig) in SIGNALS.into_iter().enumerate() {
            // SAFETY: reading the current disposition, then installing ours, with zeroed, then
            // filled, sigaction structures. The old one is saved before ours can run.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0 {
                    let _ = PREVIOUS[i].set(old);
                }
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

/// What the handler knows about a signal, as `classify` needs it.
#[derive(Clone, Copy, Debug)]
struct Fault {
    sig: libc::c_int,
    /// `si_code`: positive when the kernel raised the signal for a fault.
    code: libc::c_int,
    pc: usize,
    /// `si_addr`: the faulting data address (SIGSEGV, SIGBUS) or instruction.
    addr: usize,
    /// Whether this thread was executing compiled code (`IN_WASM`).
    in_wasm: bool,
}

/// The wasm trap `fault` is, or `None` if it is not one (see the module documentation).
/// Allocation-free and lock-free but for the registries' read locks.
fn classify(fault: Fault) -> Option<Trap> {
    if fault.code <= 0 || !fault.in_wasm {
        return None;
    }
    let trap = code::lookup_trap(fault.pc)?;
    let fits = match fault.sig {
        libc::SIGSEGV | libc::SIGBUS => trap == Trap::MemoryOutOfBounds && crate::memory::is_reserved(fault.addr),
        libc::SIGFPE => matches!(trap, Trap::IntegerDivisionByZero | Trap::IntegerOverflow),
        libc::SIGILL => true,
        _ => false,
    };
    fits.then_some(trap)
}

unsafe extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo and ucontext for SA_SIGINFO handlers; si_addr
    // is read as the union's first pointer whatever the signal (only used for SIGSEGV/SIGBUS).
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // SAFETY: as above.
    let uc = unsafe { &mut *(ctx as *mut libc::ucontext_t) };
    let gregs = &mut uc.uc_mcontext.gregs;
    let pc = gregs[libc::REG_RIP as usize] as usize;
    let act = CURRENT.with(|c| c.get());
    let in_wasm = !act.is_null() && IN_WASM.with(|w| w.get());
    let Some(trap) = classify(Fault { sig, code, pc, addr, in_wasm }) else {
        // SAFETY: forwarding the signal as delivered to us.
        unsafe { chain(sig, info, ctx) };
        return;
    };
    let mut record = TrapRecord { trap, pc, fault_addr: addr, frames: [0; MAX_BACKTRACE], nframes: 0 };
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

/// Hand a signal that is not a trap to the disposition that was there before ours.
///
/// # Safety
/// `info` and `ctx` are what the kernel passed to our handler for `sig`.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let previous = SIGNALS.iter().position(|s| *s == sig).and_then(|i| PREVIOUS[i].get());
    // SAFETY: the kernel's siginfo, as in `handler`.
    let from_kernel = unsafe { (*info).si_code } > 0;
    match previous.map(|p| (p.sa_sigaction, p.sa_flags)) {
        // Ignored: a signal someone sent is dropped; the kernel never ignores a fault (it
        // forces the default action), so neither do we.
        Some((libc::SIG_IGN, _)) if !from_kernel => {}
        Some((h, flags)) if h != libc::SIG_DFL && h != libc::SIG_IGN => {
            if flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this
                // signature and expects exactly the kernel's arguments.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = unsafe { std::mem::transmute(h) };
                f(sig, info, ctx);
            } else {
                // SAFETY: a handler installed without SA_SIGINFO takes the signal number only.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
                f(sig);
            }
        }
        // The default action (or none known): restore it. Returning re-executes the faulting
        // instruction, which now gets the default action (a crash with this signal); a signal
        // someone sent is raised again.
        _ => {
            // SAFETY: resetting the disposition of the signal being handled; raising it on
            // this thread (it is not blocked: our handler runs with SA_NODEFER).
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                if !from_kernel {
                    libc::raise(sig);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::LinearMemory;

    /// The code address of a recorded trap of each kind in a freshly loaded module.
    fn trap_pcs() -> (crate::store::Module, usize, usize, usize) {
        let wasm = wat::parse_str(
            r#"(module (memory 1)
                 (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
                 (func (export "div") (param i32) (result i32) (i32.div_u (i32.const 1) (local.get 0)))
                 (func (export "unreachable") unreachable))"#,
        )
        .unwrap();
        let module = crate::load(&wasm, &Default::default()).unwrap();
        let base = module.code_base() as usize;
        let find = |t: Trap| base + module.compiled.traps.iter().find(|(_, x)| *x == t).unwrap_or_else(|| panic!("no {t:?} record")).0 as usize;
        let (load, div, ud2) = (find(Trap::MemoryOutOfBounds), find(Trap::IntegerDivisionByZero), find(Trap::UnreachableCodeReached));
        (module, load, div, ud2)
    }

    #[test]
    fn only_faults_of_running_wasm_in_its_memory_are_traps() {
        let (_module, load, div, ud2) = trap_pcs();
        let memory = LinearMemory::new(1, 1, false).unwrap();
        let in_memory = memory.base() as usize + (1 << 20);
        let host_heap = Box::into_raw(Box::new(0u64)) as usize;
        let fault = |sig, pc, addr| Fault { sig, code: 1, pc, addr, in_wasm: true };

        // A load of compiled code faulting in a linear memory's guard: a trap.
        assert_eq!(classify(fault(libc::SIGSEGV, load, in_memory)), Some(Trap::MemoryOutOfBounds));
        assert_eq!(classify(fault(libc::SIGBUS, load, in_memory)), Some(Trap::MemoryOutOfBounds));
        assert_eq!(classify(fault(libc::SIGFPE, div, 0)), Some(Trap::IntegerDivisionByZero));
        assert_eq!(classify(fault(libc::SIGILL, ud2, 0)), Some(Trap::UnreachableCodeReached));

        // The same load faulting anywhere else (the host heap, page zero): a host crash.
        assert_eq!(classify(fault(libc::SIGSEGV, load, host_heap)), None);
        assert_eq!(classify(fault(libc::SIGSEGV, load, 0x1000)), None);
        // A signal whose kind does not fit the recorded trap.
        assert_eq!(classify(fault(libc::SIGSEGV, ud2, in_memory)), None);
        assert_eq!(classify(fault(libc::SIGFPE, load, 0)), None);
        // Not executing compiled code (no entry, or called out to the host).
        assert_eq!(classify(Fault { in_wasm: false, ..fault(libc::SIGILL, ud2, 0) }), None);
        // Sent by someone (kill: SI_USER, tgkill: SI_TKILL), whatever the PC.
        assert_eq!(classify(Fault { code: libc::SI_USER, ..fault(libc::SIGSEGV, load, in_memory) }), None);
        assert_eq!(classify(Fault { code: -6, ..fault(libc::SIGILL, ud2, 0) }), None);
        // A PC outside compiled code.
        assert_eq!(classify(fault(libc::SIGILL, classify as *const () as usize, 0)), None);

        // Once the memory is gone, its range is no longer one wasm may fault on.
        drop(memory);
        assert_eq!(classify(fault(libc::SIGSEGV, load, in_memory)), None);
        // SAFETY: the box leaked above.
        drop(unsafe { Box::from_raw(host_heap as *mut u64) });
    }
}
