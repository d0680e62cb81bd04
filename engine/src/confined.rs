//! Compiling untrusted modules in a confined child process, within a time and a memory bound.
//!
//! Parsing and compiling a module is the largest attack surface that runs before the host
//! confines itself, and its cost is chosen by whoever wrote the module (a pathological function
//! can keep Cranelift busy for minutes or make it allocate gigabytes). [`compile_confined`]
//! therefore runs the compile in a worker process:
//!
//! * The worker is the current executable (or [`CompileLimits::worker`]) run with the hidden
//!   argument [`WORKER_ARG`]; its `main` must start with [`worker_main_if_requested`] (the
//!   `wasce` binary's does). It is a fresh `execve`, never a `fork` of a process with threads.
//! * The parent writes a request to the worker's stdin: a header (settings, the memory bound, a
//!   fresh random artifact key) and the module bytes, WebAssembly binary or text (the text is
//!   parsed in the worker too).
//! * The worker bounds its writable memory (`RLIMIT_DATA`) and turns off core dumps, then
//!   confines itself (`sandbox::confine_compiler`: no_new_privs, Landlock with no filesystem
//!   access, the `compiler` seccomp allow-list: stdin, stdout, stderr, memory, its own threads),
//!   reads the module, compiles it and writes one response frame to stdout: the artifact, or
//!   the compile error.
//! * The parent enforces the wall-clock bound (the worker is killed and reaped when it runs
//!   past it), reads at most the memory bound of output and 64 KiB of diagnostics, and trusts
//!   nothing it reads: the artifact goes through the full artifact checks
//!   (`artifact::deserialize`), must carry the requested settings, and is loaded like any other
//!   compiled module; texts are cut to a few KiB and stripped of control characters.
//!
//! Every way this can end is a typed error ([`CompileWorkerError`]), except an invalid module,
//! which is the same `Error::Compile(CompileError::Invalid)` as an in-process compile.
//!
//! `crate::load` and `crate::compile_to_artifact` still compile in the calling process, for
//! trusted input (the spec scripts of `wasce wast`, embedders' own modules).

use crate::error::Error;
use crate::store::Module;
use std::ffi::OsStr;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use wasce_compiler::artifact::{self, Artifact, ArtifactError};
use wasce_compiler::{BoundsChecks, CompileError, CompiledModule, Features, Settings};

/// The hidden first argument that makes a wasce executable a compile worker.
pub const WORKER_ARG: &str = "__compile-worker";

/// The test hook (like `WASCE_SANDBOX_PROBE`): `WASCE_COMPILE_PROBE=socket` makes the worker
/// call `socket(2)` right after it confined itself, `socket-thread` on a thread it starts
/// then; the sandbox must end it (`CompileWorkerError::Blocked`, status 159 from the CLI).
pub const PROBE_VAR: &str = "WASCE_COMPILE_PROBE";

/// Default wall-clock bound of one compile: large modules (CPython's interpreter, tens of MB)
/// compile in well under a minute on two cores.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Default bound of the worker's writable memory.
pub const DEFAULT_MEMORY: u64 = 4 << 30;

/// The bounds of a confined compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileLimits {
    /// Wall-clock time from starting the worker to its answer (`--compile-timeout`).
    pub timeout: Duration,
    /// The worker's writable memory in bytes (`RLIMIT_DATA`: heap, anonymous mappings, thread
    /// stacks), and the most artifact bytes the parent reads (`--compile-memory`).
    pub memory: u64,
    /// The worker executable; `None`: the current executable (whose `main` must call
    /// [`worker_main_if_requested`] first).
    pub worker: Option<PathBuf>,
    /// Confine the worker (the default). Debugging only: `false` (`--no-sandbox`) leaves it
    /// unconfined, still a separate process within the bounds.
    pub confine: bool,
}

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits { timeout: DEFAULT_TIMEOUT, memory: DEFAULT_MEMORY, worker: None, confine: true }
    }
}

