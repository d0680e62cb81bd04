//! Self-confinement of the host after setup: once the module is loaded, the VM made, the
//! preopens and listeners opened and the WASI imports defined, every thread that will run on
//! behalf of the guest confines itself:
//!
//! * `no_new_privs`;
//! * Landlock (`landlock.rs`): the filesystem is the preopened directories, nothing else;
//! * a seccomp allow-list per thread role (`seccomp.rs`, reviewed data with a reason per call).
//!   A call outside the list raises SIGSYS; the handler here writes
//!   `wasce: sandbox: blocked syscall NAME (NR) on the ROLE thread; ...` to stderr and ends the
//!   process with status [`EXIT_BLOCKED`] (159 = 128 + SIGSYS, what a shell reports for a
//!   process killed by SIGSYS).
//! * a panic hook (installed by the first `confine`, before any filter): a panic on a confined
//!   thread is reported as `wasce: panic on the ROLE thread at FILE:LINE:COL: MESSAGE` with
//!   nothing but `write(2)` (std's own report asks for the thread id and, with
//!   `RUST_BACKTRACE`, opens files), then unwinds as usual: an embedder's `catch_unwind` still
//!   catches it, a panic out of `main` ends the process with Rust's status 101, and one that
//!   cannot unwind (out of an `extern "C"` function) aborts (SIGABRT, shell status 134); the
//!   allow-lists hold the calls `abort()` makes. Unconfined threads keep the previous hook.
//!
//! Seccomp and Landlock apply per thread. `confine` confines the calling thread (the one that
//! will call into the store: the vCPU thread in the VM, the store thread in process mode) and
//! has each of the store's helper threads, which exist since setup, confine itself at a
//! well-defined point: it posts a job to the thread (ring server, watchdog) and waits for its
//! result; the helper runs it before it serves any further request. No thread is created after
//! confinement (the watchdog lives as long as the VM; the TSC calibration helper has ended).
//!
//! The compile worker (`crate::confined`, a child process that compiles an untrusted module)
//! confines itself whole with `confine_compiler` (role `Compiler`, no filesystem at all) while it
//! has one thread; the threads of its parallel compile start later and inherit it.
//! With `Policy::exclusive` the process must have no other thread (checked in
//! `/proc/self/task` before anything is confined); the CLI sets it.

mod landlock;
pub mod seccomp;
pub mod syscalls;

use crate::store::Store;
use crate::Isolation;
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// The exit status after a blocked system call: 128 + SIGSYS.
pub const EXIT_BLOCKED: u8 = 159;

/// What a thread does, which decides its allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Runs the guest (KVM_RUN), handles its exits: builtins, memory growth, WASI calls.
    Vcpu = 1,
    /// Process mode: runs compiled code directly, handles builtins and WASI calls.
    Store = 2,
    /// Serves WASI calls posted on the exit-less ring.
    RingServer = 3,
    /// Sleeps until a call's deadline and kicks the vCPU (and ring server).
    Timeout = 4,
    /// Every thread of the compile worker process (`crate::confined`): parses and compiles an
    /// untrusted module read from stdin, writes the artifact to stdout.
    Compiler = 5,
    /// The HTTP thread of `wasce serve`: accepts connections on the socket bound during setup,
    /// reads requests and writes responses, hands runs to the worker (vCPU) threads.
    Server = 6,
}

impl Role {
    pub const ALL: [Role; 6] = [Role::Vcpu, Role::Store, Role::RingServer, Role::Timeout, Role::Compiler, Role::Server];

    /// The name used in messages (`on the vCPU thread`).
    pub fn thread_name(self) -> &'static str {
        match self {
            Role::Vcpu => "vCPU",
            Role::Store => "store",
            Role::RingServer => "ring-server",
            Role::Timeout => "timeout",
            Role::Compiler => "compiler",
            Role::Server => "server",
        }
    }

    fn from_u8(v: u8) -> Option<Role> {
        Role::ALL.into_iter().find(|r| *r as u8 == v)
    }
}

