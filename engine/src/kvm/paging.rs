//! Guest page tables, built and edited only by the host. They live in the page-table pool of
//! slot 0, which no guest-virtual address maps (invariant: the guest cannot change its own
//! mappings). 4-level paging with 4 KiB leaves, and 2 MiB leaves (`PageSize::Huge`, linear
//! memories) for every aligned 2 MiB that lies wholly inside what is mapped, so that the
//! hypervisor can back each with one huge page and a first touch faults once per 2 MiB instead
//! of once per 4 KiB; the edges of a mapping (what is past the current size must fault) always
//! stay 4 KiB leaves. U/S is set at every level of a user mapping, and clear in the leaf of a
//! supervisor mapping (the fault-delivery pages of standard KVM, which ring-3 code can then
//! neither read, write nor execute).

use wasce_hypercall::{PAGE_SIZE, PT_POOL_GPA, SYSTEM_SIZE};

pub const PTE_P: u64 = 1 << 0;
pub const PTE_RW: u64 = 1 << 1;
pub const PTE_US: u64 = 1 << 2;
pub const PTE_A: u64 = 1 << 5;
pub const PTE_D: u64 = 1 << 6;
/// In a page-directory entry: a 2 MiB leaf.
pub const PTE_PS: u64 = 1 << 7;
/// The size of a 2 MiB leaf.
pub const HUGE_PAGE: u64 = 2 << 20;
/// 4 KiB pages per 2 MiB leaf.
const PAGES_PER_HUGE: u64 = HUGE_PAGE / PAGE_SIZE;
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

