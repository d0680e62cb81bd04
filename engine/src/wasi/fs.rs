//! `fd_*` and `path_*`: files, directories and streams through the handle table.

// WASI functions take the preview1 ABI's arguments one-to-one.
#![allow(clippy::too_many_arguments)]

use super::abi::{errno, fdflags, filetype, fstflags, oflags, rights, LOOKUP_SYMLINK_FOLLOW};
use super::mem::{Bytes, Errno, Mem, MAX_TRANSFER};
use super::path::{last_os_errno, open_guarded, parent_beneath};
use super::table::{Handle, Object};
use super::{Stdio, WasiCtx};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

type R = Result<(), Errno>;

fn check(r: libc::c_int) -> R {
    if r < 0 { Err(last_os_errno()) } else { Ok(()) }
}

fn check_len(r: isize) -> Result<usize, Errno> {
    if r < 0 { Err(last_os_errno()) } else { Ok(r as usize) }
}

pub fn filetype_of_mode(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => filetype::DIRECTORY,
        libc::S_IFREG => filetype::REGULAR_FILE,
        libc::S_IFLNK => filetype::SYMBOLIC_LINK,
        libc::S_IFCHR => filetype::CHARACTER_DEVICE,
        libc::S_IFBLK => filetype::BLOCK_DEVICE,
        libc::S_IFSOCK => filetype::SOCKET_STREAM,
        _ => filetype::UNKNOWN,
    }
}

fn fstat(fd: RawFd) -> Result<libc::stat, Errno> {
    // SAFETY: fstat fills a zeroed stat buffer for an fd we own.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        check(libc::fstat(fd, &mut st))?;
        Ok(st)
    }
}

pub fn filetype_of_fd(fd: RawFd) -> u8 {
    fstat(fd).map_or(filetype::UNKNOWN, |st| filetype_of_mode(st.st_mode))
}

fn ts(sec: i64, nsec: i64) -> u64 {
    (sec as u64).wrapping_mul(1_000_000_000).wrapping_add(nsec as u64)
}

/// The 64-byte `filestat` of a host stat.
fn filestat_bytes(st: &libc::stat) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0..8].copy_from_slice(&st.st_dev.to_le_bytes());
    b[8..16].copy_from_slice(&st.st_ino.to_le_bytes());
    b[16] = filetype_of_mode(st.st_mode);
    b[24..32].copy_from_slice(&st.st_nlink.to_le_bytes());
    b[32..40].copy_from_slice(&(st.st_size as u64).to_le_bytes());
    b[40..48].copy_from_slice(&ts(st.st_atime, st.st_atime_nsec).to_le_bytes());
    b[48..56].copy_from_slice(&ts(st.st_mtime, st.st_mtime_nsec).to_le_bytes());
    b[56..64].copy_from_slice(&ts(st.st_ctime, st.st_ctime_nsec).to_le_bytes());
    b
}

fn timespecs(atim: u64, mtim: u64, flags: u16) -> Result<[libc::timespec; 2], Errno> {
    if flags & !(fstflags::ATIM | fstflags::ATIM_NOW | fstflags::MTIM | fstflags::MTIM_NOW) != 0
        || (flags & fstflags::ATIM != 0 && flags & fstflags::ATIM_NOW != 0)
        || (flags & fstflags::MTIM != 0 && flags & fstflags::MTIM_NOW != 0)
    {
        return Err(errno::INVAL);
    }
    let one = |t: u64, set: u16, now: u16| {
        if flags & now != 0 {
            libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW }
        } else if flags & set != 0 {
            libc::timespec { tv_sec: (t / 1_000_000_000) as i64, tv_nsec: (t % 1_000_000_000) as i64 }
        } else {
            libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT }
        }
    };
    Ok([one(atim, fstflags::ATIM, fstflags::ATIM_NOW), one(mtim, fstflags::MTIM, fstflags::MTIM_NOW)])
}

/// Where a write of `len` bytes to `fd` would end, for the file-size limit: at `offset`, or at
/// the current position when `offset` is None; but with O_APPEND Linux writes at the end of the
/// file whatever the offset, pwrite included (pwrite(2), BUGS), so the end of the file counts.
/// None when `fd` is not a regular file: a pipe or a device has no size to limit (and no
/// position: lseek fails there).
fn write_end(fd: RawFd, offset: Option<u64>, len: usize) -> Result<Option<u64>, Errno> {
    let st = fstat(fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(None);
    }
    // SAFETY: F_GETFL on an fd we own.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl < 0 {
        return Err(last_os_errno());
    }
    let start = match offset {
        _ if fl & libc::O_APPEND != 0 => st.st_size as u64,
        Some(o) => o,
        None => {
            // SAFETY: lseek on an fd we own.
            let pos = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
            if pos < 0 {
                return Err(last_os_errno());
            }
            pos as u64
        }
    };
    Ok(Some(start.saturating_add(len as u64)))
}

