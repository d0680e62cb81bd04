//! `wasce exec`: run a module's `_start` (a WASI command) or `--invoke` an export.

use super::module::{How, Loader};
use super::{parse, Hostcall, Isolation};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasce_engine::wasi::{self, Preopen, WasiConfig};
use wasce_engine::{sandbox, Error, Extern, Linker, Settings, Store, StoreConfig, Val};

#[derive(clap::Args)]
pub struct ExecArgs {
    /// Call this export with ARGS (printed results) instead of `_start`.
    #[arg(long, value_name = "FUNC")]
    invoke: Option<String>,
    /// Where compiled code runs.
    #[arg(long, value_enum, default_value = "kvm")]
    isolation: Isolation,
    /// Stop the program after this long (e.g. 200ms, 2s); needs `--isolation kvm`.
    #[arg(long, value_parser = parse::duration)]
    timeout: Option<Duration>,
    /// How host (WASI) calls leave the VM: `ring` (exit-less, served by a host thread),
    /// `exit` (a VM exit each), `auto` (ring when there is more than one CPU).
    #[arg(long, value_enum, default_value = "auto")]
    hostcall: Hostcall,
    /// Give the program a host directory: `HOST` (seen as HOST) or `HOST::GUEST`.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Set an environment variable for the program; a bare NAME inherits wasce's value.
    #[arg(long = "env", value_name = "NAME[=VAL]")]
    envs: Vec<String>,
    /// The program's argv[0] (default: the module's file name).
    #[arg(long)]
    argv0: Option<String>,
    /// Largest size of each linear memory (e.g. 64MiB, 1G, or bytes; rounded down to 64 KiB
    /// pages); `memory.grow` beyond it fails.
    #[arg(long, value_name = "SIZE", value_parser = parse::size)]
    max_memory: Option<u64>,
    /// Most elements of each table.
    #[arg(long, value_name = "N")]
    max_table_elements: Option<u64>,
    /// Most bytes of GC objects (structs and arrays) the program may allocate (e.g. 64MiB);
    /// they are never freed, and allocating past it traps with `GC heap out of memory`.
    #[arg(long, value_name = "SIZE", value_parser = parse::size)]
    max_gc_heap: Option<u64>,
    /// Native stack compiled code may use (e.g. 512KiB); deeper recursion traps with
    /// `call stack exhausted`.
    #[arg(long, value_name = "SIZE", value_parser = parse::size)]
    max_stack: Option<u64>,
    /// Bind a TCP listener on the host and hand it to the program as a preopened socket (after
    /// the `--dir`s: fd 3, 4, ...). Repeatable.
    #[arg(long = "tcplisten", value_name = "ADDR")]
    tcplisten: Vec<String>,
    /// Instantiate MODULE first (in the same store, with WASI) and let the main module import
    /// its exports from NAME. Repeatable.
    #[arg(long = "preload", value_name = "NAME=MODULE", value_parser = parse::preload)]
    preloads: Vec<(String, PathBuf)>,
    /// Meter execution: N units of fuel (about one per operator); running out traps with
    /// `all fuel consumed by WebAssembly`.
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// After the run, print to stderr where the time went, guest exits, ring calls and peak RSS.
    #[arg(long)]
    stats: bool,
    /// Do not use the compile cache (neither read nor write it).
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    compile_limits: super::CompileLimitArgs,
    #[command(flatten)]
    wasm: super::WasmArgs,
    /// Debugging only: do not confine the host process after setup, nor the compile worker
    /// (no seccomp allow-lists, no Landlock restriction to the `--dir`s, no no_new_privs).
    #[arg(long)]
    no_sandbox: bool,
    /// The module.
    module: PathBuf,
    /// Arguments for the program, or for the invoked function.
    #[arg(allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Time spent in each phase, for `--stats`.
#[derive(Default)]
struct Timings {
    load: Vec<(String, How, Duration)>,
    store: Duration,
    instantiate: Duration,
    run: Duration,
}

pub fn exec(a: ExecArgs, verbose: bool) -> Result<ExitCode, Error> {
    let started = Instant::now();
    let mut config = StoreConfig { isolation: a.isolation.into(), timeout: a.timeout, hostcall: a.hostcall.into(), fuel: a.fuel, ..StoreConfig::default() };
    if let Some(bytes) = a.max_memory {
        config.max_memory_pages = bytes / wasce_engine::memory::WASM_PAGE;
    }
    if let Some(n) = a.max_table_elements {
        config.max_table_elements = n;
        // One table may use all of its limit; the store-wide bound never asks for less.
        config.max_table_elements_total = config.max_table_elements_total.max(n);
    }
    if let Some(bytes) = a.max_gc_heap {
        config.max_gc_heap_bytes = bytes;
    }
    if let Some(bytes) = a.max_stack {
        config.max_wasm_stack = usize::try_from(bytes).map_err(|_| Error::Usage(format!("--max-stack {bytes} is too large")))?;
    }
    let wasi = wasi_config(&a)?;
    let policy = sandbox::Policy { dirs: wasi.preopens.iter().map(|p| p.host.clone()).collect(), exclusive: true };

    // On its own thread, KVM's CPUID answer (0.4 ms on a nested host) overlaps the loading.
    let cpuid = if config.isolation == wasce_engine::Isolation::Kvm { wasce_engine::kvm::prefetch_cpuid() } else { None };

    let settings = Settings { consume_fuel: a.fuel.is_some(), features: a.wasm.features(), ..Settings::default() };
    // --no-sandbox also leaves the compile worker unconfined (it stays a bounded process).
    let compile_limits = wasce_engine::CompileLimits { confine: !a.no_sandbox, ..a.compile_limits.limits() };
    let loader = Loader::new(settings, compile_limits, !a.no_cache, verbose);
    let mut timings = Timings::default();
    let mut preloads = Vec::new();
    for (name, path) in &a.preloads {
        let loaded = loader.load(path)?;
        timings.load.push((format!("{name}={}", path.display()), loaded.how, loaded.time));
        preloads.push((name.as_str(), loaded.module));
    }
    let main = loader.load(&a.module)?;
    timings.load.push((a.module.display().to_string(), main.how, main.time));

    let t = Instant::now();
    let mut store = Store::new(config)?;
    // The store has the answer: the thread has ended or is ending (`confine` allows for that).
    if let Some(thread) = cpuid {
        let _ = thread.join();
    }
    let mut linker = Linker::new();
    wasi::add_to_linker(&mut store, &mut linker, wasi)?;
    timings.store = t.elapsed();
    // Setup is done: confine the host before any guest code runs (a module's start function
    // runs during instantiation).
    if a.no_sandbox {
        eprintln!("wasce: --no-sandbox: the host process is not confined (no seccomp allow-lists, no Landlock restriction to the --dir directories, no no_new_privs), nor was the compile worker");
    } else {
        sandbox::confine(&store, &policy)?;
    }
    sandbox_probe();

    if a.wasm.unknown_imports_trap() {
        for (_, m) in &preloads {
            linker.define_unknown_imports_as_traps(&mut store, m);
        }
        linker.define_unknown_imports_as_traps(&mut store, &main.module);
    }
    let result = run(&mut store, &mut linker, &preloads, &main.module, a.invoke.as_deref(), &a.args, &mut timings);
    if a.stats {
        print_stats(&store, &timings, started.elapsed());
    }
    result
}

fn run(
    store: &mut Store,
    linker: &mut Linker,
    preloads: &[(&str, wasce_engine::Module)],
    module: &wasce_engine::Module,
    invoke: Option<&str>,
    args: &[String],
    timings: &mut Timings,
) -> Result<ExitCode, Error> {
    let t = Instant::now();
    let instantiated = (|| {
        for (name, m) in preloads {
            let instance = linker.instantiate(store, m).map_err(|e| in_preload(name, e))?;
            linker.define_instance(store, name, instance);
        }
        linker.instantiate(store, module)
    })();
    timings.instantiate = t.elapsed();
    let instance = match instantiated {
        Ok(i) => i,
        Err(Error::Exit(code)) => return Ok(ExitCode::from(code as u8)),
        Err(e) => return Err(e),
    };

    let t = Instant::now();
    let result = call(store, instance, invoke, args);
    timings.run = t.elapsed();
    result
}

/// Test hook (documented in docs/SECURITY.md): `WASCE_SANDBOX_PROBE` makes the host do, right
/// after confinement, something the sandbox forbids: `socket` (a call outside every
/// allow-list) or `open=PATH` (open PATH for reading; the result is printed); or `panic`
/// (a host bug: the panic must be reported as such, not as a blocked call).
fn sandbox_probe() {
    let Ok(probe) = std::env::var("WASCE_SANDBOX_PROBE") else { return };
    if probe == "panic" {
        panic!("probe: a deliberate panic after confinement");
    } else if probe == "socket" {
        // SAFETY: a plain socket(2) call; the fd is closed again.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        eprintln!("probe: socket: {}", if fd >= 0 { "ok".to_string() } else { std::io::Error::last_os_error().to_string() });
        if fd >= 0 {
            // SAFETY: closing the socket opened above.
            unsafe { libc::close(fd) };
        }
    } else if let Some(path) = probe.strip_prefix("open=") {
        match std::fs::File::open(path) {
            Ok(_) => eprintln!("probe: open {path}: ok"),
            Err(e) => eprintln!("probe: open {path}: {e}"),
        }
    }
}

fn in_preload(name: &str, e: Error) -> Error {
    match e {
        Error::Link(m) => Error::Link(format!("--preload {name}: {m}")),
        other => other,
    }
}

/// What runs after instantiation, as in wasmtime: a reactor's `_initialize` first; then the
/// `--invoke`d function, or else the default export `""`, or else `_start`. A reactor with
/// neither is done once initialised.
fn call(store: &mut Store, instance: wasce_engine::InstanceId, invoke: Option<&str>, args: &[String]) -> Result<ExitCode, Error> {
    let exit_status = |r: Result<Vec<Val>, Error>| match r {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(Error::Exit(code)) => Ok(ExitCode::from(code as u8)),
        Err(e) => Err(e),
    };
    let initialize = match store.export(instance, "_initialize") {
        Some(Extern::Func(f)) => Some(f),
        Some(_) => return Err(Error::Usage("the module's `_initialize` export is not a function".into())),
        None => None,
    };
    if let Some(init) = initialize {
        let ty = store.func_type(init);
        if !ty.params.is_empty() || !ty.results.is_empty() {
            return Err(Error::Usage(format!("the module's `_initialize` has type {ty}; a reactor's takes and returns nothing")));
        }
        if let Err(e) = store.call(init, &[]) {
            return exit_status(Err(e));
        }
    }
    let Some(name) = invoke else {
        let main = ["", "_start"].into_iter().find_map(|n| match store.export(instance, n) {
            Some(Extern::Func(f)) => Some(f),
            _ => None,
        });
        return match (main, initialize) {
            (Some(main), _) => exit_status(store.call(main, &[])),
            (None, Some(_)) => Ok(ExitCode::SUCCESS),
            (None, None) => Err(Error::Usage(
                "the module exports no `_start` function (not a WASI command), no default export `\"\"` and no `_initialize`; name a function with --invoke".into(),
            )),
        };
    };
    let Some(Extern::Func(func)) = store.export(instance, name) else {
        return Err(Error::Usage(format!("the module exports no function `{name}`")));
    };
    let ty = store.func_type(func).clone();
    if args.len() != ty.params.len() {
        return Err(Error::Usage(format!("`{name}` takes {} arguments {ty}, {} given", ty.params.len(), args.len())));
    }
    let vals = args.iter().zip(&ty.params).map(|(a, t)| parse::invoke_arg(a, *t)).collect::<Result<Vec<_>, _>>()?;
    let results = store.call(func, &vals)?;
    for r in results {
        println!("{r}");
    }
    Ok(ExitCode::SUCCESS)
}

fn wasi_config(a: &ExecArgs) -> Result<WasiConfig, Error> {
    let mut preopens = Vec::new();
    for d in &a.dirs {
        let (host, guest) = match d.split_once("::") {
            Some((h, g)) => (h, g),
            None => (d.as_str(), d.as_str()),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(Error::Usage(format!("--dir `{d}`: expected HOST or HOST::GUEST")));
        }
        if !Path::new(host).is_dir() {
            return Err(Error::Usage(format!("--dir `{d}`: {host} is not a directory")));
        }
        preopens.push(Preopen { host: host.into(), guest: guest.into() });
    }
    let mut env = Vec::new();
    for e in &a.envs {
        match e.split_once('=') {
            Some((k, v)) => env.push((k.to_string(), v.to_string())),
            None => {
                if let Ok(v) = std::env::var(e) {
                    env.push((e.clone(), v));
                }
            }
        }
    }
    let mut listeners = Vec::new();
    for addr in &a.tcplisten {
        let listener = std::net::TcpListener::bind(addr.as_str()).map_err(|e| Error::Usage(format!("--tcplisten {addr}: cannot listen: {e}")))?;
        listeners.push(Arc::new(listener));
    }
    let name = a.argv0.clone().unwrap_or_else(|| a.module.file_name().map_or("module".into(), |n| n.to_string_lossy().into_owned()));
    let mut argv = vec![name];
    if a.invoke.is_none() {
        argv.extend(a.args.iter().cloned());
    }
    let mut config = WasiConfig { args: argv, env, preopens, listeners, ..WasiConfig::default() };
    // The artifact key authenticates every artifact and cache entry. It exists before any
    // guest runs (so that no guest can plant one where it would be created) and no preopen
    // reaches it, whatever is preopened (`/`, `$HOME`).
    if let Some(key) = wasce_engine::key::default_path() {
        wasce_engine::key::user_key()?;
        config.protect(key);
    }
    Ok(config)
}

fn print_stats(store: &Store, t: &Timings, total: Duration) {
    let ms = |d: Duration| format!("{:>10.3} ms", d.as_secs_f64() * 1e3);
    let stats = store.stats();
    let mut out = String::from("stats:\n");
    for (what, how, d) in &t.load {
        out += &format!("  {:<28}{}  {what}\n", how.describe(), ms(*d));
    }
    out += &format!("  {:<28}{}\n", "store + VM creation", ms(t.store));
    out += &format!("  {:<28}{}\n", "instantiate", ms(t.instantiate));
    out += &format!("  {:<28}{}\n", "run", ms(t.run));
    out += &format!("  {:<28}{}\n", "total", ms(total));
    out += &format!("  {:<28}{:>10}\n", "guest exits (hypercalls)", stats.hypercalls);
    out += &format!("  {:<28}{:>10}\n", "ring calls", stats.ring_calls);
    if let Some(cpu) = store.ring_server_cpu_time() {
        out += &format!("  {:<28}{}\n", "ring server CPU", ms(cpu));
    }
    if store.config().fuel.is_some() {
        out += &format!("  {:<28}{:>10}\n", "fuel remaining", store.fuel_remaining());
    }
    out += &format!("  {:<28}{:>10} KiB\n", "peak RSS", peak_rss_kib());
    eprint!("{out}");
}

/// The peak resident set size of this process (getrusage `ru_maxrss`, in KiB on Linux).
fn peak_rss_kib() -> i64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) == 0 {
            usage.ru_maxrss
        } else {
            -1
        }
    }
}
