//! The `wasce` command, run as a program: every `exec` flag, the exit codes (wasmtime's: the
//! program's status for `proc_exit(n)`, 134 for traps including interrupts and fuel exhaustion,
//! 1 for other errors with one line of message, clap's 2 for a malformed command line), the
//! compile cache, `compile`, `help` and `--version`. Tests run in a KVM guest unless they say
//! otherwise (they fail, not skip, without /dev/kvm). Each test has its own compile cache
//! (`WASCE_CACHE_DIR`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Scratch {
    dir: tempfile::TempDir,
    cache: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        Scratch { dir, cache }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// `wasce ARGS` with this scratch's cache and the real KVM device.
    fn wasce(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wasce"));
        c.env("WASCE_CACHE_DIR", &self.cache).env_remove("WASCE_KVM_DEVICE").env_remove("WASCE_WASI_TRACE");
        c
    }

    fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.wasce().args(args).output().unwrap()
    }

    fn cache_entries(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = match std::fs::read_dir(&self.cache) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_code(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "stdout: {}\nstderr: {}", stdout(o), stderr(o));
}

/// An error of exit status 1: one line, `Error: ...` containing `needle`.
#[track_caller]
fn assert_error(o: &Output, needle: &str) {
    assert_code(o, 1);
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("Error: ") && err.contains(needle), "expected `{needle}` in: {err}");
}

/// A WASI command: the imports it may use, a 2-page memory, `$write(ptr, len)` to stdout, data
/// at 512, and `body` (which defines `_start` and anything else).
fn wasi_program(data: &str, body: &str) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fd_fdstat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 512) "{data}")
  (func $write (param $p i32) (param $n i32)
    (i32.store (i32.const 0) (local.get $p))
    (i32.store (i32.const 4) (local.get $n))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  {body})"#
    )
}

/// Prints `argv` as NUL-terminated strings.
fn print_args() -> String {
    wasi_program(
        "",
        r#"(func (export "_start")
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $args_get (i32.const 2048) (i32.const 4096)))
    (call $write (i32.const 4096) (i32.load (i32.const 20))))"#,
    )
}

const FIB: &str = r#"(module
  (func $fib (export "fib") (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
      (then (local.get 0))
      (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
                     (call $fib (i32.sub (local.get 0) (i32.const 2))))))))"#;

const SPIN: &str = r#"(module (func $spin (export "_start") (loop $l (br $l))))"#;

// ---- Help, version, command line -------------------------------------------------------------

#[test]
fn help_and_version() {
    let s = Scratch::new();
    let o = s.run(["--version"]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o).trim(), format!("wasce {}", env!("CARGO_PKG_VERSION")));

    let o = s.run(["help"]);
    assert_code(&o, 0);
    let help = stdout(&o);
    for needle in ["exec", "compile", "wast", "Examples:", "wasce exec --invoke fib", "--tcplisten", "--preload", "Exit status"] {
        assert!(help.contains(needle), "`{needle}` missing from: {help}");
    }

    let o = s.run(["help", "exec"]);
    assert_code(&o, 0);
    let help = stdout(&o);
    for flag in [
        "--invoke", "--isolation", "--timeout", "--hostcall", "--dir", "--env", "--argv0", "--max-memory",
        "--max-table-elements", "--max-stack", "--tcplisten", "--preload", "--fuel", "--stats", "--no-cache",
    ] {
        assert!(help.contains(flag), "`{flag}` missing from: {help}");
    }
}

#[test]
fn malformed_command_lines_exit_2() {
    // clap's exit status for usage errors (wasmtime's too).
    let s = Scratch::new();
    let m = s.write("fib.wat", FIB);
    let o = s.wasce().args(["exec", "--bogus"]).arg(&m).output().unwrap();
    assert_code(&o, 2);
    assert!(stderr(&o).contains("--bogus"), "{}", stderr(&o));
    for (flag, value, needle) in [
        ("--max-memory", "64XB", "unknown unit"),
        ("--max-memory", "lots", "not a size"),
        ("--max-stack", "1.5M", "not a size"),
        ("--max-table-elements", "ten", "--max-table-elements"),
        ("--fuel", "many", "--fuel"),
        ("--timeout", "5h", "unknown unit"),
        ("--preload", "nameless", "NAME=MODULE"),
    ] {
        let o = s.wasce().args(["exec", flag, value]).arg(&m).output().unwrap();
        assert_code(&o, 2);
        assert!(stderr(&o).contains(needle), "{flag} {value}: {}", stderr(&o));
    }
    let o = s.run(["exec"]);
    assert_code(&o, 2);
}

// ---- Errors -----------------------------------------------------------------------------------

#[test]
fn missing_file() {
    let s = Scratch::new();
    let o = s.wasce().arg("exec").arg(s.path("nope.wasm")).output().unwrap();
    assert_error(&o, "cannot read");
    assert!(stderr(&o).contains("nope.wasm"));
}

