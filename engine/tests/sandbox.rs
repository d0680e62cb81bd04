//! The sandbox (`wasce_engine::sandbox`): the host confines itself after setup.
//!
//! * Through the CLI: a forbidden call after confinement ends the run with status 159 and a
//!   message naming the call and the thread (the documented test hook `WASCE_SANDBOX_PROBE`
//!   makes the host call `socket`, or open a path, right after confinement); Landlock denies
//!   paths outside the `--dir`s while the program's own preopen works; `--no-sandbox` turns it
//!   all off and says so; timeouts, traps with backtraces, memory growth and `proc_exit` still
//!   work when confined; every program of the WASI test suite passes under `wasce exec` with the
//!   sandbox on, in the VM (both host-call transports) and in process mode.
//! * Through the library: a child process (this test binary, re-run on one ignored test,
//!   `library_child`, which fails when run on its own) confines itself with `sandbox::confine` and runs a guest whose host import needs `socket`: the run
//!   ends naming the call and the thread that served the import (vCPU or ring server); the
//!   same host import sees EACCES for /etc/passwd and reads a file in the preopen.
//!
//! The tests need /dev/kvm, seccomp and Landlock (they fail, not skip, without them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use wasce_engine::sandbox::{self, Policy};
use wasce_engine::wasi::{self, Preopen, WasiConfig};
use wasce_engine::{Extern, FuncType, HostcallTransport, Isolation, Linker, Store, StoreConfig, Val};

const BLOCKED: i32 = sandbox::EXIT_BLOCKED as i32;

fn wasce(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasce"));
    c.env("WASCE_CACHE_DIR", cache).env_remove("WASCE_KVM_DEVICE").env_remove("WASCE_WASI_TRACE").env_remove("WASCE_SANDBOX_PROBE");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn assert_code(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "stdout: {}\nstderr: {}", text(&o.stdout), text(&o.stderr));
}

/// Reads `inside.txt` from the preopen (fd 3) and writes it to stdout; exits 7 if it cannot.
const CAT_INSIDE: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 512) "inside.txt")
  (func (export "_start")
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 512) (i32.const 10) (i32.const 0)
                         (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 64))
      (then (call $proc_exit (i32.const 7))))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 256))
    (if (call $fd_read (i32.load (i32.const 64)) (i32.const 0) (i32.const 1) (i32.const 8))
      (then (call $proc_exit (i32.const 8))))
    (i32.store (i32.const 4) (i32.load (i32.const 8)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// Grows memory by 64 MiB in steps (memslots and mprotect after confinement), writes at the top,
/// then traps two calls deep.
const GROW_THEN_TRAP: &str = r#"(module
  (memory 1)
  (func $boom (unreachable))
  (func $deep (call $boom))
  (func (export "_start")
    (local i32)
    (loop $l
      (if (i32.eq (memory.grow (i32.const 64)) (i32.const -1)) (then (unreachable)))
      (local.set 0 (i32.add (local.get 0) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get 0) (i32.const 16))))
    (i32.store (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 4)) (i32.const 42))
    (call $deep)))"#;

const SPIN: &str = r#"(module (func (export "_start") (loop $l (br $l))))"#;

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pre")).unwrap();
        std::fs::write(dir.path().join("pre/inside.txt"), "hello from the preopen\n").unwrap();
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn module(&self, name: &str, wat: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, wat).unwrap();
        p
    }

    fn wasce(&self) -> Command {
        wasce(&self.path("cache"))
    }
}

// ---- The CLI ---------------------------------------------------------------------------------

#[test]
fn blocked_syscall_is_named_and_exits_159() {
    let s = Scratch::new();
    let m = s.module("spin.wat", SPIN);
    for (isolation, thread) in [("kvm", "vCPU"), ("process", "store")] {
        let o = s.wasce().env("WASCE_SANDBOX_PROBE", "socket").args(["exec", "--isolation", isolation]).arg(&m).output().unwrap();
        assert_code(&o, BLOCKED);
        let err = text(&o.stderr);
        assert_eq!(
            err,
            format!("wasce: sandbox: blocked syscall socket (41) on the {thread} thread; run with --no-sandbox to debug\n"),
            "{isolation}"
        );
    }
}

