//! The store arena: where a store keeps everything compiled code reads or writes besides linear
//! memory (vmctx blocks, table elements, host-created globals and memory/table definitions).
//! One reservation per store, committed as it fills and never moved, so addresses are stable.
//! It holds nothing but guest-visible data: in the VM it is mapped into the guest 1:1, so no
//! host data may ever share its pages.

use crate::error::Error;

/// Address space reserved per store.
pub const ARENA_RESERVE: u64 = 1 << 30;
const FIRST_COMMIT: u64 = 64 * 1024;

pub struct Arena {
    base: *mut u8,
    committed: u64,
    next: u64,
}

// SAFETY: the arena is owned by one store and used by one thread at a time.
unsafe impl Send for Arena {}

impl Arena {
    pub fn new() -> Result<Arena, Error> {
        let base = crate::os::map_anonymous(ARENA_RESERVE as usize, libc::PROT_NONE)
            .map_err(|e| Error::Resource(format!("cannot reserve the store arena: {e}")))?;
        Ok(Arena { base, committed: 0, next: 0 })
    }

    pub fn base(&self) -> u64 {
        self.base as u64
    }

    /// Bytes currently readable and writable from `base`.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// `size` zeroed bytes aligned to `align` (a power of two up to 4096).
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
        self.next = end;
        // SAFETY: start < committed, inside the reservation; fresh pages are zero and the
        // arena never hands out the same bytes twice.
        Ok(unsafe { self.base.add(start as usize) })
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: unmapping the reservation made in `new`.
        unsafe { libc::munmap(self.base as *mut _, ARENA_RESERVE as usize) };
    }
}