#[test]
fn invalid_modules_name_the_offset_or_position() {
    let s = Scratch::new();
    // A type section that claims 5 bytes and holds more.
    let m = s.write("bad.wasm", b"\0asm\x01\0\0\0\x01\x05\x01\x60\x00\x00\xff");
    let o = s.wasce().arg("exec").arg(&m).output().unwrap();
    assert_error(&o, "bad.wasm: invalid module:");
    assert!(stderr(&o).contains("offset 0x"), "{}", stderr(&o));

    // Valid encoding, invalid code (type mismatch).
    let m = s.write("mismatch.wat", r#"(module (func (result i32) (i64.const 1)))"#);
    let o = s.wasce().arg("exec").arg(&m).output().unwrap();
    assert_error(&o, "mismatch.wat: invalid module:");
    assert!(stderr(&o).contains("offset"), "{}", stderr(&o));

    let m = s.write("bad.wat", r#"(module (func (export "_start") unreachable"#);
    let o = s.wasce().arg("exec").arg(&m).output().unwrap();
    assert_error(&o, "not valid text");
    assert!(stderr(&o).contains("line 1, column"), "{}", stderr(&o));
    // --verbose shows the excerpt.
    let o = s.wasce().args(["exec", "--verbose"]).arg(&m).output().unwrap();
    assert_code(&o, 1);
    assert!(stderr(&o).lines().count() > 1 && stderr(&o).contains("bad.wat:1:"), "{}", stderr(&o));
}

#[test]
fn bad_dir() {
    let s = Scratch::new();
    let m = s.write("fib.wat", FIB);
    let file = s.write("plain.txt", "x");
    let o = s.wasce().arg("exec").arg("--dir").arg(&file).arg(&m).output().unwrap();
    assert_error(&o, "is not a directory");
    let o = s.wasce().arg("exec").arg("--dir").arg(format!("{}::", s.dir.path().display())).arg(&m).output().unwrap();
    assert_error(&o, "expected HOST or HOST::GUEST");
}

#[test]
fn missing_kvm_names_process_isolation() {
    let s = Scratch::new();
    let m = s.write("fib.wat", FIB);
    let o = s.wasce().env("WASCE_KVM_DEVICE", "/nonexistent").args(["exec", "--invoke", "fib"]).arg(&m).arg("10").output().unwrap();
    assert_error(&o, "--isolation process");
    assert!(stderr(&o).contains("KVM is not available"));
    // ... which works without it.
    let o = s.wasce().env("WASCE_KVM_DEVICE", "/nonexistent").args(["exec", "--isolation", "process", "--invoke", "fib"]).arg(&m).arg("10").output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "55\n");
}

#[test]
fn corrupt_artifact() {
    let s = Scratch::new();
    let m = s.write("fib.wat", FIB);
    assert_code(&s.wasce().arg("compile").arg(&m).output().unwrap(), 0);
    let art = s.path("fib.cwasm");
    let mut bytes = std::fs::read(&art).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&art, &bytes).unwrap();
    let o = s.wasce().args(["exec", "--invoke", "fib"]).arg(&art).arg("5").output().unwrap();
    assert_error(&o, "fib.cwasm: artifact failed authentication");
    // Truncated.
    std::fs::write(&art, &bytes[..100]).unwrap();
    let o = s.wasce().args(["exec", "--invoke", "fib"]).arg(&art).arg("5").output().unwrap();
    assert_error(&o, "truncated");
}