fn io_fd(h: &Handle) -> Result<RawFd, Errno> {
    match &h.object {
        Object::Dir { .. } => Err(errno::ISDIR),
        Object::Listener(_) => Err(errno::NOTSUP),
        _ => h.host_fd().ok_or(errno::BADF),
    }
}

fn file_fd(h: &Handle) -> Result<RawFd, Errno> {
    match &h.object {
        Object::File(fd) => Ok(fd.as_raw_fd()),
        Object::Dir { .. } => Err(errno::ISDIR),
        _ => Err(errno::SPIPE),
    }
}

impl WasiCtx {
    pub fn fd_write(&mut self, mem: &mut Mem, fd: u32, iovs: u32, n: u32, nwritten: u32) -> R {
        let h = self.table.get_mut(fd)?;
        h.require(rights::FD_WRITE)?;
        let iovs = mem.iovecs(iovs, n)?;
        // Check the result pointer first, so a faulting call has written nothing.
        mem.slice(nwritten, 4)?;
        let mut data = Bytes::new();
        mem.gather(&iovs, &mut data)?;
        data.truncate(MAX_TRANSFER);
        if let Some(limit) = self.max_file_size {
            if let Object::File(f) = &h.object {
                // (This used to add `lseek`'s result unchecked: its -1 on a FIFO overflowed,
                // a host panic in debug builds.)
                if write_end(f.as_raw_fd(), None, data.len())?.is_some_and(|end| end > limit) {
                    return Err(errno::FBIG);
                }
            }
        }
        let written = match &h.object {
            Object::Stdout(Stdio::Capture(buf)) | Object::Stderr(Stdio::Capture(buf)) => {
                let mut buf = buf.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(limit) = self.max_output {
                    // A captured stream holds at most `max_output` bytes: what fits is kept,
                    // a write with no room left fails (EFBIG, as a file over its size limit).
                    let room = limit.saturating_sub(buf.len());
                    if room == 0 && !data.is_empty() {
                        return Err(errno::FBIG);
                    }
                    data.truncate(room);
                }
                buf.extend_from_slice(&data);
                data.len()
            }
            Object::Stdout(Stdio::Null) | Object::Stderr(Stdio::Null) => data.len(),
            Object::Stdin(_) => return Err(errno::BADF),
            _ => {
                let fd = io_fd(h)?;
                // A pipe, socket or tty may not take the bytes: wait for room until the deadline.
                let bounded = h.may_block_under(&self.deadline);
                // SAFETY: writing from a host buffer of data.len() bytes to an fd we own.
                self.deadline.blocking(bounded, fd, libc::POLLOUT, || unsafe { libc::write(fd, data.as_ptr() as *const _, data.len()) })?
            }
        };
        mem.write_u32(nwritten, written as u32)
    }

    pub fn fd_read(&mut self, mem: &mut Mem, fd: u32, iovs: u32, n: u32, nread: u32) -> R {
        let h = self.table.get_mut(fd)?;
        h.require(rights::FD_READ)?;
        let iovs = mem.iovecs(iovs, n)?;
        // Check the result pointer first, so a faulting call consumes nothing.
        mem.slice(nread, 4)?;
        let total = iovs.iter().map(|(_, l)| *l as usize).sum::<usize>().min(MAX_TRANSFER);
        let mut buf = Bytes::from_elem(0, total);
        let got = match &h.object {
            Object::Stdin(Stdio::Bytes(bytes)) => {
                let n = total.min(bytes.len() - h.stdin_pos.min(bytes.len()));
                buf[..n].copy_from_slice(&bytes[h.stdin_pos..h.stdin_pos + n]);
                h.stdin_pos += n;
                n
            }
            Object::Stdin(Stdio::Null) | Object::Stdin(Stdio::Capture(_)) => 0,
            Object::Stdout(_) | Object::Stderr(_) => return Err(errno::BADF),
            _ => {
                let fd = io_fd(h)?;
                // A pipe, socket or tty may have nothing to read: wait until the deadline.
                let bounded = h.may_block_under(&self.deadline);
                // SAFETY: reading into a host buffer of `total` bytes from an fd we own.
                self.deadline.blocking(bounded, fd, libc::POLLIN, || unsafe { libc::read(fd, buf.as_mut_ptr() as *mut _, total) })?
            }
        };
        let placed = mem.scatter(&iovs, &buf[..got])?;
        mem.write_u32(nread, placed as u32)
    }

