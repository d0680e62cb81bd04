//! Arguments and environment, clocks, randomness, `poll_oneoff`, process and socket calls.

// WASI functions take the preview1 ABI's arguments one-to-one.
#![allow(clippy::too_many_arguments)]

use super::abi::{clock, errno, rights};
use super::mem::{Bytes, Errno, Mem};
use super::path::last_os_errno;
use super::table::{Handle, Object};
use super::{Stdio, WasiCtx};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

type R = Result<(), Errno>;

/// Write a list of NUL-terminated strings: pointers at `ptrs`, bytes at `buf`.
fn write_strings(mem: &mut Mem, list: &[String], ptrs: u32, buf: u32) -> R {
    let mut at = buf;
    for (i, s) in list.iter().enumerate() {
        mem.write_u32(ptrs.checked_add(4 * i as u32).ok_or(errno::FAULT)?, at)?;
        // Guest-chosen `buf`: every sum is checked (a string may end at the top of memory).
        let len = u32::try_from(s.len()).map_err(|_| errno::FAULT)?;
        let nul = at.checked_add(len).ok_or(errno::FAULT)?;
        mem.write(at, s.as_bytes())?;
        mem.write(nul, &[0])?;
        at = nul.checked_add(1).ok_or(errno::FAULT)?;
    }
    Ok(())
}

fn write_sizes(mem: &mut Mem, list: &[String], count: u32, size: u32) -> R {
    mem.write_u32(count, list.len() as u32)?;
    mem.write_u32(size, list.iter().map(|s| s.len() as u32 + 1).sum())
}

fn clock_id(id: u32) -> Result<libc::clockid_t, Errno> {
    Ok(match id {
        clock::REALTIME => libc::CLOCK_REALTIME,
        clock::MONOTONIC => libc::CLOCK_MONOTONIC,
        clock::PROCESS_CPUTIME => libc::CLOCK_PROCESS_CPUTIME_ID,
        clock::THREAD_CPUTIME => libc::CLOCK_THREAD_CPUTIME_ID,
        _ => return Err(errno::INVAL),
    })
}

