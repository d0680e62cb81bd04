//! The exit-less host-call ring: a server thread per VM serves `HostCall` requests the guest
//! posts in the ring page (layout and protocol in `wasce_hypercall::RING_*`), so a WASI call
//! costs two cache-line transfers instead of a VM exit.
//!
//! * The server polls only while a guest call is active, and goes to sleep after `idle` without
//!   requests (it then clears `RING_AWAKE`, and the guest uses the synchronous exit, which also
//!   wakes the server). No core is burned by an idle instance. `idle` is about what the exit it
//!   saves costs on this hypervisor (`Flavour::ring_idle`): polling longer than that between
//!   calls would burn more CPU than the exits it avoids.
//! * Exclusive access to the store: at any instant at most one host thread acts on it. The vCPU
//!   thread lends the store to the server only while it is inside KVM_RUN (`lend` before,
//!   `reclaim` after, whatever ended it: an exit, a fault, a signal). The server raises `busy`
//!   before claiming a request, then claims it only if the store is lent; `reclaim` withdraws
//!   the loan, then waits for `busy` to clear (Dekker-style, both sides `SeqCst`: either the
//!   server sees the loan withdrawn, or the vCPU thread sees it busy and waits). So a guest that
//!   posts a request and then makes an exit gets its exit handled and its request served one
//!   after the other, never at once. `busy` and the loan live in host memory, so a guest that
//!   scribbles over the ring page cannot make the host wait forever or skip the wait.
//! * A panic in a ring-served call is caught on the server thread: the request is answered with
//!   an error, `busy` is cleared, and `reclaim` reports it so that the run ends with an error;
//!   the server and the store stay usable.
//! * Every field of a request is read once and validated by the same dispatch as a hypercall.

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use wasce_hypercall::*;


/// Serves one request: (context, function id, values address, caller vmctx) -> result.
pub type RingHandler = unsafe fn(*mut (), u64, u64, u64) -> u64;

struct Shared {
    /// Host address of the ring page (in slot 0).
    ring: usize,
    busy: AtomicBool,
    /// A guest call is in progress (the server polls while it is).
    active: AtomicBool,
    /// The vCPU thread is inside KVM_RUN and lends the store to the server.
    lent: AtomicBool,
    /// A ring-served call panicked (taken by `reclaim`).
    panicked: AtomicBool,
    ctx: AtomicUsize,
    handler: AtomicUsize,
    shutdown: AtomicBool,
    wake_gen: Mutex<u64>,
    wake: Condvar,
    served: AtomicU64,
    /// How long the server keeps polling without a request before it sleeps.
    idle: Duration,
    /// Work posted to run on the server thread (`RingServer::post`).
    job: Mutex<Option<super::Job>>,
}

// SAFETY: `ring` points at the VM's slot-0 page, which outlives the server (the VM joins the
// thread before unmapping); everything else is atomics and locks.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn state(&self) -> &AtomicU32 {
        // SAFETY: RING_STATE is a 4-byte aligned u32 inside the ring page.
        unsafe { &*((self.ring + RING_STATE as usize) as *const AtomicU32) }
    }

    fn read_u64(&self, field: u64) -> u64 {
        // SAFETY: an aligned u64 inside the ring page; the guest may change it at any time, so
        // it is read exactly once, volatile.
        unsafe { ptr::read_volatile((self.ring + field as usize) as *const u64) }
    }

    fn write(&self, field: u64, value: u64) {
        // SAFETY: as in `read_u64`.
        unsafe { ptr::write_volatile((self.ring + field as usize) as *mut u64, value) }
    }

    fn set_awake(&self, awake: bool) {
        // SAFETY: RING_AWAKE is an aligned u32 inside the ring page.
        unsafe { (*((self.ring + RING_AWAKE as usize) as *const AtomicU32)).store(awake as u32, SeqCst) }
    }

    /// Claim and serve a submitted request, if there is one and a call is active.
    fn serve_one(&self) -> bool {
        if self.state().load(SeqCst) != RING_SUBMITTED {
            return false;
        }
        self.busy.store(true, SeqCst);
        // The loan is checked after raising `busy` (see the module doc).
        if !self.active.load(SeqCst)
            || !self.lent.load(SeqCst)
            || self.state().compare_exchange(RING_SUBMITTED, RING_TAKEN, SeqCst, SeqCst).is_err()
        {
            self.busy.store(false, SeqCst);
            return false;
        }
        let (func, values, caller) = (self.read_u64(RING_FUNC), self.read_u64(RING_VALUES), self.read_u64(RING_CALLER));
        let ctx = self.ctx.load(SeqCst) as *mut ();
        // SAFETY: `handler` was stored as a RingHandler by `activate`.
        let handler: RingHandler = unsafe { std::mem::transmute::<usize, RingHandler>(self.handler.load(SeqCst)) };
        // SAFETY: the call is active and the store lent (both checked after raising `busy`), so
        // `ctx` is the store the vCPU thread lent us, and it does not touch the store until
        // `busy` is clear. A panic is caught here so that `busy` is always cleared.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { handler(ctx, func, values, caller) }));
        let result = result.unwrap_or_else(|_| {
            self.panicked.store(true, SeqCst);
            1
        });
        self.write(RING_RESULT, result);
        self.state().store(RING_DONE, SeqCst);
        self.served.fetch_add(1, SeqCst);
        self.busy.store(false, SeqCst);
        true
    }

    fn run(&self) {
        let mut seen = 0u64;
        while !self.shutdown.load(SeqCst) {
            // Sleep until woken.
            {
                let mut gen = self.wake_gen.lock().unwrap_or_else(|e| e.into_inner());
                while *gen == seen && !self.shutdown.load(SeqCst) {
                    gen = self.wake.wait(gen).unwrap_or_else(|e| e.into_inner());
                }
                seen = *gen;
            }
            let job = self.job.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(job) = job {
                job();
            }
            if !self.active.load(SeqCst) {
                continue;
            }
            self.set_awake(true);
            let mut last = Instant::now();
            let mut polls = 0u32;
            while self.active.load(SeqCst) && !self.shutdown.load(SeqCst) {
                if self.serve_one() {
                    last = Instant::now();
                    continue;
                }
                std::hint::spin_loop();
                polls = polls.wrapping_add(1);
                if polls.is_multiple_of(256) && last.elapsed() > self.idle {
                    break;
                }
            }
            self.set_awake(false);
            // A request submitted while we were deciding to sleep is served, not stranded.
            while self.serve_one() {}
        }
    }
}

