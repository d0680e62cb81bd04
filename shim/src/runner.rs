//! The in-container runner: the container's init process, re-executed from the shim binary.
//!
//! Why a fresh `execve` rather than running the module in the process runwasi hands us: that
//! process is a fork of the shim's zygote and has started a multi-threaded tokio runtime, and
//! wasce confines the process (seccomp allow-lists, Landlock, no_new_privs) only when the
//! store's own threads are all its threads (`sandbox::Policy::exclusive`): a thread left
//! unconfined in the same address space would undo it. After the `execve` the runner is one
//! thread, like `wasce exec`; it keeps the container's pid (it stays the init process, so its
//! exit status is the container's), namespaces, cgroups, rootfs, cwd and stdio.
//!
//! What crosses the `execve`, on the command line (`__wasce-run` then the fields of `Job`) and
//! as inherited descriptors named there: the module (a memfd), the artifact key (a memfd, only
//! for a precompiled module) and the `/dev/kvm` the shim opened on the host. The runner marks
//! them close-on-exec again at once (the compile worker it may start inherits none), reads the
//! two memfds and closes them.

use std::ffi::{CString, OsString};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use wasce_engine::wasi::{self, Preopen, WasiConfig};
use wasce_engine::{sandbox, Error, Extern, Linker, Store, StoreConfig};

const RUN_ARG: &str = "__wasce-run";
/// The command name of the runner (`ps`, `/proc/PID/comm`).
const RUNNER_NAME: &str = "wasce-guest";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    Kvm,
    Process,
}

impl Isolation {
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Kvm => "kvm",
            Isolation::Process => "process",
        }
    }
}

/// What to run.
pub struct Job {
    /// The container's memory limit in bytes: also each linear memory's maximum.
    pub memory_limit: Option<u64>,
    pub isolation: Isolation,
    pub precompiled: bool,
    /// The export to call (runwasi's `path#func`; `_start` by default).
    pub func: String,
    /// argv, argv[0] (the entrypoint as the spec names it) included.
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
}

/// A memfd holding `bytes`, close-on-exec (cleared just before our own `execve`).
fn memfd(name: &str, bytes: &[u8]) -> std::io::Result<OwnedFd> {
    let cname = CString::new(name).expect("no NUL in our names");
    // SAFETY: memfd_create with a valid C string and flags; the fd is owned below.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned to us and is owned by nobody else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file.into())
}

fn set_cloexec(fd: RawFd, on: bool) -> std::io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD on an fd number; a bad one fails with EBADF.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let flags = if on {
            flags | libc::FD_CLOEXEC
        } else {
            flags & !libc::FD_CLOEXEC
        };
        if libc::fcntl(fd, libc::F_SETFD, flags) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Become the runner (`execve` of this binary); returns only on failure.
