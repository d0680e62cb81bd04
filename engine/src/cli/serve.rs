//! `wasce serve`: a long-running job server over HTTP/1.1, built on the warm-start library API
//! (`wasce_engine::warm`). Every request runs in a warm instance of its module, in a VM of its
//! own (KVM mode), restored to the module's post-initialisation snapshot after each run.
//!
//! * `serve.rs` (this file): the flags, loading the modules, the worker threads (each owns one
//!   warm instance per module, created and confined on that thread), binding the socket and
//!   confining the HTTP thread.
//! * `serve/http.rs`: the HTTP routes (`POST /run/NAME`, WAGI under `/wagi/NAME`, `/healthz`,
//!   `/metrics`), the JSON API, verdicts, the request log.
//! * `serve/metrics.rs`: counters and latency quantiles in the Prometheus text format.
//!
//! Threads: the HTTP thread (a current-thread tokio runtime: one thread, no pool) parses
//! requests and queues runs; `--workers` worker threads (vCPU role) take runs off the queue;
//! each VM has its ring-server and watchdog threads. Every one of them is confined before the
//! first request is accepted.

mod http;
mod metrics;

use super::module::Loader;
use super::{parse, Hostcall, Isolation};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use wasce_engine::sandbox::{self, Policy, Role};
use wasce_engine::warm::{Prelinked, RunRequest, RunResult, WarmConfig, WarmInstance};
use wasce_engine::wasi::{Preopen, WasiConfig};
use wasce_engine::{Error, Settings, StoreConfig};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where to listen: HOST:PORT (TCP) or unix:PATH (a Unix socket, created; an existing
    /// socket file there is replaced).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// A module to serve as NAME (at `POST /run/NAME` and `/wagi/NAME`), with options of its
    /// own after commas: timeout=DURATION, fuel=N, max-memory=SIZE, dir=HOST[::GUEST],
    /// env=NAME=VALUE, argv0=NAME (each overrides or adds to the flags below). Repeatable.
    #[arg(long = "module", value_name = "NAME=FILE[,OPTION=VALUE...]", required = true)]
    modules: Vec<String>,
    /// Where compiled code runs.
    #[arg(long, value_enum, default_value = "kvm")]
    isolation: Isolation,
    /// The longest a run may take (a request's `timeout_ms` may ask for less); KVM mode only.
    #[arg(long, value_parser = parse::duration, default_value = "10s")]
    timeout: Duration,
    /// How host (WASI) calls leave the VM: `exit` (the default here: no polling thread per VM
    /// competing with the workers for CPUs, and the best tail latency for short runs), `ring`
    /// (exit-less, a polling host thread per VM: better for runs that make many host calls),
    /// `auto` (ring when there is more than one CPU).
    #[arg(long, value_enum, default_value = "exit")]
    hostcall: Hostcall,
    /// Give every module a host directory: `HOST` or `HOST::GUEST`. Each run gets a fresh
    /// handle to it; what one run writes there, the next run sees (it is the host's directory).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Set an environment variable for every run (a request's `env` adds to these).
    #[arg(long = "env", value_name = "NAME=VAL")]
    envs: Vec<String>,
    /// Meter execution: a run gets at most N units of fuel (a request's `fuel` may ask for
    /// less); modules are compiled with fuel metering.
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Largest size of each linear memory (a request's `max_memory` may ask for less). Every
    /// worker holds an instance of every module, so the host may need workers x modules x
    /// this much.
    #[arg(long, value_name = "SIZE", value_parser = parse::size, default_value = "256MiB")]
    max_memory: u64,
    /// Most bytes kept of a run's stdout and of its stderr, each (writes past it fail).
    #[arg(long, value_name = "SIZE", value_parser = parse::size, default_value = "1MiB")]
    max_output: u64,
    /// Largest request body.
    #[arg(long, value_name = "SIZE", value_parser = parse::size, default_value = "16MiB")]
    max_request: u64,
    /// Worker threads, each with a warm instance (a VM in KVM mode) of every module: the
    /// most runs in flight at once. Default: the number of CPUs.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Most runs waiting for a worker; past it requests get 503.
    #[arg(long, value_name = "N", default_value = "1024")]
    queue: usize,
    /// Most client connections open at once; more wait in the listen backlog.
    #[arg(long, value_name = "N", default_value = "512")]
    max_connections: usize,
    /// No request log on stderr.
    #[arg(long)]
    quiet: bool,
    /// Do not use the compile cache.
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    compile_limits: super::CompileLimitArgs,
    #[command(flatten)]
    wasm: super::WasmArgs,
    /// Debugging only: do not confine the server (nor the compile worker).
    #[arg(long)]
    no_sandbox: bool,
}

/// One served module.
pub struct ModuleSpec {
    pub name: String,
    pub path: PathBuf,
    pub timeout: Option<Duration>,
    pub fuel: Option<u64>,
    pub max_memory: Option<u64>,
    pub dirs: Vec<String>,
    pub envs: Vec<String>,
    pub argv0: Option<String>,
}

fn module_spec(text: &str) -> Result<ModuleSpec, Error> {
    let bad = |m: String| Error::Usage(format!("--module `{text}`: {m}"));
    let mut parts = text.split(',');
    let head = parts.next().unwrap_or("");
    let Some((name, file)) = head.split_once('=').filter(|(n, f)| !n.is_empty() && !f.is_empty()) else {
        return Err(bad("expected NAME=FILE".into()));
    };
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
        return Err(bad("a module name is letters, digits, `-`, `_` and `.`".into()));
    }
    let mut spec = ModuleSpec { name: name.into(), path: file.into(), timeout: None, fuel: None, max_memory: None, dirs: Vec::new(), envs: Vec::new(), argv0: None };
    for opt in parts {
        let (k, v) = opt.split_once('=').ok_or_else(|| bad(format!("option `{opt}` is not OPTION=VALUE")))?;
        match k {
            "timeout" => spec.timeout = Some(parse::duration(v).map_err(bad)?),
            "fuel" => spec.fuel = Some(v.parse().map_err(|_| bad(format!("fuel `{v}` is not a number")))?),
            "max-memory" => spec.max_memory = Some(parse::size(v).map_err(bad)?),
            "dir" => spec.dirs.push(v.into()),
            "env" => spec.envs.push(v.into()),
            "argv0" => spec.argv0 = Some(v.into()),
            _ => return Err(bad(format!("unknown option `{k}` (timeout, fuel, max-memory, dir, env, argv0)"))),
        }
    }
    Ok(spec)
}