#[test]
fn landlock_denies_outside_the_preopens() {
    let s = Scratch::new();
    let m = s.module("cat.wat", CAT_INSIDE);
    let pre = s.path("pre");
    std::fs::write(s.path("outside.txt"), "secret").unwrap();
    for isolation in ["kvm", "process"] {
        for probe in ["/etc/passwd".into(), s.path("outside.txt").display().to_string()] {
            let o = s
                .wasce()
                .env("WASCE_SANDBOX_PROBE", format!("open={probe}"))
                .args(["exec", "--isolation", isolation, "--dir"])
                .arg(format!("{}::/data", pre.display()))
                .arg(&m)
                .output()
                .unwrap();
            assert_code(&o, 0);
            assert!(text(&o.stderr).contains(&format!("probe: open {probe}: Permission denied")), "{isolation}: {}", text(&o.stderr));
            assert_eq!(text(&o.stdout), "hello from the preopen\n");
        }
        // The host may still open what is beneath a preopen.
        let inside = pre.join("inside.txt").display().to_string();
        let o = s.wasce().env("WASCE_SANDBOX_PROBE", format!("open={inside}")).args(["exec", "--isolation", isolation, "--dir"]).arg(&pre).arg(&m).output().unwrap();
        assert_code(&o, 0);
        assert!(text(&o.stderr).contains(&format!("probe: open {inside}: ok")), "{}", text(&o.stderr));
    }
}

#[test]
fn no_sandbox_turns_it_off() {
    let s = Scratch::new();
    let m = s.module("spin.wat", r#"(module (func (export "_start")))"#);
    let o = s.wasce().env("WASCE_SANDBOX_PROBE", "socket").args(["exec", "--no-sandbox"]).arg(&m).output().unwrap();
    assert_code(&o, 0);
    let err = text(&o.stderr);
    assert!(err.contains("--no-sandbox: the host process is not confined (no seccomp allow-lists, no Landlock"), "{err}");
    assert!(err.contains("probe: socket: ok"), "{err}");
    let o = s.wasce().env("WASCE_SANDBOX_PROBE", "open=/etc/passwd").args(["exec", "--no-sandbox"]).arg(&m).output().unwrap();
    assert_code(&o, 0);
    assert!(text(&o.stderr).contains("probe: open /etc/passwd: ok"));
    // The help says what it does.
    let help = s.wasce().args(["exec", "--help"]).output().unwrap();
    assert!(text(&help.stdout).contains("--no-sandbox"));
}

#[test]
fn confined_runs_still_grow_trap_time_out_and_exit() {
    let s = Scratch::new();
    let grow = s.module("grow.wat", GROW_THEN_TRAP);
    for args in [&["--hostcall", "ring"][..], &["--hostcall", "exit"], &["--isolation", "process"]] {
        let o = s.wasce().arg("exec").args(args).arg(&grow).output().unwrap();
        assert_code(&o, 134);
        let err = text(&o.stderr);
        assert!(err.contains("wasm trap: unreachable") && err.contains("wasm backtrace:"), "{args:?}: {err}");
    }
    let spin = s.module("spin.wat", SPIN);
    for hostcall in ["ring", "exit"] {
        let o = s.wasce().args(["exec", "--timeout", "300ms", "--hostcall", hostcall]).arg(&spin).output().unwrap();
        assert_code(&o, 134);
        assert!(text(&o.stderr).contains("interrupt"), "{}", text(&o.stderr));
    }
    let exit = s.module(
        "exit.wat",
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1) (func (export "_start") (call $exit (i32.const 42))))"#,
    );
    for args in [&["--timeout", "10s"][..], &["--isolation", "process"]] {
        let o = s.wasce().arg("exec").args(args).arg(&exit).output().unwrap();
        assert_code(&o, 42);
    }
}

// ---- The WASI test suite through `wasce exec`, sandbox on -------------------------------------

fn suite_programs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/wasi-testsuite/tests");
    let mut v = Vec::new();
    for lang in ["assemblyscript", "c", "rust"] {
        let dir = root.join(lang).join("testsuite/wasm32-wasip1");
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "wasm") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ty = e.file_type().unwrap();
        if src.extension().is_some_and(|x| x == "cleanup") {
            continue;
        }
        if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ty.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Every program of the WASI suite (legacy specs: args, env, root, exit_code, stdout) under
