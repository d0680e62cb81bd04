//! Linear memory in process mode: an 8 GiB reservation (4 GiB addressable + 4 GiB guard) with
//! the accessible prefix made read-write as the memory grows. The base never moves, and is
//! 2 MiB-aligned: a memory for the VM (`huge`) asks the kernel for transparent huge pages
//! (`MADV_HUGEPAGE`), so that each 2 MiB the guest maps with one 2 MiB leaf (`kvm::paging`) is
//! one host page and its first touch one fault, not 512.
//!
//! Every reservation is recorded in a registry, which the process-mode fault handler consults:
//! a memory fault of compiled code is a wasm trap only when its address lies in a linear
//! memory's reservation (`is_reserved`); anywhere else it is a host crash.

use crate::error::Error;
use std::collections::BTreeMap;
use std::sync::RwLock;

/// Reservation start → end, of every live linear memory.
static RESERVATIONS: RwLock<BTreeMap<usize, usize>> = RwLock::new(BTreeMap::new());

/// Whether `addr` lies in the reservation (accessible part or guard) of a live linear memory.
/// Called from the fault handler: it never blocks on a lock but waits out a writer on another
/// thread (registration is short); `false` if the registry cannot be read.
pub(crate) fn is_reserved(addr: usize) -> bool {
    for _ in 0..100_000_000u32 {
        let reg = match RESERVATIONS.try_read() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::WouldBlock) => {
                std::hint::spin_loop();
                continue;
            }
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        };
        return matches!(reg.range(..=addr).next_back(), Some((_, end)) if addr < *end);
    }
    false
}

pub const WASM_PAGE: u64 = 65536;
/// Alignment of a reservation: one 2 MiB huge page.
const HUGE_ALIGN: usize = 2 << 20;
/// Address space reserved per 32-bit memory: any `u32 index + u32 offset + 16` stays inside.
pub const RESERVATION: u64 = (8 << 30) + WASM_PAGE;

/// The largest memory image copied rather than mapped into a memory the VM maps
/// (`LinearMemory::prefers_copy`).
pub const IMAGE_COPY_MAX: u64 = 4 << 20;

/// The largest 32-bit memory, in pages.
pub const MAX_PAGES: u64 = 65536;

pub struct LinearMemory {
    base: *mut u8,
    /// Current size in bytes.
    size: u64,
    /// Maximum in pages (the declared maximum, capped by the store's limit).
    max_pages: u64,
    /// Backed by transparent huge pages where the kernel has them.
    huge: bool,
    /// Bytes the host has made read-write: `size`, or for a memory of the VM (`huge`) of at
    /// least 2 MiB, `size` rounded up to 2 MiB. What the guest reaches is bounded by its page
    /// tables, not by these protections (the edge is 4 KiB leaves ending at `size`,
    /// `kvm::paging`), and the host reaches memory only through accessors bounded by `size`; so
    /// the 2 MiB that holds the edge can be one huge page too, whose pages KVM then finds
    /// present as the guest touches them one after the other, instead of a 4 KiB host page per
    /// fault while the memory grows 64 KiB at a time. A memory under 2 MiB keeps 4 KiB pages:
    /// a huge page would be up to 32 times its size (`populate_small` serves it instead).
    committed: u64,
}

// SAFETY: the mapping is owned by this object and only reached through `&mut self` or raw
// pointers handed to compiled code running on the thread that owns the store.
unsafe impl Send for LinearMemory {}

impl LinearMemory {
    /// A memory of `min_pages` that may grow to `max_pages`; `huge`: ask for transparent huge
    /// pages (for a memory the VM maps).
    pub fn new(min_pages: u64, max_pages: u64, huge: bool) -> Result<LinearMemory, Error> {
        if min_pages > max_pages {
            return Err(Error::Limit(format!(
                "memory minimum of {min_pages} pages exceeds the limit of {max_pages} pages"
            )));
        }
        let base = crate::os::map_anonymous_aligned(RESERVATION as usize, HUGE_ALIGN, libc::PROT_NONE)
            .map_err(|e| Error::Resource(format!("cannot reserve linear memory: {e}")))?;
        RESERVATIONS.write().unwrap_or_else(|p| p.into_inner()).insert(base as usize, base as usize + RESERVATION as usize);
        let mut mem = LinearMemory { base, size: 0, max_pages, huge, committed: 0 };
        mem.advise_huge(0);
        mem.grow(min_pages).ok_or_else(|| Error::Resource("cannot commit initial linear memory".into()))?;
        Ok(mem)
    }

    /// Ask for transparent huge pages from `from` to the end of the reservation (a hint: a
    /// kernel without them, or with them off, just keeps 4 KiB pages).
    fn advise_huge(&self, from: u64) {
        if self.huge {
            // SAFETY: the range lies inside our own reservation; advice changes no contents.
            unsafe { libc::madvise(self.base.add(from as usize) as *mut _, (RESERVATION - from) as usize, libc::MADV_HUGEPAGE) };
        }
    }

