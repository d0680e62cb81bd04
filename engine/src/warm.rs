//! Warm starts: run a WASI program many times, each run in a fresh-looking instance, without
//! paying for a new VM, a new instantiation or the module's initialisation each time.
//!
//! * [`Prelinked`]: a loaded module with its imports resolved against WASI and its entry point
//!   found, checked once; [`Prelinked::instantiate`] makes a [`WarmInstance`] of it.
//! * [`WarmInstance`]: a store (in KVM mode, a VM) holding one instance of the module,
//!   initialised (data segments, start function, a reactor's `_initialize`), and a
//!   [`StoreSnapshot`] of it taken right after. [`WarmInstance::run`] gives the WASI context the
//!   run's arguments, environment and streams, calls the entry point under the run's limits,
//!   and restores the snapshot: memories, globals, tables, every vmctx, the fuel cell, the
//!   WASI state (a fresh fd table, fresh streams), the guest stack and the vCPU's FPU/SIMD
//!   registers are as they were after initialisation, so nothing of one run is visible to the
//!   next. The VM itself, its page tables, memslots and the pages the program touched stay, so
//!   the next run pays neither VM creation nor first-touch faults. Restoring writes back only
//!   the pages that differ from the snapshot (it reads the rest).
//! * [`Pool`]: warm instances created ahead of demand, taken for a run and put back.
//! * [`InstanceImage`] (`WarmInstance::image`): the initialised instance in a form another
//!   store can start from (`Prelinked::instantiate_image`, a fresh VM): memories in sealed
//!   memfds mapped copy-on-write, globals and tables with function references as indices. A
//!   fresh instance then skips the module's initialisation.
//!
//! A run that grew a memory shrinks it back by taking it out of the VM and mapping it again
//! (the memslots are deleted, so no stale translation can reach the pages given back). An
//! instance whose restore fails is unusable and is dropped (`Pool` makes no replacement).