#[test]
fn unknown_import_and_missing_start() {
    let s = Scratch::new();
    let m = s.write("imp.wat", r#"(module (import "env" "f" (func)) (func (export "_start")))"#);
    let o = s.wasce().arg("exec").arg(&m).output().unwrap();
    assert_error(&o, "unknown import: `env::f`");
    let m = s.write("fib.wat", FIB);
    let o = s.wasce().arg("exec").arg(&m).output().unwrap();
    assert_error(&o, "no `_start`");
    let o = s.wasce().args(["exec", "--invoke", "nope"]).arg(&m).output().unwrap();
    assert_error(&o, "exports no function `nope`");
}

// ---- Exit codes -------------------------------------------------------------------------------

#[test]
fn trap_exits_134_with_a_backtrace() {
    let s = Scratch::new();
    let m = s.write("trap.wat", r#"(module (func $outer (export "_start") (call $inner)) (func $inner unreachable))"#);
    for isolation in ["kvm", "process"] {
        let o = s.wasce().args(["exec", "--isolation", isolation]).arg(&m).output().unwrap();
        assert_code(&o, 134);
        let err = stderr(&o);
        assert!(err.starts_with("Error: wasm trap: unreachable\n"), "{err}");
        assert!(err.contains("wasm backtrace:") && err.contains("0: inner") && err.contains("1: outer"), "{err}");
    }
}

#[test]
fn proc_exit_status_passes_through() {
    let s = Scratch::new();
    for code in [0, 1, 3, 42, 125] {
        let m = s.write(&format!("exit{code}.wat"), wasi_program("", &format!(r#"(func (export "_start") (call $proc_exit (i32.const {code})))"#)));
        for isolation in ["kvm", "process"] {
            let o = s.wasce().args(["exec", "--isolation", isolation]).arg(&m).output().unwrap();
            assert_code(&o, code);
            assert!(stderr(&o).is_empty(), "{}", stderr(&o));
        }
    }
    // Returning from `_start` is status 0, and stdout carries what the program wrote.
    let m = s.write("hello.wat", wasi_program("hello\\n", r#"(func (export "_start") (call $write (i32.const 512) (i32.const 6)))"#));
    let o = s.wasce().arg("exec").arg(&m).output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "hello\n");
}

// ---- WASI: args, env, dirs --------------------------------------------------------------------

#[test]
fn args_and_argv0() {
    let s = Scratch::new();
    let m = s.write("args.wat", print_args());
    let o = s.wasce().arg("exec").arg(&m).args(["a", "--b", "c d"]).output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "args.wat\0a\0--b\0c d\0");
    let o = s.wasce().args(["exec", "--argv0", "myname"]).arg(&m).arg("x").output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "myname\0x\0");
}

#[test]
fn env() {
    let s = Scratch::new();
    let m = s.write(
        "env.wat",
        wasi_program(
            "",
            r#"(func (export "_start")
    (drop (call $environ_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $environ_get (i32.const 2048) (i32.const 4096)))
    (call $write (i32.const 4096) (i32.load (i32.const 20))))"#,
        ),
    );
    let o = s
        .wasce()
        .env("WASCE_TEST_INHERITED", "from host")
        .env("WASCE_TEST_HIDDEN", "secret")
        .args(["exec", "--env", "FOO=bar", "--env", "EMPTY=", "--env", "WASCE_TEST_INHERITED", "--env", "WASCE_TEST_UNSET"])
        .arg(&m)
        .output()
        .unwrap();
    assert_code(&o, 0);
    // Only what was asked for; nothing of wasce's own environment.
    assert_eq!(stdout(&o), "FOO=bar\0EMPTY=\0WASCE_TEST_INHERITED=from host\0");
}

#[test]
fn dir_with_guest_name() {
    let s = Scratch::new();
    let host = s.path("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("hello.txt"), "contents of hello.txt").unwrap();
    // Print the preopen's name, then the file read through it.
    let m = s.write(
        "cat.wat",
        wasi_program(
            "hello.txt",
            r#"(func (export "_start") (local $e i32)
    (local.set $e (call $fd_prestat_get (i32.const 3) (i32.const 48)))
    (if (local.get $e) (then (call $proc_exit (i32.add (i32.const 100) (local.get $e)))))
    (drop (call $fd_prestat_dir_name (i32.const 3) (i32.const 3072) (i32.load (i32.const 52))))
    (call $write (i32.const 3072) (i32.load (i32.const 52)))
    (call $write (i32.const 513) (i32.const 0))
    ;; path_open(3, dirflags 0, "hello.txt", oflags 0, rights fd_read, 0, fdflags 0, &fd)
    (local.set $e (call $path_open (i32.const 3) (i32.const 0) (i32.const 512) (i32.const 9) (i32.const 0)
      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 24)))
    (if (local.get $e) (then (call $proc_exit (i32.add (i32.const 150) (local.get $e)))))
    (i32.store (i32.const 32) (i32.const 4096))
    (i32.store (i32.const 36) (i32.const 1000))
    (local.set $e (call $fd_read (i32.load (i32.const 24)) (i32.const 32) (i32.const 1) (i32.const 40)))
    (if (local.get $e) (then (call $proc_exit (i32.add (i32.const 200) (local.get $e)))))
    (i32.store8 (i32.const 4095) (i32.const 58))
    (call $write (i32.const 4095) (i32.add (i32.const 1) (i32.load (i32.const 40)))))"#,
        ),
    );
    let o = s.wasce().arg("exec").arg("--dir").arg(format!("{}::/data", host.display())).arg(&m).output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "/data:contents of hello.txt");
    // `--dir HOST` is seen under the host's name.
    let o = s.wasce().arg("exec").arg("--dir").arg(&host).arg(&m).output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), format!("{}:contents of hello.txt", host.display()));
    // Without it, fd 3 is not a preopen (EBADF = 8).
    let o = s.wasce().arg("exec").arg(&m).output().unwrap();
    assert_code(&o, 108);
}

// ---- --invoke ---------------------------------------------------------------------------------

#[test]
fn invoke_with_arguments_and_results() {
    let s = Scratch::new();
    let m = s.write("fib.wat", FIB);
    for isolation in ["kvm", "process"] {
        let o = s.wasce().args(["exec", "--isolation", isolation, "--invoke", "fib"]).arg(&m).arg("20").output().unwrap();
        assert_code(&o, 0);
        assert_eq!(stdout(&o), "6765\n");
    }
    let m = s.write(
        "mix.wat",
        r#"(module (func (export "mix") (param i64 f64 i32) (result f64 i64 i32)
             (f64.mul (local.get 1) (f64.const 2)) (i64.sub (local.get 0) (i64.const 1)) (local.get 2)))"#,
    );
    let o = s.wasce().args(["exec", "--invoke", "mix"]).arg(&m).args(["-5", "1.25", "4294967295"]).output().unwrap();
    assert_code(&o, 0);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].contains("2.5") && lines[1].contains("-6") && lines[2].contains("-1"), "{out}");

    let o = s.wasce().args(["exec", "--invoke", "mix"]).arg(&m).args(["1", "2"]).output().unwrap();
    assert_error(&o, "takes 3 arguments");
    let o = s.wasce().args(["exec", "--invoke", "mix"]).arg(&m).args(["x", "2", "3"]).output().unwrap();
    assert_error(&o, "cannot parse `x` as i64");
}