fn preopen(d: &str) -> Result<Preopen, Error> {
    let (host, guest) = d.split_once("::").unwrap_or((d, d));
    if host.is_empty() || guest.is_empty() {
        return Err(Error::Usage(format!("--dir `{d}`: expected HOST or HOST::GUEST")));
    }
    if !Path::new(host).is_dir() {
        return Err(Error::Usage(format!("--dir `{d}`: {host} is not a directory")));
    }
    Ok(Preopen { host: host.into(), guest: guest.into() })
}

fn env_pair(e: &str) -> Result<(String, String), Error> {
    e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| Error::Usage(format!("--env `{e}`: expected NAME=VALUE")))
}

/// A served module, as the HTTP side sees it.
pub struct Served {
    pub name: String,
    /// Warm instances alive (one per worker, until one cannot be restored).
    pub instances: std::sync::atomic::AtomicUsize,
}

/// A run for a worker.
pub struct Job {
    pub module: usize,
    pub req: RunRequest,
    pub reply: tokio::sync::oneshot::Sender<Result<RunResult, String>>,
}

/// Runs waiting for a worker.
pub struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
    limit: usize,
}

/// `Queue::push` found the queue full.
#[derive(Debug)]
pub struct QueueFull;

impl Queue {
    /// Queue a run; `Err` (the job dropped, its reply channel with it) if the queue is full.
    pub fn push(&self, job: Job) -> Result<(), QueueFull> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.len() >= self.limit {
            return Err(QueueFull);
        }
        jobs.push_back(job);
        drop(jobs);
        self.ready.notify_one();
        Ok(())
    }

    fn pop(&self) -> Job {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(j) = jobs.pop_front() {
                return j;
            }
            jobs = self.ready.wait(jobs).unwrap_or_else(|e| e.into_inner());
        }
    }
}

