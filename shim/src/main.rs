//! `containerd-shim-wasce-v1`: a containerd shim (runtime type `io.containerd.wasce.v1`) that
//! runs WebAssembly containers with wasce, in a KVM VM by default.
//!
//! The container lifecycle (bundle, namespaces, cgroups, rootfs, stdio, kill, delete) is runwasi's
//! `containerd-shim-wasm` (youki's libcontainer). What is wasce's:
//!
//! * **Host side, before any container exists** (`main`): the shim opens `/dev/kvm` and loads
//!   its artifact key (`key`). Both are inherited by the container processes, which are forks
//!   of the shim: inside the container `/dev/kvm` is neither visible (mount namespace) nor
//!   openable (device cgroup), and the key file is not in the container's rootfs.
//! * **Precompilation** (`WasceCompiler`): the first run of a WASM OCI layer compiles it in a
//!   confined compile worker and seals the result as a wasce artifact under the shim's key;
//!   containerd caches it in its content store and later runs load it without compiling.
//! * **In the container** (`WasceSandbox::run_wasi`): the container's init process re-executes
//!   the shim binary (`/proc/self/exe`, see `runner`) as a fresh single-threaded process that
//!   loads the module, creates the store and VM, confines itself (seccomp, Landlock,
//!   no_new_privs, as `wasce exec` does) and runs the module. That process is the container's
//!   init, so its exit status is the container's.

mod runner;

use anyhow::{bail, Context, Result};
use containerd_shim_wasm::sandbox::context::{RuntimeContext, Source, WasmLayer};
use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::shim::{Cli, Compiler, Config, Shim, Version};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use wasce_compiler::artifact::Key;

/// Where the shim's artifact key lives unless `WASCE_SHIM_KEY_FILE` says otherwise (root's,
/// 0600 in a 0700 directory; created on first use).
const DEFAULT_KEY_FILE: &str = "/var/lib/containerd-shim-wasce/artifact.key";

/// What the shim opened on the host before any container existed.
struct Host {
    /// `/dev/kvm`, or why it could not be opened.
    kvm: std::result::Result<OwnedFd, String>,
    /// The artifact key, or why it could not be had.
    key: std::result::Result<Key, String>,
    isolation: runner::Isolation,
    /// The host's memory cgroup hierarchy (`O_PATH` directory): the container's memory limit is
    /// read through it when the container has no cgroup filesystem of its own (`memory_limit`).
    memory_cgroups: Option<OwnedFd>,
}

static HOST: OnceLock<Host> = OnceLock::new();

fn host() -> &'static Host {
    HOST.get_or_init(|| {
        let isolation = match std::env::var("WASCE_SHIM_ISOLATION").as_deref() {
            Ok("process") => runner::Isolation::Process,
            _ => runner::Isolation::Kvm,
        };
        let kvm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .map(OwnedFd::from)
            .map_err(|e| format!("/dev/kvm: {e}"));
        let key_file = std::env::var_os("WASCE_SHIM_KEY_FILE")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_KEY_FILE), PathBuf::from);
        let key = wasce_engine::key::load_or_create(&key_file).map_err(|e| e.to_string());
        // cgroup v1's memory controller, else the v2 unified hierarchy.
        let memory_cgroups = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"]
            .iter()
            .find(|d| {
                std::path::Path::new(d)
                    .join("memory.limit_in_bytes")
                    .exists()
                    || std::path::Path::new(d).join("cgroup.controllers").exists()
            })
            .and_then(|d| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                    .open(d)
                    .ok()
            })
            .map(OwnedFd::from);
        Host {
            kvm,
            key,
            isolation,
            memory_cgroups,
        }
    })
}

fn settings() -> wasce_engine::Settings {
    wasce_engine::Settings {
        features: wasce_engine::Features::all(),
        ..Default::default()
    }
}

