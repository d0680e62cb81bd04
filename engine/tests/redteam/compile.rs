//! Finding 5 (issue 12): compilation was unbounded and unconfined. `wasce exec` parsed and
//! compiled untrusted modules in the host process before confinement, with no limit: a small
//! module (41 KB: one loop whose 3,000 locals all change, with 3,000 back edges, so the SSA form
//! has 9 million block arguments) kept the compiler busy for 15 s and 1 GB, and doubling it
//! quadruples both. Now the module is parsed and compiled in a confined worker process
//! (`wasce_engine::confined`) within `--compile-timeout` and `--compile-memory`.
//!
//! The compile happens before a store exists, so isolation mode and host-call transport do not
//! change it; the attacks still go through `exec` in both modes (and `compile`), and the module
//! that is compiled runs in both modes and both transports afterwards.

use super::common::{describe, kvm_required, text, wasm, Scratch};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};
use wasce_engine::{CompileLimits, CompileWorkerError, Error, Settings};

fn uleb(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    uleb(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// A `_start` function with `n` i32 locals: a loop that increments every local, then has `n`
/// conditional back edges (`br_if 0`). Every local is live around the loop and passed on every
/// back edge: n² block arguments for the compiler's SSA construction and register allocator.
fn slow_module(n: u32) -> Vec<u8> {
    let mut code = vec![0x03, 0x40]; // loop
    for i in 0..n {
        code.push(0x20); // local.get i
        uleb(i.into(), &mut code);
        code.extend_from_slice(&[0x41, 0x01, 0x6a, 0x21]); // i32.const 1; i32.add; local.set
        uleb(i.into(), &mut code);
    }
    for k in 0..n {
        code.push(0x20);
        uleb(k.into(), &mut code);
        code.extend_from_slice(&[0x0d, 0x00]); // br_if 0
    }
    code.push(0x0b); // end loop
    let mut body = vec![1]; // one group of locals
    uleb(n.into(), &mut body);
    body.push(0x7f); // i32
    body.extend_from_slice(&code);
    body.push(0x0b); // end function
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut m);
    section(3, &[1, 0], &mut m);
    section(7, &[1, 6, b'_', b's', b't', b'a', b'r', b't', 0, 0], &mut m);
    let mut code_sec = vec![1];
    uleb(body.len() as u64, &mut code_sec);
    code_sec.extend_from_slice(&body);
    section(10, &code_sec, &mut m);
    m
}

/// 15 s and 1 GB of compiling before the fix (on the dev build here).
const SLOW: u32 = 3000;
/// 0.24 s but about 130 MB of compiling (more than 1,000 would take 1.2 s and 133 MB).
const HUNGRY: u32 = 1000;

const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

#[track_caller]
fn assert_failed_with(o: &Output, code: i32, needles: &[&str]) {
    assert_eq!(o.status.code(), Some(code), "{}", describe(o));
    let err = text(&o.stderr);
    for n in needles {
        assert!(err.contains(n), "`{n}` missing:\n{}", describe(o));
    }
}

/// Compile workers left behind by a `wasce` that has exited: they would be reparented to this
/// process, which `reaper` makes the subreaper of its descendants.
fn orphaned_workers() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid ...
        let Some(after) = stat.rsplit_once(") ").map(|(_, a)| a) else { continue };
        if after.split(' ').nth(1) != Some(me.as_str()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if text(&cmdline).contains(wasce_engine::confined::WORKER_ARG) && !after.starts_with('Z') {
            found.push(format!("{} {}", entry.file_name().to_string_lossy(), text(&cmdline).replace('\0', " ")));
        }
    }
    found
}

fn reaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER with a flag; orphaned descendants become our children.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
}