pub fn serve(a: ServeArgs, verbose: bool) -> Result<ExitCode, Error> {
    let specs = a.modules.iter().map(|m| module_spec(m)).collect::<Result<Vec<_>, _>>()?;
    for (i, s) in specs.iter().enumerate() {
        if specs[..i].iter().any(|o| o.name == s.name) {
            return Err(Error::Usage(format!("--module: `{}` is named twice", s.name)));
        }
    }
    let kvm = a.isolation == Isolation::Kvm;
    let compile_limits = wasce_engine::CompileLimits { confine: !a.no_sandbox, ..a.compile_limits.limits() };
    let mut prelinked = Vec::new();
    let mut all_dirs = Vec::new();
    let key = wasce_engine::key::default_path();
    if key.is_some() {
        wasce_engine::key::user_key()?;
    }
    for s in &specs {
        let fuel = s.fuel.or(a.fuel);
        let settings = Settings { consume_fuel: fuel.is_some(), features: a.wasm.features(), ..Settings::default() };
        let loaded = Loader::new(settings, compile_limits.clone(), !a.no_cache, verbose).load(&s.path)?;
        let mut store = StoreConfig { isolation: a.isolation.into(), hostcall: a.hostcall.into(), fuel, ..StoreConfig::default() };
        if kvm {
            store.timeout = Some(s.timeout.unwrap_or(a.timeout));
        } else if s.timeout.is_some() {
            return Err(Error::Usage(format!("--module {}: timeouts need --isolation kvm", s.name)));
        }
        store.max_memory_pages = s.max_memory.unwrap_or(a.max_memory) / wasce_engine::memory::WASM_PAGE;
        let mut preopens = Vec::new();
        for d in a.dirs.iter().chain(&s.dirs) {
            preopens.push(preopen(d)?);
        }
        all_dirs.extend(preopens.iter().map(|p| p.host.clone()));
        let mut env = Vec::new();
        for e in a.envs.iter().chain(&s.envs) {
            let (k, v) = env_pair(e)?;
            env.retain(|(n, _): &(String, String)| *n != k);
            env.push((k, v));
        }
        let argv0 = s.argv0.clone().unwrap_or_else(|| s.name.clone());
        let mut wasi = WasiConfig { args: vec![argv0], env, preopens, max_output: Some(a.max_output as usize), ..WasiConfig::default() };
        if let Some(k) = &key {
            wasi.protect(k);
        }
        let config = WarmConfig { store, wasi, ..WarmConfig::default() };
        prelinked.push(Arc::new(Prelinked::new(loaded.module, config).map_err(|e| Error::Usage(format!("--module {}: {e}", s.name)))?));
    }

    if !kvm && specs.iter().any(|s| s.fuel.or(a.fuel).is_none()) {
        eprintln!("wasce serve: warning: --isolation process cannot interrupt a run (no timeouts): a module without --fuel can hold a worker forever");
    }
    let listener = http::Listener::bind(&a.listen)?;
    let workers = a.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let policy = Policy { dirs: all_dirs, exclusive: false };
    let queue = Arc::new(Queue { jobs: Mutex::new(VecDeque::new()), ready: Condvar::new(), limit: a.queue.max(1) });
    let served: Arc<Vec<Served>> = Arc::new(specs.iter().map(|s| Served { name: s.name.clone(), instances: 0.into() }).collect());

    // Each worker makes its instances and confines itself (and their helper threads) on its
    // own thread, then reports; the server starts only when every worker is ready.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    for w in 0..workers {
        let (prelinked, queue, served, policy, ready) = (prelinked.clone(), queue.clone(), served.clone(), policy.clone(), ready_tx.clone());
        let sandboxed = !a.no_sandbox;
        std::thread::Builder::new()
            .name(format!("wasce-worker-{w}"))
            .spawn(move || worker(&prelinked, &queue, &served, sandboxed.then_some(&policy), kvm, ready))
            .map_err(|e| Error::Resource(format!("cannot start a worker thread: {e}")))?;
    }
    drop(ready_tx);
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Resource(format!("a worker could not start: {e}"))),
            Err(_) => return Err(Error::Resource("a worker ended during setup".into())),
        }
    }
    let state = http::State::new(served, queue, a.max_request as usize, !a.quiet, workers, a.max_connections);
    eprintln!(
        "wasce serve: listening on {} ({} module{}, {workers} worker{}, {} isolation{})",
        listener.describe(),
        specs.len(),
        if specs.len() == 1 { "" } else { "s" },
        if workers == 1 { "" } else { "s" },
        if kvm { "KVM" } else { "process" },
        if a.no_sandbox { ", NOT sandboxed (--no-sandbox)" } else { "" },
    );
    let confine = (!a.no_sandbox).then_some(move || sandbox::confine_thread(Role::Server, &Policy { dirs: Vec::new(), exclusive: false }).map_err(Error::from));
    http::run(listener, state, confine)?;
    Ok(ExitCode::SUCCESS)
}

/// A worker thread: one warm instance of every module, then runs from the queue forever.
fn worker(prelinked: &[Arc<Prelinked>], queue: &Queue, served: &[Served], policy: Option<&Policy>, kvm: bool, ready: std::sync::mpsc::Sender<Result<(), String>>) {
    let setup = || -> Result<Vec<Option<WarmInstance>>, Error> {
        let instances = prelinked.iter().map(|p| p.instantiate()).collect::<Result<Vec<_>, _>>()?;
        if let Some(policy) = policy {
            for i in &instances {
                sandbox::confine_helpers(i.store(), policy)?;
            }
            sandbox::confine_thread(if kvm { Role::Vcpu } else { Role::Store }, policy)?;
        }
        Ok(instances.into_iter().map(Some).collect())
    };
    let mut instances = match setup() {
        Ok(i) => i,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    for s in served {
        s.instances.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let _ = ready.send(Ok(()));
    drop(ready);
    loop {
        let job = queue.pop();
        let Some(slot) = instances.get_mut(job.module) else { continue };
        let Some(instance) = slot.as_mut() else {
            let _ = job.reply.send(Err("no usable instance of this module on the worker".into()));
            continue;
        };
        // Answer first, restore after: the restore is off the request's path (the next run on
        // this worker waits for it).
        let result = instance.run_unrestored(&job.req);
        let failed = match &result {
            Err(Error::Limit(_) | Error::Usage(_)) | Ok(_) => false,
            Err(_) => true,
        };
        let _ = job.reply.send(result.map_err(|e| e.to_string()));
        if failed || instance.restore().is_err() {
            // The instance could not be restored: it is gone (the other workers serve on).
            *slot = None;
            served[job.module].instances.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            eprintln!("wasce serve: an instance of `{}` could not be reset and was dropped", served[job.module].name);
        }
    }
}