/// Why the host could not confine itself.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox: {what} is not available on this kernel ({detail}); run with --no-sandbox to run without the sandbox")]
    Unsupported { what: &'static str, detail: String },
    #[error("sandbox: building the seccomp filter: {0}")]
    Seccomp(String),
    #[error("sandbox: installing the seccomp filter on the {thread} thread: {detail}; run with --no-sandbox to run without the sandbox")]
    Install { thread: &'static str, detail: String },
    #[error("sandbox: Landlock: {0}; run with --no-sandbox to run without the sandbox")]
    Landlock(String),
    #[error("sandbox: cannot open preopened directory {} for the Landlock rules: {detail}", path.display())]
    Dir { path: PathBuf, detail: String },
    #[error("sandbox: the process has threads the sandbox does not know ({0}); they would stay unconfined")]
    ForeignThreads(String),
    #[error("sandbox: the {0} thread did not confine itself")]
    Helper(&'static str),
}

/// What to confine to.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// The preopened host directories: the only part of the filesystem left reachable.
    pub dirs: Vec<PathBuf>,
    /// Require that the calling thread and the store's helpers are the only threads of the
    /// process (anything else would stay unconfined).
    pub exclusive: bool,
}

/// What `confine` did.
#[derive(Clone, Debug)]
pub struct Confined {
    /// The roles confined, with the kernel thread id of each.
    pub threads: Vec<(Role, libc::pid_t)>,
}

thread_local! {
    /// This thread's role once confined (0: not confined), for the SIGSYS report.
    static ROLE: Cell<u8> = const { Cell::new(0) };
}

/// The role of threads started after their process was confined (they inherit the filters
/// and the Landlock domain of the thread that started them): the compile worker's threads.
static INHERITED_ROLE: AtomicU8 = AtomicU8::new(0);

/// Confine the calling thread (the one that will call into `store`) and the store's helper
/// threads. Call after setup (store, WASI, instantiation as needed) and before running guest
/// code you do not trust; after it returns, only the calls in the roles' allow-lists work and
/// only `policy.dirs` is reachable on the filesystem, for the rest of the process's life.
pub fn confine(store: &Store, policy: &Policy) -> Result<Confined, SandboxError> {
    probe_seccomp()?;
    let own_role = match store.isolation() {
        Isolation::Kvm => Role::Vcpu,
        Isolation::Process => {
            crate::process::prepare_thread();
            Role::Store
        }
    };
    // Everything the calling thread would otherwise do lazily on its first call.
    crate::store::prime_thread_stack();

    let ruleset = landlock::ruleset(&policy.dirs)?;
    let (ring, kicker) = store.helper_threads();
    // SAFETY: gettid has no preconditions.
    let own_tid = unsafe { libc::gettid() };
    let mut threads = vec![(own_role, own_tid)];
    threads.extend(ring.map(|r| (Role::RingServer, r.kernel_tid())));
    threads.extend(kicker.map(|k| (Role::Timeout, k.tid())));
    if policy.exclusive {
        check_threads(&threads)?;
    }
    install_sigsys_handler();
    install_panic_hook();

    // The helpers confine themselves while this thread does: each loads a filter of its own.
    let clone = |r: &::landlock::RulesetCreated| r.try_clone().map_err(|e| SandboxError::Landlock(e.to_string()));
    let mut helpers = Vec::new();
    let own = (|| {
        if let Some(ring) = ring {
            helpers.push(post_confine(Role::RingServer, clone(&ruleset)?, |job| ring.post(job))?);
        }
        if let Some(kicker) = kicker {
            helpers.push(post_confine(Role::Timeout, clone(&ruleset)?, |job| kicker.post(job))?);
        }
        let program = seccomp::program(own_role)?;
        confine_current(own_role, &program, ruleset)
    })();
    // Every posted helper is waited for, whatever failed.
    let helpers = wait_all(helpers);
    own.and(helpers)?;
    Ok(Confined { threads })
}

/// Confine the calling thread alone, in `role`, to `policy.dirs`: for a thread that drives no
/// store of its own (the HTTP thread of `wasce serve`, `Role::Server`), or a worker thread
/// that drives several stores (`Role::Vcpu`, with `confine_helpers` for each store). The
/// process is not checked for other threads: the caller confines every thread it starts.
pub fn confine_thread(role: Role, policy: &Policy) -> Result<(), SandboxError> {
    probe_seccomp()?;
    if role == Role::Store {
        crate::process::prepare_thread();
    }
    crate::store::prime_thread_stack();
    let ruleset = landlock::ruleset(&policy.dirs)?;
    install_sigsys_handler();
    install_panic_hook();
    let program = seccomp::program(role)?;
    confine_current(role, &program, ruleset)
}

/// Have `store`'s helper threads (ring server, watchdog) confine themselves, when another
/// thread, confined with `confine_thread`, drives the store.
pub fn confine_helpers(store: &Store, policy: &Policy) -> Result<(), SandboxError> {
    probe_seccomp()?;
    install_sigsys_handler();
    install_panic_hook();
    let (ring, kicker) = store.helper_threads();
    let mut helpers = Vec::new();
    let posted = (|| {
        if let Some(ring) = ring {
            helpers.push(post_confine(Role::RingServer, landlock::ruleset(&policy.dirs)?, |job| ring.post(job))?);
        }
        if let Some(kicker) = kicker {
            helpers.push(post_confine(Role::Timeout, landlock::ruleset(&policy.dirs)?, |job| kicker.post(job))?);
        }
        Ok(())
    })();
    let helpers = wait_all(helpers);
    posted.and(helpers)
}

/// Confine the compile worker (`crate::confined`), a process whose only thread is the caller:
/// no_new_privs, Landlock with no filesystem access (and no TCP, scoped signals), the
/// `Role::Compiler` refusals and allow-list. Threads it starts afterwards (the parallel
/// compile's) inherit all of it. Irreversible, for the rest of the process's life.
pub fn confine_compiler() -> Result<(), SandboxError> {
    probe_seccomp()?;
    let role = Role::Compiler;
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    check_threads(&[(role, tid)])?;
    let refusals = seccomp::refusal_programs(role)?;
    let program = seccomp::program(role)?;
    let ruleset = landlock::ruleset(&[])?;
    install_sigsys_handler();
    INHERITED_ROLE.store(role as u8, Ordering::Relaxed);
    ROLE.with(|r| r.set(role as u8));
    // SAFETY: PR_SET_NO_NEW_PRIVS with the documented arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(SandboxError::Install { thread: role.thread_name(), detail: format!("no_new_privs: {}", std::io::Error::last_os_error()) });
    }
    landlock::restrict_current(ruleset)?;
    // The refusals first: the allow-list, installed last, does not allow installing filters.
    for refusal in &refusals {
        seccompiler::apply_filter(refusal).map_err(|e| SandboxError::Install { thread: role.thread_name(), detail: e.to_string() })?;
    }
    seccompiler::apply_filter(&program).map_err(|e| SandboxError::Install { thread: role.thread_name(), detail: e.to_string() })
}

