//! WASI preview1 (`wasi_snapshot_preview1`): the host side. The same handlers serve both
//! isolation modes: in process mode a host function is a direct call, in the VM it is the
//! `HostCall` hypercall. The guest only ever names WASI fds; host fds live in the per-store
//! handle table (`table.rs`). Every guest pointer, length and iovec array is checked against the
//! calling instance's memory and read once (`mem.rs`). Paths are resolved beneath a preopen
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, and what a guest
//! can open there is only regular files, directories and a short list of harmless character
//! devices, never a file the host protects (`path.rs`). Every operation that
//! can block or run long is bounded by the guest call's deadline (`deadline.rs`); past it, the
//! WASI function ends the run with the timeout's trap.

mod abi;
pub(crate) mod deadline;
mod fs;
mod guest;
mod mem;
mod misc;
mod path;
mod table;

/// The path layer every WASI path goes through, public so that its confinement can be tested
/// directly (`engine/tests/wasi_path_props.rs`): `open_beneath` resolves a guest path beneath a
/// directory fd with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)` and
/// the file-type policy (`open_guarded` adds protected files), and `parent_beneath` resolves
/// all but its last component (for operations on one name). Errors are WASI errnos.
/// `CHAR_DEVICES` and `PSEUDO_FILESYSTEMS` are the policy's tables.
pub use path::{open_beneath, open_guarded, parent_beneath, Parent, Protected, CHAR_DEVICES, PSEUDO_FILESYSTEMS};

use crate::{Caller, Error, Extern, Linker, Module, Store, Val};
use abi::{errno, rights};
use mem::Mem;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use table::{Handle, Object, Table};
use wasce_compiler::module::{FuncType, WasmType};

/// Where a standard stream goes.
#[derive(Clone, Debug, Default)]
pub enum Stdio {
    /// The host process's own stream.
    #[default]
    Inherit,
    /// Reads see end-of-file; writes are discarded.
    Null,
    /// Writes are appended to the buffer (stdout/stderr).
    Capture(Arc<Mutex<Vec<u8>>>),
    /// Reads return these bytes (stdin).
    Bytes(Arc<Vec<u8>>),
}

/// A host directory the guest may use, under the name `guest`. It must be a directory and not
/// a pseudo filesystem (procfs, sysfs, ...: `PSEUDO_FILESYSTEMS`); the guest never crosses into
/// another filesystem mounted below it.
#[derive(Clone, Debug)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
}

/// What a WASI program starts with.
#[derive(Clone, Debug, Default)]
pub struct WasiConfig {
    /// `argv`, including `argv[0]`.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub preopens: Vec<Preopen>,
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    /// Host listening sockets handed to the guest as preopened fds (`--tcplisten`).
    pub listeners: Vec<Arc<std::net::TcpListener>>,
    /// Most open fds the guest may hold (EMFILE beyond).
    pub max_fds: Option<usize>,
    /// Largest file size writes may produce (EFBIG beyond).
    pub max_file_size: Option<u64>,
    /// Host files the guest may never reach, even through a preopen that contains them
    /// (`protect`).
    pub protected: Vec<PathBuf>,
    /// Most bytes a `Stdio::Capture` stream keeps (writes past it fail with EFBIG); `None`:
    /// unbounded.
    pub max_output: Option<usize>,
}

impl WasiConfig {
    /// Keep the host file `path` from the guest whatever is preopened: no open yields it (nor
    /// a hard link of it), nothing is created, removed, renamed or linked in its directory, and
    /// no directory or symlink on the way to it is renamed, removed or replaced (EACCES). For
    /// files the host itself trusts, such as the artifact key. Resolved (by identity) when the
    /// WASI context is created; a path that does not exist yet keeps the guest from creating
    /// anything in the deepest directory on its way that does.
    pub fn protect(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.protected.push(path.into());
        self
    }
}

/// Called when a VM is created: the clock calibration exit-free WASI needs, measured now (before
/// the host confines itself) if KVM does not report the guest TSC's rate.
pub(crate) fn prepare_clocks(tsc_khz: Option<u32>) {
    guest::calibration(tsc_khz);
}