pub fn now(id: u32) -> Result<u64, Errno> {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills a timespec.
    if unsafe { libc::clock_gettime(clock_id(id)?, &mut t) } != 0 {
        return Err(last_os_errno());
    }
    Ok(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
}

impl WasiCtx {
    pub fn args_get(&mut self, mem: &mut Mem, ptrs: u32, buf: u32) -> R {
        write_strings(mem, &self.args, ptrs, buf)
    }

    pub fn args_sizes_get(&mut self, mem: &mut Mem, count: u32, size: u32) -> R {
        write_sizes(mem, &self.args, count, size)
    }

    pub fn environ_get(&mut self, mem: &mut Mem, ptrs: u32, buf: u32) -> R {
        write_strings(mem, &self.env, ptrs, buf)
    }

    pub fn environ_sizes_get(&mut self, mem: &mut Mem, count: u32, size: u32) -> R {
        write_sizes(mem, &self.env, count, size)
    }

    pub fn clock_res_get(&mut self, mem: &mut Mem, id: u32, out: u32) -> R {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_getres fills a timespec.
        if unsafe { libc::clock_getres(clock_id(id)?, &mut t) } != 0 {
            return Err(last_os_errno());
        }
        mem.write_u64(out, (t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64).max(1))
    }

    pub fn clock_time_get(&mut self, mem: &mut Mem, id: u32, _precision: u64, out: u32) -> R {
        mem.write_u64(out, now(id)?)
    }

    pub fn random_get(&mut self, mem: &mut Mem, buf: u32, len: u32) -> R {
        let dst = mem.slice_mut(buf, len)?;
        let mut filled = 0;
        while filled < dst.len() {
            // Gigabytes take seconds (the kernel fills at most 32 MiB per call): keep the
            // call's deadline between calls.
            self.deadline.check()?;
            // SAFETY: getrandom writes into the checked guest range.
            let n = unsafe { libc::getrandom(dst[filled..].as_mut_ptr() as *mut _, dst.len() - filled, 0) };
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(last_os_errno());
            }
            filled += n as usize;
        }
        Ok(())
    }

    pub fn sched_yield(&mut self) -> R {
        std::thread::yield_now();
        Ok(())
    }

    /// `poll_oneoff`: clock subscriptions and fd readiness. Regular files are always ready;
    /// streams and sockets are polled on the host, for at most the earliest clock timeout.
    pub fn poll_oneoff(&mut self, mem: &mut Mem, subs: u32, events: u32, n: u32, nevents: u32) -> R {
        if n == 0 {
            return Err(errno::INVAL);
        }
        // Each subscription is copied out once, as it is read (not the whole array up front: a
        // guest-sized copy that no deadline could interrupt).
        let raw = mem.slice(subs, n.checked_mul(48).ok_or(errno::FAULT)?)?;
        mem.slice(events, n.checked_mul(32).ok_or(errno::FAULT)?)?;
        let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let mut out: Vec<[u8; 32]> = Vec::new();
        let event = |userdata: u64, err: u16, kind: u8, nbytes: u64| {
            let mut e = [0u8; 32];
            e[0..8].copy_from_slice(&userdata.to_le_bytes());
            e[8..10].copy_from_slice(&err.to_le_bytes());
            e[10] = kind;
            e[16..24].copy_from_slice(&nbytes.to_le_bytes());
            e
        };
        // (userdata, kind, host fd) of fd subscriptions to poll; clock deadlines in ns.
        let mut waits: Vec<(u64, u8, i32)> = Vec::new();
        let mut clocks: Vec<(u64, u64)> = Vec::new();
        for (i, s) in raw.chunks_exact(48).enumerate() {
            // Millions of subscriptions take a while: keep the call's deadline meanwhile.
            self.deadline.check_every(i)?;
            let s: [u8; 48] = s.try_into().map_err(|_| errno::FAULT)?;
            let s = &s;
            let userdata = u64_at(s, 0);
            match s[8] {
                0 => {
                    let id = u32_at(s, 16);
                    let timeout = u64_at(s, 24);
                    let abstime = u16::from_le_bytes([s[40], s[41]]) & 1 != 0;
                    match now(id) {
                        Ok(t) => clocks.push((userdata, if abstime { timeout.saturating_sub(t) } else { timeout })),
                        Err(e) => out.push(event(userdata, e, 0, 0)),
                    }
                }
                kind @ (1 | 2) => {
                    let fd = u32_at(s, 16);
                    let ready = match self.table.get(fd) {
                        Err(e) => Err(e),
                        Ok(h) => match h.require(rights::POLL_FD_READWRITE) {
                            Err(e) => Err(e),
                            Ok(()) => Ok(h),
                        },
                    };
                    match ready {
                        Err(e) => out.push(event(userdata, e, kind, 0)),
                        Ok(h) => match (&h.object, h.host_fd()) {
                            (Object::File(_), _) | (Object::Stdout(_) | Object::Stderr(_), None) => out.push(event(userdata, 0, kind, 0)),
                            (Object::Stdin(Stdio::Bytes(b)), None) => out.push(event(userdata, 0, kind, (b.len() - h.stdin_pos.min(b.len())) as u64)),
                            (_, Some(fd)) => waits.push((userdata, kind, fd)),
                            (_, None) => out.push(event(userdata, 0, kind, 0)),
                        },
                    }
                }
                _ => return Err(errno::INVAL),
            }
        }
        // The deadline may have passed while the subscriptions were read.
        self.deadline.check()?;
        if out.is_empty() {
            let timeout_ns = clocks.iter().map(|c| c.1).min();
            let mut pfds: Vec<libc::pollfd> = waits
                .iter()
                .map(|(_, kind, fd)| libc::pollfd { fd: *fd, events: if *kind == 1 { libc::POLLIN } else { libc::POLLOUT }, revents: 0 })
                .collect();
            // Every wait lasts at most until the call's deadline (then the call ends).
            match (pfds.is_empty(), timeout_ns) {
                (true, Some(ns)) => self.deadline.sleep(std::time::Duration::from_nanos(ns))?,
                _ => {
                    self.deadline.poll(&mut pfds, timeout_ns.map(std::time::Duration::from_nanos))?;
                }
            }
            for ((userdata, kind, _), p) in waits.iter().zip(&pfds) {
                if p.revents != 0 {
                    out.push(event(*userdata, 0, *kind, 0));
                }
            }
            if out.is_empty() {
                let min = timeout_ns.unwrap_or(0);
                for (userdata, t) in &clocks {
                    if *t <= min {
                        out.push(event(*userdata, 0, 0, 0));
                    }
                }
            }
        }
        for (i, e) in out.iter().enumerate() {
            mem.write(events + 32 * i as u32, e)?;
        }
        mem.write_u32(nevents, out.len() as u32)
    }

    // ---- Sockets (preopened listeners only) -----------------------------------------------

    pub fn sock_accept(&mut self, mem: &mut Mem, fd: u32, flags: u16, out: u32) -> R {
        let h = self.table.get(fd)?;
        let Object::Listener(l) = &h.object else { return Err(errno::NOTSOCK) };
        h.require(rights::SOCK_ACCEPT)?;
        if flags & !super::abi::fdflags::NONBLOCK != 0 {
            return Err(errno::INVAL);
        }
        let mut sflags = libc::SOCK_CLOEXEC;
        if flags & super::abi::fdflags::NONBLOCK != 0 {
            sflags |= libc::SOCK_NONBLOCK;
        }
        let lfd = l.as_raw_fd();
        let bounded = h.may_block_under(&self.deadline);
        // SAFETY: accept4 on a listening socket we own; no peer address requested.
        let s = self.deadline.blocking(bounded, lfd, libc::POLLIN, || unsafe { libc::accept4(lfd, std::ptr::null_mut(), std::ptr::null_mut(), sflags) } as isize)? as i32;
        // SAFETY: a new fd we now own.
        let sock = unsafe { OwnedFd::from_raw_fd(s) };
        let mut handle = Handle::new(Object::Socket(sock), rights::SOCKET & !rights::SOCK_ACCEPT, 0);
        handle.fdflags = flags;
        let new = self.table.insert(handle)?;
        mem.write_u32(out, new)
    }

    pub fn sock_recv(&mut self, mem: &mut Mem, fd: u32, iovs: u32, n: u32, riflags: u16, datalen: u32, roflags: u32) -> R {
        let h = self.table.get(fd)?;
        let Object::Socket(s) = &h.object else { return Err(errno::NOTSOCK) };
        h.require(rights::FD_READ)?;
        let iovs = mem.iovecs(iovs, n)?;
        let total = iovs.iter().map(|(_, l)| *l as usize).sum::<usize>().min(16 << 20);
        let mut buf = vec![0u8; total];
        let mut flags = 0;
        if riflags & 1 != 0 {
            flags |= libc::MSG_PEEK;
        }
        if riflags & 2 != 0 {
            flags |= libc::MSG_WAITALL;
        }
        let sfd = s.as_raw_fd();
        let bounded = h.may_block_under(&self.deadline);
        // SAFETY: recv into a host buffer of `total` bytes.
        let got = self.deadline.blocking(bounded, sfd, libc::POLLIN, || unsafe { libc::recv(sfd, buf.as_mut_ptr() as *mut _, total, flags) })?;
        let placed = mem.scatter(&iovs, &buf[..got])?;
        mem.write_u32(datalen, placed as u32)?;
        mem.write(roflags, &0u16.to_le_bytes())
    }

    pub fn sock_send(&mut self, mem: &mut Mem, fd: u32, iovs: u32, n: u32, _siflags: u16, datalen: u32) -> R {
        let h = self.table.get(fd)?;
        let Object::Socket(s) = &h.object else { return Err(errno::NOTSOCK) };
        h.require(rights::FD_WRITE)?;
        let iovs = mem.iovecs(iovs, n)?;
        let mut data = Bytes::new();
        mem.gather(&iovs, &mut data)?;
        let sfd = s.as_raw_fd();
        let bounded = h.may_block_under(&self.deadline);
        // SAFETY: send from a host buffer.
        let sent = self.deadline.blocking(bounded, sfd, libc::POLLOUT, || unsafe { libc::send(sfd, data.as_ptr() as *const _, data.len(), libc::MSG_NOSIGNAL) })?;
        mem.write_u32(datalen, sent as u32)
    }

    pub fn sock_shutdown(&mut self, fd: u32, how: u8) -> R {
        let h = self.table.get(fd)?;
        let Object::Socket(s) = &h.object else { return Err(errno::NOTSOCK) };
        h.require(rights::SOCK_SHUTDOWN)?;
        let how = match how {
            1 => libc::SHUT_RD,
            2 => libc::SHUT_WR,
            3 => libc::SHUT_RDWR,
            _ => return Err(errno::INVAL),
        };
        // SAFETY: shutdown on a socket we own.
        if unsafe { libc::shutdown(s.as_raw_fd(), how) } < 0 {
            return Err(last_os_errno());
        }
        Ok(())
    }
}