use crate::store::{InstanceImage, StoreSnapshot};
use crate::wasi::{self, Stdio, WasiConfig, WasiHandle};
use crate::{Error, Extern, FuncId, InstanceId, Linker, Module, Store, StoreConfig, Trap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How warm instances of a module are made.
#[derive(Clone, Debug)]
pub struct WarmConfig {
    /// Isolation and limits of each instance's store. `timeout` is the longest any run may
    /// take (in the VM, a run can set a shorter one only if the store has a timeout at all);
    /// `fuel`, the most fuel a run may be given (for modules compiled with fuel metering).
    pub store: StoreConfig,
    /// What every run starts with: `args[0]` (the program name), environment variables (a
    /// run's own are added), preopened directories, fd and file-size limits, protected files.
    /// `stdin`/`stdout`/`stderr` are ignored (each run has its own).
    pub wasi: WasiConfig,
    /// The most bytes a run's arguments and environment may take together.
    pub args_capacity: usize,
    /// The export to call for each run: `None` is the WASI command convention (`_start`).
    pub entry: Option<String>,
}

impl Default for WarmConfig {
    fn default() -> Self {
        WarmConfig { store: StoreConfig::default(), wasi: WasiConfig::default(), args_capacity: 64 * 1024, entry: None }
    }
}

/// A module ready to be instantiated warm: its imports are all WASI, its entry point exists.
pub struct Prelinked {
    module: Module,
    config: WarmConfig,
    entry: String,
}

impl Prelinked {
    /// Check `module` once: every import must be a WASI function, and it must export the entry
    /// point as a function taking and returning nothing.
    pub fn new(module: Module, config: WarmConfig) -> Result<Prelinked, Error> {
        let info = &module.compiled.info;
        if let Some(i) = info.imports.iter().find(|i| i.module != "wasi_snapshot_preview1") {
            return Err(Error::Link(format!("unknown import: `{}::{}` (a warm instance links WASI only)", i.module, i.name)));
        }
        let entry = config.entry.clone().unwrap_or_else(|| "_start".to_string());
        match info.export(&entry) {
            Some(e) if e.kind == wasce_compiler::module::ExportKind::Func => {}
            _ => return Err(Error::Usage(format!("the module exports no function `{entry}`"))),
        }
        Ok(Prelinked { module, config, entry })
    }

    pub fn module(&self) -> &Module {
        &self.module
    }

    pub fn config(&self) -> &WarmConfig {
        &self.config
    }

    /// A new warm instance: a store (a VM in KVM mode), WASI, the instance initialised, and
    /// its snapshot.
    pub fn instantiate(&self) -> Result<WarmInstance, Error> {
        self.make(None)
    }

    /// A new warm instance started from `image` (of an instance of this module, see
    /// `WarmInstance::image`) instead of initialising the module again: its memories are
    /// mapped copy-on-write from the image's sealed files (shared by every instance made from
    /// it until written), its globals and tables set as imaged; the data segments, start
    /// function and `_initialize` do not run.
    pub fn instantiate_image(&self, image: &InstanceImage) -> Result<WarmInstance, Error> {
        if !Arc::ptr_eq(image.module(), &self.module) {
            return Err(Error::Usage("the image is of another module".into()));
        }
        self.make(Some(image))
    }

    fn make(&self, image: Option<&InstanceImage>) -> Result<WarmInstance, Error> {
        let mut store = Store::new(self.config.store.clone())?;
        let mut linker = Linker::new();
        let mut wasi_config = self.config.wasi.clone();
        for s in [&mut wasi_config.stdin, &mut wasi_config.stdout, &mut wasi_config.stderr] {
            *s = Stdio::Null;
        }
        let wasi = wasi::add_to_linker_resettable(&mut store, &mut linker, wasi_config, self.config.args_capacity)?;
        let instance = match image {
            None => {
                let instance = linker.instantiate(&mut store, &self.module)?;
                if let Some(Extern::Func(init)) = store.export(instance, "_initialize") {
                    store.call(init, &[])?;
                }
                instance
            }
            Some(image) => {
                let mut imports = Vec::new();
                for i in &self.module.compiled.info.imports {
                    imports.push(linker.get(&i.module, &i.name).ok_or_else(|| Error::Link(format!("unknown import: `{}::{}`", i.module, i.name)))?);
                }
                store.instantiate_image(image, &imports)?
            }
        };
        let Some(Extern::Func(entry)) = store.export(instance, &self.entry) else {
            return Err(Error::Usage(format!("the module exports no function `{}`", self.entry)));
        };
        let ty = store.func_type(entry);
        if !ty.params.is_empty() || !ty.results.is_empty() {
            return Err(Error::Usage(format!("`{}` has type {ty}; an entry point takes and returns nothing", self.entry)));
        }
        let snapshot = store.snapshot()?;
        Ok(WarmInstance {
            store,
            instance,
            entry,
            wasi,
            snapshot,
            argv0: self.config.wasi.args.first().cloned().unwrap_or_else(|| "main".to_string()),
            env: self.config.wasi.env.clone(),
            config: self.config.store.clone(),
            metered: self.config.store.fuel.is_some(),
            runs: 0,
            dirty: false,
        })
    }
}

/// What one run gets.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Environment variables, added to (or replacing) the configured ones.
    pub env: Vec<(String, String)>,
    pub stdin: Vec<u8>,
    /// Wall-clock limit, at most the configured one.
    pub timeout: Option<Duration>,
    /// Fuel (modules compiled with fuel metering), at most the configured amount.
    pub fuel: Option<u64>,
    /// Most bytes of each linear memory, at most the configured limit.
    pub max_memory: Option<u64>,
    /// Most bytes kept of stdout and of stderr each (writes past it fail with EFBIG).
    pub max_output: Option<usize>,
}

/// How a run ended.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    /// The exit status (`_start` returning is 0, `proc_exit(n)` is n); `None` if it trapped.
    pub exit_code: Option<i32>,
    /// The trap or error that ended it, if any.
    pub trap: Option<String>,
    /// It ran past its time limit (the trap is `interrupt`).
    pub timed_out: bool,
    /// It ran out of fuel.
    pub out_of_fuel: bool,
    /// A `memory.grow` was refused for a limit during the run.
    pub memory_limited: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// From just before the call to just after it (not counting the restore).
    pub wall: Duration,
    /// Fuel consumed (modules compiled with fuel metering).
    pub fuel_used: Option<u64>,
    /// Bytes of linear memory at the end of the run (memories never shrink during one: its
    /// peak).
    pub peak_memory: u64,
}