/// Default limit on open fds.
pub const DEFAULT_MAX_FDS: usize = 1024;
/// Descriptors a guest's table always leaves to the host process (stdio, the KVM fds, the
/// preopens, files the host opens itself), below its `RLIMIT_NOFILE`.
pub const HOST_FD_RESERVE: usize = 128;

/// The most fds a guest's table may hold: what was asked for, and never so many that the host
/// process would run out of descriptors (with a soft `RLIMIT_NOFILE` of 1024, common, the
/// default would otherwise let a guest take every one).
fn fd_limit(asked: usize) -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 { limit.rlim_cur } else { 1024 };
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    asked.min(soft.saturating_sub(HOST_FD_RESERVE))
}

/// The state behind one guest's WASI calls.
pub struct WasiCtx {
    args: Vec<String>,
    /// `NAME=value` strings.
    env: Vec<String>,
    table: Table,
    max_file_size: Option<u64>,
    max_output: Option<usize>,
    /// Host files no path operation may reach.
    guard: path::Protected,
    /// The deadline of the call being served (`Store::deadline`).
    deadline: deadline::Deadline,
}

impl WasiCtx {
    pub fn new(config: WasiConfig) -> Result<WasiCtx, Error> {
        let guard = path::Protected::new(&config.protected)
            .map_err(|e| Error::Usage(format!("cannot protect {}: {e}", config.protected.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))))?;
        let mut preopens = Vec::new();
        for p in &config.preopens {
            preopens.push((path::open_preopen(&p.host).map_err(Error::Usage)?, p.guest.clone()));
        }
        let mut listeners = Vec::new();
        for l in &config.listeners {
            listeners.push(OwnedFd::from(l.try_clone().map_err(|e| Error::Resource(format!("cannot share a listener: {e}")))?));
        }
        let streams = [config.stdin.clone(), config.stdout.clone(), config.stderr.clone()];
        let fds = fd_limit(config.max_fds.unwrap_or(DEFAULT_MAX_FDS));
        WasiCtx::from_parts(&config, fds, streams, preopens, listeners, guard)
    }

    /// A context of `config`'s arguments, environment and limits, with the standard streams
    /// `streams`, these opened preopens and listeners (taken), and `guard`.
    fn from_parts(config: &WasiConfig, fds: usize, streams: [Stdio; 3], preopens: Vec<(OwnedFd, String)>, listeners: Vec<OwnedFd>, guard: path::Protected) -> Result<WasiCtx, Error> {
        let mut table = Table::new(fds);
        let stdio_err = |_| Error::Usage("fd limit too small for the standard streams".into());
        let [stdin, stdout, stderr] = streams;
        table.insert(Handle::new(Object::Stdin(stdin), table::stdio_rights() & !rights::FD_WRITE, 0)).map_err(stdio_err)?;
        table.insert(Handle::new(Object::Stdout(stdout), table::stdio_rights() & !rights::FD_READ, 0)).map_err(stdio_err)?;
        table.insert(Handle::new(Object::Stderr(stderr), table::stdio_rights() & !rights::FD_READ, 0)).map_err(stdio_err)?;
        for (fd, guest) in preopens {
            let h = Handle::new(Object::Dir { fd, preopen: Some(guest) }, rights::DIR | rights::FD_READDIR, rights::ALL);
            table.insert(h).map_err(|_| Error::Usage("too many preopens for the fd limit".into()))?;
        }
        for fd in listeners {
            let h = Handle::new(Object::Listener(fd), rights::SOCKET, rights::SOCKET & !rights::SOCK_ACCEPT);
            table.insert(h).map_err(|_| Error::Usage("too many listeners for the fd limit".into()))?;
        }
        let env = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(WasiCtx { args: config.args.clone(), env, table, max_file_size: config.max_file_size, max_output: config.max_output, guard, deadline: deadline::Deadline::default() })
    }
}

/// What a WASI context is made again from (`WasiHandle::reset`): the configuration, the
/// preopened directories (fd, guest name) and the protected paths.
type Template = (WasiConfig, Vec<(OwnedFd, String)>, path::Protected);