// ---- Limits -----------------------------------------------------------------------------------

#[test]
fn timeout_interrupts_with_134() {
    let s = Scratch::new();
    let m = s.write("spin.wat", SPIN);
    let start = Instant::now();
    let o = s.wasce().args(["exec", "--timeout", "200ms"]).arg(&m).output().unwrap();
    assert_code(&o, 134);
    assert!(stderr(&o).starts_with("Error: wasm trap: interrupt"), "{}", stderr(&o));
    assert!(stderr(&o).contains("wasm backtrace:"), "the interrupt names where the guest was: {}", stderr(&o));
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    // Process mode cannot interrupt: a clear error instead of a hang.
    let o = s.wasce().args(["exec", "--isolation", "process", "--timeout", "200ms"]).arg(&m).output().unwrap();
    assert_error(&o, "--isolation kvm");
}

#[test]
fn fuel() {
    let s = Scratch::new();
    let spin = s.write("spin.wat", SPIN);
    for isolation in ["kvm", "process"] {
        let o = s.wasce().args(["exec", "--isolation", isolation, "--fuel", "100000"]).arg(&spin).output().unwrap();
        assert_code(&o, 134);
        assert!(stderr(&o).starts_with("Error: wasm trap: all fuel consumed by WebAssembly"), "{}", stderr(&o));
    }
    // Enough fuel: runs to the end; too little: traps.
    let fib = s.write("fib.wat", FIB);
    let o = s.wasce().args(["exec", "--fuel", "10000000", "--invoke", "fib"]).arg(&fib).arg("15").output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "610\n");
    let o = s.wasce().args(["exec", "--fuel", "1000", "--invoke", "fib"]).arg(&fib).arg("15").output().unwrap();
    assert_code(&o, 134);
    assert!(stderr(&o).contains("all fuel consumed") && stderr(&o).contains("fib"), "{}", stderr(&o));

    // An artifact compiled without metering is refused with --fuel; one compiled with is run.
    assert_code(&s.wasce().arg("compile").arg(&spin).output().unwrap(), 0);
    let o = s.wasce().args(["exec", "--fuel", "1000"]).arg(s.path("spin.cwasm")).output().unwrap();
    assert_error(&o, "compiled without fuel metering");
    assert_code(&s.wasce().args(["compile", "--fuel", "-o"]).arg(s.path("spin-fuel.cwasm")).arg(&spin).output().unwrap(), 0);
    let o = s.wasce().args(["exec", "--fuel", "1000"]).arg(s.path("spin-fuel.cwasm")).output().unwrap();
    assert_code(&o, 134);
    assert!(stderr(&o).contains("all fuel consumed by WebAssembly"), "{}", stderr(&o));
}

#[test]
fn max_memory() {
    let s = Scratch::new();
    // Grow by 2 pages (must work), then by 10 (exit 99 if refused, 7 if granted).
    let m = s.write(
        "grow.wat",
        wasi_program(
            "",
            r#"(func (export "_start")
    (if (i32.ne (memory.grow (i32.const 2)) (i32.const 2)) (then (call $proc_exit (i32.const 50))))
    (if (i32.eq (memory.grow (i32.const 10)) (i32.const -1)) (then (call $proc_exit (i32.const 99))))
    (call $proc_exit (i32.const 7)))"#,
        ),
    );
    for isolation in ["kvm", "process"] {
        assert_code(&s.wasce().args(["exec", "--isolation", isolation]).arg(&m).output().unwrap(), 7);
        for limit in ["256KiB", "256K", "262144", "300000"] {
            let o = s.wasce().args(["exec", "--isolation", isolation, "--max-memory", limit]).arg(&m).output().unwrap();
            assert_code(&o, 99);
        }
        assert_code(&s.wasce().args(["exec", "--isolation", isolation, "--max-memory", "1MiB"]).arg(&m).output().unwrap(), 7);
    }
    // Below the module's minimum: instantiation fails.
    let o = s.wasce().args(["exec", "--max-memory", "64KiB"]).arg(&m).output().unwrap();
    assert_error(&o, "memory minimum of 2 pages exceeds the limit of 1 pages");
}

#[test]
fn max_table_elements() {
    let s = Scratch::new();
    let m = s.write(
        "table.wat",
        r#"(module (table $t 4 funcref)
             (func (export "grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))))"#,
    );
    let o = s.wasce().args(["exec", "--max-table-elements", "10", "--invoke", "grow"]).arg(&m).arg("6").output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "4\n");
    let o = s.wasce().args(["exec", "--max-table-elements", "10", "--invoke", "grow"]).arg(&m).arg("7").output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "-1\n");
    let o = s.wasce().args(["exec", "--max-table-elements", "3", "--invoke", "grow"]).arg(&m).arg("0").output().unwrap();
    assert_error(&o, "table minimum of 4 elements exceeds the limit of 3");
}