/// One initialised instance in its own store, reset to its snapshot after every run.
pub struct WarmInstance {
    store: Store,
    instance: InstanceId,
    entry: FuncId,
    wasi: WasiHandle,
    snapshot: StoreSnapshot,
    argv0: String,
    env: Vec<(String, String)>,
    config: StoreConfig,
    /// The store has fuel (`StoreConfig::fuel`): the module is expected to be compiled with
    /// fuel metering.
    metered: bool,
    runs: u64,
    /// A run happened since the last restore.
    dirty: bool,
}

impl WarmInstance {
    /// Run the entry point once, as described by `req`, then put the instance back as it was
    /// after initialisation. `Ok` whatever the program did (a trap, a timeout, an exit status
    /// are in the result); `Err` when the run could not be set up (e.g. arguments over
    /// `args_capacity`, the instance stays usable) or the instance could not be restored (then
    /// it is unusable: drop it; `is_usable` says which).
    pub fn run(&mut self, req: &RunRequest) -> Result<RunResult, Error> {
        let result = self.run_unrestored(req)?;
        self.restore()?;
        Ok(result)
    }

    /// `run` without the restore at the end, so that a server can answer before it restores
    /// (`restore`, off the request's path). The instance restores itself before its next run
    /// in any case: a run never starts from what an earlier one left.
    pub fn run_unrestored(&mut self, req: &RunRequest) -> Result<RunResult, Error> {
        if self.dirty {
            self.restore()?;
        }
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut argv = Vec::with_capacity(req.args.len() + 1);
        argv.push(self.argv0.clone());
        argv.extend(req.args.iter().cloned());
        let mut env = self.env.clone();
        for (k, v) in &req.env {
            env.retain(|(name, _)| name != k);
            env.push((k.clone(), v.clone()));
        }
        self.wasi.reset_with_output_limit(argv, env, Stdio::Bytes(Arc::new(req.stdin.clone())), Stdio::Capture(stdout.clone()), Stdio::Capture(stderr.clone()), req.max_output)?;
        let timeout = match (req.timeout, self.config.timeout) {
            (Some(t), Some(max)) => Some(t.min(max)),
            (None, max) => max,
            (Some(_), None) => return Err(Error::Usage("a run's timeout needs a store created with a timeout".into())),
        };
        self.store.set_timeout(timeout)?;
        let fuel = match (req.fuel, self.config.fuel) {
            (Some(f), Some(max)) => Some(f.min(max)),
            (f, max) => f.or(max),
        };
        if let Some(f) = fuel {
            self.store.set_fuel(f);
        }
        if let Some(bytes) = req.max_memory {
            self.store.set_memory_limit(bytes / crate::memory::WASM_PAGE);
        }
        let started = Instant::now();
        self.dirty = true;
        let outcome = self.store.call(self.entry, &[]);
        let wall = started.elapsed();
        self.runs += 1;
        let mut result = RunResult {
            wall,
            peak_memory: self.store.memory_bytes(),
            memory_limited: self.store.grow_failures() > 0,
            fuel_used: match (self.metered, fuel) {
                (true, Some(f)) => Some(f.saturating_sub(self.store.fuel_remaining())),
                _ => None,
            },
            ..RunResult::default()
        };
        match outcome {
            Ok(_) => result.exit_code = Some(0),
            Err(Error::Exit(code)) => result.exit_code = Some(code),
            Err(Error::Trap(t)) => {
                result.timed_out = t.trap == Trap::Interrupt;
                result.out_of_fuel = t.trap == Trap::OutOfFuel;
                if result.out_of_fuel {
                    // Compiled code may not have written its last count back: all of it is used.
                    result.fuel_used = fuel;
                }
                result.trap = Some(if result.timed_out { "interrupt".to_string() } else { t.trap.message().to_string() });
            }
            Err(e) => result.trap = Some(e.to_string()),
        }
        // The streams are the run's own: nothing else holds them once the context is reset.
        self.wasi.reset(vec![self.argv0.clone()], Vec::new(), Stdio::Null, Stdio::Null, Stdio::Null)?;
        result.stdout = std::mem::take(&mut *stdout.lock().unwrap_or_else(|e| e.into_inner()));
        result.stderr = std::mem::take(&mut *stderr.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(result)
    }

    /// Put the instance back as it was after initialisation (a no-op if it is). An error
    /// leaves the instance unusable: drop it.
    pub fn restore(&mut self) -> Result<(), Error> {
        if !self.dirty {
            return Ok(());
        }
        self.store.set_memory_limit(u64::MAX);
        self.store.restore(&self.snapshot)?;
        self.dirty = false;
        Ok(())
    }

    /// The instance as it is after initialisation (this instance is always restored to it
    /// between runs), portable to fresh stores: `Prelinked::instantiate_image`.
    pub fn image(&self) -> Result<InstanceImage, Error> {
        self.store.instance_image(self.instance)
    }

    /// Runs made so far.
    pub fn runs(&self) -> u64 {
        self.runs
    }

    /// The store (for `sandbox::confine`, statistics).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Host memory the snapshot takes.
    pub fn snapshot_size(&self) -> usize {
        self.snapshot.size()
    }
}

/// Warm instances of one module, created ahead of demand.
///
/// In KVM mode a VM is best used from one thread: KVM notes the thread that runs a vCPU and
/// moving it to another costs an RCU grace period; `take` gives the most recently returned
/// instance (the one whose pages are warmest).
pub struct Pool {
    prelinked: Arc<Prelinked>,
    idle: Mutex<Vec<WarmInstance>>,
    returned: Condvar,
    /// Instances in existence (idle or taken).
    live: Mutex<usize>,
}

impl Pool {
    /// A pool of `size` instances, all created now.
    pub fn new(prelinked: Arc<Prelinked>, size: usize) -> Result<Pool, Error> {
        let pool = Pool { prelinked, idle: Mutex::new(Vec::new()), returned: Condvar::new(), live: Mutex::new(0) };
        pool.grow(size)?;
        Ok(pool)
    }