/// A WASI context that each run of a reused store starts afresh (`crate::warm`): `reset`
/// replaces the whole context (arguments, environment, standard streams, the fd table with
/// fresh duplicates of the preopened directories: whatever the last run opened, closed or
/// renumbered is gone) and, in the VM, rewrites the exit-free data block in place.
#[derive(Clone)]
pub struct WasiHandle {
    ctx: Arc<Mutex<WasiCtx>>,
    /// The exit-free data block (VM): its address in the arena and its capacity.
    data: Option<(u64, usize)>,
    tsc_khz: Option<u32>,
    template: Arc<Template>,
    /// The fd limit (`fd_limit`, found once: `getrlimit` is not allowed once confined).
    fds: usize,
}

impl WasiHandle {
    /// Start the next run with `args` (argv, `argv[0]` included), `env` and these streams;
    /// the preopens, limits and protected files stay those the handle was made with.
    /// Arguments and environment larger than the data block's capacity are an error.
    pub fn reset(&self, args: Vec<String>, env: Vec<(String, String)>, stdin: Stdio, stdout: Stdio, stderr: Stdio) -> Result<(), Error> {
        self.reset_with_output_limit(args, env, stdin, stdout, stderr, None)
    }

    /// As `reset`; captured streams keep at most `max_output` bytes each (else the
    /// configured `max_output`).
    pub fn reset_with_output_limit(&self, args: Vec<String>, env: Vec<(String, String)>, stdin: Stdio, stdout: Stdio, stderr: Stdio, max_output: Option<usize>) -> Result<(), Error> {
        let (base, preopens, guard) = &*self.template;
        let mut dirs = Vec::new();
        for (fd, guest) in preopens {
            dirs.push((fd.try_clone().map_err(|e| Error::Resource(format!("cannot duplicate a preopen: {e}")))?, guest.clone()));
        }
        let config = WasiConfig { args, env, max_output: max_output.or(base.max_output), ..base.clone() };
        let ctx = WasiCtx::from_parts(&config, self.fds, [stdin, stdout, stderr], dirs, Vec::new(), guard.clone())?;
        if let Some((at, capacity)) = self.data {
            let block = guest::data_block(&ctx.args, &ctx.env, at, self.tsc_khz);
            if block.len() > capacity {
                return Err(Error::Limit(format!("arguments and environment take {} bytes, over the limit of {capacity}", block.len())));
            }
            // SAFETY: `at` is the arena block of `capacity` bytes allocated for the data block
            // by `add_to_linker_resettable`; the guest is not running (the caller holds the
            // store between calls).
            unsafe { std::ptr::copy_nonoverlapping(block.as_ptr(), at as *mut u8, block.len()) };
        }
        *self.ctx.lock().unwrap_or_else(|e| e.into_inner()) = ctx;
        Ok(())
    }
}

/// One WASI function: its name, wasm parameter types, and the handler.
type Handler = fn(&mut WasiCtx, &mut Mem, &[u64]) -> Result<u16, Error>;

fn errno_of(r: Result<(), u16>) -> Result<u16, Error> {
    Ok(match r {
        Ok(()) => errno::SUCCESS,
        Err(e) => e,
    })
}

macro_rules! wasi_functions {
    ($( $name:ident ( $($ty:ident),* ) => |$ctx:ident, $mem:ident, $a:ident| $body:expr; )*) => {
        /// Every `wasi_snapshot_preview1` function: (name, parameter types, handler).
        const FUNCTIONS: &[(&str, &[WasmType], Handler)] = &[
            $( (stringify!($name), &[$(WasmType::$ty),*], |$ctx, $mem, $a| { let _ = &$a; $body }), )*
        ];
    };
}