#[test]
fn max_stack() {
    let s = Scratch::new();
    let m = s.write(
        "deep.wat",
        r#"(module (func $deep (export "deep") (param i32) (result i32)
             (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
               (else (i32.add (i32.const 1) (call $deep (i32.sub (local.get 0) (i32.const 1))))))))"#,
    );
    for isolation in ["kvm", "process"] {
        let o = s.wasce().args(["exec", "--isolation", isolation, "--invoke", "deep"]).arg(&m).arg("5000").output().unwrap();
        assert_code(&o, 0);
        assert_eq!(stdout(&o), "5000\n");
        let o = s.wasce().args(["exec", "--isolation", isolation, "--max-stack", "16KiB", "--invoke", "deep"]).arg(&m).arg("5000").output().unwrap();
        assert_code(&o, 134);
        assert!(stderr(&o).starts_with("Error: wasm trap: call stack exhausted"), "{}", stderr(&o));
        let o = s.wasce().args(["exec", "--isolation", isolation, "--max-stack", "8MiB", "--invoke", "deep"]).arg(&m).arg("50000").output().unwrap();
        assert_code(&o, 0);
        assert_eq!(stdout(&o), "50000\n");
    }
}

// ---- Sockets and preloads ---------------------------------------------------------------------

#[test]
fn tcplisten_preopens_sockets_after_dirs() {
    let s = Scratch::new();
    // Exit with 10 * filetype(fd 3) + filetype(fd 4) (0 when not open).
    let m = s.write(
        "fdtypes.wat",
        wasi_program(
            "",
            r#"(func (export "_start")
    (drop (call $fd_fdstat_get (i32.const 3) (i32.const 64)))
    (drop (call $fd_fdstat_get (i32.const 4) (i32.const 96)))
    (call $proc_exit (i32.add (i32.mul (i32.load8_u (i32.const 64)) (i32.const 10)) (i32.load8_u (i32.const 96)))))"#,
        ),
    );
    const DIRECTORY: i32 = 3;
    const SOCKET_STREAM: i32 = 6;
    for isolation in ["kvm", "process"] {
        let o = s.wasce().args(["exec", "--isolation", isolation, "--tcplisten", "127.0.0.1:0"]).arg(&m).output().unwrap();
        assert_code(&o, SOCKET_STREAM * 10);
        let o = s.wasce().args(["exec", "--isolation", isolation, "--tcplisten", "127.0.0.1:0", "--tcplisten", "127.0.0.1:0"]).arg(&m).output().unwrap();
        assert_code(&o, SOCKET_STREAM * 10 + SOCKET_STREAM);
        let o = s.wasce().args(["exec", "--isolation", isolation, "--tcplisten", "127.0.0.1:0", "--dir"]).arg(s.dir.path()).arg(&m).output().unwrap();
        assert_code(&o, DIRECTORY * 10 + SOCKET_STREAM);
    }
    let o = s.wasce().args(["exec", "--tcplisten", "not an address"]).arg(&m).output().unwrap();
    assert_error(&o, "--tcplisten not an address");
    // An address in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = s.wasce().args(["exec", "--tcplisten", &addr]).arg(&m).output().unwrap();
    assert_error(&o, &format!("--tcplisten {addr}: cannot listen"));
}