/// Finding 5 (issue 12): a module that takes 15 s and 1 GB to compile is stopped at
/// `--compile-timeout 1s` with an error naming the bound and the flag, well within the bound
/// (generous margin: 5 s), through `exec` in both isolation modes and through `compile`; the
/// worker is killed and reaped, not left running.
#[test]
fn pathological_compile_stops_at_the_timeout() {
    kvm_required();
    reaper();
    let s = Scratch::new();
    let m = s.write("slow.wasm", slow_module(SLOW));
    let runs: [&[&str]; 3] = [
        &["exec", "--isolation", "kvm", "--compile-timeout", "1s"],
        &["exec", "--isolation", "process", "--compile-timeout", "1s", "--no-cache"],
        &["compile", "--compile-timeout", "1s", "-o"],
    ];
    for args in runs {
        let mut c = s.wasce();
        c.args(args);
        if args[0] == "compile" {
            c.arg(s.path("slow.cwasm"));
        }
        let t = Instant::now();
        let o = c.arg(&m).output().unwrap();
        let took = t.elapsed();
        assert_failed_with(&o, 1, &["compiling took longer than 1 s", "--compile-timeout", "the compiler was stopped"]);
        assert!(took < Duration::from_secs(5), "{args:?}: took {took:?}");
        assert!(orphaned_workers().is_empty(), "{args:?}: workers left running: {:?}", orphaned_workers());
    }
    assert!(!s.path("slow.cwasm").exists(), "no artifact is written");
    // Nothing was cached either.
    let entries = std::fs::read_dir(s.path("cache")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(entries, 0, "the cache holds nothing for the module");
}

/// Finding 5 (issue 12): a module that needs about 130 MB to compile, with `--compile-memory
/// 48MiB`, ends with the memory error (naming the bound, the flag and how the worker ended), in
/// `exec` and `compile`; with the default bound it compiles.
#[test]
fn compile_memory_bound_gives_a_clear_error() {
    kvm_required();
    let s = Scratch::new();
    let m = s.write("hungry.wasm", slow_module(HUNGRY));
    for args in [["exec", "--no-cache", "--compile-memory", "48MiB"].as_slice(), &["compile", "--compile-memory", "48MiB"]] {
        let o = s.wasce().args(args).arg(&m).output().unwrap();
        assert_failed_with(&o, 1, &["compiling needed more memory than 48 MiB", "--compile-memory", "allocation", "failed"]);
    }
    // The default bound fits it (it loops forever: stop it with --timeout).
    let o = s.wasce().args(["exec", "--no-cache", "--timeout", "100ms"]).arg(&m).output().unwrap();
    assert_failed_with(&o, 134, &["interrupt"]);
}

/// Finding 5 (issue 12): the compile worker is confined. `WASCE_COMPILE_PROBE=socket` makes it
/// call socket(2) after confining itself, `socket-thread` on a thread started afterwards (as the
/// parallel compile's are): the sandbox ends it, and `exec`/`compile` report the blocked call
/// on the compiler thread with status 159. `--no-sandbox` turns it off for `exec`.
#[test]
fn compile_worker_is_confined() {
    let s = Scratch::new();
    let m = s.write("hello.wat", HELLO);
    for probe in ["socket", "socket-thread"] {
        for args in [["exec", "--no-cache", "--isolation", "process"].as_slice(), &["compile"]] {
            let o = s.wasce().env("WASCE_COMPILE_PROBE", probe).args(args).arg(&m).output().unwrap();
            assert_failed_with(&o, 159, &["the compiler was stopped by the sandbox", "blocked syscall socket (41) on the compiler thread"]);
            assert!(text(&o.stdout).is_empty(), "{}", describe(&o));
        }
    }
    let o = s.wasce().env("WASCE_COMPILE_PROBE", "socket").args(["exec", "--no-cache", "--isolation", "process", "--no-sandbox"]).arg(&m).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(text(&o.stdout), "hello\n");
    assert!(text(&o.stderr).contains("nor was the compile worker"), "{}", describe(&o));
}

/// Finding 5 (issue 12): normal modules still run, compiled by the worker, in both isolation
/// modes and both transports, and the compile cache still works: a miss compiles (in the
/// worker), the next run hits; binary and text modules.
#[test]
fn normal_modules_run_and_the_cache_hits_after_a_miss() {
    kvm_required();
    let s = Scratch::new();
    let wat = s.write("hello.wat", HELLO);
    let bin = s.write("hello.wasm", wasm(HELLO));
    for m in [&wat, &bin] {
        let mut first = true;
        for mode in [["--isolation", "kvm", "--hostcall", "ring"], ["--isolation", "kvm", "--hostcall", "exit"], ["--isolation", "process", "--hostcall", "auto"]] {
            let o = s.wasce().arg("exec").args(mode).arg("--stats").arg(m).output().unwrap();
            assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
            assert_eq!(text(&o.stdout), "hello\n");
            let expected = if first { "compile (cache miss)" } else { "load (cache hit)" };
            assert!(text(&o.stderr).contains(expected), "{m:?} {mode:?}: {}", describe(&o));
            first = false;
        }
        let o = s.wasce().args(["exec", "--no-cache", "--stats"]).arg(m).output().unwrap();
        assert_eq!((o.status.code(), text(&o.stdout).as_str()), (Some(0), "hello\n"), "{}", describe(&o));
        assert!(text(&o.stderr).contains("compile  "), "{}", describe(&o));
    }
    // `wasce compile` then `exec` of the artifact.
    let out = s.path("hello.cwasm");
    let o = s.wasce().args(["compile", "-o"]).arg(&out).arg(&wat).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let o = s.wasce().arg("exec").arg(&out).output().unwrap();
    assert_eq!((o.status.code(), text(&o.stdout).as_str()), (Some(0), "hello\n"), "{}", describe(&o));
}

/// Finding 5 (issue 12): the errors users see for malformed modules are what they were before
/// the compile moved to the worker: the file, `invalid module`, the byte offset; a text error
/// on one line with its position, or with the excerpt and the path under `--verbose`.
#[test]
fn malformed_module_errors_are_unchanged() {
    let s = Scratch::new();
    let bad = s.write("bad.wasm", b"\0asm\x01\0\0\0\x01\x05\x01\x60\x00\x00\xff");
    let mismatch = s.write("mismatch.wat", r#"(module (func (result i32) (i64.const 1)))"#);
    let text_err = s.write("bad.wat", "(module (func (export \"_start\") unreachable");
    for cmd in [["exec", "--isolation", "process"].as_slice(), &["compile"]] {
        let o = s.wasce().args(cmd).arg(&bad).output().unwrap();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
        assert!(err.starts_with(&format!("Error: {}: invalid module: ", bad.display())) && err.contains("(at offset 0xe)"), "{err}");
        let o = s.wasce().args(cmd).arg(&mismatch).output().unwrap();
        assert_failed_with(&o, 1, &["mismatch.wat: invalid module: type mismatch", "offset"]);
        let o = s.wasce().args(cmd).arg(&text_err).output().unwrap();
        assert_failed_with(&o, 1, &["bad.wat: not a WebAssembly binary, and not valid text: expected `)` (at line 1, column 44)"]);
        assert_eq!(text(&o.stderr).lines().count(), 1, "{}", describe(&o));
    }
    let o = s.wasce().args(["exec", "--verbose"]).arg(&text_err).output().unwrap();
    assert_failed_with(&o, 1, &[&format!("--> {}:1:44", text_err.display())]);
}

/// Finding 5 (issue 12), through the library (`compile_confined`, what embedders and `wasce
/// serve` use): a module compiles in the worker (the `wasce` binary), passes the artifact checks
/// and runs; the bounds and a worker that cannot start, or does not answer, are typed errors.
#[test]
fn compile_confined_library() {
    let worker = Path::new(env!("CARGO_BIN_EXE_wasce")).to_path_buf();
    let limits = CompileLimits { worker: Some(worker), ..CompileLimits::default() };
    let wat = r#"(module (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))"#;
    for input in [wat.as_bytes().to_vec(), wasm(wat)] {
        let module = wasce_engine::load_confined(&input, &Settings::default(), &limits).unwrap();
        let mut store = wasce_engine::Store::new(wasce_engine::StoreConfig { isolation: wasce_engine::Isolation::Process, ..Default::default() }).unwrap();
        let instance = store.instantiate(&module, &[]).unwrap();
        let Some(wasce_engine::Extern::Func(add)) = store.export(instance, "add") else { panic!("no add") };
        assert_eq!(store.call(add, &[wasce_engine::Val::I32(2), wasce_engine::Val::I32(40)]).unwrap(), vec![wasce_engine::Val::I32(42)]);
    }
    let fuel = Settings { consume_fuel: true, ..Settings::default() };
    assert!(wasce_engine::compile_confined(&wasm(wat), &fuel, &limits).unwrap().consume_fuel);

    let e = wasce_engine::compile_confined(&slow_module(SLOW), &Settings::default(), &CompileLimits { timeout: Duration::from_millis(300), ..limits.clone() }).unwrap_err();
    assert!(matches!(e, Error::CompileWorker(CompileWorkerError::Timeout { limit }) if limit == Duration::from_millis(300)), "{e:?}");
    let e = wasce_engine::compile_confined(&slow_module(HUNGRY), &Settings::default(), &CompileLimits { memory: 48 << 20, ..limits.clone() }).unwrap_err();
    assert!(matches!(e, Error::CompileWorker(CompileWorkerError::Memory { limit, .. }) if limit == 48 << 20), "{e:?}");
    let e = wasce_engine::compile_confined(b"\0asm\x01\0\0\0\x01", &Settings::default(), &limits).unwrap_err();
    assert!(matches!(&e, Error::Compile(wasce_compiler::CompileError::Invalid(m)) if m.contains("offset")), "{e:?}");
    let e = wasce_engine::compile_confined(b"(module", &Settings::default(), &limits).unwrap_err();
    assert!(matches!(&e, Error::CompileWorker(CompileWorkerError::Text { .. })), "{e:?}");

    let missing = CompileLimits { worker: Some("/nonexistent/wasce".into()), ..limits.clone() };
    let e = wasce_engine::compile_confined(&wasm(wat), &Settings::default(), &missing).unwrap_err();
    assert!(matches!(&e, Error::CompileWorker(CompileWorkerError::Start { .. })), "{e:?}");
    assert!(e.to_string().contains("cannot start the compile worker /nonexistent/wasce"), "{e}");
    // A worker that is not one: it answers nothing.
    let not_a_worker = CompileLimits { worker: Some("/bin/true".into()), ..limits };
    let e = wasce_engine::compile_confined(&wasm(wat), &Settings::default(), &not_a_worker).unwrap_err();
    assert!(matches!(&e, Error::CompileWorker(CompileWorkerError::Failed { .. })), "{e:?}");
}

/// The new flags are documented and parsed like the other durations and sizes.
#[test]
fn compile_limit_flags() {
    let s = Scratch::new();
    for cmd in ["exec", "compile"] {
        let o = s.wasce().args(["help", cmd]).output().unwrap();
        let help = text(&o.stdout);
        assert!(help.contains("--compile-timeout") && help.contains("--compile-memory"), "{help}");
    }
    let m = s.write("hello.wat", HELLO);
    for (flag, value, needle) in [("--compile-timeout", "5h", "unknown unit"), ("--compile-memory", "lots", "not a size"), ("--compile-timeout", "0s", "not a positive duration")] {
        let o = s.wasce().args(["exec", flag, value]).arg(&m).output().unwrap();
        assert_failed_with(&o, 2, &[needle]);
    }
}