/// Why a confined compile failed, other than an invalid module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileWorkerError {
    /// The worker ran past `CompileLimits::timeout`; it was killed.
    #[error("compiling took longer than {}, the compile time limit (--compile-timeout); the compiler was stopped", show_duration(*limit))]
    Timeout { limit: Duration },
    /// The worker ran out of `CompileLimits::memory`; `detail` says how it ended.
    #[error("compiling needed more memory than {}, the compile memory limit (--compile-memory): {detail}", show_size(*limit))]
    Memory { limit: u64, detail: String },
    /// The worker made a system call its sandbox does not allow, and was ended for it.
    #[error("the compiler was stopped by the sandbox: {report}")]
    Blocked { report: String },
    /// The module is neither a WebAssembly binary nor valid WebAssembly text (`detail` is the
    /// text parser's message, with its source excerpt).
    #[error("not a WebAssembly binary, and not valid text: {detail}")]
    Text { detail: String },
    /// The worker could not be started.
    #[error("cannot start the compile worker {}: {detail}", program.display())]
    Start { program: PathBuf, detail: String },
    /// The worker ended otherwise (crashed, killed, wrote something that is not an answer).
    #[error("the compile worker failed ({status}): {detail}")]
    Failed { status: String, detail: String },
}

/// Compile `input` (a WebAssembly binary or text module, untrusted) with `settings` in a
/// confined worker process within `limits` (see the module documentation). The result has
/// passed the artifact checks; load it with `LoadedModule::new` (or use [`load_confined`]).
///
/// The caller must be able to start processes (call it before confining itself), and should
/// ignore SIGPIPE, as Rust programs do (a worker that ends early closes its stdin).
pub fn compile_confined(input: &[u8], settings: &Settings, limits: &CompileLimits) -> Result<CompiledModule, Error> {
    let program = match &limits.worker {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| CompileWorkerError::Start { program: PathBuf::from("(current executable)"), detail: e.to_string() })?,
    };
    let key = fresh_key()?;
    let request = Request { settings: settings.clone(), memory: limits.memory, confine: limits.confine, key, len: input.len() as u64 };
    let deadline = Instant::now() + limits.timeout;
    let mut command = Command::new(&program);
    command.arg(WORKER_ARG).env_clear().current_dir("/").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(probe) = std::env::var_os(PROBE_VAR) {
        command.env(PROBE_VAR, probe);
    }
    let child = command.spawn().map_err(|e| CompileWorkerError::Start { program: program.clone(), detail: e.to_string() })?;
    // Output larger than the worker could have built in its memory is not an answer.
    let out_cap = usize::try_from(limits.memory).unwrap_or(usize::MAX).max(1 << 20);
    let run = exchange(child, &request.encode(), input, deadline, out_cap).map_err(|e| CompileWorkerError::Failed { status: "talking to it".into(), detail: e.to_string() })?;
    if run.timed_out {
        return Err(CompileWorkerError::Timeout { limit: limits.timeout }.into());
    }
    let stderr = String::from_utf8_lossy(&run.err).into_owned();
    if run.status.success() && !run.out_too_large {
        return answer(&run.out, settings, &key);
    }
    Err(failure(run.status, run.out_too_large, &stderr, limits).into())
}

/// [`compile_confined`], then load the module for execution.
pub fn load_confined(input: &[u8], settings: &Settings, limits: &CompileLimits) -> Result<Module, Error> {
    crate::code::LoadedModule::new(compile_confined(input, settings, limits)?)
}

// ---- The artifact between worker and parent -----------------------------------------------------

/// The key authenticating the artifact of one compile (fresh for each).
type Key = [u8; 32];

/// The artifact the worker writes, under the compile's one-off key.
fn seal(module: &CompiledModule, settings: &Settings, key: &Key) -> Result<Vec<u8>, ArtifactError> {
    artifact::serialize(module, settings, &artifact::Key(*key))
}