/// Fail early (before any thread is confined) when the kernel has no seccomp filters.
fn probe_seccomp() -> Result<(), SandboxError> {
    // SAFETY: PR_GET_SECCOMP takes no further arguments.
    if unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } < 0 {
        return Err(SandboxError::Unsupported { what: "seccomp", detail: std::io::Error::last_os_error().to_string() });
    }
    Ok(())
}

/// Every thread of this process must be one we confine. Threads that were joined may still be
/// finishing their exit in the kernel (a scoped compile thread is "joined" when its closure
/// returns): they get a moment to disappear.
fn check_threads(known: &[(Role, libc::pid_t)]) -> Result<(), SandboxError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match foreign_threads(known) {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_micros(50)),
        }
    }
}

fn foreign_threads(known: &[(Role, libc::pid_t)]) -> Result<(), SandboxError> {
    let tasks = std::fs::read_dir("/proc/self/task").map_err(|e| SandboxError::ForeignThreads(format!("cannot list /proc/self/task: {e}")))?;
    let mut foreign = Vec::new();
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<libc::pid_t>().ok()) else { continue };
        if !known.iter().any(|(_, k)| *k == tid) {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            foreign.push(format!("{tid} `{}`", comm.trim()));
        }
    }
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(SandboxError::ForeignThreads(foreign.join(", ")))
    }
}

/// A helper thread confining itself (`post_confine`): `wait` for its result.
struct PendingHelper {
    role: Role,
    result: mpsc::Receiver<Result<(), SandboxError>>,
}

