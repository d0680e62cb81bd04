//! Small wrappers over the host OS used throughout the engine.

/// A fresh private anonymous mapping of `len` bytes with protection `prot` (`PROT_NONE` for a
/// reservation). `MAP_NORESERVE`: address space is not charged against overcommit until touched.
pub fn map_anonymous(len: usize, prot: libc::c_int) -> std::io::Result<*mut u8> {
    // SAFETY: a new mapping at an address of the kernel's choosing; no existing mapping changes.
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0)
    };
    if p == libc::MAP_FAILED { Err(std::io::Error::last_os_error()) } else { Ok(p as *mut u8) }
}
