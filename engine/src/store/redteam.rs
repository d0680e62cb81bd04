//! Hooks for the red-team suite (`engine/tests/redteam`), which plays a guest whose compiler
//! was subverted: raw machine code run at CPL3 in a store's VM. Hidden from the documentation
//! and not part of the supported API. The code runs inside the VM like any guest code, so the
//! hook gives a caller nothing a guest could not already do.

use super::{FuncId, InstanceId, Store};
use crate::error::Error;
use crate::kvm::Perm;

impl Store {
    /// Run `code` (x86-64 machine code, at most one page) in the VM as if it were a compiled
    /// function of `instance`: entered like an entry trampoline, with rsi = rdx = the
    /// instance's vmctx and rcx = the address of `values` copied onto the guest stack (16-byte
    /// slots, copied back when the call returns normally). The code returns with `ret`.
    /// Each call leaks one host page (the VM keeps it mapped). KVM stores only.
    #[doc(hidden)]
    pub fn redteam_run_guest_code(&mut self, instance: InstanceId, code: &[u8], values: &mut [u128]) -> Result<(), Error> {
        if self.vm.is_none() || code.len() > 4096 {
            return Err(Error::Usage("raw guest code needs a KVM store and fits in one page".into()));
        }
        let vmctx = self.instances.get(instance.0 as usize).ok_or_else(|| Error::Usage("no such instance".into()))?.vmctx as u64;
        let page = crate::os::map_anonymous(4096, libc::PROT_READ | libc::PROT_WRITE)
            .map_err(|e| Error::Resource(format!("mmap of a code page failed: {e}")))?;
        // SAFETY: a fresh private page of 4096 bytes; `code` fits in it. It is never unmapped
        // (the VM maps it until the store is dropped).
        unsafe {
            std::ptr::write_bytes(page, 0xcc, 4096);
            std::ptr::copy_nonoverlapping(code.as_ptr(), page, code.len());
        }
        self.request_map(page as u64, 4096, 4096, Perm::ReadExecute);
        self.flush_maps()?;
        self.call_in_vm(page as u64, 0, vmctx, vmctx, values)
    }
}

impl FuncId {
    /// The function's number in its store (what a guest's host call names).
    #[doc(hidden)]
    pub fn redteam_index(self) -> u64 {
        self.0 as u64
    }
}