pub struct RingServer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    tid: libc::pthread_t,
    /// The server's kernel thread id, which the thread sends when it starts: taken when first
    /// asked for (by the sandbox, long after), so that VM creation does not wait for the new
    /// thread to be scheduled.
    kernel_tid: std::sync::OnceLock<libc::pid_t>,
    started: Mutex<Option<std::sync::mpsc::Receiver<libc::pid_t>>>,
}

impl RingServer {
    /// # Safety
    /// `ring` must be the host address of the ring page and outlive the server. `idle`: how
    /// long the server polls without a request before it sleeps.
    pub unsafe fn start(ring: *mut u8, idle: Duration) -> RingServer {
        let shared = Arc::new(Shared {
            ring: ring as usize,
            busy: AtomicBool::new(false),
            active: AtomicBool::new(false),
            lent: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            ctx: AtomicUsize::new(0),
            handler: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            wake_gen: Mutex::new(0),
            wake: Condvar::new(),
            served: AtomicU64::new(0),
            idle,
            job: Mutex::new(None),
        });
        let s = shared.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("wasce-ring".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                let _ = tx.send(unsafe { libc::gettid() });
                s.run();
            })
            .expect("spawn the ring server");
        let tid = std::os::unix::thread::JoinHandleExt::as_pthread_t(&thread);
        RingServer { shared, thread: Some(thread), tid, kernel_tid: std::sync::OnceLock::new(), started: Mutex::new(Some(rx)) }
    }

    /// Lend the store (`ctx`) to the server for the duration of a guest call.
    pub fn activate(&self, ctx: *mut (), handler: RingHandler) {
        self.shared.ctx.store(ctx as usize, SeqCst);
        self.shared.handler.store(handler as usize, SeqCst);
        self.shared.active.store(true, SeqCst);
        self.wake();
    }

    /// End the call: after this returns the server no longer touches the store.
    pub fn deactivate(&self) {
        self.shared.active.store(false, SeqCst);
        self.shared.lent.store(false, SeqCst);
        self.wait_idle();
        self.shared.panicked.store(false, SeqCst);
    }

    /// The vCPU thread enters KVM_RUN: the server may serve requests with the store.
    pub fn lend(&self) {
        self.shared.lent.store(true, SeqCst);
    }

    /// The vCPU thread left KVM_RUN: take the store back. After this returns the server does
    /// not touch the store until the next `lend`. Returns false if a ring-served call panicked
    /// since the last `reclaim` (the run must end with an error).
    pub fn reclaim(&self) -> bool {
        self.shared.lent.store(false, SeqCst);
        self.wait_idle();
        !self.shared.panicked.swap(false, SeqCst)
    }

    /// Wake a sleeping server (cheap when it is awake).
    pub fn wake(&self) {
        let mut gen = self.shared.wake_gen.lock().unwrap_or_else(|e| e.into_inner());
        *gen += 1;
        self.shared.wake.notify_one();
    }

    /// Wait until the server is not serving a request.
    pub fn wait_idle(&self) {
        let mut spins = 0u32;
        while self.shared.busy.load(SeqCst) {
            spins += 1;
            if spins < 1000 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Run `job` on the server thread: it runs when the server next wakes (now, if it is
    /// asleep), before it serves any further request.
    pub fn post(&self, job: super::Job) {
        *self.shared.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        self.wake();
    }

    /// The server's kernel thread id (waits for the thread to have started).
    pub fn kernel_tid(&self) -> libc::pid_t {
        *self.kernel_tid.get_or_init(|| {
            let rx = self.started.lock().unwrap_or_else(|e| e.into_inner()).take();
            rx.and_then(|rx| rx.recv().ok()).expect("ring server thread id")
        })
    }

    pub fn served(&self) -> u64 {
        self.shared.served.load(SeqCst)
    }

    pub fn thread_id(&self) -> libc::pthread_t {
        self.tid
    }

    /// CPU time the server thread has used.
    pub fn cpu_time(&self) -> Duration {
        let mut clock: libc::clockid_t = 0;
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: the thread is alive until `drop` joins it.
        unsafe {
            if libc::pthread_getcpuclockid(self.tid, &mut clock) != 0 || libc::clock_gettime(clock, &mut t) != 0 {
                return Duration::ZERO;
            }
        }
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }
}

impl RingServer {
    /// Tell the server thread to end, without waiting for it (the drop waits): a VM being torn
    /// down asks first, so that the thread's wake-up overlaps the closing of the VM.
    pub fn stop(&self) {
        self.shared.active.store(false, SeqCst);
        self.shared.shutdown.store(true, SeqCst);
        self.wake();
    }
}

impl Drop for RingServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