    pub fn fd_pread(&mut self, mem: &mut Mem, fd: u32, iovs: u32, n: u32, offset: u64, nread: u32) -> R {
        let h = self.table.get(fd)?;
        h.require(rights::FD_READ | rights::FD_SEEK)?;
        let fd = file_fd(h)?;
        let iovs = mem.iovecs(iovs, n)?;
        mem.slice(nread, 4)?;
        let total = iovs.iter().map(|(_, l)| *l as usize).sum::<usize>().min(MAX_TRANSFER);
        let mut buf = vec![0u8; total];
        let offset = i64::try_from(offset).map_err(|_| errno::INVAL)?;
        // SAFETY: reading into a host buffer of `total` bytes.
        let got = check_len(unsafe { libc::pread(fd, buf.as_mut_ptr() as *mut _, total, offset) })?;
        let placed = mem.scatter(&iovs, &buf[..got])?;
        mem.write_u32(nread, placed as u32)
    }

    pub fn fd_pwrite(&mut self, mem: &mut Mem, fd: u32, iovs: u32, n: u32, offset: u64, nwritten: u32) -> R {
        let h = self.table.get(fd)?;
        h.require(rights::FD_WRITE | rights::FD_SEEK)?;
        let fd = file_fd(h)?;
        let iovs = mem.iovecs(iovs, n)?;
        let mut data = Bytes::new();
        mem.gather(&iovs, &mut data)?;
        data.truncate(MAX_TRANSFER);
        let offset = i64::try_from(offset).map_err(|_| errno::INVAL)?;
        mem.slice(nwritten, 4)?;
        if let Some(limit) = self.max_file_size {
            // Not `offset + len`: on an O_APPEND fd, Linux's pwrite appends at the end of the
            // file, which let a guest grow a file past the limit with pwrite at offset 0.
            if write_end(fd, Some(offset as u64), data.len())?.is_some_and(|end| end > limit) {
                return Err(errno::FBIG);
            }
        }
        // SAFETY: writing from a host buffer of data.len() bytes.
        let n = check_len(unsafe { libc::pwrite(fd, data.as_ptr() as *const _, data.len(), offset) })?;
        mem.write_u32(nwritten, n as u32)
    }

    pub fn fd_seek(&mut self, mem: &mut Mem, fd: u32, offset: i64, whence: u32, newoffset: u32) -> R {
        let h = self.table.get(fd)?;
        let needed = if offset == 0 && whence == 1 { rights::FD_TELL } else { rights::FD_SEEK };
        h.require(needed)?;
        let whence = match whence {
            0 => libc::SEEK_SET,
            1 => libc::SEEK_CUR,
            2 => libc::SEEK_END,
            _ => return Err(errno::INVAL),
        };
        let fd = match &h.object {
            Object::Dir { .. } => return Err(errno::BADF),
            _ => file_fd(h)?,
        };
        // SAFETY: lseek on an fd we own.
        let pos = unsafe { libc::lseek(fd, offset, whence) };
        if pos < 0 {
            return Err(last_os_errno());
        }
        mem.write_u64(newoffset, pos as u64)
    }

    pub fn fd_tell(&mut self, mem: &mut Mem, fd: u32, out: u32) -> R {
        let h = self.table.get(fd)?;
        h.require(rights::FD_TELL)?;
        let fd = file_fd(h)?;
        // SAFETY: lseek on an fd we own.
        let pos = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
        if pos < 0 {
            return Err(last_os_errno());
        }
        mem.write_u64(out, pos as u64)
    }

    pub fn fd_close(&mut self, fd: u32) -> R {
        self.table.remove(fd).map(drop)
    }

    pub fn fd_renumber(&mut self, from: u32, to: u32) -> R {
        self.table.renumber(from, to)
    }

    pub fn fd_sync(&mut self, fd: u32, data_only: bool) -> R {
        let h = self.table.get(fd)?;
        h.require(if data_only { rights::FD_DATASYNC } else { rights::FD_SYNC })?;
        let fd = h.host_fd().ok_or(errno::INVAL)?;
        // SAFETY: syncing an fd we own.
        check(unsafe { if data_only { libc::fdatasync(fd) } else { libc::fsync(fd) } })
    }

