//! Guest page tables, built and edited only by the host. They live in the page-table pool of
//! slot 0, which no guest-virtual address maps (invariant: the guest cannot change its own
//! mappings). 4-level paging, 4 KiB leaves; U/S is set at every level of a user mapping, and
//! clear in the leaf of a supervisor mapping (the fault-delivery pages of standard KVM, which
//! ring-3 code can then neither read, write nor execute).

use wasce_hypercall::{PAGE_SIZE, PT_POOL_GPA, SYSTEM_SIZE};

pub const PTE_P: u64 = 1 << 0;
pub const PTE_RW: u64 = 1 << 1;
pub const PTE_US: u64 = 1 << 2;
pub const PTE_A: u64 = 1 << 5;
pub const PTE_D: u64 = 1 << 6;
pub const PTE_NX: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Permissions of a mapping. Accessed/dirty are preset so the walker never writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    ReadExecute,
    ReadWrite,
    /// Ring 0 only, read-only (GDT, TSS, IDT).
    SupervisorRead,
    /// Ring 0 only, read-execute (the fault handlers).
    SupervisorExecute,
    /// Ring 0 only, read-write (the fault stack).
    SupervisorReadWrite,
}

impl Perm {
    fn leaf_flags(self) -> u64 {
        match self {
            Perm::ReadExecute => PTE_P | PTE_US | PTE_A,
            Perm::ReadWrite => PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D | PTE_NX,
            Perm::SupervisorRead => PTE_P | PTE_A | PTE_NX,
            Perm::SupervisorExecute => PTE_P | PTE_A,
            Perm::SupervisorReadWrite => PTE_P | PTE_RW | PTE_A | PTE_D | PTE_NX,
        }
    }
}

const TABLE_FLAGS: u64 = PTE_P | PTE_RW | PTE_US | PTE_A;

/// The page tables in slot 0 (`system` is the host view of slot 0).
pub struct PageTables {
    system: *mut u8,
    next_free: u64,
    pub pml4: u64,
}

impl PageTables {
    /// # Safety
    /// `system` must be the host address of slot 0 (`SYSTEM_SIZE` bytes, zeroed, read-write).
    pub unsafe fn new(system: *mut u8) -> PageTables {
        let mut pt = PageTables { system, next_free: PT_POOL_GPA, pml4: 0 };
        pt.pml4 = pt.alloc_table().expect("the pool has room for the root");
        pt
    }

    fn alloc_table(&mut self) -> Option<u64> {
        if self.next_free + PAGE_SIZE > SYSTEM_SIZE {
            return None;
        }
        let gpa = self.next_free;
        self.next_free += PAGE_SIZE;
        Some(gpa)
    }

    fn entry(&mut self, table_gpa: u64, index: u64) -> *mut u64 {
        debug_assert!(table_gpa >= PT_POOL_GPA && table_gpa + PAGE_SIZE <= SYSTEM_SIZE && index < 512);
        // SAFETY: table pages are allocated inside slot 0 by `alloc_table`.
        unsafe { (self.system.add(table_gpa as usize) as *mut u64).add(index as usize) }
    }

    /// The leaf table covering `gva`, created if missing.
    fn leaf_table(&mut self, gva: u64) -> Option<u64> {
        let mut table = self.pml4;
        for shift in [39u64, 30, 21] {
            let e = self.entry(table, (gva >> shift) & 511);
            // SAFETY: `e` points into a page-table page of slot 0.
            let v = unsafe { *e };
            table = if v & PTE_P != 0 {
                v & ADDR_MASK
            } else {
                let t = self.alloc_table()?;
                // SAFETY: as above.
                unsafe { *e = t | TABLE_FLAGS };
                t
            };
        }
        Some(table)
    }

    /// The leaf table covering `gva`, if it exists (never allocates).
    fn existing_leaf_table(&mut self, gva: u64) -> Option<u64> {
        let mut table = self.pml4;
        for shift in [39u64, 30, 21] {
            let e = self.entry(table, (gva >> shift) & 511);
            // SAFETY: `e` points into a page-table page of slot 0.
            let v = unsafe { *e };
            if v & PTE_P == 0 {
                return None;
            }
            table = v & ADDR_MASK;
        }
        Some(table)
    }

    /// Make `pages` pages from `gva` non-present. Table pages stay allocated (they are reused
    /// if the range is mapped again). Whoever unmaps must also make sure no stale translation
    /// can reach host memory: `Vm::unmap` deletes the memslots behind the range, which makes
    /// KVM drop its translations, and never reuses those guest-physical addresses.
    pub fn unmap(&mut self, gva: u64, pages: u64) {
        let mut i = 0;
        while i < pages {
            let va = gva + i * PAGE_SIZE;
            let mut index = (va >> 12) & 511;
            let Some(leaf) = self.existing_leaf_table(va) else {
                // No leaf table: skip to the next one.
                i += 512 - index;
                continue;
            };
            while index < 512 && i < pages {
                let e = self.entry(leaf, index);
                // SAFETY: `e` points into a leaf table of slot 0.
                unsafe { *e = 0 };
                index += 1;
                i += 1;
            }
        }
    }

    /// Map `pages` pages from `gva` to `gpa`. Only ever turns non-present entries present, which
    /// needs no TLB flush on this hypervisor. Returns false when the pool is exhausted.
    pub fn map(&mut self, gva: u64, gpa: u64, pages: u64, perm: Perm) -> bool {
        let flags = perm.leaf_flags();
        let mut i = 0;
        while i < pages {
            let va = gva + i * PAGE_SIZE;
            let Some(leaf) = self.leaf_table(va) else { return false };
            // Fill the rest of this leaf table without walking again.
            let mut index = (va >> 12) & 511;
            while index < 512 && i < pages {
                let e = self.entry(leaf, index);
                // SAFETY: `e` points into a leaf table of slot 0.
                unsafe { *e = ((gpa + i * PAGE_SIZE) & ADDR_MASK) | flags };
                index += 1;
                i += 1;
            }
        }
        true
    }
}
