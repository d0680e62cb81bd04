//! Deadlines: a `--timeout` must end a run whatever host call the guest is parked in. The
//! timeout's kick is one signal; a host call that spends it (in a long preamble, or just before
//! a blocking system call) and then blocks used to outlive the timeout forever. Every attack
//! runs through the `wasce` binary with `--timeout 300ms`, in KVM mode with both host-call
//! transports, and must end with exit status 134 and `wasm trap: interrupt` within 1 s of
//! start + timeout. Process mode has no timeouts (the CLI refuses `--timeout` there, checked
//! below), so these attacks do not apply to it.

use crate::common::*;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_millis(300);
/// The bound the issue states: the run ends within 1 s of start + timeout.
const GRACE: Duration = Duration::from_secs(1);

/// Run `wat` under `--timeout 300ms` with stdin a pipe whose write end stays open and stdout a
/// pipe nobody reads, until the run ends; assert the timeout's trap within the bound.
fn assert_timeout_holds(name: &str, wat: &str) {
    assert_timeout_holds_with(name, wat, |_| Vec::new());
}

/// The same, with more `wasce exec` options (`setup` prepares the scratch directory).
fn assert_timeout_holds_with(name: &str, wat: &str, setup: impl Fn(&Scratch) -> Vec<String>) {
    kvm_required();
    for transport in ["ring", "exit"] {
        let s = Scratch::new();
        let module = s.write(&format!("{name}.wasm"), wasm(wat));
        let mut child = s
            .wasce()
            .args(["exec", "--isolation", "kvm", "--hostcall", transport, "--timeout", "300ms"])
            .args(setup(&s))
            .arg(&module)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        // The write end of the guest's stdin: kept open, nothing is ever written.
        let stdin = child.stdin.take();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if start.elapsed() > TIMEOUT + GRACE + Duration::from_secs(10) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = start.elapsed();
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(stdin);
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        let Some(status) = status else {
            panic!("{name} --hostcall {transport}: still running {elapsed:?} after start (timeout {TIMEOUT:?}); stderr: {stderr}")
        };
        assert_eq!(status.code(), Some(134), "{name} --hostcall {transport}: {status:?}, stderr: {stderr}");
        assert!(stderr.contains("wasm trap: interrupt"), "{name} --hostcall {transport}: stderr: {stderr}");
        assert!(elapsed <= TIMEOUT + GRACE, "{name} --hostcall {transport}: ended {elapsed:?} after start (timeout {TIMEOUT:?})");
    }
}

/// Finding 3 (issue 12): a `poll_oneoff` with 2M subscriptions (an array the guest builds in its
/// linear memory: clocks of 1 hour) spends the timeout's one kick in the host's preamble, then
/// sleeps for an hour. The guest waits until shortly before the deadline, so that the kick lands
/// while the host reads the subscriptions; it retries whatever the call returns.
#[test]
fn poll_oneoff_with_two_million_subscriptions() {
    assert_timeout_holds(
        "poll2m",
        r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  ;; subscriptions at 64 KiB (2M x 48 bytes), events after them (2M x 32 bytes)
  (memory 2600)
  (func $now (result i64)
    (drop (call $clock (i32.const 1) (i64.const 0) (i32.const 0)))
    (i64.load (i32.const 0)))
  (func (export "_start")
    (local $start i64) (local $n i32)
    (local.set $start (call $now))
    ;; one subscription: a clock (tag 0), monotonic, relative, 1 hour
    (i32.store (i32.const 65552) (i32.const 1))
    (i64.store (i32.const 65560) (i64.const 3600000000000))
    ;; doubled to 2^21 copies
    (local.set $n (i32.const 1))
    (loop $double
      (memory.copy
        (i32.add (i32.const 65536) (i32.mul (local.get $n) (i32.const 48)))
        (i32.const 65536)
        (i32.mul (local.get $n) (i32.const 48)))
      (local.set $n (i32.shl (local.get $n) (i32.const 1)))
      (br_if $double (i32.lt_u (local.get $n) (i32.const 2097152))))
    ;; until 200 ms into the call, so that the kick lands in the host's preamble
    (loop $spin
      (br_if $spin (i64.lt_u (i64.sub (call $now) (local.get $start)) (i64.const 200000000))))
    (loop $again
      (drop (call $poll (i32.const 65536) (i32.const 100728832) (i32.const 2097152) (i32.const 8)))
      (br $again))))"#,
    );
}