impl PendingHelper {
    fn wait(self) -> Result<(), SandboxError> {
        match self.result.recv_timeout(Duration::from_secs(10)) {
            Ok(result) => result,
            Err(_) => Err(SandboxError::Helper(self.role.thread_name())),
        }
    }
}

/// Wait for every helper, even after one has failed (so that none is still confining itself
/// when the caller returns); the first error.
fn wait_all(helpers: Vec<PendingHelper>) -> Result<(), SandboxError> {
    helpers.into_iter().map(PendingHelper::wait).fold(Ok(()), Result::and)
}

/// Have a helper thread confine itself in `role`: `post` hands it the job.
fn post_confine(role: Role, ruleset: ::landlock::RulesetCreated, post: impl FnOnce(crate::kvm::Job)) -> Result<PendingHelper, SandboxError> {
    let program = seccomp::program(role)?;
    // A one-slot channel allocates here, so the helper's send does not.
    let (tx, rx) = mpsc::sync_channel(1);
    post(Box::new(move || {
        let _ = tx.send(confine_current(role, &program, ruleset));
    }));
    Ok(PendingHelper { role, result: rx })
}

/// no_new_privs, Landlock, then the seccomp filter (last: it does not allow the calls above).
fn confine_current(role: Role, program: &seccompiler::BpfProgram, ruleset: ::landlock::RulesetCreated) -> Result<(), SandboxError> {
    ROLE.with(|r| r.set(role as u8));
    // SAFETY: PR_SET_NO_NEW_PRIVS with the documented arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(SandboxError::Install { thread: role.thread_name(), detail: format!("no_new_privs: {}", std::io::Error::last_os_error()) });
    }
    landlock::restrict_current(ruleset)?;
    seccompiler::apply_filter(program).map_err(|e| SandboxError::Install { thread: role.thread_name(), detail: e.to_string() })
}

fn install_sigsys_handler() {
    // SAFETY: installing a handler with a zeroed, then filled, sigaction; the handler is
    // async-signal-safe (it formats into a stack buffer, then write and _exit).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut());
    }
}

/// Report panics of confined threads (see the module documentation); other threads keep the
/// hook that was there. Installed once, by the first `confine`, before any thread is confined.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| match Role::from_u8(ROLE.with(|r| r.get())) {
            Some(role) => {
                let m = panic_report(role, info.location(), panic_message(info.payload()));
                // SAFETY: writing our own stack buffer to stderr.
                unsafe { libc::write(2, m.buf.as_ptr() as *const libc::c_void, m.len) };
            }
            None => previous(info),
        }));
    });
}

/// The message of a panic payload (`panic!` makes a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    match payload.downcast_ref::<&str>() {
        Some(s) => s,
        None => payload.downcast_ref::<String>().map_or("Box<dyn Any>", String::as_str),
    }
}

/// The report of a panic on a confined thread, built without allocating.
fn panic_report(role: Role, location: Option<&std::panic::Location<'_>>, message: &str) -> Msg<1024> {
    let mut m = Msg { buf: [0; 1024], len: 0 };
    m.push(b"wasce: panic on the ");
    m.push(role.thread_name().as_bytes());
    m.push(b" thread");
    if let Some(l) = location {
        m.push(b" at ");
        m.push(l.file().as_bytes());
        m.push(b":");
        m.push_num(l.line() as u64);
        m.push(b":");
        m.push_num(l.column() as u64);
    }
    m.push(b": ");
    m.push(message.as_bytes());
    // A long message is cut, the newline kept.
    m.len = m.len.min(m.buf.len() - 1);
    m.push(b"\n");
    m
}

/// The SIGSYS part of `siginfo_t` (`_sigsys` of the kernel's union, after the three ints and
/// their padding).
#[repr(C)]
struct SigsysInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