pub fn exec(
    job: &Job,
    module: &[u8],
    kvm: Option<RawFd>,
    key: Option<&wasce_compiler::artifact::Key>,
) -> anyhow::Error {
    let inner = || -> anyhow::Result<std::convert::Infallible> {
        let module = memfd("wasce-module", module)?;
        let key = match (job.precompiled, key) {
            (true, Some(k)) => Some(memfd("wasce-key", &k.0)?),
            _ => None,
        };
        let fd_arg = |fd: Option<RawFd>| fd.map_or("-".to_string(), |f| f.to_string());
        let mut cmd = std::process::Command::new("/proc/self/exe");
        cmd.arg0(RUNNER_NAME)
            .arg(RUN_ARG)
            .arg(job.isolation.name())
            .arg(job.memory_limit.map_or("-".to_string(), |b| b.to_string()))
            .arg(fd_arg(kvm))
            .arg(module.as_raw_fd().to_string())
            .arg(fd_arg(key.as_ref().map(|k| k.as_raw_fd())))
            .arg(if std::env::var_os("WASCE_SHIM_STATS").is_some() {
                "stats"
            } else {
                "-"
            })
            .arg(&job.func)
            .arg(job.args.len().to_string())
            .args(&job.args)
            .arg(job.envs.len().to_string())
            .args(job.envs.iter().map(|(k, v)| format!("{k}={v}")))
            .env_clear();
        for fd in [
            kvm,
            Some(module.as_raw_fd()),
            key.as_ref().map(|k| k.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        {
            set_cloexec(fd, false)?;
        }
        Err(cmd.exec().into())
    };
    match inner() {
        Err(e) => e.context("starting the wasce runner"),
        Ok(never) => match never {},
    }
}

/// The runner's `main`, when this binary was started as one.
pub fn main_if_requested() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    args.next();
    if args.next().as_deref() != Some(std::ffi::OsStr::new(RUN_ARG)) {
        return None;
    }
    Some(match parse(args).and_then(run) {
        Ok(code) => code,
        Err(e) => report(&e),
    })
}

struct Parsed {
    isolation: Isolation,
    memory_limit: Option<u64>,
    kvm: Option<OwnedFd>,
    module: Vec<u8>,
    key: Option<wasce_compiler::artifact::Key>,
    stats: bool,
    func: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

fn usage(m: impl Into<String>) -> Error {
    Error::Usage(format!("runner: {}", m.into()))
}

/// Take over an inherited fd (named on our command line), close-on-exec again.
fn inherited(arg: &str) -> Result<Option<OwnedFd>, Error> {
    if arg == "-" {
        return Ok(None);
    }
    let fd: RawFd = arg.parse().map_err(|_| usage(format!("bad fd `{arg}`")))?;
    if fd <= 2 {
        return Err(usage(format!("bad fd `{arg}`")));
    }
    set_cloexec(fd, true).map_err(|e| usage(format!("fd {fd}: {e}")))?;
    // SAFETY: the shim passed us this fd for us alone (checked open just above); nothing else
    // in this fresh process refers to it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn read_all(fd: OwnedFd) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .read_to_end(&mut bytes)
        .map_err(|e| usage(format!("reading an inherited memfd: {e}")))?;
    Ok(bytes)
}

fn parse(mut it: impl Iterator<Item = OsString>) -> Result<Parsed, Error> {
    let mut next = || {
        it.next()
            .and_then(|s| s.into_string().ok())
            .ok_or_else(|| usage("truncated or non-UTF-8 command line"))
    };
    let isolation = match next()?.as_str() {
        "kvm" => Isolation::Kvm,
        "process" => Isolation::Process,
        other => return Err(usage(format!("isolation `{other}`"))),
    };
    let memory_limit = match next()?.as_str() {
        "-" => None,
        n => Some(
            n.parse::<u64>()
                .map_err(|_| usage(format!("memory limit `{n}`")))?,
        ),
    };
    let kvm = inherited(&next()?)?;
    let module = read_all(inherited(&next()?)?.ok_or_else(|| usage("no module"))?)?;
    let key = match inherited(&next()?)? {
        Some(fd) => {
            let bytes = read_all(fd)?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| usage("the key is not 32 bytes"))?;
            Some(wasce_compiler::artifact::Key(key))
        }
        None => None,
    };
    let stats = next()? == "stats";
    let func = next()?;
    let n: usize = next()?.parse().map_err(|_| usage("argc"))?;
    let args = (0..n).map(|_| next()).collect::<Result<Vec<_>, _>>()?;
    let n: usize = next()?.parse().map_err(|_| usage("envc"))?;
    let envs = (0..n)
        .map(|_| {
            next().map(|e| {
                e.split_once('=')
                    .map_or((e.clone(), String::new()), |(k, v)| {
                        (k.to_string(), v.to_string())
                    })
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Parsed {
        isolation,
        memory_limit,
        kvm,
        module,
        key,
        stats,
        func,
        args,
        envs,
    })
}

/// Ending the guest on `ctr task kill`: the runner is its pid namespace's init, to which the
/// kernel delivers only the signals it handles (and SIGKILL): SIGTERM, SIGINT and SIGHUP end the
/// process (and with it the VM) with 128 + the signal, as the default action would elsewhere.
extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + sig) };
}

fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: a plain handler that only calls _exit; the sigaction struct is zeroed then filled.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn run(p: Parsed) -> Result<ExitCode, Error> {
    install_signal_handlers();
    // `ps` and /proc/PID/comm show the runner, not `exe` (the name of the magic link).
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"wasce-guest".as_ptr()) };
    let settings = super::settings();
    let precompiled = p.key.is_some();
    let module = if precompiled {
        // Sealed by this shim's precompiler and cached by containerd: verified under the key.
        wasce_engine::LoadedModule::from_artifact_bytes(
            &p.module,
            p.key.as_ref().expect("checked"),
        )?
    } else {
        // The shim binary, through the magic link: its host path is not in this mount namespace.
        wasce_engine::load_confined(
            &p.module,
            &settings,
            &super::compile_limits(Some(PathBuf::from("/proc/self/exe"))),
        )?
    };
    drop(p.module);

    let isolation = match p.isolation {
        Isolation::Kvm => {
            let fd = p.kvm.ok_or_else(|| {
                Error::Resource("KVM isolation, but the shim passed no /dev/kvm".into())
            })?;
            wasce_engine::kvm::use_device(fd).map_err(|_| usage("KVM device set twice"))?;
            wasce_engine::Isolation::Kvm
        }
        Isolation::Process => wasce_engine::Isolation::Process,
    };
    let mut config = StoreConfig {
        isolation,
        ..StoreConfig::default()
    };
    if let Some(limit) = p.memory_limit {
        config.max_memory_pages = config
            .max_memory_pages
            .min(limit / wasce_engine::memory::WASM_PAGE);
    }
    // The container's root filesystem, as `/`. Path resolution stays on that filesystem
    // (RESOLVE_NO_XDEV): /proc, /sys, /dev and other mounts below it are not reachable.
    let preopens = vec![Preopen {
        host: "/".into(),
        guest: "/".into(),
    }];
    let policy = sandbox::Policy {
        dirs: preopens.iter().map(|p| p.host.clone()).collect(),
        exclusive: true,
    };
    let wasi = WasiConfig {
        args: p.args,
        env: p.envs,
        preopens,
        ..WasiConfig::default()
    };
    let mut store = Store::new(config)?;
    let mut linker = Linker::new();
    wasi::add_to_linker(&mut store, &mut linker, wasi)?;
    sandbox::confine(&store, &policy)?;

    let result = instantiate_and_call(&mut store, &mut linker, &module, &p.func);
    if p.stats {
        let s = store.stats();
        eprintln!(
            "wasce-shim: isolation={} vm-exits={} ring-calls={} max-memory-pages={} module={}",
            p.isolation.name(),
            s.hypercalls,
            s.ring_calls,
            store.config().max_memory_pages,
            if precompiled { "precompiled" } else { "compiled" }
        );
    }
    result
}