#[test]
fn preload() {
    let s = Scratch::new();
    // A library that uses WASI itself (its own memory) and exports a function.
    let lib = s.write(
        "lib.wat",
        wasi_program(
            "from lib\\n",
            r#"(func (export "hello") (call $write (i32.const 512) (i32.const 9)))
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))"#,
        ),
    );
    let main = s.write(
        "main.wat",
        r#"(module
  (import "lib" "hello" (func $hello))
  (import "lib" "add" (func $add (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (func (export "_start") (call $hello) (call $exit (call $add (i32.const 40) (i32.const 2))))
  (func (export "sum") (param i32) (result i32) (call $add (local.get 0) (i32.const 100))))"#,
    );
    for isolation in ["kvm", "process"] {
        let o = s.wasce().args(["exec", "--isolation", isolation, "--preload"]).arg(format!("lib={}", lib.display())).arg(&main).output().unwrap();
        assert_code(&o, 42);
        assert_eq!(stdout(&o), "from lib\n");
    }
    let o = s.wasce().arg("exec").arg("--preload").arg(format!("lib={}", lib.display())).args(["--invoke", "sum"]).arg(&main).arg("5").output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "105\n");
    // Under another name, the import is unresolved.
    let o = s.wasce().arg("exec").arg("--preload").arg(format!("other={}", lib.display())).arg(&main).output().unwrap();
    assert_error(&o, "unknown import: `lib::hello`");
    // A preload that cannot be read or linked says so.
    let o = s.wasce().arg("exec").arg("--preload").arg(format!("lib={}", s.path("missing.wasm").display())).arg(&main).output().unwrap();
    assert_error(&o, "missing.wasm");
    let needy = s.write("needy.wat", r#"(module (import "x" "y" (func)))"#);
    let o = s.wasce().arg("exec").arg("--preload").arg(format!("lib={}", needy.display())).arg(&main).output().unwrap();
    assert_error(&o, "--preload lib: unknown import: `x::y`");
    // A precompiled preload works too.
    assert_code(&s.wasce().arg("compile").arg(&lib).output().unwrap(), 0);
    let o = s.wasce().arg("exec").arg("--preload").arg(format!("lib={}", s.path("lib.cwasm").display())).arg(&main).output().unwrap();
    assert_code(&o, 42);
}

// ---- --stats ----------------------------------------------------------------------------------

/// The number on the `--stats` line that starts with `label`.
fn stat(err: &str, label: &str) -> u64 {
    let line = err.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no `{label}` in {err}"));
    line[line.find(label).unwrap() + label.len()..].split_whitespace().next().unwrap().parse().unwrap_or_else(|_| panic!("{line}"))
}

#[test]
fn stats() {
    let s = Scratch::new();
    let m = s.write("hello.wat", wasi_program("hello\\n", r#"(func (export "_start") (call $write (i32.const 512) (i32.const 6)) (call $write (i32.const 512) (i32.const 6)))"#));
    let o = s.wasce().args(["exec", "--stats", "--hostcall", "exit"]).arg(&m).output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "hello\nhello\n");
    let err = stderr(&o);
    for field in ["stats:", "compile (cache miss)", "store + VM creation", "instantiate", "run", "total", "guest exits (hypercalls)", "ring calls", "peak RSS"] {
        assert!(err.contains(field), "`{field}` missing from: {err}");
    }
    assert!(stat(&err, "guest exits (hypercalls)") >= 2, "{err}");
    assert!(stat(&err, "peak RSS") > 1000, "{err}");
    // Second run: from the cache.
    let o = s.wasce().args(["exec", "--stats", "--isolation", "process"]).arg(&m).output().unwrap();
    assert_code(&o, 0);
    let err = stderr(&o);
    assert!(err.contains("load (cache hit)"), "{err}");
    assert_eq!(stat(&err, "guest exits (hypercalls)"), 0, "{err}");
    // Also printed when the program exits with a status or traps, with fuel left.
    let e = s.write("exit.wat", wasi_program("", r#"(func (export "_start") (call $proc_exit (i32.const 3)))"#));
    let o = s.wasce().args(["exec", "--stats", "--fuel", "1000"]).arg(&e).output().unwrap();
    assert_code(&o, 3);
    assert!(stderr(&o).contains("peak RSS") && stat(&stderr(&o), "fuel remaining") > 0, "{}", stderr(&o));
    let t = s.write("trap.wat", r#"(module (func (export "_start") unreachable))"#);
    let o = s.wasce().args(["exec", "--stats"]).arg(&t).output().unwrap();
    assert_code(&o, 134);
    assert!(stderr(&o).contains("wasm trap: unreachable") && stderr(&o).contains("peak RSS"), "{}", stderr(&o));
    // Artifacts given on the command line are loaded, not compiled.
    assert_code(&s.wasce().arg("compile").arg(&m).output().unwrap(), 0);
    let o = s.wasce().args(["exec", "--stats"]).arg(s.path("hello.cwasm")).output().unwrap();
    assert_code(&o, 0);
    assert!(stderr(&o).contains("load artifact"), "{}", stderr(&o));
}

// ---- The compile cache ------------------------------------------------------------------------

#[test]
fn cache_hit_miss_and_corruption() {
    let s = Scratch::new();
    let m = s.write("fib.wat", FIB);
    let fib = |extra: &[&str]| s.wasce().args(["exec", "--stats"]).args(extra).args(["--invoke", "fib"]).arg(&m).arg("20").output().unwrap();

    let o = fib(&[]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "6765\n");
    assert!(stderr(&o).contains("compile (cache miss)"), "{}", stderr(&o));
    let entries = s.cache_entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.extension().unwrap(), "cwasm");
    let good = std::fs::read(entry).unwrap();
    assert!(wasce_engine::is_artifact(&good));
    // Private: the directory and its entries.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&s.cache).unwrap().permissions().mode() & 0o077, 0);
    assert_eq!(std::fs::metadata(entry).unwrap().permissions().mode() & 0o077, 0);

    let o = fib(&[]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "6765\n");
    assert!(stderr(&o).contains("load (cache hit)"), "{}", stderr(&o));

    // A corrupted entry is detected, deleted and replaced: never run.
    let mut bad = good.clone();
    let at = bad.len() - 10;
    bad[at] ^= 0xff;
    std::fs::write(entry, &bad).unwrap();
    let o = fib(&["--verbose"]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "6765\n");
    assert!(stderr(&o).contains("compile (cache miss)") && stderr(&o).contains("replaced a bad cache entry"), "{}", stderr(&o));
    assert_eq!(std::fs::read(entry).unwrap(), good);
    // So is a truncated one, and one that is not an artifact at all.
    for contents in [&good[..good.len() / 2], b"garbage".as_slice(), b"".as_slice()] {
        std::fs::write(entry, contents).unwrap();
        let o = fib(&[]);
        assert_code(&o, 0);
        assert_eq!(stdout(&o), "6765\n");
        assert!(stderr(&o).contains("compile (cache miss)"), "{}", stderr(&o));
        assert_eq!(std::fs::read(entry).unwrap(), good);
    }
    // A valid artifact of another module under this module's key is still never the wrong
    // module's code... as long as the key does not collide; an artifact for another wasce
    // version is rejected by the loader.
    let mut other_version = good.clone();
    let version = wasce_compiler::artifact::COMPILER_VERSION.as_bytes();
    let pos = other_version.windows(version.len()).position(|w| w == version).unwrap();
    other_version[pos] = b'9';
    wasce_compiler::artifact::update_mac(&mut other_version, wasce_engine::key::user_key().unwrap());
    std::fs::write(entry, &other_version).unwrap();
    let o = fib(&[]);
    assert_code(&o, 0);
    assert!(stderr(&o).contains("compile (cache miss)"), "{}", stderr(&o));
    assert_eq!(std::fs::read(entry).unwrap(), good);

    // Other settings (fuel) are another entry.
    let o = fib(&["--fuel", "100000000"]);
    assert_code(&o, 0);
    assert!(stderr(&o).contains("compile (cache miss)"), "{}", stderr(&o));
    assert_eq!(s.cache_entries().len(), 2);
    // The same module as binary is an entry of its own: text is parsed in the confined compile
    // worker, so a text module is keyed by its text (issue 12, finding 5).
    let wasm = s.write("fib.wasm", wat::parse_str(FIB).unwrap());
    for expected in ["compile (cache miss)", "load (cache hit)"] {
        let o = s.wasce().args(["exec", "--stats", "--invoke", "fib"]).arg(&wasm).arg("10").output().unwrap();
        assert_code(&o, 0);
        assert!(stderr(&o).contains(expected), "{}", stderr(&o));
    }
    assert_eq!(s.cache_entries().len(), 3);
    // No temporary files are left behind.
    assert!(s.cache_entries().iter().all(|p| p.extension().unwrap() == "cwasm"), "{:?}", s.cache_entries());
}

#[test]
fn no_cache() {
    let s = Scratch::new();
    let m = s.write("fib.wat", FIB);
    let o = s.wasce().args(["exec", "--no-cache", "--stats", "--invoke", "fib"]).arg(&m).arg("10").output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "55\n");
    assert!(stderr(&o).contains("  compile  ") || stderr(&o).contains("  compile "), "{}", stderr(&o));
    assert!(!stderr(&o).contains("cache"), "{}", stderr(&o));
    assert!(s.cache_entries().is_empty());
    // With a cached entry present, --no-cache does not read it either.
    assert_code(&s.wasce().args(["exec", "--invoke", "fib"]).arg(&m).arg("10").output().unwrap(), 0);
    assert_eq!(s.cache_entries().len(), 1);
    let o = s.wasce().args(["exec", "--no-cache", "--stats", "--invoke", "fib"]).arg(&m).arg("10").output().unwrap();
    assert!(!stderr(&o).contains("cache hit"), "{}", stderr(&o));
}

#[test]
fn unsafe_cache_dir_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    std::fs::create_dir(&s.cache).unwrap();
    std::fs::set_permissions(&s.cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let m = s.write("fib.wat", FIB);
    let o = s.wasce().args(["exec", "--invoke", "fib"]).arg(&m).arg("10").output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "55\n");
    assert!(stderr(&o).contains("compile cache disabled") && stderr(&o).contains("writable by other users"), "{}", stderr(&o));
    assert!(s.cache_entries().is_empty());
}

#[test]
fn cache_dir_defaults_to_xdg_cache_home() {
    let s = Scratch::new();
    let m = s.write("fib.wat", FIB);
    let xdg = s.path("xdg");
    let o = Command::new(env!("CARGO_BIN_EXE_wasce"))
        .env_remove("WASCE_CACHE_DIR")
        .env("XDG_CACHE_HOME", &xdg)
        .args(["exec", "--invoke", "fib"])
        .arg(&m)
        .arg("10")
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert_eq!(std::fs::read_dir(xdg.join("wasce")).unwrap().count(), 1);
    let home = s.path("home");
    let o = Command::new(env!("CARGO_BIN_EXE_wasce"))
        .env_remove("WASCE_CACHE_DIR")
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", &home)
        .args(["exec", "--invoke", "fib"])
        .arg(&m)
        .arg("10")
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert_eq!(std::fs::read_dir(home.join(".cache/wasce")).unwrap().count(), 1);
}

// ---- compile ----------------------------------------------------------------------------------

#[test]
fn compile_command() {
    let s = Scratch::new();
    let m = s.write("fib.wat", FIB);
    let o = s.wasce().arg("compile").arg(&m).output().unwrap();
    assert_code(&o, 0);
    let art = s.path("fib.cwasm");
    let o = s.wasce().args(["exec", "--invoke", "fib"]).arg(&art).arg("12").output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "144\n");
    let o = s.wasce().arg("compile").arg(&art).output().unwrap();
    assert_error(&o, "already compiled");
    let bad = s.write("bad.wasm", b"\0asm\x01\0\0\0\x01\x05\x01\x60\x00\x00\xff");
    let o = s.wasce().arg("compile").arg(&bad).output().unwrap();
    assert_error(&o, "offset 0x");
    assert!(!Path::new(&s.path("bad.cwasm")).exists());
}

/// `-o` naming something that is not a regular file (a FIFO here; `/dev/null` in practice) is
/// written in place: renaming a temporary file over it would replace it (a device node with a
/// plain file).
#[test]
fn compile_output_to_a_fifo_is_written_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let s = Scratch::new();
    let m = s.write("fib.wat", FIB);
    let fifo = s.path("out.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let o = s.wasce().arg("compile").arg(&m).arg("-o").arg(&fifo).output().unwrap();
    assert_code(&o, 0);
    let bytes = reader.join().unwrap();
    assert!(wasce_engine::is_artifact(&bytes), "the artifact went through the FIFO");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO is still a FIFO");
}

// ---- Modules that are not plain commands, and WebAssembly features ---------------------------

/// A reactor: `_initialize` sets a global that the default export `""` prints and `bump`
/// returns; `calls_hook` calls an import nothing defines.
const REACTOR: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "env" "host_hook" (func $hook (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (func (export "_initialize") (global.set $n (i32.const 41)))
  (func (export "bump") (result i32) (global.set $n (i32.add (global.get $n) (i32.const 1))) (global.get $n))
  (func (export "calls_hook") (result i32) (call $hook (i32.const 1)))
  (func (export "")
    (i32.store8 (i32.const 16) (i32.add (i32.const 7) (global.get $n)))
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 1))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

#[test]
fn reactors_initialize_then_run_the_default_export_or_the_invoked_function() {
    let s = Scratch::new();
    let m = s.write("reactor.wat", REACTOR);
    // An import nothing defines is a link error unless asked otherwise.
    assert_error(&s.run([Path::new("exec"), &m]), "unknown import: `env::host_hook` has not been defined");
    // `_initialize` (41) runs before the default export, which prints 7 + 41 = '0'.
    let o = s.run([Path::new("exec"), Path::new("-W"), Path::new("unknown-imports-trap=y"), &m]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "0");
    let o = s.run([Path::new("exec"), Path::new("-W"), Path::new("unknown-imports-trap=y"), Path::new("--invoke"), Path::new("bump"), &m]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o).trim(), "42");
    // Calling the unlinked import fails and names it.
    let o = s.run([Path::new("exec"), Path::new("-W"), Path::new("unknown-imports-trap=y"), Path::new("--invoke"), Path::new("calls_hook"), &m]);
    assert_error(&o, "unknown import `env::host_hook` was called");
    // Only `exec` links imports.
    let o = s.run([Path::new("compile"), Path::new("-W"), Path::new("unknown-imports-trap=y"), &m]);
    assert_error(&o, "-W unknown-imports-trap is for `wasce exec`");
}

#[test]
fn a_reactor_without_a_default_export_is_done_once_initialised() {
    let s = Scratch::new();
    let m = s.write("r.wat", r#"(module (func (export "_initialize") (drop (i32.div_u (i32.const 1) (i32.const 1)))))"#);
    assert_code(&s.run([Path::new("exec"), &m]), 0);
    let trapping = s.write("t.wat", r#"(module (func (export "_initialize") unreachable))"#);
    assert_code(&s.run([Path::new("exec"), &trapping]), 134);
    let nothing = s.write("n.wat", r#"(module (func (export "f")))"#);
    assert_error(&s.run([Path::new("exec"), &nothing]), "exports no `_start` function");
}

#[test]
fn features_are_on_by_default_and_flags_turn_them_off() {
    let s = Scratch::new();
    let m = s.write(
        "m64.wat",
        r#"(module (memory i64 1) (func (export "f") (result i64) (i64.store (i64.const 8) (i64.const 7)) (i64.load (i64.const 8))))"#,
    );
    for isolation in ["kvm", "process"] {
        let o = s.run([Path::new("exec"), Path::new("--isolation"), Path::new(isolation), Path::new("--invoke"), Path::new("f"), &m]);
        assert_code(&o, 0);
        assert_eq!(stdout(&o).trim(), "7");
    }
    let o = s.run([Path::new("exec"), Path::new("-W"), Path::new("memory64=n"), Path::new("--invoke"), Path::new("f"), &m]);
    assert_error(&o, "memory64 must be enabled");
    // An artifact compiled with a feature does not run where it is turned off.
    let cwasm = s.path("m64.cwasm");
    assert_code(&s.run([Path::new("compile"), &m]), 0);
    let o = s.run([Path::new("exec"), Path::new("-W"), Path::new("memory64=n"), Path::new("--invoke"), Path::new("f"), &cwasm]);
    assert_error(&o, "was compiled with memory64 enabled");
    // Unknown names and values are command-line errors.
    assert_code(&s.run([Path::new("exec"), Path::new("-W"), Path::new("bogus=y"), &m]), 2);
    assert_code(&s.run([Path::new("exec"), Path::new("-W"), Path::new("memory64=maybe"), &m]), 2);
}
