//! Issue 12, "Smaller ones": crafted artifacts with a valid MAC (checksum before) (finding a), panics after
//! confinement (finding b), process-mode fault handling next to an embedder's own signal
//! handlers (finding c).

use crate::common::{describe, text, wasm, Scratch};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use wasce_compiler::artifact;
use wasce_compiler::module::{ConstExpr, DataMode, ElemMode, WasmType};
use wasce_compiler::{CompiledModule, Settings};
use wasce_engine::{Error, HostcallTransport, Isolation, Linker, Store, StoreConfig};

/// This user's artifact key: a crafted artifact here is one that passed authentication (the
/// attacker is assumed to hold the key, or the compiler to have a bug).
fn key() -> &'static artifact::Key {
    wasce_engine::key::user_key().expect("the artifact key")
}

// ---- (a) Crafted artifacts with a valid MAC --------------------------------------------

/// A module that uses every kind of constant expression the artifact stores: an imported
/// global, defined globals of each type, a table with an initialiser, active, passive and
/// declared element segments, active and passive data segments, exports of every kind.
const RICH: &str = r#"(module
  (import "env" "base" (global $base i32))
  (memory (export "mem") 1 2)
  (table $t (export "tab") 4 8 funcref)
  (global $a (export "a") i32 (i32.const 7))
  (global $b i32 (global.get $base))
  (global $c i64 (i64.const -1))
  (global $d f32 (f32.const 1.5))
  (global $e f64 (f64.const 2.5))
  (global $f funcref (ref.func $one))
  (global $g (mut i32) (i32.const 0))
  (global $h externref (ref.null extern))
  (func $one (result i32) (i32.const 1))
  (func $two (export "two") (result i32) (i32.add (global.get $a) (call_indirect (result i32) (i32.const 0))))
  (elem (i32.const 0) $one $two)
  (elem funcref (ref.func $one) (ref.null func))
  (elem declare func $two)
  (data (i32.const 16) "active")
  (data "passive"))"#;

/// A compiled module, decoded from a genuine artifact (so that it is exactly what the
/// compiler writes), for a test to change and serialize again with a valid MAC.
fn decoded(wat: &str) -> CompiledModule {
    let bytes = wasce_engine::compile_to_artifact(&wasm(wat), &Settings::default()).unwrap();
    artifact::deserialize(&bytes, key()).unwrap().into_compiled()
}

/// The artifact of `module`, with a valid MAC.
fn forge(module: &CompiledModule) -> Vec<u8> {
    artifact::serialize(module, &Settings::default(), key()).unwrap()
}

fn linker(store: &mut Store) -> Linker {
    let mut linker = Linker::new();
    let g = store
        .new_global(wasce_compiler::module::GlobalType { ty: WasmType::I32, mutable: false }, wasce_engine::Val::I32(5))
        .unwrap();
    linker.define("env", "base", wasce_engine::Extern::Global(g));
    linker
}

/// Load `path` through the library and instantiate it in `config`'s store; any panic is
/// caught and returned as `Err(message)`.
fn load_and_instantiate(path: &Path, config: StoreConfig) -> Result<Result<(), Error>, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let module = wasce_engine::load_artifact(path)?;
        let mut store = Store::new(config)?;
        let linker = linker(&mut store);
        linker.instantiate(&mut store, &module).map(drop)
    }))
    .map_err(|p| p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())
}