    /// Create `n` more instances.
    pub fn grow(&self, n: usize) -> Result<(), Error> {
        for _ in 0..n {
            let instance = self.prelinked.instantiate()?;
            *self.live.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            self.put(instance);
        }
        Ok(())
    }

    /// Drop idle instances until at most `n` exist; their VMs and memory go back to the system.
    /// Returns how many were dropped.
    pub fn shrink_to(&self, n: usize) -> usize {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut dropped = 0;
        while *live > n && idle.pop().is_some() {
            *live -= 1;
            dropped += 1;
        }
        dropped
    }

    /// Instances in existence, idle or taken.
    pub fn size(&self) -> usize {
        *self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Take an idle instance, waiting up to `wait` for one; `None` if none came (or the pool
    /// has no instance left at all).
    pub fn take(&self, wait: Duration) -> Option<WarmInstance> {
        let deadline = Instant::now() + wait;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(i) = idle.pop() {
                return Some(i);
            }
            if self.size() == 0 {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            idle = self.returned.wait_timeout(idle, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Give an instance back.
    pub fn put(&self, instance: WarmInstance) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(instance);
        self.returned.notify_one();
    }

    /// Forget an instance that was taken and is unusable (its run's restore failed).
    pub fn discard(&self, instance: WarmInstance) {
        drop(instance);
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.returned.notify_all();
    }

    /// Take an instance (waiting up to `wait`), run `req` in it, and give it back (or drop it
    /// if it cannot be restored).
    pub fn run(&self, req: &RunRequest, wait: Duration) -> Result<RunResult, Error> {
        let Some(mut instance) = self.take(wait) else {
            return Err(Error::Resource("no warm instance became free in time".into()));
        };
        match instance.run(req) {
            Ok(r) => {
                self.put(instance);
                Ok(r)
            }
            Err(e) => {
                // A setup error leaves the instance as it was; a failed restore does not.
                match e {
                    Error::Limit(_) | Error::Usage(_) => self.put(instance),
                    _ => self.discard(instance),
                }
                Err(e)
            }
        }
    }
}