/// Finding 3 (issue 12): `fd_read` on stdin, a pipe whose write end stays open and silent: the
/// read would block forever. The guest retries whatever the call returns.
#[test]
fn blocking_read_on_a_silent_pipe() {
    assert_timeout_holds(
        "pipe",
        r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (memory 1)
  ;; iovec at 0: 256 bytes at 16
  (data (i32.const 0) "\10\00\00\00\00\01\00\00")
  (func (export "_start")
    (loop $again
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br $again))))"#,
    );
}

/// Finding 3 (issue 12): `poll_oneoff` with one clock subscription of 1 hour; the guest retries
/// whatever the call returns (an EINTR from the kick must not let it sleep again).
#[test]
fn poll_oneoff_sleep_of_an_hour() {
    assert_timeout_holds(
        "sleep",
        r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory 1)
  (func (export "_start")
    ;; subscription at 64: a clock (tag 0), monotonic, relative, 1 hour
    (i32.store (i32.const 80) (i32.const 1))
    (i64.store (i32.const 88) (i64.const 3600000000000))
    (loop $again
      (drop (call $poll (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 160)))
      (br $again))))"#,
    );
}

/// Finding 3 (issue 12): `sock_accept` on a `--tcplisten` socket nobody connects to.
#[test]
fn accept_with_no_client() {
    assert_timeout_holds_with(
        "accept",
        r#"(module
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
  (memory 1)
  (func (export "_start")
    (loop $again
      (drop (call $accept (i32.const 3) (i32.const 0) (i32.const 0)))
      (br $again))))"#,
        |_| vec!["--tcplisten".into(), "127.0.0.1:0".into()],
    );
}

/// Finding 3 (issue 12): 1 MiB writes to stdout, a pipe nobody reads: once it is full, a write
/// larger than its free space blocks even after `poll` said there was room (the case the
/// repeated kick exists for).
#[test]
fn writes_to_a_full_pipe() {
    assert_timeout_holds(
        "fullpipe",
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory 17)
  ;; ciovec at 0: 1 MiB at 64 KiB
  (data (i32.const 0) "\00\00\01\00\00\00\10\00")
  (func (export "_start")
    (loop $again
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br $again))))"#,
    );
}

/// Finding 3 (issue 12): `path_open` of a FIFO beneath a preopen: the host's open waits for a
/// writer that never comes (no readiness to poll for: the repeated kick cuts it short).
#[test]
fn opening_a_fifo_with_no_writer() {
    assert_timeout_holds_with(
        "fifo",
        r#"(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory 1)
  (data (i32.const 16) "fifo")
  (func (export "_start")
    (loop $again
      ;; fd 3 (the preopen), "fifo", rights fd_read
      (drop (call $open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 4) (i32.const 0)
        (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 32)))
      (br $again))))"#,
        |s| {
            let dir = s.path("d");
            std::fs::create_dir_all(&dir).unwrap();
            let fifo = std::ffi::CString::new(dir.join("fifo").into_os_string().into_encoded_bytes()).unwrap();
            // SAFETY: mkfifo with a NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
            vec!["--dir".into(), format!("{}::.", dir.display())]
        },
    );
}

/// Finding 3 (issue 12), process mode: it cannot interrupt a run, so it refuses `--timeout`
/// outright rather than accept a limit it would not keep.
#[test]
fn process_mode_refuses_a_timeout() {
    let s = Scratch::new();
    let module = s.write("m.wasm", wasm(r#"(module (func (export "_start")))"#));
    let out = s.wasce().args(["exec", "--isolation", "process", "--timeout", "300ms"]).arg(&module).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stderr).contains("--isolation kvm"), "{}", describe(&out));
}