/// `wasce exec` with the sandbox on, in three modes. The expected failures of the library-level
/// runner (`spec-tests/wasi-expected-failures.txt`) are allowed to fail here too.
#[test]
fn wasi_suite_passes_under_the_sandbox() {
    let expected_failures = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec-tests/wasi-expected-failures.txt")).unwrap();
    let xfail: Vec<&str> = expected_failures.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).filter_map(|l| l.split_whitespace().next()).collect();
    let cache = tempfile::tempdir().unwrap();
    let programs = suite_programs();
    assert_eq!(programs.len(), 72, "the prebuilt wasm32-wasip1 suite has 72 programs");
    let mut failures = Vec::new();
    for mode in [&["--hostcall", "ring"][..], &["--hostcall", "exit", "--timeout", "60s"], &["--isolation", "process"]] {
        for wasm in &programs {
            let lang = wasm.ancestors().nth(3).unwrap().file_name().unwrap().to_string_lossy().into_owned();
            let name = format!("{lang}/{}", wasm.file_stem().unwrap().to_string_lossy());
            let spec: serde_json::Value = std::fs::read_to_string(wasm.with_extension("json")).map_or(serde_json::json!({}), |s| serde_json::from_str(&s).unwrap());
            let mut cmd = wasce(cache.path());
            cmd.arg("exec").args(mode);
            let tmp = tempfile::tempdir().unwrap();
            if let Some(root) = spec["root"].as_str() {
                let copy = tmp.path().join("root");
                copy_tree(&wasm.parent().unwrap().join(root), &copy);
                cmd.arg("--dir").arg(format!("{}::/", copy.display()));
            }
            if let Some(env) = spec["env"].as_object() {
                for (k, v) in env {
                    cmd.arg("--env").arg(format!("{k}={}", v.as_str().unwrap_or_default()));
                }
            }
            cmd.arg(wasm);
            for a in spec["args"].as_array().into_iter().flatten() {
                cmd.arg(a.as_str().unwrap_or_default());
            }
            let o = cmd.stdin(std::process::Stdio::null()).output().unwrap();
            let want = spec["exit_code"].as_i64().unwrap_or(0) as i32;
            let stdout_ok = spec["stdout"].as_str().is_none_or(|s| text(&o.stdout).starts_with(s));
            let ok = o.status.code() == Some(want) && stdout_ok && !text(&o.stderr).contains("sandbox");
            if !ok && !xfail.contains(&name.as_str()) {
                failures.push(format!("{name} {mode:?}: status {:?} (want {want}), stderr: {}", o.status.code(), text(&o.stderr)));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

// ---- The library -----------------------------------------------------------------------------

/// The guest calls `env.probe` (opens /etc/passwd and a file beneath the preopen, prints what
/// happened) and then `env.socket` (which needs `socket(2)`).
const LIBRARY_GUEST: &str = r#"(module
  (import "env" "probe" (func $probe))
  (import "env" "socket" (func $socket))
  (memory (export "memory") 1)
  (func (export "_start") (call $probe) (call $socket)))"#;

/// Run the library scenario in a child process (this test binary, on `library_child`).
fn library_run(hostcall: &str, isolation: &str) -> Output {
    let dir = Scratch::new();
    let o = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "library_child", "--nocapture", "--test-threads=1"])
        .env("WASCE_SANDBOX_CHILD", format!("{hostcall}:{isolation}:{}", dir.path("pre").display()))
        .output()
        .unwrap();
    drop(dir);
    o
}