wasi_functions! {
    args_get(I32, I32) => |c, m, a| errno_of(c.args_get(m, a[0] as u32, a[1] as u32));
    args_sizes_get(I32, I32) => |c, m, a| errno_of(c.args_sizes_get(m, a[0] as u32, a[1] as u32));
    environ_get(I32, I32) => |c, m, a| errno_of(c.environ_get(m, a[0] as u32, a[1] as u32));
    environ_sizes_get(I32, I32) => |c, m, a| errno_of(c.environ_sizes_get(m, a[0] as u32, a[1] as u32));
    clock_res_get(I32, I32) => |c, m, a| errno_of(c.clock_res_get(m, a[0] as u32, a[1] as u32));
    clock_time_get(I32, I64, I32) => |c, m, a| errno_of(c.clock_time_get(m, a[0] as u32, a[1], a[2] as u32));
    fd_advise(I32, I64, I64, I32) => |c, _m, a| errno_of(c.fd_advise(a[0] as u32, a[1], a[2], a[3] as u32));
    fd_allocate(I32, I64, I64) => |c, _m, a| errno_of(c.fd_allocate(a[0] as u32, a[1], a[2]));
    fd_close(I32) => |c, _m, a| errno_of(c.fd_close(a[0] as u32));
    fd_datasync(I32) => |c, _m, a| errno_of(c.fd_sync(a[0] as u32, true));
    fd_fdstat_get(I32, I32) => |c, m, a| errno_of(c.fd_fdstat_get(m, a[0] as u32, a[1] as u32));
    fd_fdstat_set_flags(I32, I32) => |c, _m, a| errno_of(c.fd_fdstat_set_flags(a[0] as u32, a[1] as u16));
    fd_fdstat_set_rights(I32, I64, I64) => |c, _m, a| errno_of(c.fd_fdstat_set_rights(a[0] as u32, a[1], a[2]));
    fd_filestat_get(I32, I32) => |c, m, a| errno_of(c.fd_filestat_get(m, a[0] as u32, a[1] as u32));
    fd_filestat_set_size(I32, I64) => |c, _m, a| errno_of(c.fd_filestat_set_size(a[0] as u32, a[1]));
    fd_filestat_set_times(I32, I64, I64, I32) => |c, _m, a| errno_of(c.fd_filestat_set_times(a[0] as u32, a[1], a[2], a[3] as u16));
    fd_pread(I32, I32, I32, I64, I32) => |c, m, a| errno_of(c.fd_pread(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3], a[4] as u32));
    fd_prestat_get(I32, I32) => |c, m, a| errno_of(c.fd_prestat_get(m, a[0] as u32, a[1] as u32));
    fd_prestat_dir_name(I32, I32, I32) => |c, m, a| errno_of(c.fd_prestat_dir_name(m, a[0] as u32, a[1] as u32, a[2] as u32));
    fd_pwrite(I32, I32, I32, I64, I32) => |c, m, a| errno_of(c.fd_pwrite(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3], a[4] as u32));
    fd_read(I32, I32, I32, I32) => |c, m, a| errno_of(c.fd_read(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3] as u32));
    fd_readdir(I32, I32, I32, I64, I32) => |c, m, a| errno_of(c.fd_readdir(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3], a[4] as u32));
    fd_renumber(I32, I32) => |c, _m, a| errno_of(c.fd_renumber(a[0] as u32, a[1] as u32));
    fd_seek(I32, I64, I32, I32) => |c, m, a| errno_of(c.fd_seek(m, a[0] as u32, a[1] as i64, a[2] as u32, a[3] as u32));
    fd_sync(I32) => |c, _m, a| errno_of(c.fd_sync(a[0] as u32, false));
    fd_tell(I32, I32) => |c, m, a| errno_of(c.fd_tell(m, a[0] as u32, a[1] as u32));
    fd_write(I32, I32, I32, I32) => |c, m, a| errno_of(c.fd_write(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3] as u32));
    path_create_directory(I32, I32, I32) => |c, m, a| errno_of(c.path_create_directory(m, a[0] as u32, a[1] as u32, a[2] as u32));
    path_filestat_get(I32, I32, I32, I32, I32) => |c, m, a| errno_of(c.path_filestat_get(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3] as u32, a[4] as u32));
    path_filestat_set_times(I32, I32, I32, I32, I64, I64, I32) => |c, m, a| errno_of(c.path_filestat_set_times(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3] as u32, a[4], a[5], a[6] as u16));
    path_link(I32, I32, I32, I32, I32, I32, I32) => |c, m, a| errno_of(c.path_link(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3] as u32, a[4] as u32, a[5] as u32, a[6] as u32));
    path_open(I32, I32, I32, I32, I32, I64, I64, I32, I32) => |c, m, a| errno_of(c.path_open(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3] as u32, a[4] as u16, a[5], a[6], a[7] as u16, a[8] as u32));
    path_readlink(I32, I32, I32, I32, I32, I32) => |c, m, a| errno_of(c.path_readlink(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3] as u32, a[4] as u32, a[5] as u32));
    path_remove_directory(I32, I32, I32) => |c, m, a| errno_of(c.path_remove_directory(m, a[0] as u32, a[1] as u32, a[2] as u32));
    path_rename(I32, I32, I32, I32, I32, I32) => |c, m, a| errno_of(c.path_rename(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3] as u32, a[4] as u32, a[5] as u32));
    path_symlink(I32, I32, I32, I32, I32) => |c, m, a| errno_of(c.path_symlink(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3] as u32, a[4] as u32));
    path_unlink_file(I32, I32, I32) => |c, m, a| errno_of(c.path_unlink_file(m, a[0] as u32, a[1] as u32, a[2] as u32));
    poll_oneoff(I32, I32, I32, I32) => |c, m, a| errno_of(c.poll_oneoff(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3] as u32));
    proc_exit(I32) => |_c, _m, a| Err(Error::Exit(a[0] as u32 as i32));
    proc_raise(I32) => |_c, _m, _a| Ok(errno::NOSYS);
    sched_yield() => |c, _m, _a| errno_of(c.sched_yield());
    random_get(I32, I32) => |c, m, a| errno_of(c.random_get(m, a[0] as u32, a[1] as u32));
    sock_accept(I32, I32, I32) => |c, m, a| errno_of(c.sock_accept(m, a[0] as u32, a[1] as u16, a[2] as u32));
    sock_recv(I32, I32, I32, I32, I32, I32) => |c, m, a| errno_of(c.sock_recv(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3] as u16, a[4] as u32, a[5] as u32));
    sock_send(I32, I32, I32, I32, I32) => |c, m, a| errno_of(c.sock_send(m, a[0] as u32, a[1] as u32, a[2] as u32, a[3] as u16, a[4] as u32));
    sock_shutdown(I32, I32) => |c, _m, a| errno_of(c.sock_shutdown(a[0] as u32, a[1] as u8));
}

