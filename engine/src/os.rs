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

/// `map_anonymous` at an address that is a multiple of `align` (a power of two, at least the
/// page size): a larger reservation, trimmed at both ends.
pub fn map_anonymous_aligned(len: usize, align: usize, prot: libc::c_int) -> std::io::Result<*mut u8> {
    debug_assert!(align.is_power_of_two() && align >= 4096 && len.is_multiple_of(4096));
    let span = len.checked_add(align).ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOMEM))?;
    let p = map_anonymous(span, prot)? as usize;
    let start = p.next_multiple_of(align);
    // SAFETY: both ranges lie inside the reservation just made, which nothing else refers to.
    unsafe {
        if start > p {
            libc::munmap(p as *mut _, start - p);
        }
        let end = start + len;
        if p + span > end {
            libc::munmap(end as *mut _, p + span - end);
        }
    }
    Ok(start as *mut u8)
}
