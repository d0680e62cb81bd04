//! The call's deadline inside the WASI host: every WASI operation that can block or run long
//! is bounded by it (`Store::deadline`, the `--timeout` of the guest call that is running).
//!
//! * A wait (readiness of a pipe, FIFO, socket, tty or character device; a `poll_oneoff`
//!   sleep) is a `poll`/`nanosleep` whose timeout comes from the deadline itself, never a
//!   blocking system call hoping for the timeout's signal: a signal that lands just before the
//!   call would be spent, and the call would sleep forever.
//! * Long loops over guest-sized input (`poll_oneoff`'s subscriptions, directory scans) check
//!   the deadline every `CHECK_EVERY` items.
//! * EINTR (the timeout's kick, repeated until the call ends, or a foreign signal) makes the
//!   operation check the deadline: passed, the call ends; not passed, it goes on.
//!
//! Once the deadline has passed, the operation fails and marks `passed`; the WASI function then
//! returns `Error::interrupt()` instead of an errno, so the guest run ends with the timeout's
//! trap (a guest could ignore an errno). Without a deadline (no `--timeout`, process mode)
//! nothing here costs anything, and regular files never cost an extra system call.

use super::abi::errno;
use super::mem::Errno;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// How many items of a guest-sized loop run between two deadline checks.
pub const CHECK_EVERY: usize = 1 << 14;

#[derive(Default)]
pub struct Deadline {
    at: Option<Instant>,
    passed: bool,
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `d` in milliseconds for `poll`, rounded up (never 0 for a non-zero wait), at most i32::MAX.
fn poll_ms(d: Duration) -> i32 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.min(i32::MAX as u128) as i32
}

impl Deadline {
    /// Start a WASI call under `at` (None: unbounded).
    pub fn begin(&mut self, at: Option<Instant>) {
        self.at = at;
        self.passed = false;
    }

    /// Whether this call has a deadline.
    pub fn is_set(&self) -> bool {
        self.at.is_some()
    }

    /// Whether an operation of this call found the deadline passed (the call must end the run).
    pub fn passed(&self) -> bool {
        self.passed
    }

    /// Whether the deadline has passed by now (marks it).
    pub fn expired(&mut self) -> bool {
        if !self.passed && self.at.is_some_and(|at| Instant::now() >= at) {
            self.passed = true;
        }
        self.passed
    }

    /// Fail (with `passed` set) if the deadline has passed.
    pub fn check(&mut self) -> Result<(), Errno> {
        if self.expired() {
            Err(errno::INTR)
        } else {
            Ok(())
        }
    }

    /// Check every `CHECK_EVERY`-th item `i` of a long loop.
    pub fn check_every(&mut self, i: usize) -> Result<(), Errno> {
        if self.at.is_some() && i % CHECK_EVERY == CHECK_EVERY - 1 {
            self.check()
        } else {
            Ok(())
        }
    }

    /// Time left before the deadline (None: no deadline); fails once it has passed.
    fn remaining(&mut self) -> Result<Option<Duration>, Errno> {
        match self.at {
            None => Ok(None),
            Some(at) => {
                let now = Instant::now();
                if now >= at {
                    self.passed = true;
                    Err(errno::INTR)
                } else {
                    Ok(Some(at - now))
                }
            }
        }
    }

    /// Poll `fds` until one is ready or `wait` (None: no limit) has passed, for at most the
    /// time left before the deadline. Returns how many are ready (0: `wait` ran out).
    pub fn poll(&mut self, fds: &mut [libc::pollfd], wait: Option<Duration>) -> Result<usize, Errno> {
        let start = Instant::now();
        loop {
            let left = self.remaining()?;
            let wanted = wait.map(|w| w.saturating_sub(start.elapsed()));
            let ms = match (wanted, left) {
                (Some(w), _) if w.is_zero() => 0,
                (Some(w), Some(l)) => poll_ms(w.min(l)),
                (Some(d), None) | (None, Some(d)) => poll_ms(d),
                (None, None) => -1,
            };
            // SAFETY: poll over a host array of pollfds (an empty one sleeps).
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if r > 0 {
                return Ok(r as usize);
            }
            if r < 0 {
                match last_errno() {
                    libc::EINTR | libc::EAGAIN => continue,
                    e => return Err(errno::from_os(e)),
                }
            }
            if wanted.is_some_and(|w| w <= left.unwrap_or(Duration::MAX)) {
                return Ok(0);
            }
            // The deadline, not the caller's wait, ran out: the top of the loop ends the call.
        }
    }

    /// Sleep for `wait`, cut short at the deadline (then fails). Nanosecond precision.
    pub fn sleep(&mut self, wait: Duration) -> Result<(), Errno> {
        let end = Instant::now().checked_add(wait);
        loop {
            let left = self.remaining()?;
            let wanted = match end {
                Some(end) => end.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if wanted.is_zero() {
                return Ok(());
            }
            let d = left.map_or(wanted, |l| l.min(wanted));
            let t = libc::timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as i64, tv_nsec: d.subsec_nanos() as i64 };
            // SAFETY: nanosleep with a valid timespec and no remainder pointer. EINTR (a kick
            // or a foreign signal) comes back to the loop, which checks the deadline.
            unsafe { libc::nanosleep(&t, std::ptr::null_mut()) };
        }
    }

    /// Wait until `fd` is ready for `events` (POLLIN, POLLOUT), for at most the time left.
    /// Without a deadline it returns at once: the system call that follows may block, as it
    /// always could.
    pub fn wait_fd(&mut self, fd: RawFd, events: libc::c_short) -> Result<(), Errno> {
        if self.at.is_none() {
            return Ok(());
        }
        let mut p = [libc::pollfd { fd, events, revents: 0 }];
        self.poll(&mut p, None).map(|_| ())
    }

    /// Run a system call that may block (`f` returns its result, -1 with errno on failure),
    /// again after EINTR unless the deadline has passed; and once it returns, fail if the
    /// deadline passed meanwhile (it may have been cut short by the kick).
    pub fn io(&mut self, mut f: impl FnMut() -> isize) -> Result<usize, Errno> {
        loop {
            let r = f();
            if r >= 0 {
                self.check()?;
                return Ok(r as usize);
            }
            let e = last_errno();
            if e == libc::EINTR {
                self.check()?;
                continue;
            }
            return Err(errno::from_os(e));
        }
    }

    /// A system call on `fd` that may wait for another party (`f` as for `io`). When `bounded`
    /// (`Handle::may_block_under`: a deadline is set and the fd can block), first wait for
    /// `events` until the deadline, then run it with `io`; otherwise run it once.
    pub fn blocking(&mut self, bounded: bool, fd: RawFd, events: libc::c_short, mut f: impl FnMut() -> isize) -> Result<usize, Errno> {
        if !bounded {
            let r = f();
            return if r < 0 { Err(errno::from_os(last_errno())) } else { Ok(r as usize) };
        }
        self.wait_fd(fd, events)?;
        self.io(f)
    }
}

/// Whether I/O on `fd` can wait for another party (pipe, FIFO, socket, tty or other character
/// device) rather than complete by itself (regular files, directories).
pub fn may_block(fd: RawFd) -> bool {
    // SAFETY: a plain C struct, all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat fills `st`; on failure we assume the worst.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return true;
    }
    !matches!(st.st_mode & libc::S_IFMT, libc::S_IFREG | libc::S_IFDIR | libc::S_IFBLK)
}