/// The compile worker inside a container: the shim binary itself, through the magic link (the
/// binary's host path is not in the container's mount namespace).
fn compile_limits(worker: Option<PathBuf>) -> wasce_engine::CompileLimits {
    wasce_engine::CompileLimits {
        worker,
        ..Default::default()
    }
}

struct WasceShim;

#[derive(Default)]
struct WasceSandbox;

impl Shim for WasceShim {
    type Sandbox = WasceSandbox;

    fn name() -> &'static str {
        "wasce"
    }

    fn version() -> Version {
        containerd_shim_wasm::shim::version!()
    }

    async fn compiler() -> Option<impl Compiler> {
        match &host().key {
            Ok(_) => Some(WasceCompiler),
            Err(e) => {
                log::warn!("wasce: no precompilation (no artifact key: {e})");
                None
            }
        }
    }

    fn supported_layers_types() -> &'static [&'static str] {
        &[
            "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
            "application/wasm",
            "application/vnd.w3c.wasm.module.v1+wasm",
        ]
    }
}

impl Sandbox for WasceSandbox {
    async fn run_wasi(&self, ctx: &impl RuntimeContext) -> Result<i32> {
        // Only errors come back (the runner replaces this process): say them on the container's
        // stderr too, with their causes (runwasi logs only the outermost, then exits 137).
        let err = prepare_and_exec(ctx).unwrap_err();
        eprintln!("Error: {err:#}");
        log::error!("wasce: {err:#}");
        Err(err)
    }
}

fn prepare_and_exec(ctx: &impl RuntimeContext) -> Result<std::convert::Infallible> {
    {
        let host = host();
        let entry = ctx.entrypoint();
        let (bytes, precompiled) = match &entry.source {
            Source::File(path) => {
                let bytes = entry
                    .source
                    .as_bytes()
                    .with_context(|| format!("reading the entrypoint {}", path.display()))?;
                (bytes, false)
            }
            Source::Oci(_) => (entry.source.as_bytes()?, entry.source.is_precompiled()?),
        };
        if !precompiled && wasce_engine::is_artifact(&bytes) {
            // Only artifacts this shim sealed (and containerd cached) are loaded as code.
            bail!("the image holds a wasce artifact (.cwasm); ship the WebAssembly module: the shim precompiles it itself");
        }
        let kvm = match (host.isolation, &host.kvm) {
            (runner::Isolation::Kvm, Ok(fd)) => Some(fd.as_raw_fd()),
            (runner::Isolation::Kvm, Err(e)) => bail!("KVM isolation: {e} (the shim opens /dev/kvm on the host, before the container is made)"),
            (runner::Isolation::Process, _) => None,
        };
        let key = host.key.as_ref().ok();
        if precompiled && key.is_none() {
            bail!("a precompiled layer, but no artifact key");
        }
        let envs = ctx
            .envs()
            .iter()
            .map(|e| {
                e.split_once('=')
                    .map_or((e.clone(), String::new()), |(k, v)| {
                        (k.to_string(), v.to_string())
                    })
            })
            .collect();
        let job = runner::Job {
            memory_limit: memory_limit(host),
            isolation: host.isolation,
            precompiled,
            func: entry.func.clone(),
            args: ctx.args().to_vec(),
            envs,
        };
        log::info!(
            "wasce: running {} ({} bytes{}) with {} isolation",
            entry
                .arg0
                .map_or("module".into(), |p| p.display().to_string()),
            bytes.len(),
            if precompiled { ", precompiled" } else { "" },
            host.isolation.name()
        );
        // The shim's logger writes to containerd's log pipe; nothing buffered survives exec.
        log::logger().flush();
        // Does not return: the container's init becomes the runner.
        Err(runner::exec(&job, &bytes, kvm, key))
    }
}

