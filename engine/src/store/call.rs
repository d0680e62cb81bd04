//! Calling compiled code: on this thread (process mode) or in the VM, and turning whatever
//! stopped it into a result, a trap with a backtrace, or a clean error.

use super::{FuncData, FuncId, Store};
use crate::code;
use crate::error::{Error, TrapError};
use crate::kvm::GuestStop;
use crate::values::Val;
use crate::{builtins, process};
use wasce_compiler::module::FuncType;
use wasce_compiler::vmctx;
use wasce_compiler::Trap;

/// Frames followed when walking a backtrace.
const MAX_FRAMES: usize = 64;

impl Store {
    pub fn call(&mut self, func: FuncId, args: &[Val]) -> Result<Vec<Val>, Error> {
        let ty = self.func_type(func).clone();
        if args.len() != ty.params.len() || args.iter().zip(&ty.params).any(|(a, t)| !self.val_matches(a, *t)) {
            return Err(Error::Usage(format!("arguments do not match the function type {ty}")));
        }
        self.stats.calls += 1;
        match &self.funcs[func.0 as usize] {
            FuncData::Host { f, .. } | FuncData::Guest { f, .. } => {
                let f = f.clone();
                let mut results: Vec<Val> = ty.results.iter().map(|t| Val::null(*t)).collect();
                f(&mut super::Caller { store: self, instance: None }, args, &mut results)?;
                Ok(results)
            }
            FuncData::Wasm { instance, index, .. } => {
                let (instance, index) = (*instance, *index);
                self.call_wasm(instance, index, &ty, args)
            }
        }
    }

    fn call_wasm(&mut self, instance: u32, index: u32, ty: &FuncType, args: &[Val]) -> Result<Vec<Val>, Error> {
        let inst = &self.instances[instance as usize];
        let compiled = &inst.module.compiled;
        let type_index = compiled.info.funcs[index as usize];
        let tramp = inst.module.code_base() + compiled.entry_trampolines[type_index as usize].offset as u64;
        let off = inst.layout().funcref(index);
        let (code, callee, caller) = (inst.read_u64(off), inst.read_u64(off + 8), inst.vmctx as u64);
        let mut values = vec![0u128; ty.params.len().max(ty.results.len()).max(1)];
        for (slot, a) in values.iter_mut().zip(args) {
            *slot = a.to_slot();
        }
        let r = match self.vm.is_some() {
            true => self.call_in_vm(tramp, code, callee, caller, &mut values),
            false => self.call_in_process(tramp, code, callee, caller, &mut values),
        };
        // An exception still pending when the outermost wasm frame has returned was not
        // caught. The cell is cleared whatever happened (a trap leaves the rest to the trap).
        // Only whether it is set is read: the object is guest data.
        // SAFETY: the exception state lives in the arena for the store's lifetime, and no guest
        // code runs now.
        let pending = unsafe { self.exn_state.add((vmctx::EXN_PENDING / 8) as usize).replace(0) };
        r?;
        if pending != 0 {
            return Err(Error::Exception);
        }
        Ok(ty.results.iter().zip(&values).map(|(t, s)| Val::from_slot(*t, *s)).collect())
    }

    fn call_in_process(&mut self, tramp: u64, code: u64, callee: u64, caller: u64, values: &mut [u128]) -> Result<(), Error> {
        if self.depth == 0 {
            self.update_stack_limit();
        }
        let prev = builtins::enter_store(self);
        self.depth += 1;
        // SAFETY: trampoline, code and vmctx belong to a live instance of this store; `values`
        // has a slot per parameter and result.
        let r = unsafe { process::call_entry(tramp, code, callee, caller, values.as_mut_ptr()) };
        self.depth -= 1;
        builtins::leave_store(prev);
        r.map_err(|record| {
            let mut pcs = vec![record.pc];
            pcs.extend_from_slice(&record.frames[..record.nframes]);
            self.trap_error(record.trap, &pcs)
        })
    }

