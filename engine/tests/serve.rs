//! `wasce serve` end to end: a server on a local port driven by a minimal HTTP/1.1 client.
//! Runs in KVM mode where /dev/kvm is usable (else process mode, without the timeout tests).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Hello, world!\n")
  (data (i32.const 0) "\10\00\00\00\0e\00\00\00")
  (func (export "_start") (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// Increments a counter in memory and a global, prints both (as digits) and exits with the
/// counter: a leak between runs would show as 2.
const COUNTER: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (data (i32.const 200) "m=? g=?\n")
  (func (export "_start")
    (i32.store (i32.const 100) (i32.add (i32.load (i32.const 100)) (i32.const 1)))
    (global.set $g (i32.add (global.get $g) (i32.const 1)))
    (i32.store8 (i32.const 202) (i32.add (i32.const 48) (i32.load (i32.const 100))))
    (i32.store8 (i32.const 206) (i32.add (i32.const 48) (global.get $g)))
    (i32.store (i32.const 0) (i32.const 200))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 300)))
    (call $proc_exit (i32.sub (i32.load (i32.const 100)) (i32.const 1)))))"#;

const SPIN: &str = r#"(module (memory 1) (func (export "_start") (loop $l (br $l))))"#;
const TRAP: &str = r#"(module (memory 1) (func (export "_start") unreachable))"#;
/// Grows memory by 16 pages, traps if that fails.
const GROW: &str = r#"(module (memory 1) (func (export "_start") (if (i32.lt_s (memory.grow (i32.const 16)) (i32.const 0)) (then unreachable))))"#;

/// Writes 64 KiB to stdout forever (until its output limit or timeout).
const FLOOD: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory 2)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 65536))
    (loop $l (br_if $l (i32.eqz (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
    unreachable))"#;

/// Grows its memory a page at a time until refused, then exits with the pages it got.
const HOG: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory 1)
  (func (export "_start")
    (loop $l (br_if $l (i32.ge_s (memory.grow (i32.const 1)) (i32.const 0))))
    (call $proc_exit (memory.size))))"#;

/// A WAGI handler: CGI headers, then stdin echoed back.
const WAGI: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "Content-Type: text/plain\nStatus: 201 Created\nX-Handler: echo\n\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 62))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 1024))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 4) (i32.load (i32.const 8)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

