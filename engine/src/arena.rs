//! The store arena: where a store keeps everything compiled code reads or writes besides linear
//! memory (vmctx blocks, table elements, host-created globals and memory/table definitions).
//! One reservation per store, committed as it fills and never moved, so addresses are stable.
//! It holds nothing but guest-visible data: in the VM it is mapped into the guest 1:1, so no
//! host data may ever share its pages.
//!
//! Blocks are zero when handed out, even in the VM, where the guest can write whatever it can
//! see: the store maps only the pages that blocks have been handed out from (`exposed`), and the
//! part of a new block that lies on an already exposed page is zeroed here. So a block never
//! needs filling with zeros, and a table of null elements costs no host memory until used.

use crate::error::Error;

/// Address space reserved per store.
pub const ARENA_RESERVE: u64 = 1 << 30;
const FIRST_COMMIT: u64 = 64 * 1024;

pub struct Arena {
    base: *mut u8,
    committed: u64,
    next: u64,
    /// The most that was ever exposed: after a `rewind`, pages up to here may still be mapped
    /// into the guest (and written by it), so blocks handed out below it are zeroed.
    high_water: u64,
}

// SAFETY: the arena is owned by one store and used by one thread at a time.
unsafe impl Send for Arena {}

impl Arena {
    pub fn new() -> Result<Arena, Error> {
        let base = crate::os::map_anonymous(ARENA_RESERVE as usize, libc::PROT_NONE)
            .map_err(|e| Error::Resource(format!("cannot reserve the store arena: {e}")))?;
        Ok(Arena { base, committed: 0, next: 0, high_water: 0 })
    }

    pub fn base(&self) -> u64 {
        self.base as u64
    }

    /// Bytes currently readable and writable from `base`.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Bytes from `base` that blocks have been handed out from, in whole pages: all the guest
    /// may ever see of the arena.
    pub fn exposed(&self) -> u64 {
        self.next.next_multiple_of(4096)
    }

    /// `size` zeroed bytes aligned to `align` (a power of two up to 4096).
    ///
    /// Blocks are never freed: a caller that abandons one may give its whole pages back to the
    /// kernel with `release`.
    pub fn alloc(&mut self, size: u64, align: u64) -> Result<*mut u8, Error> {
        let start = self.next.next_multiple_of(align);
        let end = start.checked_add(size.max(1)).filter(|e| *e <= ARENA_RESERVE).ok_or_else(|| {
            Error::Limit(format!("the store arena ({} MiB) is full", ARENA_RESERVE >> 20))
        })?;
        if end > self.committed {
            let target = end.max(self.committed * 2).max(FIRST_COMMIT).next_multiple_of(4096).min(ARENA_RESERVE);
            // SAFETY: [committed, target) is inside our reservation.
            let r = unsafe {
                libc::mprotect(
                    self.base.add(self.committed as usize) as *mut _,
                    (target - self.committed) as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            if r != 0 {
                return Err(Error::Resource(format!("cannot grow the store arena: {}", std::io::Error::last_os_error())));
            }
            self.committed = target;
        }
        // The part of the block on a page that was exposed before may have been written by the
        // guest: zero it (at most one page). The rest has never been exposed, so it is still
        // zero from when it was committed.
        let seen = self.exposed().max(self.high_water).min(end);
        if seen > start {
            // SAFETY: [start, seen) is committed, inside the reservation, and handed out to nobody.
            unsafe { std::ptr::write_bytes(self.base.add(start as usize), 0, (seen - start) as usize) };
        }
        self.next = end;
        self.high_water = self.high_water.max(self.exposed());
        // SAFETY: start < committed, inside the reservation; the block is zero (see above) and
        // the arena never hands out the same bytes twice.
        Ok(unsafe { self.base.add(start as usize) })
    }
}

impl Arena {
    /// Give the whole pages inside the abandoned block `[ptr, ptr + size)` back to the kernel
    /// (they read as zeros afterwards). The block is never handed out again.
    pub fn release(&mut self, ptr: *mut u8, size: u64) {
        let start = (ptr as u64).next_multiple_of(4096);
        let end = (ptr as u64 + size) / 4096 * 4096;
        if end > start && start >= self.base() && end <= self.base() + self.committed {
            // SAFETY: whole pages of our committed range inside a block nobody uses any more;
            // MADV_DONTNEED on private anonymous memory only makes them read as zeros.
            unsafe { libc::madvise(start as *mut _, (end - start) as usize, libc::MADV_DONTNEED) };
        }
    }
}

impl Arena {
    /// The allocation mark: bytes from `base` handed out so far.
    pub(crate) fn mark(&self) -> u64 {
        self.next
    }

    /// Put the arena back as it was when `mark` and `bytes` (`[0, bytes.len())`, a whole
    /// number of pages covering `mark`) were taken: every block handed out since is forgotten
    /// (the caller has taken every reference to them out of use), the bytes are written back,
    /// and everything above them that was ever exposed to the guest is zeroed. Those pages stay
    /// committed (and, in the VM, mapped): blocks handed out from them are zeroed again.
    /// Page by page, writing only pages that differ, so an unchanged arena costs reads only.
    pub(crate) fn restore(&mut self, mark: u64, bytes: &[u8]) {
        self.high_water = self.high_water.max(self.exposed());
        let end = self.high_water.min(self.committed) as usize;
        // SAFETY: [base, base + end) is committed read-write memory of this arena; the guest
        // does not run while the host holds `&mut self`.
        let all = unsafe { std::slice::from_raw_parts_mut(self.base, end) };
        let split = bytes.len().min(end);
        let (low, high) = all.split_at_mut(split);
        for (d, s) in low.chunks_mut(4096).zip(bytes.chunks(4096)) {
            if d != s {
                d.copy_from_slice(s);
            }
        }
        for d in high.chunks_mut(4096) {
            if d.iter().any(|b| *b != 0) {
                d.fill(0);
            }
        }
        self.next = mark;
    }

    /// The bytes `[0, len)` of the arena (`len` at most what is committed).
    pub(crate) fn bytes(&self, len: u64) -> &[u8] {
        let len = len.min(self.committed);
        // SAFETY: [base, base + len) is committed read-write memory of this arena.
        unsafe { std::slice::from_raw_parts(self.base, len as usize) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: unmapping the reservation made in `new`.
        unsafe { libc::munmap(self.base as *mut _, ARENA_RESERVE as usize) };
    }
}
