//! Resolving guest paths beneath a directory handle. Every lookup goes through
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, which the kernel enforces on every
//! component, `..` and symlink: absolute paths, `..` above the directory, symlinks leading
//! outside and `/proc` magic links all fail. Operations on a final component (mkdir, unlink,
//! rename, ...) first resolve its parent this way, then act on one name relative to it, so no
//! guest string reaches a path syscall any other way.

use super::abi::errno;
use super::mem::Errno;
use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

pub fn last_os_errno() -> Errno {
    errno::from_os(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
}

/// Map the errors of a beneath-resolution: leaving the directory is "not capable".
fn resolve_errno() -> Errno {
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EXDEV) => errno::NOTCAPABLE,
        Some(e) => errno::from_os(e),
        None => errno::IO,
    }
}

/// `openat2(dir, path, flags, mode)` confined beneath `dir`.
pub fn open_beneath(dir: RawFd, path: &str, flags: i32, mode: u32) -> Result<OwnedFd, Errno> {
    if path.is_empty() {
        return Err(errno::NOENT);
    }
    let cpath = CString::new(path).map_err(|_| errno::INVAL)?;
    // openat2 rejects a mode unless the call may create a file.
    // (O_TMPFILE includes the O_DIRECTORY bit, so it is tested as a whole.)
    let creates = flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE;
    let mode = if creates { mode } else { 0 };
    let how = OpenHow { flags: (flags | libc::O_CLOEXEC) as u64, mode: mode as u64, resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
    // With RESOLVE_BENEATH the kernel answers EAGAIN when a `..` component raced with a rename
    // or mount anywhere on the system (it cannot prove the walk stayed beneath); openat2(2) says
    // to retry. Bounded, so a host under constant rename load yields EAGAIN rather than a hang.
    let mut attempts = 0;
    let fd = loop {
        // SAFETY: openat2 with a valid NUL-terminated path and an open_how of the size passed.
        let fd = unsafe { libc::syscall(libc::SYS_openat2, dir, cpath.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>()) };
        if fd >= 0 {
            break fd;
        }
        attempts += 1;
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) || attempts == 128 {
            return Err(resolve_errno());
        }
    };
    // SAFETY: the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A path split into the directory that holds its last component, and that component.
pub struct Parent {
    pub dir: OwnedFd,
    /// The last component, with any trailing slashes kept (the kernel then requires a
    /// directory, as POSIX says).
    pub name: CString,
}

/// Resolve everything but the last component of `path` beneath `dir`.
pub fn parent_beneath(dir: RawFd, path: &str) -> Result<Parent, Errno> {
    if path.is_empty() {
        return Err(errno::NOENT);
    }
    if path.starts_with('/') {
        return Err(errno::NOTCAPABLE);
    }
    let trimmed = path.trim_end_matches('/');
    let (head, name) = match trimmed.rfind('/') {
        Some(i) => (&trimmed[..i], &path[i + 1..]),
        None => (".", path),
    };
    let head = if head.is_empty() { "." } else { head };
    let parent = open_beneath(dir, head, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    let bare = name.trim_end_matches('/');
    if bare == ".." {
        // Operating on the parent's parent: allowed only while it stays beneath `dir`.
        open_beneath(dir, trimmed, libc::O_PATH, 0)?;
    }
    Ok(Parent { dir: parent, name: CString::new(name).map_err(|_| errno::INVAL)? })
}