    pub(super) fn call_in_vm(&mut self, tramp: u64, code: u64, callee: u64, caller: u64, values: &mut [u128]) -> Result<(), Error> {
        let Some(mut vm) = self.vm.take() else {
            return Err(Error::Usage("a host function cannot call back into the guest in KVM mode".into()));
        };
        let watchdog = self.config.timeout.and_then(|t| vm.kicker().map(|k| k.arm(t, vm.ring().map(|r| r.thread_id()))));
        // Host calls, on either thread, keep the same deadline as the kick.
        self.deadline = watchdog.as_ref().map(|w| w.deadline());
        self.pending_error = None;
        // The store is used by this thread (hypercalls) and by the ring server, never both at
        // once: the server serves only while this thread is inside KVM_RUN and has lent it the
        // store, and this thread takes it back (waiting for a request in flight) whenever
        // KVM_RUN returns, before it handles anything; `deactivate` ends the loan for good.
        let store: *mut Store = self;
        if let Some(ring) = vm.ring() {
            ring.activate(store as *mut (), ring_handler);
        }
        let r = vm.call(tramp, code, callee, caller, values, &mut |number, regs, maps| {
            // SAFETY: see above; the server is idle while this runs.
            let store = unsafe { &mut *store };
            store.stats.hypercalls += 1;
            let args = [regs.rsi, regs.rdx, regs.rcx, regs.r8, regs.r9];
            let result = super::dispatch_builtin(store, number, regs.rdi, args);
            maps.append(&mut store.pending_maps);
            result
        });
        if let Some(ring) = vm.ring() {
            ring.deactivate();
        }
        let fired = watchdog.as_ref().is_some_and(|w| w.fired());
        drop(watchdog);
        self.deadline = None;
        self.vm = Some(vm);
        match r {
            Ok(()) => Ok(()),
            Err(GuestStop::Fault { rip, vector, cr2, rbp }) => {
                let pcs = self.guest_backtrace(rip, rbp);
                match code::lookup_trap(rip as usize) {
                    Some(trap) => Err(self.trap_error(trap, &pcs)),
                    None => Err(Error::Resource(format!(
                        "the guest faulted outside compiled code (exception {vector} at {rip:#x}, address {cr2:#x}); the VM was reset"
                    ))),
                }
            }
            Err(GuestStop::Interrupted { rip, rbp }) if fired => {
                // (A host call may have ended at the deadline first: its error is the same.)
                self.pending_error = None;
                let pcs = self.guest_backtrace(rip, rbp);
                Err(self.trap_error(Trap::Interrupt, &pcs))
            }
            Err(GuestStop::Interrupted { .. }) => Err(Error::Resource("the guest was interrupted".into())),
            Err(GuestStop::BadAccess { rip, gpa }) => Err(Error::Resource(format!(
                "the guest touched unbacked memory (guest-physical {gpa:#x} at {rip:#x}); the VM was reset"
            ))),
            Err(GuestStop::Other(msg)) => Err(Error::Resource(msg)),
        }
    }

    /// PCs of the guest's wasm frames: the faulting RIP, then return addresses found by walking
    /// frame pointers, each read only from inside the guest stack.
    fn guest_backtrace(&self, rip: u64, mut fp: u64) -> Vec<usize> {
        let mut pcs = vec![rip as usize];
        let Some((lo, hi)) = self.guest_stack else { return pcs };
        while pcs.len() < MAX_FRAMES && fp.is_multiple_of(8) && fp >= lo && fp.checked_add(16).is_some_and(|e| e <= hi) {
            // SAFETY: [fp, fp+16) lies inside the guest stack mapping, which the store owns.
            let (next, ret) = unsafe { (*(fp as *const u64), *((fp + 8) as *const u64)) };
            if !code::is_wasm_pc(ret as usize) {
                break;
            }
            pcs.push(ret as usize);
            if next <= fp {
                break;
            }
            fp = next;
        }
        pcs
    }

    pub(crate) fn trap_error(&mut self, trap: Trap, pcs: &[usize]) -> Error {
        let backtrace = || pcs.iter().filter_map(|pc| code::lookup_func(*pc)).map(|(m, f)| m.compiled.info.func_name(f)).collect();
        if trap == Trap::HostError {
            match self.pending_error.take() {
                // A host call that passed its deadline: the trap says where the guest called it.
                Some(Error::Trap(mut t)) if t.backtrace.is_empty() => {
                    t.backtrace = backtrace();
                    return Error::Trap(t);
                }
                Some(e) => return e,
                None => {}
            }
        }
        Error::Trap(TrapError { trap, backtrace: backtrace() })
    }

    /// Set the lowest stack address compiled code may reach, from this thread's stack.
    fn update_stack_limit(&mut self) {
        let here = &self as *const _ as u64;
        let mut limit = here.saturating_sub(self.config.max_wasm_stack as u64);
        if let Some(low) = thread_stack_low() {
            // Leave room below the limit for host functions and the signal path.
            limit = limit.max(low + 256 * 1024);
        }
        if limit != self.stack_limit {
            self.stack_limit = limit;
            for inst in &self.instances {
                inst.write_u64(wasce_compiler::vmctx::STACK_LIMIT, limit);
            }
        }
    }
}

/// Serves a `HostCall` posted on the ring (runs on the ring server thread).
///
/// # Safety
/// `ctx` is the `*mut Store` lent by `call_in_vm`, used exclusively while the server is busy.
unsafe fn ring_handler(ctx: *mut (), func: u64, values: u64, caller: u64) -> u64 {
    // SAFETY: upheld by the caller.
    let store = unsafe { &mut *(ctx as *mut Store) };
    super::dispatch_builtin(store, wasce_hypercall::HCALL_HOST_CALL, caller, [func, values, 0, 0, 0])
}

thread_local! {
    /// This thread's lowest stack address, once known (it never changes).
    static STACK_LOW: std::cell::Cell<Option<Option<u64>>> = const { std::cell::Cell::new(None) };
}

/// Find this thread's stack bounds now: for the main thread, glibc reads `/proc/self/maps`,
/// which the sandbox no longer allows once the thread is confined.
pub(crate) fn prime_thread_stack() {
    thread_stack_low();
}

fn thread_stack_low() -> Option<u64> {
    if let Some(known) = STACK_LOW.with(|c| c.get()) {
        return known;
    }
    let low = query_stack_low();
    STACK_LOW.with(|c| c.set(Some(low)));
    low
}

fn query_stack_low() -> Option<u64> {
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread; it is destroyed after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let r = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (r == 0).then_some(addr as u64)
    }
}
