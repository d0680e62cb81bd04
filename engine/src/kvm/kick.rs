//! Timeouts: a watchdog thread sends SIGRTMIN to the vCPU thread; the handler sets
//! `immediate_exit` in that thread's `kvm_run`, so KVM_RUN returns EINTR. Nothing is checked on
//! the hot path. A kick that lands outside KVM_RUN is not lost: the flag stays set and the next
//! KVM_RUN returns at once.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};

thread_local! {
    /// This thread's `kvm_run`'s `immediate_exit` byte while it runs a vCPU (null otherwise).
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

fn signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int) {
    let p = IMMEDIATE_EXIT.with(|c| c.get());
    if !p.is_null() {
        // SAFETY: the pointer is this thread's mapped kvm_run, published by `publish`.
        unsafe { std::ptr::write_volatile(p, 1) };
    }
}

fn install() {
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
    install();
    IMMEDIATE_EXIT.with(|c| c.set(immediate_exit));
}

/// A pending kick of the current thread; dropping it cancels the kick.
pub struct Watchdog {
    state: Arc<(Mutex<bool>, Condvar)>,
    fired: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Kick the current thread (and `also`, e.g. the ring server in a blocking host call)
    /// after `timeout`.
    pub fn arm(timeout: Duration, also: Option<libc::pthread_t>) -> Watchdog {
        install();
        // SAFETY: pthread_self has no preconditions.
        let target = unsafe { libc::pthread_self() };
        let state = Arc::new((Mutex::new(false), Condvar::new()));
        let fired = Arc::new(AtomicBool::new(false));
        let (s, f) = (state.clone(), fired.clone());
        let deadline = Instant::now() + timeout;
        let thread = std::thread::spawn(move || {
            let (lock, cv) = &*s;
            let mut cancelled = lock.lock().unwrap();
            while !*cancelled {
                let now = Instant::now();
                if now >= deadline {
                    f.store(true, Ordering::SeqCst);
                    // SAFETY: the targets outlive the watchdog (the caller joins us on drop, and
                    // the ring server lives as long as its VM, which outlives the call).
                    unsafe {
                        libc::pthread_kill(target, signal());
                        if let Some(t) = also {
                            libc::pthread_kill(t, signal());
                        }
                    }
                    return;
                }
                cancelled = cv.wait_timeout(cancelled, deadline - now).unwrap().0;
            }
        });
        Watchdog { state, fired, thread: Some(thread) }
    }

    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        *self.state.0.lock().unwrap() = true;
        self.state.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