/// The container's memory limit (`linux.resources.memory.limit`, which the runtime wrote into
/// the container's memory cgroup), if any. Read in the container: from its own cgroup
/// filesystem when it has one (cgroup v2 with a cgroup namespace), else through the host
/// hierarchy the shim opened, at the path `/proc/self/cgroup` names.
fn memory_limit(host: &Host) -> Option<u64> {
    let parse = |s: String| s.trim().parse::<u64>().ok().filter(|&b| b < 1 << 62);
    for own in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Ok(s) = std::fs::read_to_string(own) {
            return parse(s);
        }
    }
    let root = host.memory_cgroups.as_ref()?;
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // v1: `N:memory[,...]:/path`; v2: `0::/path`.
    let (path, file) = cgroups.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            Some((path, "memory.limit_in_bytes"))
        } else if controllers.is_empty() {
            Some((path, "memory.max"))
        } else {
            None
        }
    })?;
    if path == "/" || path.split('/').any(|c| c == "..") {
        return None;
    }
    // Through the magic link: the host's cgroup filesystem is not in this mount namespace.
    let file = format!("/proc/self/fd/{}{path}/{file}", root.as_raw_fd());
    std::fs::read_to_string(file).ok().and_then(parse)
}

/// Precompiles WASM layers into wasce artifacts sealed under the shim's key.
struct WasceCompiler;

impl Compiler for WasceCompiler {
    fn cache_key(&self) -> impl std::hash::Hash {
        // Artifacts are valid for this wasce, this host's ISA and this key only (the loader
        // checks all three; a key fingerprint here means a new key makes containerd compile
        // again rather than keep a blob that no longer loads).
        let isa = wasce_compiler::artifact::host_isa()
            .unwrap_or("unknown-isa")
            .to_string();
        let fingerprint = host()
            .key
            .as_ref()
            .map(|k| {
                blake3::keyed_hash(&k.0, b"containerd-shim-wasce cache key").to_hex()[..16]
                    .to_string()
            })
            .unwrap_or_default();
        format!("{}-{isa}-{fingerprint}", env!("CARGO_PKG_VERSION"))
    }

    async fn compile(&self, layers: &[WasmLayer]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = Vec::with_capacity(layers.len());
        for layer in layers {
            if wasce_engine::is_artifact(&layer.layer) || layer.precompiled {
                out.push(None);
                continue;
            }
            // In the zygote, not here: this process is a containerd shim, whose reaper thread
            // waits for every child, the compile worker included (its status then never reaches
            // the engine: ECHILD). The zygote, forked before that thread existed, reaps nothing.
            let artifact = containerd_shimkit::zygote::Zygote::global()
                .try_run(compile_and_seal, &layer.layer)
                .map_err(|e| anyhow::anyhow!("the zygote: {e}"))?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            log::info!(
                "wasce: precompiled layer {} ({} -> {} bytes)",
                layer.config.digest(),
                layer.layer.len(),
                artifact.len()
            );
            out.push(Some(artifact));
        }
        Ok(out)
    }
}

/// Compile a module in a confined worker (the shim binary, on the host) and seal the result as
/// an artifact under the shim's key.
fn compile_and_seal(wasm: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    let key = host().key.as_ref().map_err(|e| format!("no artifact key: {e}"))?;
    let settings = settings();
    let compiled = wasce_engine::compile_confined(&wasm, &settings, &compile_limits(None))
        .map_err(|e| e.to_string())?;
    wasce_compiler::artifact::serialize(&compiled, &settings, key)
        .map_err(|e| format!("sealing the artifact: {e}"))
}

fn main() -> ExitCode {
    // The compile worker (`compile_confined`) and the in-container runner are this binary.
    if let Some(code) = wasce_engine::confined::worker_main_if_requested() {
        return code;
    }
    if let Some(code) = runner::main_if_requested() {
        return code;
    }
    // Open /dev/kvm and load the key now: the zygote that builds containers forks from here.
    let flags: Vec<_> = std::env::args().collect();
    if !flags
        .iter()
        .any(|a| a == "-v" || a == "--version" || a == "-info")
    {
        let _ = host();
    }
    WasceShim::run(Config {
        default_log_level: "info".into(),
        ..Default::default()
    });
    ExitCode::SUCCESS
}