fn kvm() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into(), "--workers".into(), "2".into()];
    for (name, wat) in [("hello", HELLO), ("counter", COUNTER), ("spin", SPIN), ("trap", TRAP), ("grow", GROW), ("wagi", WAGI), ("flood", FLOOD), ("hog", HOG)] {
        let p = dir.path().join(format!("{name}.wat"));
        std::fs::write(&p, wat).unwrap();
        args.push("--module".into());
        args.push(format!("{name}={}", p.display()));
    }
    if !kvm() {
        args.extend(["--isolation".into(), "process".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasce"))
        .args(&args)
        .env("WASCE_CACHE_DIR", dir.path().join("cache"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    // Warnings may come first.
    while !line.contains("listening on") {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("wasce serve ended before listening");
        }
    }
    let addr = line.split("http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_else(|| panic!("no address in `{line}`")).to_string();
    // Keep draining the request log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines() {});
    Server { child, addr, _dir: dir }
}

/// One request on a fresh connection: (status, body).
fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn a_thousand_requests_see_no_state_of_the_others() {
    let server = start(&[]);
    for i in 0..1000 {
        let (status, body) = request(&server.addr, "POST", "/run/counter", "{}");
        assert_eq!(status, 200, "{body}");
        let v = json(&body);
        assert_eq!(v["stdout"], "m=1 g=1\n", "request {i}");
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["verdict"], "accepted");
    }
}

#[test]
fn a_spinning_guest_is_interrupted_and_the_server_keeps_serving() {
    if !kvm() {
        return;
    }
    let server = start(&[]);
    let t = Instant::now();
    let (status, body) = request(&server.addr, "POST", "/run/spin", r#"{"timeout_ms": 200}"#);
    assert!(t.elapsed() < Duration::from_secs(1), "answered after {:?}", t.elapsed());
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["trap"], "interrupt");
    assert_eq!(v["exit_code"], serde_json::Value::Null);
    assert_eq!(v["verdict"], "time limit exceeded");
    for _ in 0..3 {
        let (status, body) = request(&server.addr, "POST", "/run/hello", "");
        assert_eq!((status, json(&body)["stdout"].as_str().unwrap().to_string()), (200, "Hello, world!\n".to_string()));
    }
    // Both workers spinning at once, then serving again.
    let addr = server.addr.clone();
    let spinners: Vec<_> = (0..2).map(|_| {
        let addr = addr.clone();
        std::thread::spawn(move || request(&addr, "POST", "/run/spin", r#"{"timeout_ms": 300}"#))
    }).collect();
    for s in spinners {
        assert_eq!(json(&s.join().unwrap().1)["trap"], "interrupt");
    }
    assert_eq!(request(&server.addr, "GET", "/healthz", "").0, 200);
}

#[test]
fn verdicts_limits_and_batches() {
    let server = start(&[]);
    let run = |module: &str, body: &str| {
        let (status, b) = request(&server.addr, "POST", &format!("/run/{module}"), body);
        assert_eq!(status, 200, "{b}");
        json(&b)
    };
    assert_eq!(run("hello", r#"{"expected_output": "Hello, world!"}"#)["verdict"], "accepted");
    assert_eq!(run("hello", r#"{"expected_output": "Hello, world!\n\n  "}"#)["verdict"], "accepted");
    assert_eq!(run("hello", r#"{"expected_output": "Goodbye"}"#)["verdict"], "wrong answer");
    let v = run("trap", "{}");
    assert_eq!((v["verdict"].as_str(), v["trap"].as_str(), &v["exit_code"]), (Some("runtime error"), Some("unreachable"), &serde_json::Value::Null));
    assert_eq!(run("grow", "{}")["verdict"], "accepted");
    let v = run("grow", r#"{"max_memory": 131072}"#);
    assert_eq!((v["verdict"].as_str(), v["memory_limited"].as_bool()), (Some("memory limit exceeded"), Some(true)));
    assert_eq!(run("grow", r#"{"memory_limit": 2048}"#)["verdict"], "accepted");
    let v = run("hello", r#"{"base64_output": true}"#);
    assert_eq!(v["stdout_base64"], "SGVsbG8sIHdvcmxkIQo=");
    let v = run("wagi", r#"{"stdin_base64": "AAEC/w=="}"#);
    assert_eq!(v["stdout_base64"].as_str().unwrap().len() % 4, 0, "non-UTF-8 output comes in base64 too");
    let (status, body) = request(&server.addr, "POST", "/run/counter", r#"[{}, {"args": ["a"]}, {}]"#);
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v.as_array().unwrap().len(), 3);
    for r in v.as_array().unwrap() {
        assert_eq!(r["stdout"], "m=1 g=1\n");
    }
}

#[test]
fn bad_requests_get_4xx() {
    let server = start(&["--max-request", "1KiB"]);
    let status = |m: &str, p: &str, b: &str| request(&server.addr, m, p, b).0;
    assert_eq!(status("POST", "/run/hello", "{not json"), 400);
    assert_eq!(status("POST", "/run/hello", "42"), 400);
    assert_eq!(status("POST", "/run/hello", r#"{"args": "not a list"}"#), 400);
    assert_eq!(status("POST", "/run/hello", r#"{"stdin": "a", "stdin_base64": "YQ=="}"#), 400);
    assert_eq!(status("POST", "/run/hello", r#"{"stdin_base64": "%%%"}"#), 400);
    assert_eq!(status("POST", "/run/nosuch", "{}"), 404);
    assert_eq!(status("GET", "/run/hello", ""), 405);
    assert_eq!(status("GET", "/nowhere", ""), 404);
    assert_eq!(status("POST", "/run/hello", &format!(r#"{{"stdin": "{}"}}"#, "x".repeat(2048))), 413);
    // Still serving.
    assert_eq!(status("POST", "/run/hello", "{}"), 200);
}

#[test]
fn health_metrics_and_wagi() {
    let server = start(&[]);
    let (status, body) = request(&server.addr, "GET", "/healthz", "");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["instances"]["hello"], 2);
    request(&server.addr, "POST", "/run/hello", "{}");
    request(&server.addr, "POST", "/run/trap", "{}");
    let (status, body) = request(&server.addr, "GET", "/metrics", "");
    assert_eq!(status, 200);
    for needle in [
        "wasce_requests_total{module=\"hello\",status=\"200\"} 1",
        "wasce_runs_total{module=\"trap\",verdict=\"runtime error\"} 1",
        "wasce_traps_total{module=\"trap\"} 1",
        "wasce_pool_instances{module=\"hello\"} 2",
        "wasce_request_duration_seconds{quantile=\"0.99\"}",
    ] {
        assert!(body.contains(needle), "no `{needle}` in\n{body}");
    }
    let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
    write!(s, "POST /wagi/wagi/some/path?x=1 HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 201"), "{out}");
    assert!(out.to_ascii_lowercase().contains("x-handler: echo"), "{out}");
    assert!(out.ends_with("\r\n\r\nhello"), "{out}");
    // A handler that prints no CGI headers is a 500, not a crash.
    assert_eq!(request(&server.addr, "GET", "/wagi/hello", "").0, 500);
}

#[test]
fn hostile_guests_meet_their_limits() {
    let server = start(&["--max-output", "100KiB", "--max-memory", "8MiB"]);
    let (status, body) = request(&server.addr, "POST", "/run/flood", "{}");
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["stdout"].as_str().unwrap().len(), 100 * 1024, "output cut at --max-output");
    assert_eq!(v["trap"], "unreachable");
    let v = json(&request(&server.addr, "POST", "/run/hog", "{}").1);
    assert_eq!((v["exit_code"].as_i64(), v["memory_limited"].as_bool()), (Some(128), Some(true)), "{v}");
    assert_eq!(v["peak_memory_bytes"], 8 << 20);
    let v = json(&request(&server.addr, "POST", "/run/hog", r#"{"max_memory": 1048576}"#).1);
    assert_eq!(v["exit_code"].as_i64(), Some(16));
    // Fresh again after each.
    for _ in 0..3 {
        assert_eq!(json(&request(&server.addr, "POST", "/run/counter", "{}").1)["stdout"], "m=1 g=1\n");
    }
}