/// The child side of the library tests: ignored in a normal test run, run by `library_run`
/// with `WASCE_SANDBOX_CHILD` set; run any other way it fails.
#[test]
#[ignore = "the child side of library_confinement_per_thread, which runs it"]
fn library_child() {
    let spec = std::env::var("WASCE_SANDBOX_CHILD").expect("library_child is run by library_confinement_per_thread, with WASCE_SANDBOX_CHILD set");
    let mut parts = spec.splitn(3, ':');
    let (hostcall, isolation, pre) = (parts.next().unwrap(), parts.next().unwrap(), PathBuf::from(parts.next().unwrap()));
    let config = StoreConfig {
        isolation: if isolation == "process" { Isolation::Process } else { Isolation::Kvm },
        hostcall: if hostcall == "ring" { HostcallTransport::Ring } else { HostcallTransport::Exit },
        ..StoreConfig::default()
    };
    let mut store = Store::new(config).unwrap();
    let mut linker = Linker::new();
    let wasi_config = WasiConfig { preopens: vec![Preopen { host: pre.clone(), guest: "/".into() }], ..WasiConfig::default() };
    wasi::add_to_linker(&mut store, &mut linker, wasi_config).unwrap();
    let inside = pre.join("inside.txt");
    let probe = store.new_host_func(
        FuncType { params: vec![], results: vec![] },
        Arc::new(move |_, _: &[Val], _: &mut [Val]| {
            for p in [Path::new("/etc/passwd"), &inside] {
                // Plain open and read: `read_to_string` would also `statx` the file, which is
                // in no allow-list (wasce itself never needs it).
                let mut buf = [0u8; 64];
                match std::fs::File::open(p).and_then(|mut f| std::io::Read::read(&mut f, &mut buf)) {
                    Ok(n) => println!("read {}: {}", p.display(), String::from_utf8_lossy(&buf[..n]).trim()),
                    Err(e) => println!("read {}: {:?}", p.display(), e.kind()),
                }
            }
            Ok(())
        }),
    );
    let socket = store.new_host_func(
        FuncType { params: vec![], results: vec![] },
        Arc::new(|_, _: &[Val], _: &mut [Val]| {
            let served_by = if std::thread::current().name() == Some("wasce-ring") { "ring-server" } else { "not the ring server" };
            println!("socket served on the {served_by} thread");
            // SAFETY: a plain socket(2) call.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            println!("socket: {fd}");
            Ok(())
        }),
    );
    linker.define("env", "probe", Extern::Func(probe));
    linker.define("env", "socket", Extern::Func(socket));
    let module = wasce_engine::load(&wat::parse_str(LIBRARY_GUEST).unwrap(), &Default::default()).unwrap();
    // The test harness has other threads: not exclusive.
    let confined = sandbox::confine(&store, &Policy { dirs: vec![pre], exclusive: false }).unwrap();
    println!("confined: {:?}", confined.threads.iter().map(|(r, _)| r.thread_name()).collect::<Vec<_>>());
    let code = wasi::run_command(&mut store, &linker, &module);
    println!("not reached: {code:?}");
}

/// The import needing `socket` is killed on whichever thread served it. With the ring, that is
/// usually the ring server, but the vCPU thread serves the call when the server was asleep
/// (after 200 µs idle); the run is repeated until the ring server has been seen to serve it.
#[test]
fn library_confinement_per_thread() {
    for (hostcall, isolation, threads) in [("ring", "kvm", r#"["vCPU", "ring-server"]"#), ("exit", "kvm", r#"["vCPU"]"#), ("exit", "process", r#"["store"]"#)] {
        let mut seen_ring = false;
        for _attempt in 0..20 {
            let o = library_run(hostcall, isolation);
            assert_code(&o, BLOCKED);
            let out = text(&o.stdout);
            assert!(out.contains(&format!("confined: {threads}")), "{out}");
            assert!(out.contains("read /etc/passwd: PermissionDenied"), "{out}");
            assert!(out.contains("inside.txt: hello from the preopen"), "{out}");
            assert!(!out.contains("socket: ") && !out.contains("not reached"), "{out}");
            let on_ring = out.contains("socket served on the ring-server thread");
            let killed_on = match (on_ring, isolation) {
                (true, _) => "ring-server",
                (false, "process") => "store",
                (false, _) => "vCPU",
            };
            assert!(
                text(&o.stderr).contains(&format!("wasce: sandbox: blocked syscall socket (41) on the {killed_on} thread; run with --no-sandbox to debug")),
                "{}",
                text(&o.stderr)
            );
            seen_ring |= on_ring;
            if hostcall != "ring" || seen_ring {
                break;
            }
        }
        assert_eq!(seen_ring, hostcall == "ring", "{hostcall}");
    }
}

/// `exclusive` refuses to confine (and confines nothing) when another thread exists.
#[test]
fn exclusive_refuses_unknown_threads() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::Builder::new().name("bystander".into()).spawn(move || rx.recv().unwrap_or(())).unwrap();
    let store = Store::new(StoreConfig { isolation: Isolation::Process, ..StoreConfig::default() }).unwrap();
    let err = sandbox::confine(&store, &Policy { dirs: vec![], exclusive: true }).unwrap_err();
    assert!(err.to_string().contains("`bystander`"), "{err}");
    tx.send(()).unwrap();
    other.join().unwrap();
    // Still unconfined: this thread can open what it likes.
    assert!(std::fs::metadata("/etc/passwd").is_ok() && std::fs::File::open("/proc/self/status").is_ok());
}