/// The parent's reading of it, with every check of the artifact loader.
fn open<'a>(bytes: &'a [u8], key: &Key) -> Result<Artifact<'a>, ArtifactError> {
    artifact::deserialize(bytes, &artifact::Key(*key))
}

fn fresh_key() -> Result<Key, Error> {
    crate::key::random().map(|k| k.0).map_err(|e| Error::Resource(format!("cannot make a key for the compile worker: {e}")))
}

// ---- The protocol ------------------------------------------------------------------------------

const REQUEST_MAGIC: &[u8; 8] = b"WCWREQ01";
const RESPONSE_MAGIC: &[u8; 8] = b"WCWRES01";
const REQUEST_LEN: usize = 8 + 8 + 4 + 32 + 8;
const RESPONSE_HEAD: usize = 8 + 1 + 8;

/// Response tags.
const ARTIFACT: u8 = 0;
const INVALID: u8 = 1;
const TEXT: u8 = 2;
const UNSUPPORTED: u8 = 3;
const CODEGEN: u8 = 4;
const ISA: u8 = 5;

/// The most of a message (compile error, worker diagnostics) passed on.
const MAX_MESSAGE: usize = 4096;
/// The most of the worker's stderr kept.
const MAX_STDERR: usize = 64 << 10;

/// Exit status of a worker that panicked (its panic hook writes the message to stderr first).
const EXIT_PANIC: u8 = 101;
/// Exit status of a worker that could not read its request or confine itself.
const EXIT_SETUP: u8 = 102;

/// Where the feature bits sit in a request's settings word.
const FEATURES_SHIFT: u32 = 8;
const _: () = assert!(wasce_compiler::Features::TABLE.len() <= 32 - FEATURES_SHIFT as usize);

struct Request {
    settings: Settings,
    memory: u64,
    confine: bool,
    key: Key,
    len: u64,
}

impl Request {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(REQUEST_LEN);
        v.extend_from_slice(REQUEST_MAGIC);
        v.extend_from_slice(&self.memory.to_le_bytes());
        let s = &self.settings;
        let flags = u32::from(s.consume_fuel) | u32::from(s.bounds_checks == BoundsChecks::Explicit) << 1 | u32::from(s.parallel) << 2 | u32::from(!self.confine) << 3 | s.features.bits() << FEATURES_SHIFT;
        v.extend_from_slice(&flags.to_le_bytes());
        v.extend_from_slice(&self.key);
        v.extend_from_slice(&self.len.to_le_bytes());
        v
    }

    fn decode(b: &[u8; REQUEST_LEN]) -> Result<Request, String> {
        if &b[..8] != REQUEST_MAGIC {
            return Err("not a compile request".into());
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let flags = u32::from_le_bytes(b[16..20].try_into().expect("4 bytes"));
        let features = Features::from_bits(flags >> FEATURES_SHIFT);
        let (Some(features), 0) = (features, flags & !0b1111 & ((1 << FEATURES_SHIFT) - 1)) else {
            return Err(format!("unknown settings {flags:#x}"));
        };
        let settings = Settings {
            consume_fuel: flags & 1 != 0,
            bounds_checks: if flags & 2 != 0 { BoundsChecks::Explicit } else { BoundsChecks::GuardPages },
            parallel: flags & 4 != 0,
            features,
        };
        Ok(Request { settings, memory: u64_at(8), confine: flags & 8 == 0, key: b[20..52].try_into().expect("32 bytes"), len: u64_at(52) })
    }
}

fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(RESPONSE_HEAD + payload.len());
    v.extend_from_slice(RESPONSE_MAGIC);
    v.push(tag);
    v.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// The worker's answer (it exited with status 0), checked.
