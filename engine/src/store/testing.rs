//! Hooks for the hostile-guest test suites (`engine/tests/redteam`), not part of the embedding
//! API: what an attacker inside the VM can find out anyway (vmctx addresses, host function ids,
//! the builtin table), and raw machine code run at CPL3 in the store's VM, as a subverted
//! compiler would emit it.
//!
//! Raw code runs only in KVM mode, where arbitrary ring-3 code is the threat model the VM is built
//! for. In process mode it would be native code in the host process, so it is refused.

use super::{FuncId, InstanceId, Store};
use crate::error::Error;
use crate::kvm::Perm;

/// The address of `instance`'s vmctx (in the VM, also its guest address).
pub fn vmctx(store: &Store, instance: InstanceId) -> u64 {
    store.instances[instance.0 as usize].vmctx as u64
}

/// The store's index of a function (what the host-call builtin took as the function before
/// host calls named import records).
pub fn func_index(f: FuncId) -> u64 {
    f.0 as u64
}

/// The builtin table compiled code of this store calls through (`vmctx.builtins`).
pub fn builtin_table(store: &Store) -> u64 {
    match &store.vm {
        Some(vm) => vm.builtin_table(),
        None => crate::builtins::table() as u64,
    }
}

/// Run `code` in the store's VM as if it were an entry trampoline: it is entered at CPL3 with
/// rcx = `values` copied to the top of the guest stack (and copied back on a normal return), and
/// its `ret` ends the call. Errors are what a guest fault or a refused hypercall turns into.
pub fn run_guest_code(store: &mut Store, code: &[u8], values: &mut [u128]) -> Result<(), Error> {
    run_raw(store, 0, code, values)
}

/// `run_guest_code` as a function of `instance`: rsi = rdx = its vmctx.
pub fn run_guest_code_in(store: &mut Store, instance: InstanceId, code: &[u8], values: &mut [u128]) -> Result<(), Error> {
    let vmctx = store.instances.get(instance.0 as usize).ok_or_else(|| Error::Usage("no such instance".into()))?.vmctx as u64;
    run_raw(store, vmctx, code, values)
}

fn run_raw(store: &mut Store, vmctx: u64, code: &[u8], values: &mut [u128]) -> Result<(), Error> {
    if store.vm.is_none() {
        return Err(Error::Usage("raw guest code runs only in KVM mode".into()));
    }
    if code.len() > 4096 {
        return Err(Error::Usage("raw guest code is limited to one page".into()));
    }
    let page = crate::os::map_anonymous(4096, libc::PROT_READ | libc::PROT_WRITE)
        .map_err(|e| Error::Resource(format!("cannot map a code page: {e}")))?;
    // SAFETY: a fresh private page of 4096 bytes; `code` fits (checked above). The page is never
    // unmapped: the VM maps it, and it must outlive the VM (a few test pages are leaked).
    unsafe {
        std::ptr::write_bytes(page, 0xcc, 4096);
        std::ptr::copy_nonoverlapping(code.as_ptr(), page, code.len());
    }
    store.request_map(page as u64, 4096, 4096, Perm::ReadExecute);
    store.flush_maps()?;
    store.call_in_vm(page as u64, 0, vmctx, vmctx, values)
}