fn instantiate_and_call(
    store: &mut Store,
    linker: &mut Linker,
    module: &wasce_engine::Module,
    func: &str,
) -> Result<ExitCode, Error> {
    let exit = |r: Result<Vec<wasce_engine::Val>, Error>| match r {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(Error::Exit(code)) => Ok(ExitCode::from(code as u8)),
        Err(e) => Err(e),
    };
    let instance = match linker.instantiate(store, module) {
        Ok(i) => i,
        Err(Error::Exit(code)) => return Ok(ExitCode::from(code as u8)),
        Err(e) => return Err(e),
    };
    if let Some(Extern::Func(init)) = store.export(instance, "_initialize") {
        if let Err(e) = store.call(init, &[]) {
            return exit(Err(e));
        }
    }
    let f = match store.export(instance, func) {
        Some(Extern::Func(f)) => f,
        _ if func == "_start" => match store.export(instance, "") {
            Some(Extern::Func(f)) => f,
            _ => {
                return Err(Error::Usage(
                    "the module exports no `_start` function (not a WASI command)".into(),
                ))
            }
        },
        _ => {
            return Err(Error::Usage(format!(
                "the module exports no function `{func}`"
            )))
        }
    };
    if !store.func_type(f).params.is_empty() {
        return Err(Error::Usage(format!(
            "`{func}` takes parameters; the entrypoint must take none"
        )));
    }
    exit(store.call(f, &[]))
}

/// Print `e` on the container's stderr (containerd's log) and turn it into the exit status,
/// as `wasce exec` does: 134 after a trap, 159 after a blocked system call, 1 otherwise.
fn report(e: &Error) -> ExitCode {
    match e {
        Error::Trap(t) => {
            eprintln!("Error: {t}");
            if !t.backtrace.is_empty() {
                eprintln!("wasm backtrace:");
                for (i, f) in t.backtrace.iter().enumerate() {
                    eprintln!("  {i:>3}: {f}");
                }
            }
            ExitCode::from(134)
        }
        Error::Exit(code) => ExitCode::from(*code as u8),
        Error::CompileWorker(wasce_engine::CompileWorkerError::Blocked { .. }) => {
            eprintln!("Error: {e}");
            ExitCode::from(sandbox::EXIT_BLOCKED)
        }
        other => {
            eprintln!("Error: {other}");
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(1)
        }
    }
}