fn answer(out: &[u8], settings: &Settings, key: &Key) -> Result<CompiledModule, Error> {
    let bad = |detail: String| Error::from(CompileWorkerError::Failed { status: "exit status 0".into(), detail });
    if out.len() < RESPONSE_HEAD || &out[..8] != RESPONSE_MAGIC {
        return Err(bad(format!("it wrote no answer ({} bytes)", out.len())));
    }
    let tag = out[8];
    let len = u64::from_le_bytes(out[9..17].try_into().expect("8 bytes"));
    let payload = &out[RESPONSE_HEAD..];
    if payload.len() as u64 != len {
        return Err(bad(format!("its answer says {len} bytes, it wrote {}", payload.len())));
    }
    let message = || clean(payload);
    match tag {
        ARTIFACT => {
            let artifact = open(payload, key).map_err(|e| bad(format!("its artifact fails the checks: {e}")))?;
            if artifact.header.consume_fuel != settings.consume_fuel || artifact.header.bounds_checks != settings.bounds_checks || artifact.header.features != settings.features {
                return Err(bad("its artifact was compiled with other settings than requested".into()));
            }
            Ok(artifact.into_compiled())
        }
        INVALID => Err(CompileError::Invalid(message()).into()),
        TEXT => Err(CompileWorkerError::Text { detail: message() }.into()),
        UNSUPPORTED => Err(CompileError::Unsupported(message()).into()),
        ISA => Err(CompileError::Isa(message()).into()),
        CODEGEN if payload.len() >= 4 => {
            let func = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
            Err(CompileError::Codegen { func, message: clean(&payload[4..]) }.into())
        }
        _ => Err(bad(format!("unknown answer {tag}"))),
    }
}

/// How a worker that did not answer ended.
fn failure(status: ExitStatus, out_too_large: bool, stderr: &str, limits: &CompileLimits) -> CompileWorkerError {
    let line_with = |needle: &str| stderr.lines().find(|l| l.contains(needle)).map(|l| clean(l.trim().as_bytes()));
    let memory = |detail: String| CompileWorkerError::Memory { limit: limits.memory, detail };
    if out_too_large {
        return CompileWorkerError::Failed { status: "stopped".into(), detail: format!("it wrote more than {} of output", show_size(limits.memory)) };
    }
    if status.code() == Some(i32::from(crate::sandbox::EXIT_BLOCKED)) || status.signal() == Some(libc::SIGSYS) {
        let report = line_with("blocked syscall").unwrap_or_else(|| format!("it was ended by SIGSYS ({})", describe(status)));
        return CompileWorkerError::Blocked { report };
    }
    // Rust's allocation-failure handler prints this line, then aborts.
    if let Some(line) = line_with("memory allocation of") {
        return memory(format!("an allocation failed ({line}); the worker aborted"));
    }
    if status.code() == Some(i32::from(EXIT_PANIC)) && stderr.contains("failed to spawn thread") {
        return memory("it could not start a compile thread".into());
    }
    if status.signal() == Some(libc::SIGKILL) {
        return CompileWorkerError::Failed {
            status: describe(status),
            detail: "killed by another process or by the kernel (the out-of-memory killer?)".into(),
        };
    }
    let detail = clean(stderr.trim().as_bytes());
    CompileWorkerError::Failed { status: describe(status), detail: if detail.is_empty() { "no diagnostics".into() } else { detail } }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}{}", if status.core_dumped() { ", core dumped" } else { "" }),
        _ => status.to_string(),
    }
}

/// Untrusted text made safe to print: at most `MAX_MESSAGE` bytes, no control characters
/// besides newlines and tabs.
fn clean(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_MESSAGE)]);
    let mut s: String = text.chars().map(|c| if c.is_control() && c != '\n' && c != '\t' { '\u{fffd}' } else { c }).collect();
    if bytes.len() > MAX_MESSAGE {
        s.push('\u{2026}');
    }
    s
}

fn show_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{d:?}")
    }
}