    pub fn fd_advise(&mut self, fd: u32, offset: u64, len: u64, advice: u32) -> R {
        let h = self.table.get(fd)?;
        h.require(rights::FD_ADVISE)?;
        if advice > 5 {
            return Err(errno::INVAL);
        }
        let fd = file_fd(h).map_err(|e| if e == errno::ISDIR { errno::BADF } else { e })?;
        let (offset, len) = (i64::try_from(offset).map_err(|_| errno::INVAL)?, i64::try_from(len).map_err(|_| errno::INVAL)?);
        // WASI advice 0..=5 are normal, sequential, random, willneed, dontneed, noreuse.
        let advice = [libc::POSIX_FADV_NORMAL, libc::POSIX_FADV_SEQUENTIAL, libc::POSIX_FADV_RANDOM, libc::POSIX_FADV_WILLNEED, libc::POSIX_FADV_DONTNEED, libc::POSIX_FADV_NOREUSE][advice as usize];
        // SAFETY: advisory call on an fd we own.
        let r = unsafe { libc::posix_fadvise(fd, offset, len, advice) };
        if r != 0 { Err(errno::from_os(r)) } else { Ok(()) }
    }

    pub fn fd_allocate(&mut self, fd: u32, offset: u64, len: u64) -> R {
        let h = self.table.get(fd)?;
        h.require(rights::FD_ALLOCATE)?;
        let fd = file_fd(h).map_err(|e| if e == errno::ISDIR { errno::BADF } else { e })?;
        let end = offset.checked_add(len).filter(|e| *e <= i64::MAX as u64).ok_or(errno::INVAL)?;
        if self.max_file_size.is_some_and(|limit| end > limit) {
            return Err(errno::FBIG);
        }
        // SAFETY: allocating file space on an fd we own.
        let r = unsafe { libc::posix_fallocate(fd, offset as i64, len as i64) };
        if r != 0 { Err(errno::from_os(r)) } else { Ok(()) }
    }

    pub fn fd_fdstat_get(&mut self, mem: &mut Mem, fd: u32, out: u32) -> R {
        let h = self.table.get(fd)?;
        let mut b = [0u8; 24];
        b[0] = h.filetype();
        b[2..4].copy_from_slice(&h.fdflags.to_le_bytes());
        b[8..16].copy_from_slice(&h.rights_base.to_le_bytes());
        b[16..24].copy_from_slice(&h.rights_inheriting.to_le_bytes());
        mem.write(out, &b)
    }

    pub fn fd_fdstat_set_flags(&mut self, fd: u32, flags: u16) -> R {
        let h = self.table.get_mut(fd)?;
        h.require(rights::FD_FDSTAT_SET_FLAGS)?;
        if flags & !(fdflags::APPEND | fdflags::NONBLOCK | fdflags::DSYNC | fdflags::RSYNC | fdflags::SYNC) != 0 {
            return Err(errno::INVAL);
        }
        if flags & (fdflags::DSYNC | fdflags::RSYNC | fdflags::SYNC) != 0 {
            // Linux cannot change these after open.
            return Err(errno::NOTSUP);
        }
        if let Some(fd) = h.host_fd().filter(|_| matches!(h.object, Object::File(_) | Object::Socket(_))) {
            let mut host = 0;
            if flags & fdflags::APPEND != 0 {
                host |= libc::O_APPEND;
            }
            if flags & fdflags::NONBLOCK != 0 {
                host |= libc::O_NONBLOCK;
            }
            // SAFETY: fcntl on an fd we own.
            check(unsafe { libc::fcntl(fd, libc::F_SETFL, host) })?;
        }
        h.fdflags = flags;
        Ok(())
    }

    pub fn fd_fdstat_set_rights(&mut self, fd: u32, base: u64, inheriting: u64) -> R {
        let h = self.table.get_mut(fd)?;
        if base & !h.rights_base != 0 || inheriting & !h.rights_inheriting != 0 {
            return Err(errno::NOTCAPABLE);
        }
        h.rights_base = base;
        h.rights_inheriting = inheriting;
        Ok(())
    }

    pub fn fd_filestat_get(&mut self, mem: &mut Mem, fd: u32, out: u32) -> R {
        let h = self.table.get(fd)?;
        h.require(rights::FD_FILESTAT_GET)?;
        let bytes = match h.host_fd() {
            Some(fd) => filestat_bytes(&fstat(fd)?),
            None => {
                let mut b = [0u8; 64];
                b[16] = h.filetype();
                b
            }
        };
        mem.write(out, &bytes)
    }