    pub fn base(&self) -> *mut u8 {
        self.base
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn max_pages(&self) -> u64 {
        self.max_pages
    }

    /// Change the maximum (never below the current size, never above 4 GiB).
    pub fn set_max_pages(&mut self, max: u64) {
        self.max_pages = max.max(self.pages()).min(MAX_PAGES);
    }

    pub fn pages(&self) -> u64 {
        self.size / WASM_PAGE
    }

    /// Grow by `delta` pages; returns the old size in pages, or `None` if over the maximum.
    pub fn grow(&mut self, delta: u64) -> Option<u64> {
        let old = self.pages();
        let new = old.checked_add(delta)?;
        if new > self.max_pages || new > MAX_PAGES {
            return None;
        }
        if !self.commit(self.committed_for(new * WASM_PAGE)) {
            return None;
        }
        self.size = new * WASM_PAGE;
        Some(old)
    }

    /// What a memory of `size` bytes keeps read-write in the host (`committed`).
    fn committed_for(&self, size: u64) -> u64 {
        if self.huge && size >= HUGE_ALIGN as u64 { size.next_multiple_of(HUGE_ALIGN as u64) } else { size }
    }

    /// Make the reservation read-write up to `upto` (never less than now); false on failure.
    fn commit(&mut self, upto: u64) -> bool {
        if upto <= self.committed {
            return true;
        }
        // SAFETY: [base+committed, base+upto) lies inside our own reservation (`upto` is at most
        // 4 GiB, 2 MiB-aligned at most, below the reservation's end).
        let r = unsafe {
            libc::mprotect(self.base.add(self.committed as usize) as *mut _, (upto - self.committed) as usize, libc::PROT_READ | libc::PROT_WRITE)
        };
        if r != 0 {
            return false;
        }
        self.committed = upto;
        true
    }

    /// Shrink to `pages` (a snapshot's size, put back): the pages above are given back to the
    /// kernel and replaced by fresh zero pages, inaccessible to the host past `committed` (the
    /// guest, whose page tables the caller has cut back first, reaches none of them).
    pub fn shrink_to(&mut self, pages: u64) -> std::io::Result<()> {
        let new = pages * WASM_PAGE;
        if new >= self.size {
            return Ok(());
        }
        // SAFETY: [base+new, base+committed) lies inside our own reservation; MAP_FIXED
        // replaces it with fresh inaccessible anonymous memory, which also makes KVM drop its
        // translations of the old pages (nothing else refers to them: the VM has unmapped them
        // first, see `Store::restore`).
        let p = unsafe {
            libc::mmap(
                self.base.add(new as usize) as *mut _,
                (self.committed - new) as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        self.advise_huge(new);
        self.size = new;
        self.committed = new;
        if !self.commit(self.committed_for(new)) {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Fill in the host pages of a memory of the VM under 2 MiB (all 4 KiB pages, see
    /// `committed`) if it is at most `max` bytes (`Flavour::prepopulate_max`), so that KVM finds
    /// them present and maps eight per guest fault. A hint: a kernel without
    /// `MADV_POPULATE_WRITE` leaves them to be faulted in on first touch.
    pub fn populate_small(&self, max: u64) {
        if !self.huge || self.size == 0 || self.size > max || self.committed != self.size {
            return;
        }
        // SAFETY: [base, base+size) is accessible memory of our own reservation, all of it
        // committed with 4 KiB pages; the advice only faults in (zero) pages, it changes no
        // contents.
        unsafe { libc::madvise(self.base as *mut _, self.size as usize, libc::MADV_POPULATE_WRITE) };
    }

    /// Whether an image of `len` bytes is better copied into this memory than mapped over it
    /// (`map_image`). For a memory the VM maps, up to `IMAGE_COPY_MAX`: a copy-on-write
    /// mapping splits the huge page it lies in into 4 KiB file pages, and under a hypervisor
    /// each of them costs the guest a fault of its own on first read and another on first
    /// write (tens of µs each on a nested host); the heap that follows the image in the same
    /// 2 MiB would fault page by page too. Written by the host, the image and its neighbours
    /// lie in one huge page that the guest reaches with one fault. Past the limit the pages
    /// instances share are worth more than the faults.
    pub fn prefers_copy(&self, len: u64) -> bool {
        self.huge && len <= IMAGE_COPY_MAX
    }

    /// Replace `[image.plan.offset, + image.plan.len)` (zeros, never written) with a private
    /// copy-on-write mapping of `image`: the file's pages are shared until written.
    pub fn map_image(&mut self, image: &crate::code::MemoryImage) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let plan = image.plan;
        if plan.offset.checked_add(plan.len).is_none_or(|end| end > self.size) {
            return Err(std::io::Error::other("memory image outside the memory"));
        }
        let (file, file_offset) = image.source();
        // SAFETY: the target range lies inside the accessible part of our own reservation
        // (checked above); MAP_FIXED replaces those pages, which hold only zeros, with a
        // private read-write mapping of the same size. Nothing else refers to the old pages.
        let p = unsafe {
            libc::mmap(
                self.base.add(plan.offset as usize) as *mut _,
                plan.len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                file.as_raw_fd(),
                file_offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    }

    /// The accessible bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: [base, base+size) is mapped read-write and owned by self.
        unsafe { std::slice::from_raw_parts(self.base, self.size as usize) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` guarantees exclusive access from the host side.
        unsafe { std::slice::from_raw_parts_mut(self.base, self.size as usize) }
    }
}

impl Drop for LinearMemory {
    fn drop(&mut self) {
        RESERVATIONS.write().unwrap_or_else(|p| p.into_inner()).remove(&(self.base as usize));
        // SAFETY: unmapping exactly the reservation made in `new`.
        unsafe { libc::munmap(self.base as *mut _, RESERVATION as usize) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident(mem: &LinearMemory, from: u64, len: u64) -> usize {
        let mut pages = vec![0u8; (len / 4096) as usize];
        // SAFETY: the range lies inside the memory's accessible part; one byte per page.
        let r = unsafe { libc::mincore(mem.base().add(from as usize) as *mut _, len as usize, pages.as_mut_ptr()) };
        assert_eq!(r, 0);
        pages.iter().filter(|p| **p & 1 != 0).count()
    }

    #[test]
    fn populate_small_fills_in_a_small_memory_of_the_vm_up_to_the_limit() {
        let mem = LinearMemory::new(8, 64, true).unwrap();
        mem.populate_small(7 * 65536);
        assert_eq!(resident(&mem, 0, mem.size()), 0, "over the limit: untouched");
        mem.populate_small(1 << 20);
        assert_eq!(resident(&mem, 0, mem.size()), 8 * 16, "filled in");
        assert!(mem.as_slice().iter().all(|b| *b == 0), "with zeros");
        assert_eq!(resident(&mem, mem.size(), 64 * 1024), 0, "nothing past the size");
        // 2 MiB and more: huge pages serve it.
        let mem = LinearMemory::new(33, 64, true).unwrap();
        mem.populate_small(u64::MAX);
        assert_eq!(resident(&mem, 0, mem.size()), 0);
        // Process mode: never.
        let mem = LinearMemory::new(1, 1, false).unwrap();
        mem.populate_small(u64::MAX);
        assert_eq!(resident(&mem, 0, mem.size()), 0);
    }

    #[test]
    fn a_memory_of_the_vm_commits_whole_2_mib_and_a_shrink_leaves_zeros_above() {
        let mut mem = LinearMemory::new(1, 100, true).unwrap();
        assert_eq!((mem.size(), mem.committed), (65536, 65536), "under 2 MiB: exactly the size");
        assert_eq!(mem.grow(32), Some(1));
        assert_eq!((mem.size(), mem.committed), (33 * 65536, 4 << 20), "from 2 MiB: whole 2 MiB");
        // The rest of the 2 MiB is the host's (never the guest's: its page tables end at the
        // size); write it as a guest could once the memory has grown over it.
        assert_eq!(mem.grow(8), Some(33));
        assert_eq!(mem.committed, 4 << 20);
        mem.as_mut_slice().fill(0xa5);
        mem.shrink_to(33).unwrap();
        assert_eq!((mem.size(), mem.committed), (33 * 65536, 4 << 20));
        assert_eq!(mem.grow(8), Some(33));
        assert!(mem.as_slice()[..33 * 65536].iter().all(|b| *b == 0xa5), "below the snapshot size: kept");
        assert!(mem.as_slice()[33 * 65536..].iter().all(|b| *b == 0), "above it: zeros again");
        mem.shrink_to(1).unwrap();
        assert_eq!((mem.size(), mem.committed), (65536, 65536));
        // Process mode commits exactly the size: the rest of the reservation is its guard.
        let mem = LinearMemory::new(1, 100, false).unwrap();
        assert_eq!(mem.committed, 65536);
    }

    #[test]
    fn only_a_memory_of_the_vm_prefers_a_copy_of_a_small_image() {
        let vm = LinearMemory::new(1, 1, true).unwrap();
        let process = LinearMemory::new(1, 1, false).unwrap();
        assert!(vm.prefers_copy(4096) && vm.prefers_copy(IMAGE_COPY_MAX));
        assert!(!vm.prefers_copy(IMAGE_COPY_MAX + 4096), "large images stay shared");
        assert!(!process.prefers_copy(4096), "process mode maps every image copy-on-write");
    }
}