fn show_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 3] = [(30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

// ---- The parent's side of the pipes -------------------------------------------------------------

struct Run {
    status: ExitStatus,
    out: Vec<u8>,
    out_too_large: bool,
    err: Vec<u8>,
    timed_out: bool,
}

/// Write `head` and `body` to the child's stdin while reading its stdout (at most `out_cap`
/// bytes) and stderr (the first `MAX_STDERR` bytes kept), all before `deadline`; then reap it.
/// A child past the deadline or over the cap is killed (and reaped).
fn exchange(mut child: Child, head: &[u8], body: &[u8], deadline: Instant, out_cap: usize) -> std::io::Result<Run> {
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    for fd in [stdin.as_ref().map(|f| f.as_raw_fd()), stdout.as_ref().map(|f| f.as_raw_fd()), stderr.as_ref().map(|f| f.as_raw_fd())].into_iter().flatten() {
        set_nonblocking(fd)?;
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut written = 0usize;
    let total = head.len() + body.len();
    let (mut timed_out, mut out_too_large) = (false, false);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let mut fds = Vec::with_capacity(3);
        if let Some(f) = &stdin {
            fds.push(libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLOUT, revents: 0 });
        }
        if let Some(f) = &stdout {
            fds.push(libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        if let Some(f) = &stderr {
            fds.push(libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        if fds.is_empty() {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        let wait_ms = (deadline - now).as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            kill(&mut child);
            return Err(e);
        }
        let ready = |fd: i32| fds.iter().any(|p| p.fd == fd && p.revents != 0);
        if let Some(f) = &mut stdin {
            if ready(f.as_raw_fd()) {
                let chunk = if written < head.len() { &head[written..] } else { &body[written - head.len()..] };
                let chunk = &chunk[..chunk.len().min(1 << 20)];
                match f.write(chunk) {
                    Ok(n) => written += n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                    // The worker stopped reading (it ended, or failed): its status tells why.
                    Err(_) => written = total,
                }
            }
            if written >= total {
                stdin = None; // EOF for the worker
            }
        }
        if let Some(f) = &mut stdout {
            if ready(f.as_raw_fd()) {
                match f.read(&mut buf) {
                    Ok(0) => stdout = None,
                    Ok(n) => {
                        out.extend_from_slice(&buf[..n]);
                        if out.len() > out_cap {
                            out_too_large = true;
                            break;
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                    Err(_) => stdout = None,
                }
            }
        }
        if let Some(f) = &mut stderr {
            if ready(f.as_raw_fd()) {
                match f.read(&mut buf) {
                    Ok(0) => stderr = None,
                    Ok(n) => {
                        let keep = n.min(MAX_STDERR.saturating_sub(err.len()));
                        err.extend_from_slice(&buf[..keep]);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                    Err(_) => stderr = None,
                }
            }
        }
    }
    drop((stdin, stdout, stderr));
    if timed_out || out_too_large {
        kill(&mut child);
    }
    // Both pipes are closed: the worker is ending. Reap it, within the deadline all the same.
    let pidfd = PidFd::open(child.id());
    let mut pause = Duration::from_micros(50);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break kill(&mut child);
        }
        match &pidfd {
            // Readable when the process has ended.
            Some(fd) => fd.wait(deadline - now),
            None => {
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    };
    Ok(Run { status, out, out_too_large, err, timed_out })
}

/// A pidfd of the (not yet reaped) child, to wait for its end with a timeout.
struct PidFd(std::os::fd::OwnedFd);

impl PidFd {
    fn open(pid: u32) -> Option<PidFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags; the child is not reaped yet, so `pid` is it.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        // SAFETY: a new file descriptor that nothing else owns.
        (fd >= 0).then(|| PidFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }))
    }

    fn wait(&self, timeout: Duration) {
        let mut p = libc::pollfd { fd: self.0.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd; the result is rechecked with try_wait by the caller.
        unsafe { libc::poll(&mut p, 1, ms) };
    }
}

/// SIGKILL the child and reap it.
fn kill(child: &mut Child) -> ExitStatus {
    let _ = child.kill();
    loop {
        match child.wait() {
            Ok(status) => return status,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // Only if it was reaped already, which it was not: report it as killed.
            Err(_) => return ExitStatus::from_raw(libc::SIGKILL),
        }
    }
}

fn set_nonblocking(fd: i32) -> std::io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a pipe end this process owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

// ---- The worker ----------------------------------------------------------------------------------

/// Run as the compile worker when the first argument is [`WORKER_ARG`], returning its exit
/// code; `None` otherwise. Call it first thing in `main` of an executable used as the worker
/// (with `None` in [`CompileLimits::worker`], the current executable).
pub fn worker_main_if_requested() -> Option<ExitCode> {
    if std::env::args_os().nth(1).as_deref() != Some(OsStr::new(WORKER_ARG)) {
        return None;
    }
    Some(worker_main())
}

fn worker_main() -> ExitCode {
    // A panic (a compiler bug, or a thread that could not start) ends the worker at once with
    // its message: nothing else would be printed or unwound under the sandbox.
    std::panic::set_hook(Box::new(|info| {
        let message = format!("wasce compile worker: {info}\n");
        write_all(2, message.as_bytes());
        // SAFETY: _exit ends the process without running anything else.
        unsafe { libc::_exit(i32::from(EXIT_PANIC)) };
    }));
    match worker() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            write_all(2, format!("wasce compile worker: {e}\n").as_bytes());
            ExitCode::from(EXIT_SETUP)
        }
    }
}

fn worker() -> Result<(), String> {
    // SAFETY: PR_SET_PDEATHSIG with a signal number: the worker dies with its parent.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    let mut head = [0u8; REQUEST_LEN];
    read_exact(0, &mut head).map_err(|e| format!("reading the request: {e}"))?;
    let request = Request::decode(&head)?;
    set_limit(libc::RLIMIT_CORE, 0)?;
    set_limit(libc::RLIMIT_DATA, request.memory)?;
    let probe = std::env::var(PROBE_VAR).ok();

    if request.confine {
        crate::sandbox::confine_compiler().map_err(|e| e.to_string())?;
    }
    match probe.as_deref() {
        Some("socket") => probe_socket(),
        // On a thread started after confinement, like the parallel compile's.
        Some("socket-thread") => std::thread::spawn(probe_socket).join().map_err(|_| "the probe thread panicked".to_string())?,
        _ => {}
    }

    let len = usize::try_from(request.len).map_err(|_| "the module is too large".to_string())?;
    let mut input = Vec::new();
    if input.try_reserve_exact(len).is_err() {
        // The same words as Rust's allocation-failure handler, which the parent recognises.
        return Err(format!("memory allocation of {len} bytes failed"));
    }
    input.resize(len, 0);
    read_exact(0, &mut input).map_err(|e| format!("reading the module: {e}"))?;

    let response = compile_request(input, &request);
    write_all(1, &response);
    Ok(())
}

/// The test hook: a call outside the allow-list (the sandbox ends the process here).
fn probe_socket() {
    // SAFETY: a plain socket(2) call; the fd is closed again if it was made.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    let result = if fd >= 0 { "ok".to_string() } else { std::io::Error::last_os_error().to_string() };
    if fd >= 0 {
        // SAFETY: closing the socket opened above.
        unsafe { libc::close(fd) };
    }
    write_all(2, format!("probe: socket: {result}\n").as_bytes());
}

/// The response frame for one request.
fn compile_request(input: Vec<u8>, request: &Request) -> Vec<u8> {
    let wasm = if input.starts_with(b"\0asm") {
        input
    } else {
        match wat::parse_bytes(&input) {
            Ok(b) => b.into_owned(),
            Err(e) => return frame(TEXT, e.to_string().as_bytes()),
        }
    };
    let compiled = match wasce_compiler::compile(&wasm, &request.settings) {
        Ok(c) => c,
        Err(CompileError::Invalid(m)) => return frame(INVALID, m.as_bytes()),
        Err(CompileError::Unsupported(m)) => return frame(UNSUPPORTED, m.as_bytes()),
        Err(CompileError::Isa(m)) => return frame(ISA, m.as_bytes()),
        Err(CompileError::Codegen { func, message }) => {
            let mut p = func.to_le_bytes().to_vec();
            p.extend_from_slice(message.as_bytes());
            return frame(CODEGEN, &p);
        }
    };
    drop(wasm);
    match seal(&compiled, &request.settings, &request.key) {
        Ok(bytes) => frame(ARTIFACT, &bytes),
        Err(e) => frame(ISA, e.to_string().as_bytes()),
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> Result<(), String> {
    let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(format!("setrlimit({resource}, {value}): {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn read_exact(fd: i32, mut buf: &mut [u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: reading into the unfilled part of `buf`.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n as usize..];
    }
    Ok(())
}

/// Write all of `bytes` to `fd` (errors are dropped: the parent sees a short answer).
fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writing from a valid buffer.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let settings = Settings { consume_fuel: true, bounds_checks: BoundsChecks::Explicit, parallel: false, ..Settings::default() };
        let r = Request { settings, memory: 123 << 20, confine: true, key: [7; 32], len: 99 };
        let bytes: [u8; REQUEST_LEN] = r.encode().try_into().unwrap();
        let back = Request::decode(&bytes).unwrap();
        assert_eq!((back.memory, back.confine, back.key, back.len), (123 << 20, true, [7; 32], 99));
        assert!(back.settings.consume_fuel && back.settings.bounds_checks == BoundsChecks::Explicit && !back.settings.parallel);
        let mut bad = bytes;
        bad[0] = b'X';
        assert!(Request::decode(&bad).is_err());
    }

    #[test]
    fn answers_are_checked() {
        let s = Settings::default();
        let key = [0; 32];
        let invalid = answer(&frame(INVALID, b"bad \x1b[31m thing"), &s, &key).unwrap_err();
        assert!(matches!(&invalid, Error::Compile(CompileError::Invalid(m)) if m == "bad \u{fffd}[31m thing"), "{invalid:?}");
        let garbage = answer(&frame(ARTIFACT, b"not an artifact"), &s, &key).unwrap_err();
        assert!(garbage.to_string().contains("fails the checks"), "{garbage}");
        let mut short = frame(TEXT, b"abc");
        short.pop();
        assert!(answer(&short, &s, &key).unwrap_err().to_string().contains("says 3 bytes"));
        assert!(answer(b"", &s, &key).is_err());
        // An artifact compiled without the fuel metering asked for is refused.
        let wasm = wat::parse_str("(module (func (export \"f\")))").unwrap();
        let compiled = wasce_compiler::compile(&wasm, &s).unwrap();
        let bytes = seal(&compiled, &s, &key).unwrap();
        assert!(answer(&frame(ARTIFACT, &bytes), &s, &key).is_ok());
        let fuel = Settings { consume_fuel: true, ..Settings::default() };
        assert!(answer(&frame(ARTIFACT, &bytes), &fuel, &key).unwrap_err().to_string().contains("other settings"));
    }

    #[test]
    fn messages_are_bounded_and_sizes_shown() {
        assert_eq!(clean(&vec![b'a'; 10_000]).chars().count(), MAX_MESSAGE + 1);
        assert_eq!(show_size(64 << 20), "64 MiB");
        assert_eq!(show_size(4 << 30), "4 GiB");
        assert_eq!(show_size(1000), "1000 bytes");
        assert_eq!(show_duration(Duration::from_secs(1)), "1 s");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1.5s");
    }
}