    pub fn fd_filestat_set_size(&mut self, fd: u32, size: u64) -> R {
        let h = self.table.get(fd)?;
        h.require(rights::FD_FILESTAT_SET_SIZE)?;
        let fd = file_fd(h).map_err(|e| if e == errno::ISDIR { errno::BADF } else { e })?;
        let size = i64::try_from(size).map_err(|_| errno::INVAL)?;
        if self.max_file_size.is_some_and(|limit| size as u64 > limit) {
            return Err(errno::FBIG);
        }
        // SAFETY: ftruncate on an fd we own.
        check(unsafe { libc::ftruncate(fd, size) })
    }

    pub fn fd_filestat_set_times(&mut self, fd: u32, atim: u64, mtim: u64, flags: u16) -> R {
        let h = self.table.get(fd)?;
        h.require(rights::FD_FILESTAT_SET_TIMES)?;
        let times = timespecs(atim, mtim, flags)?;
        let fd = h.host_fd().ok_or(errno::BADF)?;
        // SAFETY: futimens on an fd we own with two valid timespecs.
        check(unsafe { libc::futimens(fd, times.as_ptr()) })
    }

    pub fn fd_prestat_get(&mut self, mem: &mut Mem, fd: u32, out: u32) -> R {
        let h = self.table.get(fd)?;
        let Object::Dir { preopen: Some(name), .. } = &h.object else { return Err(errno::BADF) };
        let mut b = [0u8; 8];
        b[4..8].copy_from_slice(&(name.len() as u32).to_le_bytes());
        mem.write(out, &b)
    }

    pub fn fd_prestat_dir_name(&mut self, mem: &mut Mem, fd: u32, ptr: u32, len: u32) -> R {
        let h = self.table.get(fd)?;
        let Object::Dir { preopen: Some(name), .. } = &h.object else { return Err(errno::BADF) };
        if (len as usize) < name.len() {
            return Err(errno::NAMETOOLONG);
        }
        mem.write(ptr, name.as_bytes())
    }

