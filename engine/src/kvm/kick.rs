//! Timeouts: a watchdog thread sends SIGRTMIN to the vCPU thread; the handler sets
//! `immediate_exit` in that thread's `kvm_run`, so KVM_RUN returns EINTR. Nothing is checked on
//! the hot path. A kick that lands outside KVM_RUN is not lost: the flag stays set and the next
//! KVM_RUN returns at once.
//!
//! Host calls: the call's deadline is also handed to the host (`Watchdog::deadline`, then
//! `Store::deadline`), and every host operation that can block or run long is bounded by it
//! (the WASI host's `wasi::deadline`). A signal alone cannot do that: one that lands just before
//! a blocking system call is spent, and the call then sleeps. As a backstop for system calls no
//! deadline can bound (a blocking `open`, a write larger than a pipe's free space), the kick is
//! repeated every `REKICK` until the call ends; the handler has no SA_RESTART, so each repeat
//! makes such a call fail with EINTR, and the host, seeing its deadline passed, ends the run.
//!
//! The watchdog thread (`Kicker`) lives as long as its VM and is started with it, so no thread
//! is created once the host has confined itself (`crate::sandbox`); each call arms and disarms
//! it. It also runs jobs posted to it on its own thread (the sandbox uses this to confine it).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

/// How often the kick is repeated after the deadline, until the call ends.
const REKICK: Duration = Duration::from_millis(20);

thread_local! {
    /// This thread's `kvm_run`'s `immediate_exit` byte while it runs a vCPU (null otherwise).
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

/// The kick signal.
pub fn signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int) {
    let p = IMMEDIATE_EXIT.with(|c| c.get());
    if !p.is_null() {
        // SAFETY: the pointer is this thread's mapped kvm_run, published by `publish`.
        unsafe { std::ptr::write_volatile(p, 1) };
    }
}

/// Install the kick handler (once per process; done when a VM is created, so that running the
/// guest later needs no `rt_sigaction`).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: installing a handler without SA_RESTART, so KVM_RUN returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as *const () as usize;
            sa.sa_flags = 0;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// Publish (or clear, with null) this thread's immediate_exit byte.
pub fn publish(immediate_exit: *mut u8) {
    IMMEDIATE_EXIT.with(|c| c.set(immediate_exit));
}

/// Work to run on a helper thread.
pub type Job = Box<dyn FnOnce() + Send>;

struct Armed {
    deadline: Instant,
    targets: [Option<libc::pthread_t>; 2],
    fired: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    armed: Option<Armed>,
    job: Option<Job>,
    shutdown: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.job.take() {
                drop(st);
                job();
                st = self.lock();
                continue;
            }
            if st.shutdown {
                return;
            }
            let Some(armed) = &st.armed else {
                st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let now = Instant::now();
            if now < armed.deadline {
                let wait = armed.deadline - now;
                st = self.cv.wait_timeout(st, wait).unwrap_or_else(|e| e.into_inner()).0;
                continue;
            }
            armed.fired.store(true, Ordering::SeqCst);
            for t in armed.targets.iter().flatten() {
                // SAFETY: the targets are alive while armed: a `Watchdog` disarms (under this
                // lock, which we hold) before its call returns, and the ring server lives as
                // long as its VM.
                unsafe { libc::pthread_kill(*t, signal()) };
            }
            // Kick again until the call ends (the `Watchdog` is dropped): see the module doc.
            if let Some(armed) = st.armed.as_mut() {
                armed.deadline = now + REKICK;
            }
        }
    }
}

/// The watchdog thread of one VM.
pub struct Kicker {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    tid: libc::pid_t,
}

impl Kicker {
    pub fn start() -> Result<Kicker, std::io::Error> {
        install();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("wasce-timeout".into()).spawn(move || {
            // SAFETY: gettid has no preconditions.
            let _ = tx.send(unsafe { libc::gettid() });
            s.run();
        })?;
        let tid = rx.recv().map_err(|_| std::io::Error::other("the timeout thread did not start"))?;
        Ok(Kicker { shared, thread: Some(thread), tid })
    }

    /// Kick the current thread (and `also`, e.g. the ring server in a blocking host call)
    /// after `timeout`, unless the returned guard is dropped first.
    /// The kick repeats every `REKICK` until the guard is dropped.
    pub fn arm(&self, timeout: Duration, also: Option<libc::pthread_t>) -> Watchdog {
        // SAFETY: pthread_self has no preconditions.
        let target = unsafe { libc::pthread_self() };
        let fired = Arc::new(AtomicBool::new(false));
        let now = Instant::now();
        // A timeout too large for an Instant never fires.
        let deadline = now.checked_add(timeout).unwrap_or(now + Duration::from_secs(100 * 365 * 86_400));
        self.shared.lock().armed = Some(Armed { deadline, targets: [Some(target), also], fired: fired.clone() });
        self.shared.cv.notify_all();
        Watchdog { shared: self.shared.clone(), fired, deadline }
    }

    /// Run `job` on the watchdog thread (it runs before any further kick is considered).
    pub fn post(&self, job: Job) {
        self.shared.lock().job = Some(job);
        self.shared.cv.notify_all();
    }

    /// The kernel thread id of the watchdog thread.
    pub fn tid(&self) -> libc::pid_t {
        self.tid
    }
}

impl Kicker {
    /// Tell the watchdog thread to end, without waiting for it (the drop waits; see
    /// `RingServer::stop`).
    pub fn stop(&self) {
        self.shared.lock().shutdown = true;
        self.shared.cv.notify_all();
    }
}

impl Drop for Kicker {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A pending kick of the thread that armed it; dropping it cancels the kick (after the drop, no
/// signal of this arming can be sent).
pub struct Watchdog {
    shared: Arc<Shared>,
    fired: Arc<AtomicBool>,
    deadline: Instant,
}

impl Watchdog {
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// When the kick fires: the deadline every host call of this guest call must keep.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if st.armed.as_ref().is_some_and(|a| Arc::ptr_eq(&a.fired, &self.fired)) {
            st.armed = None;
        }
        drop(st);
        self.shared.cv.notify_all();
    }
}