/// A message built without allocating (truncated to `N` bytes).
struct Msg<const N: usize = 256> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Msg<N> {
    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn push_num(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

/// The report of a blocked call (also used by tests).
fn report(nr: i64, role: Option<Role>) -> Msg {
    let mut m = Msg { buf: [0; 256], len: 0 };
    m.push(b"wasce: sandbox: blocked syscall ");
    m.push(syscalls::name(nr).unwrap_or("unknown").as_bytes());
    m.push(b" (");
    if nr < 0 {
        m.push(b"-");
    }
    m.push_num(nr.unsigned_abs());
    m.push(b") on the ");
    m.push(role.map_or("unconfined", Role::thread_name).as_bytes());
    m.push(b" thread; run with --no-sandbox to debug\n");
    m
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; for a seccomp SIGSYS
    // it holds the `_sigsys` member, laid out as `SigsysInfo`.
    let nr = unsafe { (*(info as *const SigsysInfo)).syscall } as i64;
    let own = ROLE.with(|r| r.get());
    let role = Role::from_u8(if own != 0 { own } else { INHERITED_ROLE.load(Ordering::Relaxed) });
    let m = report(nr, role);
    // SAFETY: write and _exit are async-signal-safe; the buffer is on this stack.
    unsafe {
        libc::write(2, m.buf.as_ptr() as *const libc::c_void, m.len);
        libc::_exit(EXIT_BLOCKED as libc::c_int);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_the_call_and_the_thread() {
        let m = report(libc::SYS_socket, Some(Role::RingServer));
        assert_eq!(
            std::str::from_utf8(&m.buf[..m.len]).unwrap(),
            "wasce: sandbox: blocked syscall socket (41) on the ring-server thread; run with --no-sandbox to debug\n"
        );
        let m = report(0x4000_0029, None);
        assert!(std::str::from_utf8(&m.buf[..m.len]).unwrap().contains("unknown (1073741865) on the unconfined thread"));
    }

    #[test]
    fn every_role_compiles_and_is_minimal() {
        for role in Role::ALL {
            let program = seccomp::program(role).unwrap();
            assert!(!program.is_empty() && program.len() < 4096, "{role:?}: {} instructions", program.len());
            let calls = seccomp::syscalls(role);
            for forbidden in [libc::SYS_socket, libc::SYS_connect, libc::SYS_bind, libc::SYS_execve, libc::SYS_clone3, libc::SYS_fork, libc::SYS_ptrace, libc::SYS_open, libc::SYS_seccomp, libc::SYS_prctl] {
                assert!(!calls.contains(&forbidden), "{role:?} allows {:?}", syscalls::name(forbidden));
            }
            // clone: only the compile worker starts threads after confinement, and only threads.
            for a in seccomp::allowed(role).filter(|a| a.nr == libc::SYS_clone) {
                assert_eq!(role, Role::Compiler, "{role:?} allows clone");
                assert!(a.when.iter().any(|c| matches!(c, seccomp::Cond::Set(0, m) if m & (libc::CLONE_THREAD as u64) != 0)));
            }
            // The report of a blocked call must itself be possible.
            assert!(calls.contains(&libc::SYS_write) && calls.contains(&libc::SYS_exit_group));
        }
        assert!(seccomp::syscalls(Role::RingServer).iter().all(|nr| *nr != libc::SYS_ioctl));
        assert!(seccomp::syscalls(Role::Store).iter().all(|nr| *nr != libc::SYS_ioctl));
        // The compile worker: no files, no KVM, no sockets, no signals to others; the refused
        // calls answer with an error.
        let compiler = seccomp::syscalls(Role::Compiler);
        for nr in [libc::SYS_ioctl, libc::SYS_openat, libc::SYS_openat2, libc::SYS_socket, libc::SYS_execveat, libc::SYS_kill, libc::SYS_ptrace] {
            assert!(!compiler.contains(&nr), "the compiler allows {:?}", syscalls::name(nr));
        }
        assert_eq!(seccomp::refusal_programs(Role::Compiler).unwrap().len(), 2, "ENOSYS and EACCES");
        assert!(seccomp::refusal_programs(Role::Vcpu).unwrap().is_empty());
        // mmap and mprotect are only allowed without PROT_EXEC.
        for role in Role::ALL {
            for a in seccomp::allowed(role).filter(|a| a.nr == libc::SYS_mmap || a.nr == libc::SYS_mprotect) {
                assert!(matches!(a.when, [seccomp::Cond::Clear(2, m)] if *m == libc::PROT_EXEC as u64));
            }
        }
    }

    /// `cargo test -p wasce-engine --lib sandbox -- --nocapture` prints the tables. They are
    /// reviewed data, so they are checked here: every entry names a known system call and
    /// gives a reason, conditions name real arguments, every group is used, and the calls
    /// that must stay with one role do.
    #[test]
    fn print_tables() {
        let groups: Vec<&seccomp::Group> = Role::ALL.iter().flat_map(|r| seccomp::groups(*r).iter().copied()).collect();
        for group in [&seccomp::BASE, &seccomp::MEMORY, &seccomp::WASI, &seccomp::SIGNALED, &seccomp::KVM, &seccomp::PROCESS, &seccomp::STORE, &seccomp::KICK, &seccomp::COMPILER] {
            assert!(groups.iter().any(|g| g.name == group.name), "group {} is in no role", group.name);
            assert!(!group.allow.is_empty(), "group {} is empty", group.name);
            for a in group.allow {
                let name = syscalls::name(a.nr).unwrap_or_else(|| panic!("group {}: unknown system call {}", group.name, a.nr));
                assert!(a.why.trim().len() >= 4 && !a.why.to_lowercase().contains("todo"), "group {}: {name} has no reason", group.name);
                for c in a.when {
                    let (seccomp::Cond::Eq(arg, _) | seccomp::Cond::Clear(arg, _) | seccomp::Cond::Set(arg, _)) = *c;
                    assert!(arg < 6, "group {}: {name} tests argument {arg}", group.name);
                }
            }
        }
        for role in Role::ALL {
            // Base is in every role, and every role can report a blocked call.
            assert!(seccomp::groups(role).iter().any(|g| g.name == seccomp::BASE.name), "{role:?} lacks the base group");
            println!("{} thread: {} system calls, {} entries", role.thread_name(), seccomp::syscalls(role).len(), seccomp::allowed(role).count());
            for a in seccomp::allowed(role) {
                println!("  {:<16} {:?} {}", syscalls::name(a.nr).unwrap_or("?"), a.when, a.why);
            }
        }
        // Calls that belong to one role only: KVM to the vCPU thread, the trap handler's
        // sigaction to the process-mode store thread, the watchdog's kick to the timeout thread,
        // WASI to the threads that serve it (never the timeout thread).
        let only = |nr: i64, role: Role, conds: fn(&seccomp::Allow) -> bool| {
            for other in Role::ALL.into_iter().filter(|r| *r != role) {
                assert!(!seccomp::allowed(other).any(|a| a.nr == nr && conds(a)), "{other:?} allows {} (only {role:?} may)", syscalls::name(nr).unwrap_or("?"));
            }
        };
        only(libc::SYS_ioctl, Role::Vcpu, |_| true);
        // (The compiler worker may install glibc's SIGSETXID handler, signal 33, and only that.)
        only(libc::SYS_rt_sigaction, Role::Store, |a| !matches!(a.when, [seccomp::Cond::Eq(0, seccomp::Value::Const(n))] if *n == 33));
        only(libc::SYS_tgkill, Role::Timeout, |a| a.when.iter().any(|c| matches!(c, seccomp::Cond::Eq(2, seccomp::Value::KickSignal))));
        for nr in [libc::SYS_openat2, libc::SYS_read, libc::SYS_mmap, libc::SYS_unlinkat] {
            assert!(!seccomp::syscalls(Role::Timeout).contains(&nr), "the timeout thread allows {}", syscalls::name(nr).unwrap_or("?"));
        }
        // The timeout thread writes to stderr only.
        assert!(seccomp::allowed(Role::Timeout).filter(|a| a.nr == libc::SYS_write).all(|a| matches!(a.when, [seccomp::Cond::Eq(0, seccomp::Value::Const(2))])));
        // Signals may only be sent to this process, never elsewhere.
        for role in Role::ALL {
            for a in seccomp::allowed(role).filter(|a| a.nr == libc::SYS_tgkill) {
                assert!(a.when.iter().any(|c| matches!(c, seccomp::Cond::Eq(0, seccomp::Value::Pid))), "{role:?}: tgkill to any process");
            }
        }
    }

    #[test]
    fn kvm_request_numbers() {
        assert_eq!(seccomp::KVM_RUN, 0xae80);
        assert_eq!(seccomp::KVM_SET_USER_MEMORY_REGION, 0x4020_ae46);
    }
}