/// Which leaves a mapping may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB leaves only.
    Small,
    /// 2 MiB leaves where a whole aligned 2 MiB (in both guest-virtual and guest-physical
    /// space) lies inside the range mapped at once and has no 4 KiB leaves yet; 4 KiB elsewhere.
    Huge,
}

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

    /// The page-directory entry covering `gva`; the tables above it are created if missing
    /// and `create`, else `None` if one is missing (or the pool is exhausted).
    fn pde(&mut self, gva: u64, create: bool) -> Option<*mut u64> {
        let mut table = self.pml4;
        for shift in [39u64, 30] {
            let e = self.entry(table, (gva >> shift) & 511);
            // SAFETY: `e` points into a page-table page of slot 0.
            let v = unsafe { *e };
            table = if v & PTE_P != 0 {
                v & ADDR_MASK
            } else if create {
                let t = self.alloc_table()?;
                // SAFETY: as above.
                unsafe { *e = t | TABLE_FLAGS };
                t
            } else {
                return None;
            };
        }
        Some(self.entry(table, (gva >> 21) & 511))
    }

    /// Replace the 2 MiB leaf at `pde` by a leaf table mapping the same pages with the same
    /// permissions (so that part of it can be unmapped). Returns the table, or `None` if the
    /// pool is exhausted.
    fn split(&mut self, pde: *mut u64) -> Option<u64> {
        // SAFETY: `pde` points into a page-directory page of slot 0.
        let v = unsafe { *pde };
        let table = self.alloc_table()?;
        let flags = v & (PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D | PTE_NX);
        let base = v & ADDR_MASK & !(HUGE_PAGE - 1);
        for i in 0..PAGES_PER_HUGE {
            let e = self.entry(table, i);
            // SAFETY: `e` points into the fresh table.
            unsafe { *e = (base + i * PAGE_SIZE) | flags };
        }
        // SAFETY: as above. Same translations as before; the caller then clears some of them,
        // with the same TLB reasoning as `unmap`.
        unsafe { *pde = table | TABLE_FLAGS };
        Some(table)
    }

    /// Make `pages` pages from `gva` non-present. Table pages stay allocated (they are reused
    /// if the range is mapped again); a 2 MiB leaf the range covers only in part is split
    /// first. Whoever unmaps must also make sure no stale translation can reach host memory:
    /// `Vm::unmap` deletes the memslots behind the range, which makes KVM drop its translations,
    /// and never reuses those guest-physical addresses. Returns false if a split found the pool
    /// exhausted (the range is then still mapped).
    pub fn unmap(&mut self, gva: u64, pages: u64) -> bool {
        let mut i = 0;
        while i < pages {
            let va = gva + i * PAGE_SIZE;
            let mut index = (va >> 12) & 511;
            let Some(pde) = self.pde(va, false) else {
                // No page directory here: skip to the next 2 MiB (more would be a bigger skip,
                // but this is only ever a few iterations per 1 GiB).
                i += 512 - index;
                continue;
            };
            // SAFETY: `pde` points into a page-directory page of slot 0.
            let v = unsafe { *pde };
            if v & PTE_P == 0 {
                i += 512 - index;
                continue;
            }
            let leaf = if v & PTE_PS != 0 {
                if index == 0 && pages - i >= PAGES_PER_HUGE {
                    // SAFETY: as above.
                    unsafe { *pde = 0 };
                    i += PAGES_PER_HUGE;
                    continue;
                }
                match self.split(pde) {
                    Some(t) => t,
                    None => return false,
                }
            } else {
                v & ADDR_MASK
            };
            while index < 512 && i < pages {
                let e = self.entry(leaf, index);
                // SAFETY: `e` points into a leaf table of slot 0.
                unsafe { *e = 0 };
                index += 1;
                i += 1;
            }
        }
        true
    }

    /// Map `pages` pages from `gva` to `gpa` (`size`: which leaves it may use). Only ever turns
    /// non-present entries present, which needs no TLB flush. Returns false when the pool is
    /// exhausted, or if part of the range is already mapped by a 2 MiB leaf (which would be a
    /// second mapping of the same addresses).
    pub fn map(&mut self, gva: u64, gpa: u64, pages: u64, perm: Perm, size: PageSize) -> bool {
        let flags = perm.leaf_flags();
        let mut i = 0;
        while i < pages {
            let (va, pa) = (gva + i * PAGE_SIZE, gpa + i * PAGE_SIZE);
            let Some(pde) = self.pde(va, true) else { return false };
            // SAFETY: `pde` points into a page-directory page of slot 0.
            let v = unsafe { *pde };
            if v & PTE_P == 0 && size == PageSize::Huge && va % HUGE_PAGE == 0 && pa % HUGE_PAGE == 0 && pages - i >= PAGES_PER_HUGE {
                // SAFETY: as above.
                unsafe { *pde = (pa & ADDR_MASK) | flags | PTE_PS };
                i += PAGES_PER_HUGE;
                continue;
            }
            let leaf = if v & PTE_PS != 0 {
                return false;
            } else if v & PTE_P != 0 {
                v & ADDR_MASK
            } else {
                let Some(t) = self.alloc_table() else { return false };
                // SAFETY: as above.
                unsafe { *pde = t | TABLE_FLAGS };
                t
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Page tables over a zeroed stand-in for slot 0.
    fn tables() -> (Vec<u64>, PageTables) {
        let mut system = vec![0u64; (SYSTEM_SIZE / 8) as usize];
        // SAFETY: `system` is SYSTEM_SIZE zeroed bytes; the Vec outlives the tables in each test.
        let pt = unsafe { PageTables::new(system.as_mut_ptr() as *mut u8) };
        (system, pt)
    }

    /// Walk the tables as the processor would: the guest-physical address of `gva` and whether
    /// a 2 MiB leaf maps it, or `None` if it is not present.
    fn translate(pt: &mut PageTables, gva: u64) -> Option<(u64, bool)> {
        let pde = pt.pde(gva, false)?;
        // SAFETY: `pde` points into the stand-in slot 0.
        let v = unsafe { *pde };
        if v & PTE_P == 0 {
            return None;
        }
        if v & PTE_PS != 0 {
            return Some(((v & ADDR_MASK & !(HUGE_PAGE - 1)) + (gva & (HUGE_PAGE - 1)), true));
        }
        // SAFETY: as above.
        let e = unsafe { *pt.entry(v & ADDR_MASK, (gva >> 12) & 511) };
        (e & PTE_P != 0).then_some(((e & ADDR_MASK) + (gva & (PAGE_SIZE - 1)), false))
    }

    const GVA: u64 = 0x7f00_0000_0000;
    const GPA: u64 = 1 << 33;

    #[test]
    fn huge_leaves_only_inside_and_aligned() {
        let (_s, mut pt) = tables();
        // 2.5 MiB from an aligned start: one 2 MiB leaf, then 128 small pages, then nothing.
        let pages = (HUGE_PAGE + HUGE_PAGE / 4) / PAGE_SIZE;
        assert!(pt.map(GVA, GPA, pages, Perm::ReadWrite, PageSize::Huge));
        for p in 0..pages + 8 {
            let va = GVA + p * PAGE_SIZE + 5;
            let want = (p < pages).then_some((GPA + p * PAGE_SIZE + 5, p < PAGES_PER_HUGE));
            assert_eq!(translate(&mut pt, va), want, "page {p}");
        }
        // Small pages only from a start that is not aligned in both spaces.
        let (_s, mut pt) = tables();
        assert!(pt.map(GVA, GPA + PAGE_SIZE, 2 * PAGES_PER_HUGE, Perm::ReadWrite, PageSize::Huge));
        assert_eq!(translate(&mut pt, GVA), Some((GPA + PAGE_SIZE, false)));
        assert_eq!(translate(&mut pt, GVA + HUGE_PAGE), Some((GPA + PAGE_SIZE + HUGE_PAGE, false)));
        // And never with PageSize::Small.
        let (_s, mut pt) = tables();
        assert!(pt.map(GVA, GPA, PAGES_PER_HUGE, Perm::ReadWrite, PageSize::Small));
        assert_eq!(translate(&mut pt, GVA), Some((GPA, false)));
    }

    #[test]
    fn growing_keeps_small_pages_where_some_were_mapped() {
        let (_s, mut pt) = tables();
        // 64 KiB, then grown to 4 MiB: the first 2 MiB stays small, the second is one leaf.
        assert!(pt.map(GVA, GPA, 16, Perm::ReadWrite, PageSize::Huge));
        assert!(pt.map(GVA + 16 * PAGE_SIZE, GPA + 16 * PAGE_SIZE, 2 * PAGES_PER_HUGE - 16, Perm::ReadWrite, PageSize::Huge));
        assert_eq!(translate(&mut pt, GVA + HUGE_PAGE - 1), Some((GPA + HUGE_PAGE - 1, false)));
        assert_eq!(translate(&mut pt, GVA + HUGE_PAGE), Some((GPA + HUGE_PAGE, true)));
        // Mapping over a 2 MiB leaf is refused.
        assert!(!pt.map(GVA + HUGE_PAGE + PAGE_SIZE, GPA, 1, Perm::ReadWrite, PageSize::Small));
    }

    #[test]
    fn unmapping_part_of_a_huge_leaf_splits_it() {
        let (_s, mut pt) = tables();
        assert!(pt.map(GVA, GPA, 2 * PAGES_PER_HUGE, Perm::ReadWrite, PageSize::Huge));
        // Keep the first 1 MiB + 4 KiB: the first leaf is split, the second removed whole.
        let keep = PAGES_PER_HUGE / 2 + 1;
        assert!(pt.unmap(GVA + keep * PAGE_SIZE, 2 * PAGES_PER_HUGE - keep));
        for p in 0..2 * PAGES_PER_HUGE {
            let want = (p < keep).then_some((GPA + p * PAGE_SIZE, false));
            assert_eq!(translate(&mut pt, GVA + p * PAGE_SIZE), want, "page {p}");
        }
        // The split pages keep the leaf's permissions (user, writable, no-execute).
        let pde = pt.pde(GVA, false).unwrap();
        // SAFETY: `pde` points into the stand-in slot 0.
        let e = unsafe { *pt.entry(*pde & ADDR_MASK, 0) };
        assert_eq!(e & !ADDR_MASK, Perm::ReadWrite.leaf_flags());
        // Unmapping everything removes the rest.
        assert!(pt.unmap(GVA, 2 * PAGES_PER_HUGE));
        assert_eq!(translate(&mut pt, GVA), None);
    }
}
