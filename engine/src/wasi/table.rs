//! The per-store handle table: WASI fds → host objects. Host fds live only here; the guest
//! names table slots. Each slot carries the WASI rights and flags it was opened with.

use super::abi::{errno, filetype, rights};
use super::mem::Errno;
use super::Stdio;
use std::cell::Cell;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

pub enum Object {
    Stdin(Stdio),
    Stdout(Stdio),
    Stderr(Stdio),
    File(OwnedFd),
    Dir { fd: OwnedFd, preopen: Option<String> },
    Socket(OwnedFd),
    Listener(OwnedFd),
}

pub struct Handle {
    pub object: Object,
    pub rights_base: u64,
    pub rights_inheriting: u64,
    pub fdflags: u16,
    /// Bytes of `Stdio::Bytes` stdin already read.
    pub stdin_pos: usize,
    /// Whether I/O on the host fd can wait for another party (found on first use under a
    /// deadline: one fstat per handle, none per call).
    blocking: Cell<Option<bool>>,
}

impl Handle {
    pub fn new(object: Object, rights_base: u64, rights_inheriting: u64) -> Handle {
        Handle { object, rights_base, rights_inheriting, fdflags: 0, stdin_pos: 0, blocking: Cell::new(None) }
    }

    /// Whether reads and writes of this handle can wait for another party (a pipe, FIFO,
    /// socket, tty or other character device), so that they must be bounded by the deadline.
    pub fn may_block(&self) -> bool {
        if let Some(b) = self.blocking.get() {
            return b;
        }
        let b = match &self.object {
            Object::Socket(_) | Object::Listener(_) => true,
            Object::Dir { .. } => false,
            _ => self.host_fd().is_some_and(super::deadline::may_block),
        };
        self.blocking.set(Some(b));
        b
    }

    /// Whether I/O on this handle must be bounded by `deadline`: there is one, the handle may
    /// block, and the guest did not ask for non-blocking I/O (which never waits).
    pub fn may_block_under(&self, deadline: &super::deadline::Deadline) -> bool {
        deadline.is_set() && self.fdflags & super::abi::fdflags::NONBLOCK == 0 && self.may_block()
    }

    /// Fail with ENOTCAPABLE unless the handle holds all of `needed`.
    pub fn require(&self, needed: u64) -> Result<(), Errno> {
        if self.rights_base & needed == needed { Ok(()) } else { Err(errno::NOTCAPABLE) }
    }

    /// The host fd behind a file, directory or socket.
    pub fn host_fd(&self) -> Option<RawFd> {
        match &self.object {
            Object::File(fd) | Object::Socket(fd) | Object::Listener(fd) => Some(fd.as_raw_fd()),
            Object::Dir { fd, .. } => Some(fd.as_raw_fd()),
            Object::Stdin(Stdio::Inherit) => Some(0),
            Object::Stdout(Stdio::Inherit) => Some(1),
            Object::Stderr(Stdio::Inherit) => Some(2),
            _ => None,
        }
    }

    pub fn dir_fd(&self) -> Result<RawFd, Errno> {
        match &self.object {
            Object::Dir { fd, .. } => Ok(fd.as_raw_fd()),
            _ => Err(errno::NOTDIR),
        }
    }

    pub fn filetype(&self) -> u8 {
        match &self.object {
            Object::Dir { .. } => filetype::DIRECTORY,
            Object::File(fd) => super::fs::filetype_of_fd(fd.as_raw_fd()),
            Object::Socket(_) | Object::Listener(_) => filetype::SOCKET_STREAM,
            Object::Stdin(s) | Object::Stdout(s) | Object::Stderr(s) => match s {
                Stdio::Inherit => match self.host_fd() {
                    Some(fd) => super::fs::filetype_of_fd(fd),
                    None => filetype::UNKNOWN,
                },
                _ => filetype::UNKNOWN,
            },
        }
    }
}

/// Default rights for a standard stream.
pub fn stdio_rights() -> u64 {
    rights::STDIO
}

pub struct Table {
    slots: Vec<Option<Handle>>,
    max: usize,
}

impl Table {
    pub fn new(max: usize) -> Table {
        Table { slots: Vec::new(), max }
    }

    pub fn get(&self, fd: u32) -> Result<&Handle, Errno> {
        self.slots.get(fd as usize).and_then(Option::as_ref).ok_or(errno::BADF)
    }

    pub fn get_mut(&mut self, fd: u32) -> Result<&mut Handle, Errno> {
        self.slots.get_mut(fd as usize).and_then(Option::as_mut).ok_or(errno::BADF)
    }

    /// Insert at the lowest free slot; EMFILE past the table's limit.
    pub fn insert(&mut self, h: Handle) -> Result<u32, Errno> {
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            self.slots[i] = Some(h);
            return Ok(i as u32);
        }
        if self.slots.len() >= self.max {
            return Err(errno::MFILE);
        }
        self.slots.push(Some(h));
        Ok(self.slots.len() as u32 - 1)
    }

    pub fn remove(&mut self, fd: u32) -> Result<Handle, Errno> {
        self.slots.get_mut(fd as usize).and_then(Option::take).ok_or(errno::BADF)
    }

    /// Move `from` onto `to` (which must be open), closing what `to` held.
    pub fn renumber(&mut self, from: u32, to: u32) -> Result<(), Errno> {
        self.get(from)?;
        self.get(to)?;
        if from != to {
            let h = self.remove(from)?;
            self.slots[to as usize] = Some(h);
        }
        Ok(())
    }
}