const _: () = assert!(FUNCTIONS.len() == 46);
/// The most parameters a WASI function takes (path_open), so a call's arguments fit an array.
const MAX_PARAMS: usize = 9;
const _: () = {
    let mut i = 0;
    while i < FUNCTIONS.len() {
        assert!(FUNCTIONS[i].1.len() <= MAX_PARAMS);
        i += 1;
    }
};

/// Define every `wasi_snapshot_preview1` function in `linker`, bound to a new WASI context.
pub fn add_to_linker(store: &mut Store, linker: &mut Linker, config: WasiConfig) -> Result<(), Error> {
    let ctx = WasiCtx::new(config)?;
    define(store, linker, ctx, 0).map(|_| ())
}

/// As `add_to_linker`, for a store whose runs each start afresh: the returned handle resets
/// the context between runs (`WasiHandle::reset`). `args_capacity` is the most bytes each
/// run's arguments and environment may take (in the VM, the exit-free data block is that big).
/// `config.listeners` are not supported (a listener is not a per-run resource).
pub fn add_to_linker_resettable(store: &mut Store, linker: &mut Linker, config: WasiConfig, args_capacity: usize) -> Result<WasiHandle, Error> {
    if !config.listeners.is_empty() {
        return Err(Error::Usage("listeners cannot be given to a store whose runs start afresh".into()));
    }
    let guard = path::Protected::new(&config.protected)
        .map_err(|e| Error::Usage(format!("cannot protect {}: {e}", config.protected.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))))?;
    let mut preopens = Vec::new();
    for p in &config.preopens {
        preopens.push((path::open_preopen(&p.host).map_err(Error::Usage)?, p.guest.clone()));
    }
    let ctx = WasiCtx::new(config.clone())?;
    let (ctx, data) = define(store, linker, ctx, args_capacity)?;
    let tsc_khz = store.vm_tsc_khz();
    let fds = fd_limit(config.max_fds.unwrap_or(DEFAULT_MAX_FDS));
    Ok(WasiHandle { ctx, data, tsc_khz, template: Arc::new((config, preopens, guard)), fds })
}

