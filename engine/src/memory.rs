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
        let mut mem = LinearMemory { base, size: 0, max_pages, huge };
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
        if delta > 0 {
            // SAFETY: [base+size, base+new*PAGE) lies inside our own reservation.
            let r = unsafe {
                libc::mprotect(
                    self.base.add(self.size as usize) as *mut _,
                    (delta * WASM_PAGE) as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            if r != 0 {
                return None;
            }
        }
        self.size = new * WASM_PAGE;
        Some(old)
    }

    /// Shrink to `pages` (a snapshot's size, put back): the pages above become inaccessible
    /// again and are given back to the kernel (they read as zeros when grown into again).
    pub fn shrink_to(&mut self, pages: u64) -> std::io::Result<()> {
        let new = pages * WASM_PAGE;
        if new >= self.size {
            return Ok(());
        }
        // SAFETY: [base+new, base+size) lies inside our own reservation; MAP_FIXED replaces it
        // with fresh inaccessible anonymous memory (nothing else refers to those pages: the VM
        // has unmapped them first, see `Store::restore`).
        let p = unsafe {
            libc::mmap(
                self.base.add(new as usize) as *mut _,
                (self.size - new) as usize,
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
        Ok(())
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