fn configs() -> [(&'static str, StoreConfig); 3] {
    let kvm = |hostcall| StoreConfig { isolation: Isolation::Kvm, hostcall, ..StoreConfig::default() };
    [
        ("process", StoreConfig { isolation: Isolation::Process, ..StoreConfig::default() }),
        ("kvm/ring", kvm(HostcallTransport::Ring)),
        ("kvm/exit", kvm(HostcallTransport::Exit)),
    ]
}

/// Each crafted artifact: a name, and how it differs from `RICH`.
fn crafted() -> Vec<(&'static str, CompiledModule)> {
    let base = decoded(RICH);
    let info_of = |f: &dyn Fn(&mut CompiledModule)| {
        let mut m = base.clone();
        f(&mut m);
        m
    };
    // Global indices: 0 = the import $base, 1.. = $a, $b, $c, $d, $e, $f, $g (mutable), $h.
    vec![
        // The finding: $a (global 1) reads $h (global 8), which does not exist yet.
        ("global.get of a later global", info_of(&|m| m.info.global_inits[0] = ConstExpr::GlobalGet(8))),
        ("global.get of itself", info_of(&|m| m.info.global_inits[0] = ConstExpr::GlobalGet(1))),
        ("global.get of a mutable global", info_of(&|m| m.info.datas[0].mode = DataMode::Active { memory: 0, offset: ConstExpr::GlobalGet(7) })),
        ("global.get out of range", info_of(&|m| m.info.table_inits[0] = ConstExpr::GlobalGet(1000))),
        ("an i32 global initialised with an i64", info_of(&|m| m.info.global_inits[0] = ConstExpr::I64(1))),
        ("a funcref global initialised with a number", info_of(&|m| m.info.global_inits[5] = ConstExpr::I64(0x4141_4141_4141))),
        ("a funcref global initialised with ref.null extern", info_of(&|m| m.info.global_inits[5] = ConstExpr::RefNull(WasmType::ExternRef))),
        ("ref.func out of range in a global", info_of(&|m| m.info.global_inits[5] = ConstExpr::RefFunc(99))),
        ("a table initialised with a number", info_of(&|m| m.info.table_inits[0] = ConstExpr::I32(0x1000))),
        ("an element item of the wrong type", info_of(&|m| m.info.elems[1].items[0] = ConstExpr::I64(8))),
        ("externref elements for a funcref table", info_of(&|m| {
            m.info.elems[0].ty = WasmType::ExternRef;
            m.info.elems[0].items = vec![ConstExpr::RefNull(WasmType::ExternRef)];
        })),
        ("an element offset of type i64", info_of(&|m| {
            if let ElemMode::Active { offset, .. } = &mut m.info.elems[0].mode {
                *offset = ConstExpr::I64(0);
            }
        })),
        ("a data offset of type f64", info_of(&|m| m.info.datas[0].mode = DataMode::Active { memory: 0, offset: ConstExpr::F64(0) })),
        ("a start function with a result", info_of(&|m| m.info.start = Some(1))),
        ("a memory above 4 GiB", info_of(&|m| m.info.memories[0].min = 1 << 20)),
        ("a memory with max below min", info_of(&|m| m.info.memories[0].max = Some(0))),
        ("a table with max below min", info_of(&|m| m.info.tables[0].max = Some(1))),
    ]
}

/// Finding a (issue 12): "a crafted artifact with a valid checksum panics the host
/// (`global.get` of a later global in an init expression)". Every constant expression, segment,
/// start function and limit of an artifact is checked when it is decoded: each crafted
/// artifact (changed metadata, valid checksum) is a clear "malformed artifact" error from
/// `load_artifact`, never a panic, whatever store it is meant for.
#[test]
fn crafted_artifacts_are_malformed_not_panics() {
    crate::common::kvm_required();
    let s = Scratch::new();
    // The genuine artifact loads and runs in every store.
    let good = s.write("good.cwasm", forge(&decoded(RICH)));
    for (name, config) in configs() {
        assert!(matches!(load_and_instantiate(&good, config), Ok(Ok(()))), "{name}: the genuine artifact must instantiate");
    }
    for (what, module) in crafted() {
        let path = s.write("crafted.cwasm", forge(&module));
        for (name, config) in configs() {
            match load_and_instantiate(&path, config) {
                Err(panic) => panic!("{what} ({name}): the host panicked: {panic}"),
                Ok(Ok(())) => panic!("{what} ({name}): the crafted artifact was instantiated"),
                Ok(Err(e)) => {
                    let msg = e.to_string();
                    assert!(msg.contains("malformed artifact"), "{what} ({name}): {msg}");
                }
            }
        }
    }
}

/// Finding a (issue 12), through the CLI: `wasce exec` of an artifact whose global initialiser
/// reads a later global ends with status 1 and names the malformed artifact, in both
/// isolation modes and both host-call transports (it used to panic: status 101).
#[test]
fn crafted_artifact_under_wasce_exec_is_an_error() {
    crate::common::kvm_required();
    let s = Scratch::new();
    let mut module = decoded(RICH);
    module.info.global_inits[0] = ConstExpr::GlobalGet(8);
    let path = s.write("crafted.cwasm", forge(&module));
    for args in [&["--isolation", "kvm", "--hostcall", "ring"][..], &["--isolation", "kvm", "--hostcall", "exit"], &["--isolation", "process"]] {
        let o = s.wasce().arg("exec").args(args).args(["--invoke", "two"]).arg(&path).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", describe(&o));
        let err = text(&o.stderr);
        assert!(err.contains("malformed artifact") && err.contains("global.get 8") && !err.contains("panicked"), "{args:?}: {err}");
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Finding a (issue 12), the class: random changes to the metadata of a genuine artifact,
/// each with a valid checksum, are decoded, validated and (when accepted) instantiated in
/// process isolation; none may panic. Mutants that move code (function or trampoline
/// locations, the trap table) are not run: the code of an artifact is trusted by design, only
/// its metadata is checked.
#[test]
fn mutated_metadata_never_panics() {
    const ROUNDS: usize = 20_000;
    let s = Scratch::new();
    let genuine = forge(&decoded(RICH));
    let header = artifact::deserialize(&genuine, key()).unwrap().header;
    let original = decoded(RICH);
    let meta = header.meta.clone();
    let (mut accepted, mut instantiated) = (0, 0);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..ROUNDS {
        let mut bytes = genuine.clone();
        for _ in 0..1 + rng.below(3) {
            let at = meta.start + rng.below(meta.len());
            bytes[at] = match rng.below(4) {
                0 => bytes[at] ^ (1 << rng.below(8)),
                1 => bytes[at].wrapping_add(1),
                2 => bytes[at].wrapping_sub(1),
                _ => rng.next() as u8,
            };
        }
        artifact::update_mac(&mut bytes, key());
        let decoded = catch_unwind(|| artifact::deserialize(&bytes, key()).map(|a| a.into_compiled()));
        let Ok(decoded) = decoded else { panic!("round {round}: deserialize panicked") };
        let Ok(module) = decoded else { continue };
        accepted += 1;
        if module.funcs != original.funcs || module.entry_trampolines != original.entry_trampolines || module.host_trampolines != original.host_trampolines || module.traps != original.traps {
            continue;
        }
        let path = s.write("mutant.cwasm", &bytes);
        match load_and_instantiate(&path, StoreConfig { isolation: Isolation::Process, ..StoreConfig::default() }) {
            Err(panic) => panic!("round {round}: the host panicked: {panic}"),
            Ok(Ok(())) => instantiated += 1,
            Ok(Err(_)) => {}
        }
    }
    println!("mutated metadata: {accepted} of {ROUNDS} mutants decoded, {instantiated} instantiated");
    assert!(accepted > 0 && instantiated > 0, "the mutations exercised nothing ({accepted} decoded, {instantiated} instantiated)");
}

// ---- Child processes ---------------------------------------------------------------------------

/// The environment variable that tells an ignored `*_child` test what to do.
const CHILD: &str = "WASCE_REDTEAM_MISC_CHILD";

/// Run `name` (an ignored child test of this binary) in a child process, with `CHILD=arg`;
/// killed after a minute (a hang is a failure, not a stuck suite).
fn run_child(name: &str, arg: &str) -> std::process::Output {
    use std::io::Read;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, arg)
        .env_remove("RUST_BACKTRACE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    });
    let mut stderr = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            err.read_to_end(&mut stderr).unwrap();
            panic!("{name} ({arg}) hung; stderr: {}", text(&stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    err.read_to_end(&mut stderr).unwrap();
    std::process::Output { status, stdout: reader.join().unwrap(), stderr }
}

/// The argument of a child test; a child test run directly (without its parent) fails.
fn child_arg(name: &str) -> String {
    std::env::var(CHILD).unwrap_or_else(|_| panic!("{name} is the child side of another test, which runs it with {CHILD} set"))
}

fn signal_of(o: &std::process::Output) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&o.status)
}

// ---- (b) A panic after confinement -------------------------------------------------------------

/// The guest calls `env.boom`, a host function that panics.
const PANIC_GUEST: &str = r#"(module
  (import "env" "boom" (func $boom))
  (memory (export "memory") 1)
  (func (export "_start") (call $boom)))"#;

const PANIC_MESSAGE: &str = "deliberate panic in a host function";

/// The child of `panic_after_confinement_is_reported`: confine, then call a host function that
/// panics. Argument: `HOSTCALL:ISOLATION`.
#[test]
#[ignore = "the child side of panic_after_confinement_is_reported"]
fn panic_child() {
    let arg = child_arg("panic_child");
    let (hostcall, isolation) = arg.split_once(':').unwrap();
    let config = StoreConfig {
        isolation: if isolation == "process" { Isolation::Process } else { Isolation::Kvm },
        hostcall: if hostcall == "ring" { HostcallTransport::Ring } else { HostcallTransport::Exit },
        ..StoreConfig::default()
    };
    let mut store = Store::new(config).unwrap();
    let boom = store.new_host_func(
        wasce_engine::FuncType { params: vec![], results: vec![] },
        std::sync::Arc::new(|_, _: &[wasce_engine::Val], _: &mut [wasce_engine::Val]| panic!("{PANIC_MESSAGE}")),
    );
    let mut linker = Linker::new();
    linker.define("env", "boom", wasce_engine::Extern::Func(boom));
    let module = wasce_engine::load(&wasm(PANIC_GUEST), &Settings::default()).unwrap();
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let Some(wasce_engine::Extern::Func(start)) = store.export(instance, "_start") else { panic!("no _start") };
    // The test harness has other threads: not exclusive.
    wasce_engine::sandbox::confine(&store, &wasce_engine::sandbox::Policy { dirs: vec![], exclusive: false }).unwrap();
    println!("confined");
    let r = store.call(start, &[]);
    println!("not reached: {r:?}");
}

/// Finding b (issue 12): "any panic after confinement is reported as a blocked `gettid`". A
/// host function that panics on a confined thread is reported as the panic it is (thread,
/// location, message), never as a blocked system call; what follows is Rust's own handling,
/// each step of which the allow-lists permit: the panic unwinds out of the test (the child's
/// harness reports the failure: status 101), or aborts where it cannot unwind (process
/// isolation: the host function is called from compiled code through an `extern "C"`
/// builtin: SIGABRT), or is caught by the engine and the call fails (status 0).
///
/// KVM with each transport (over the ring the import may be served by the ring-server thread
/// or, when the guest fell back to an exit, by the vCPU thread) and process isolation.
#[test]
fn panic_after_confinement_is_reported() {
    crate::common::kvm_required();
    for (hostcall, isolation, thread) in [("exit", "kvm", "vCPU"), ("ring", "kvm", "*"), ("exit", "process", "store")] {
        let o = run_child("misc::panic_child", &format!("{hostcall}:{isolation}"));
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        let what = format!("{hostcall}/{isolation}: {}", describe(&o));
        assert!(out.contains("confined"), "{what}");
        assert!(!err.contains("blocked syscall"), "{what}");
        let threads: &[&str] = if thread == "*" { &["vCPU", "ring-server"] } else { &[thread] };
        let reported = threads.iter().any(|t| err.contains(&format!("wasce: panic on the {t} thread at engine/tests/redteam/misc.rs:")));
        assert!(reported && err.contains(&format!(": {PANIC_MESSAGE}\n")), "{what}");
        let ended = match (o.status.code(), signal_of(&o)) {
            (Some(101), _) => !out.contains("not reached"),
            (_, Some(libc::SIGABRT)) => true,
            (Some(0), _) => out.contains("not reached: Err("),
            _ => false,
        };
        assert!(ended, "{what}");
    }
}

/// Finding b (issue 12), through the CLI: the documented probe `WASCE_SANDBOX_PROBE=panic`
/// panics right after confinement; `wasce exec` reports the panic with its location and ends
/// with Rust's status 101, in both isolation modes and both host-call transports.
#[test]
fn wasce_exec_reports_a_panic_after_confinement() {
    crate::common::kvm_required();
    let s = Scratch::new();
    let m = s.write("spin.wat", r#"(module (func (export "_start")))"#);
    for (args, thread) in [(&["--hostcall", "ring"][..], "vCPU"), (&["--hostcall", "exit"], "vCPU"), (&["--isolation", "process"], "store")] {
        let o = s.wasce().env("WASCE_SANDBOX_PROBE", "panic").arg("exec").args(args).arg(&m).output().unwrap();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(101), "{args:?}: {}", describe(&o));
        assert!(!err.contains("blocked syscall"), "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("wasce: panic on the {thread} thread at engine/src/")) && err.contains("cli/exec.rs:") && err.contains(": probe: a deliberate panic after confinement\n"),
            "{args:?}: {err}"
        );
    }
}

// ---- (c) Process-mode fault handlers next to an embedder's ----------------------------------

/// A module that traps three ways, and calls the host (`env.host`) from compiled code.
const TRAPS: &str = r#"(module
  (import "env" "host" (func $host))
  (memory 1)
  (func (export "oob") (result i32) (i32.load (i32.const 65536)))
  (func (export "div") (param i32) (result i32) (i32.div_u (i32.const 1) (local.get 0)))
  (func (export "unreachable") unreachable)
  (func (export "call_host") (call $host)))"#;

static SEGV_HANDLED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static BUS_HANDLED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// The embedder's lazily committed pages: [start, end).
static LAZY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const LAZY_PAGES: usize = 4;

/// The embedder's SIGSEGV handler (SA_SIGINFO): commits a page of its own lazy region on
/// first touch; anything else gets the default action.
extern "C" fn embedder_segv(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel's siginfo for a SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let start = LAZY.load(std::sync::atomic::Ordering::SeqCst);
    if (start..start + LAZY_PAGES * 4096).contains(&addr) {
        // SAFETY: making a page of our own PROT_NONE mapping accessible.
        unsafe { libc::mprotect((addr & !4095) as *mut libc::c_void, 4096, libc::PROT_READ | libc::PROT_WRITE) };
        SEGV_HANDLED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    } else {
        // SAFETY: restoring the default action; returning re-raises the fault.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// The embedder's SIGBUS handler (plain, no SA_SIGINFO): counts.
extern "C" fn embedder_bus(_sig: libc::c_int) {
    BUS_HANDLED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

fn trap_of(r: Result<Vec<wasce_engine::Val>, Error>) -> String {
    match r {
        Err(Error::Trap(t)) => t.trap.message().to_string(),
        other => format!("not a trap: {other:?}"),
    }
}

fn process_store() -> Store {
    Store::new(StoreConfig { isolation: Isolation::Process, ..StoreConfig::default() }).unwrap()
}

/// The child of the process-mode signal tests. Argument: `chain` (the embedder's handlers are
/// installed first; wasm traps, then the embedder's own faults, in host code and in a host
/// function called from wasm) or `ud2` (a host function jumps to a trapping instruction of
/// compiled code).
#[test]
#[ignore = "the child side of the process-mode signal tests"]
fn signal_child() {
    let arg = child_arg("signal_child");
    let func = |store: &Store, instance, name: &str| match store.export(instance, name) {
        Some(wasce_engine::Extern::Func(f)) => f,
        _ => panic!("no export {name}"),
    };
    let module = wasce_engine::load(&wasm(TRAPS), &Settings::default()).unwrap();
    let mut store = process_store();
    if arg == "chain" {
        // SAFETY: a fresh PROT_NONE mapping of our own, and the embedder's handlers installed
        // with zeroed, then filled, sigaction structures.
        unsafe {
            let lazy = libc::mmap(std::ptr::null_mut(), LAZY_PAGES * 4096, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
            assert_ne!(lazy, libc::MAP_FAILED);
            LAZY.store(lazy as usize, std::sync::atomic::Ordering::SeqCst);
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = embedder_segv as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            assert_eq!(libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut()), 0);
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = embedder_bus as *const () as usize;
            assert_eq!(libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()), 0);
        }
        let touch = |page: usize| {
            let p = (LAZY.load(std::sync::atomic::Ordering::SeqCst) + page * 4096) as *mut u64;
            // SAFETY: a page of our lazy region; the embedder's handler commits it on this
            // first touch (volatile: the access must happen, and fault).
            unsafe { std::ptr::write_volatile(p, 42) };
            // SAFETY: as above, now committed.
            assert_eq!(unsafe { std::ptr::read_volatile(p) }, 42);
        };
        let host = store.new_host_func(
            wasce_engine::FuncType { params: vec![], results: vec![] },
            std::sync::Arc::new(move |_, _: &[wasce_engine::Val], _: &mut [wasce_engine::Val]| {
                touch(1);
                Ok(())
            }),
        );
        let mut linker = Linker::new();
        linker.define("env", "host", wasce_engine::Extern::Func(host));
        let instance = linker.instantiate(&mut store, &module).unwrap();
        // wasce's handlers are installed now, after the embedder's; wasm traps still work.
        assert_eq!(trap_of(store.call(func(&store, instance, "oob"), &[])), "out of bounds memory access");
        assert_eq!(trap_of(store.call(func(&store, instance, "div"), &[wasce_engine::Val::I32(0)])), "integer divide by zero");
        assert_eq!(trap_of(store.call(func(&store, instance, "unreachable"), &[])), "unreachable");
        // The embedder's own fault in host code reaches its handler.
        touch(0);
        // So does one in a host function that compiled code called.
        store.call(func(&store, instance, "call_host"), &[]).unwrap();
        // A signal someone sends reaches a plain (non-SA_SIGINFO) handler.
        // SAFETY: raising SIGBUS on this thread; the embedder's handler counts it.
        unsafe { libc::raise(libc::SIGBUS) };
        // And wasm still traps afterwards.
        assert_eq!(trap_of(store.call(func(&store, instance, "oob"), &[])), "out of bounds memory access");
        println!(
            "segv handled: {}, bus handled: {}",
            SEGV_HANDLED.load(std::sync::atomic::Ordering::SeqCst),
            BUS_HANDLED.load(std::sync::atomic::Ordering::SeqCst)
        );
    } else {
        let base = module.code_base() as usize;
        let (offset, _) = *module.compiled.traps.iter().find(|(_, t)| *t == wasce_engine::Trap::UnreachableCodeReached).expect("a ud2 with a trap record");
        let pc = base + offset as usize;
        let host = store.new_host_func(
            wasce_engine::FuncType { params: vec![], results: vec![] },
            std::sync::Arc::new(move |_, _: &[wasce_engine::Val], _: &mut [wasce_engine::Val]| {
                println!("jumping to compiled code at {pc:#x}");
                // SAFETY: deliberately a host crash: `pc` is a `ud2` in compiled code; the
                // process must die with SIGILL (nothing returns here).
                let f: extern "C" fn() = unsafe { std::mem::transmute(pc) };
                f();
                Ok(())
            }),
        );
        let mut linker = Linker::new();
        linker.define("env", "host", wasce_engine::Extern::Func(host));
        let instance = linker.instantiate(&mut store, &module).unwrap();
        let r = store.call(func(&store, instance, "call_host"), &[]);
        println!("taken for a wasm trap: {r:?}");
    }
}

/// Finding c (issue 12): "process-mode trap handlers replace (not chain) existing ones". An
/// embedder's SIGSEGV handler (SA_SIGINFO, committing pages of its own lazily) and SIGBUS
/// handler (plain), installed before wasce's, still get their faults and signals: in host
/// code, and in a host function called from compiled code; wasm traps keep working beside them.
#[test]
fn embedder_signal_handlers_still_run() {
    let o = run_child("misc::signal_child", "chain");
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(text(&o.stdout).contains("segv handled: 2, bus handled: 1"), "{}", describe(&o));
}

/// Finding c (issue 12): "... and classify by PC only". A fault at a trapping instruction of
/// compiled code, reached by a host function rather than by running wasm, is a host crash
/// (the process dies with SIGILL), not a wasm trap that resumes the host at the wasm entry.
#[test]
fn compiled_code_pc_outside_wasm_is_a_crash() {
    let o = run_child("misc::signal_child", "ud2");
    assert!(text(&o.stdout).contains("jumping to compiled code"), "{}", describe(&o));
    assert!(!text(&o.stdout).contains("taken for a wasm trap"), "{}", describe(&o));
    assert_eq!(signal_of(&o), Some(libc::SIGILL), "{}", describe(&o));
}