/// Define the WASI functions over `ctx`; in the VM, the data block has room for at least
/// `capacity` bytes.
#[allow(clippy::type_complexity)]
fn define(store: &mut Store, linker: &mut Linker, ctx: WasiCtx, capacity: usize) -> Result<(Arc<Mutex<WasiCtx>>, Option<(u64, usize)>), Error> {
    // In the VM, the calls that need nothing from the host are served by the guest runtime.
    let guest_data = match store.isolation() {
        crate::Isolation::Kvm => {
            let tsc_khz = store.vm_tsc_khz();
            let size = guest::data_block(&ctx.args, &ctx.env, 0, tsc_khz).len().max(capacity);
            let at = store.alloc_guest_bytes(&vec![0u8; size])?;
            let block = guest::data_block(&ctx.args, &ctx.env, at, tsc_khz);
            // SAFETY: `at` is the arena block of `size >= block.len()` bytes just allocated for it.
            unsafe { std::ptr::copy_nonoverlapping(block.as_ptr(), at as *mut u8, block.len()) };
            Some((at, size))
        }
        crate::Isolation::Process => None,
    };
    let ctx = Arc::new(Mutex::new(ctx));
    // WASCE_WASI_TRACE=1 logs every call with its arguments and errno to stderr.
    let trace = std::env::var_os("WASCE_WASI_TRACE").is_some();
    for &(name, params, handler) in FUNCTIONS {
        let results = if name == "proc_exit" { vec![] } else { vec![WasmType::I32] };
        let ty = FuncType { params: params.to_vec(), results };
        let ctx = ctx.clone();
        let f: crate::HostFn = Arc::new(move |caller: &mut Caller<'_>, args: &[Val], out: &mut [Val]| {
                let mut raw = [0u64; MAX_PARAMS];
                for (r, v) in raw.iter_mut().zip(args) {
                    *r = match v {
                        Val::I32(x) => *x as u32 as u64,
                        Val::I64(x) => *x as u64,
                        _ => 0,
                    };
                }
                let raw = &raw[..args.len().min(MAX_PARAMS)];
                let deadline = caller.store.deadline();
                let memory = caller.instance.and_then(|i| caller.store.instance_memory(i));
                let bytes: &mut [u8] = match memory {
                    Some(m) => caller.store.memory_data_mut(m),
                    None => &mut [],
                };
                let mut mem = Mem::new(bytes);
                let mut ctx = ctx.lock().unwrap_or_else(|e| e.into_inner());
                ctx.deadline.begin(deadline);
                let result = handler(&mut ctx, &mut mem, raw);
                if trace {
                    eprintln!("wasi: {name}{raw:?} -> {result:?}");
                }
                // Past the deadline the run ends with the timeout's trap, not an errno the guest
                // could ignore (an EINTR may be the timeout's kick cutting a system call short).
                if ctx.deadline.passed() || (matches!(result, Ok(errno::INTR)) && ctx.deadline.expired()) {
                    return Err(Error::interrupt());
                }
                let errno = result?;
                if let Some(slot) = out.first_mut() {
                    *slot = Val::I32(errno as i32);
                }
                Ok(())
            });
        let routine = wasce_vmguest::wasi::routine_offset(name);
        let f = match (guest_data.map(|(at, _)| at), routine) {
            (Some(data), Some(offset)) => store.new_guest_func(ty, f, wasce_vmguest::WASI_ROUTINES_GVA + offset, data),
            _ => store.new_host_func(ty, f),
        };
        linker.define("wasi_snapshot_preview1", name, Extern::Func(f));
    }
    Ok((ctx, guest_data))
}

/// Instantiate a WASI command and run its `_start`; returns the exit status (0 when `_start`
/// returns, `n` for `proc_exit(n)`). Traps and other failures are errors.
pub fn run_command(store: &mut Store, linker: &Linker, module: &Module) -> Result<i32, Error> {
    let instance = linker.instantiate(store, module)?;
    let Some(Extern::Func(start)) = store.export(instance, "_start") else {
        return Err(Error::Usage("the module exports no `_start` function (not a WASI command)".into()));
    };
    match store.call(start, &[]) {
        Ok(_) => Ok(0),
        Err(Error::Exit(code)) => Ok(code),
        Err(e) => Err(e),
    }
}