    pub fn fd_readdir(&mut self, mem: &mut Mem, fd: u32, buf: u32, buf_len: u32, cookie: u64, bufused: u32) -> R {
        let h = self.table.get(fd)?;
        h.require(rights::FD_READDIR)?;
        let dir = h.dir_fd()?;
        let entries = list_dir(dir, &mut self.deadline)?;
        let mut out = Vec::new();
        for (i, (name, ino, kind)) in entries.iter().enumerate().skip(cookie.min(usize::MAX as u64) as usize) {
            let mut d = [0u8; 24];
            d[0..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            d[8..16].copy_from_slice(&ino.to_le_bytes());
            d[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
            d[20] = *kind;
            out.extend_from_slice(&d);
            out.extend_from_slice(name);
            if out.len() >= buf_len as usize {
                break;
            }
        }
        out.truncate(buf_len as usize);
        mem.write(buf, &out)?;
        mem.write_u32(bufused, out.len() as u32)
    }

    // ---- path_* ---------------------------------------------------------------------------

    fn dir_with(&self, fd: u32, needed: u64) -> Result<RawFd, Errno> {
        let h = self.table.get(fd)?;
        let dir = h.dir_fd()?;
        h.require(needed)?;
        Ok(dir)
    }

    pub fn path_create_directory(&mut self, mem: &mut Mem, fd: u32, path: u32, len: u32) -> R {
        let dir = self.dir_with(fd, rights::PATH_CREATE_DIRECTORY)?;
        let p = parent_beneath(dir, &mem.string(path, len)?)?;
        self.guard.check_dir(p.dir.as_raw_fd())?;
        // SAFETY: mkdirat relative to a directory we resolved, one component.
        check(unsafe { libc::mkdirat(p.dir.as_raw_fd(), p.name.as_ptr(), 0o777) })
    }

    pub fn path_remove_directory(&mut self, mem: &mut Mem, fd: u32, path: u32, len: u32) -> R {
        let dir = self.dir_with(fd, rights::PATH_REMOVE_DIRECTORY)?;
        let p = parent_beneath(dir, &mem.string(path, len)?)?;
        self.guard.check_dir(p.dir.as_raw_fd())?;
        self.guard.check_entry(p.dir.as_raw_fd(), &p.name)?;
        // SAFETY: as above.
        check(unsafe { libc::unlinkat(p.dir.as_raw_fd(), p.name.as_ptr(), libc::AT_REMOVEDIR) })
    }

    pub fn path_unlink_file(&mut self, mem: &mut Mem, fd: u32, path: u32, len: u32) -> R {
        let dir = self.dir_with(fd, rights::PATH_UNLINK_FILE)?;
        let p = parent_beneath(dir, &mem.string(path, len)?)?;
        self.guard.check_dir(p.dir.as_raw_fd())?;
        self.guard.check_entry(p.dir.as_raw_fd(), &p.name)?;
        // SAFETY: as above.
        check(unsafe { libc::unlinkat(p.dir.as_raw_fd(), p.name.as_ptr(), 0) })
    }

    pub fn path_rename(&mut self, mem: &mut Mem, fd: u32, old: u32, old_len: u32, new_fd: u32, new: u32, new_len: u32) -> R {
        let from = self.dir_with(fd, rights::PATH_RENAME_SOURCE)?;
        let to = self.dir_with(new_fd, rights::PATH_RENAME_TARGET)?;
        let a = parent_beneath(from, &mem.string(old, old_len)?)?;
        let b = parent_beneath(to, &mem.string(new, new_len)?)?;
        for (dir, name) in [(&a.dir, &a.name), (&b.dir, &b.name)] {
            self.guard.check_dir(dir.as_raw_fd())?;
            self.guard.check_entry(dir.as_raw_fd(), name)?;
        }
        // SAFETY: renameat between two directories we resolved, one component each.
        check(unsafe { libc::renameat(a.dir.as_raw_fd(), a.name.as_ptr(), b.dir.as_raw_fd(), b.name.as_ptr()) })
    }

    pub fn path_link(&mut self, mem: &mut Mem, fd: u32, flags: u32, old: u32, old_len: u32, new_fd: u32, new: u32, new_len: u32) -> R {
        let from = self.dir_with(fd, rights::PATH_LINK_SOURCE)?;
        let to = self.dir_with(new_fd, rights::PATH_LINK_TARGET)?;
        if flags & LOOKUP_SYMLINK_FOLLOW != 0 {
            // Following the source could link a file from outside the directory.
            return Err(errno::INVAL);
        }
        let old = mem.string(old, old_len)?;
        if old.ends_with('/') {
            // As in path_readlink: linkat follows a source with a trailing slash, outside the
            // directory too (an existence oracle). Resolve it beneath; it then names a
            // directory, which cannot be hard-linked (EPERM, as Linux says).
            open_guarded(from, &old, libc::O_PATH | libc::O_DIRECTORY, 0, &self.guard)?;
            return Err(errno::PERM);
        }
        let a = parent_beneath(from, &old)?;
        let b = parent_beneath(to, &mem.string(new, new_len)?)?;
        // A new name for a protected file, or any new entry in a protected directory.
        self.guard.check_entry(a.dir.as_raw_fd(), &a.name)?;
        self.guard.check_dir(b.dir.as_raw_fd())?;
        // SAFETY: linkat between resolved directories, without following the source.
        check(unsafe { libc::linkat(a.dir.as_raw_fd(), a.name.as_ptr(), b.dir.as_raw_fd(), b.name.as_ptr(), 0) })
    }

    pub fn path_symlink(&mut self, mem: &mut Mem, old: u32, old_len: u32, fd: u32, new: u32, new_len: u32) -> R {
        let dir = self.dir_with(fd, rights::PATH_SYMLINK)?;
        let target = mem.string(old, old_len)?;
        if target.starts_with('/') {
            // An absolute target could never be followed beneath the directory.
            return Err(errno::NOTCAPABLE);
        }
        let target = CString::new(target).map_err(|_| errno::INVAL)?;
        let p = parent_beneath(dir, &mem.string(new, new_len)?)?;
        self.guard.check_dir(p.dir.as_raw_fd())?;
        // SAFETY: symlinkat creates one entry in a resolved directory; the target is data.
        check(unsafe { libc::symlinkat(target.as_ptr(), p.dir.as_raw_fd(), p.name.as_ptr()) })
    }

    pub fn path_readlink(&mut self, mem: &mut Mem, fd: u32, path: u32, len: u32, buf: u32, buf_len: u32, bufused: u32) -> R {
        let dir = self.dir_with(fd, rights::PATH_READLINK)?;
        let path = mem.string(path, len)?;
        if path.ends_with('/') {
            // A trailing slash makes the kernel follow the last component, and readlinkat
            // would follow it without RESOLVE_BENEATH: through a guest link such as
            // `x -> ../../etc` its errno (EINVAL / ENOENT / ENOTDIR) told whether any host path
            // exists. Resolve it beneath instead; what it names then is no link, so this fails
            // as readlink does on Linux (EINVAL for a directory, the resolution's errno else).
            open_guarded(dir, &path, libc::O_PATH | libc::O_DIRECTORY, 0, &self.guard)?;
            return Err(errno::INVAL);
        }
        let p = parent_beneath(dir, &path)?;
        let mut target = vec![0u8; 4096];
        // SAFETY: readlinkat into a host buffer of 4096 bytes.
        let n = check_len(unsafe { libc::readlinkat(p.dir.as_raw_fd(), p.name.as_ptr(), target.as_mut_ptr() as *mut _, target.len()) })?;
        let n = n.min(buf_len as usize);
        mem.write(buf, &target[..n])?;
        mem.write_u32(bufused, n as u32)
    }

    /// Stat `path`: following symlinks through `openat2` (never outside), or the link itself.
    /// Any type may be stat'ed (a stat opens nothing), but not a protected file.
    fn stat_path(&self, dir: RawFd, path: &str, follow: bool) -> Result<libc::stat, Errno> {
        if follow || path.ends_with('/') {
            let f = open_guarded(dir, path, libc::O_PATH, 0, &self.guard)?;
            return fstat(f.as_raw_fd());
        }
        let p = parent_beneath(dir, path)?;
        // SAFETY: fstatat on one component of a resolved directory, not following it.
        let st = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            check(libc::fstatat(p.dir.as_raw_fd(), p.name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW))?;
            st
        };
        self.guard.check_file(&st)?;
        Ok(st)
    }

    pub fn path_filestat_get(&mut self, mem: &mut Mem, fd: u32, flags: u32, path: u32, len: u32, out: u32) -> R {
        let dir = self.dir_with(fd, rights::PATH_FILESTAT_GET)?;
        let st = self.stat_path(dir, &mem.string(path, len)?, flags & LOOKUP_SYMLINK_FOLLOW != 0)?;
        mem.write(out, &filestat_bytes(&st))
    }

    pub fn path_filestat_set_times(&mut self, mem: &mut Mem, fd: u32, flags: u32, path: u32, len: u32, atim: u64, mtim: u64, fst: u16) -> R {
        let dir = self.dir_with(fd, rights::PATH_FILESTAT_SET_TIMES)?;
        let times = timespecs(atim, mtim, fst)?;
        let path = mem.string(path, len)?;
        if flags & LOOKUP_SYMLINK_FOLLOW != 0 || path.ends_with('/') {
            let f = open_guarded(dir, &path, libc::O_PATH, 0, &self.guard)?;
            // The host names its own resolved fd; no guest string reaches this path.
            let proc = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
            // SAFETY: utimensat on our own fd's /proc entry with two valid timespecs.
            return check(unsafe { libc::utimensat(libc::AT_FDCWD, proc.as_ptr(), times.as_ptr(), 0) });
        }
        let p = parent_beneath(dir, &path)?;
        self.guard.check_entry(p.dir.as_raw_fd(), &p.name)?;
        // SAFETY: utimensat on one component of a resolved directory, not following it.
        check(unsafe { libc::utimensat(p.dir.as_raw_fd(), p.name.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
    }

    pub fn path_open(&mut self, mem: &mut Mem, fd: u32, dirflags: u32, path: u32, len: u32, oflags: u16, base: u64, inheriting: u64, fdfl: u16, out: u32) -> R {
        let parent = self.table.get(fd)?;
        let dir = parent.dir_fd()?;
        let mut needed = rights::PATH_OPEN;
        if oflags & oflags::CREAT != 0 {
            needed |= rights::PATH_CREATE_FILE;
        }
        if oflags & oflags::TRUNC != 0 {
            needed |= rights::PATH_FILESTAT_SET_SIZE;
        }
        parent.require(needed)?;
        let inherit = parent.rights_inheriting;
        let path = mem.string(path, len)?;
        // Check the fd out-pointer before opening: a fault after the open used to leave the new
        // fd in the table, unnamed (a leaked slot), and any file O_CREAT made.
        mem.slice(out, 4)?;

        let wants_write = base & (rights::FD_DATASYNC | rights::FD_WRITE | rights::FD_ALLOCATE | rights::FD_FILESTAT_SET_SIZE) != 0;
        let wants_read = base & (rights::FD_READ | rights::FD_READDIR) != 0;
        if oflags & oflags::DIRECTORY != 0 && base & rights::FD_WRITE != 0 {
            // A directory cannot be opened for writing.
            return Err(errno::ISDIR);
        }
        let access = match (wants_read, wants_write) {
            _ if oflags & oflags::DIRECTORY != 0 => libc::O_RDONLY,
            (_, false) => libc::O_RDONLY,
            (false, true) => libc::O_WRONLY,
            (true, true) => libc::O_RDWR,
        };
        let mut flags = 0;
        if oflags & oflags::CREAT != 0 {
            flags |= libc::O_CREAT;
        }
        if oflags & oflags::EXCL != 0 {
            flags |= libc::O_EXCL;
        }
        if oflags & oflags::TRUNC != 0 {
            flags |= libc::O_TRUNC;
        }
        if oflags & oflags::DIRECTORY != 0 {
            flags |= libc::O_DIRECTORY;
        }
        if dirflags & LOOKUP_SYMLINK_FOLLOW == 0 {
            flags |= libc::O_NOFOLLOW;
        }
        if fdfl & fdflags::APPEND != 0 {
            flags |= libc::O_APPEND;
        }
        if fdfl & fdflags::NONBLOCK != 0 {
            flags |= libc::O_NONBLOCK;
        }
        if fdfl & fdflags::DSYNC != 0 {
            flags |= libc::O_DSYNC;
        }
        if fdfl & (fdflags::SYNC | fdflags::RSYNC) != 0 {
            flags |= libc::O_SYNC;
        }
        // Only a regular file, a directory or a harmless character device, opened without
        // blocking the host, never a protected file (path.rs).
        let file = match open_guarded(dir, &path, flags | access, 0o666, &self.guard) {
            // A directory opened with write-ish rights: directories are opened read-only,
            // unless the caller really asked to write to it.
            Err(e) if e == errno::ISDIR && base & rights::FD_WRITE == 0 && oflags & oflags::CREAT == 0 => {
                open_guarded(dir, &path, flags | libc::O_RDONLY | libc::O_DIRECTORY, 0, &self.guard)?
            }
            r => r?,
        };
        let is_dir = filetype_of_fd(file.as_raw_fd()) == filetype::DIRECTORY;
        let (object, max) = if is_dir {
            (Object::Dir { fd: file, preopen: None }, rights::DIR | rights::FD_READDIR)
        } else {
            (Object::File(file), rights::FILE)
        };
        let mut h = Handle::new(object, base & inherit & max, inheriting & inherit);
        h.fdflags = fdfl;
        let new = self.table.insert(h)?;
        mem.write_u32(out, new)
    }
}

/// Every entry of a directory (with `.` and `..`), in the order the host lists them.
/// A huge directory is scanned under the call's deadline.
fn list_dir(dir: RawFd, deadline: &mut super::deadline::Deadline) -> Result<Vec<(Vec<u8>, u64, u8)>, Errno> {
    // SAFETY: a fresh descriptor of the same directory, owned by the DIR stream below.
    let dup = unsafe { libc::openat(dir, c".".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if dup < 0 {
        return Err(last_os_errno());
    }
    // SAFETY: fdopendir takes ownership of `dup`; on failure we close it ourselves.
    let stream = unsafe { libc::fdopendir(dup) };
    if stream.is_null() {
        // SAFETY: `dup` is still ours.
        drop(unsafe { OwnedFd::from_raw_fd(dup) });
        return Err(last_os_errno());
    }
    let mut out = Vec::new();
    loop {
        if deadline.check_every(out.len()).is_err() {
            // SAFETY: closing the stream we opened (and its fd).
            unsafe { libc::closedir(stream) };
            return Err(errno::INTR);
        }
        // SAFETY: readdir on a live stream; the entry is copied before the next call.
        let ent = unsafe { libc::readdir(stream) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated inside the entry.
        let (name, ino, d_type) = unsafe {
            let e = &*ent;
            (std::ffi::CStr::from_ptr(e.d_name.as_ptr()).to_bytes().to_vec(), e.d_ino, e.d_type)
        };
        let kind = match d_type {
            libc::DT_DIR => filetype::DIRECTORY,
            libc::DT_REG => filetype::REGULAR_FILE,
            libc::DT_LNK => filetype::SYMBOLIC_LINK,
            libc::DT_CHR => filetype::CHARACTER_DEVICE,
            libc::DT_BLK => filetype::BLOCK_DEVICE,
            libc::DT_SOCK => filetype::SOCKET_STREAM,
            _ => filetype::UNKNOWN,
        };
        out.push((name, ino, kind));
    }
    // SAFETY: closing the stream we opened (and its fd).
    unsafe { libc::closedir(stream) };
    Ok(out)
}
