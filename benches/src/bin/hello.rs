//! Whole-process startup of "hello world" from a precompiled artifact: `wasce exec hello.cwasm`
//! (KVM and process isolation) next to `wasmtime run --allow-precompiled hello.cwasm`, runs
//! interleaved; wall time p50/p99 and peak RSS (from `wait4`).
//!
//! Usage: `hello [--runs N] [--wasce PATH] [--wasmtime PATH]` (defaults: 200 runs,
//! `target/release/wasce`, `$WASMTIME`). Build wasce first: `cargo build --release --bin wasce`.

use std::process::Command;
use std::time::{Duration, Instant};

const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Hello, world!\n")
  (data (i32.const 0) "\10\00\00\00\0e\00\00\00")
  (func (export "_start") (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// (wall time, peak RSS in KiB) of one run.
fn run(cmd: &[&str]) -> (Duration, u64) {
    let t = Instant::now();
    let child = Command::new(cmd[0]).args(&cmd[1..]).stdout(std::process::Stdio::null()).spawn().expect("spawn");
    let mut status = 0;
    // SAFETY: a zeroed rusage filled by wait4 for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for the child we spawned.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = t.elapsed();
    assert!(pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{cmd:?} failed");
    (wall, usage.ru_maxrss as u64)
}

fn stats(mut v: Vec<(Duration, u64)>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].0;
    let mut rss: Vec<u64> = v.iter().map(|x| x.1).collect();
    rss.sort();
    format!(
        "{:.2} | {:.2} | {:.2} | {:.1}",
        ms(p(0.5)),
        ms(p(0.99)),
        ms(v[0].0),
        rss[rss.len() / 2] as f64 / 1024.0
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let runs: usize = opt("--runs").map_or(200, |r| r.parse().unwrap());
    let wasce = opt("--wasce").unwrap_or_else(|| "target/release/wasce".into());
    let wasmtime = opt("--wasmtime").or_else(|| std::env::var("WASMTIME").ok());
    let dir = std::env::temp_dir().join(format!("wasce-hello-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wasm = dir.join("hello.wasm");
    std::fs::write(&wasm, wat::parse_str(HELLO).unwrap()).unwrap();
    let cwasm = dir.join("hello.cwasm");
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let (wasm_s, cwasm_s) = (s(&wasm), s(&cwasm));
    assert!(Command::new(&wasce).args(["compile", &wasm_s, "-o", &cwasm_s]).status().unwrap().success(), "wasce compile");
    let wt_cwasm = s(&dir.join("hello.wasmtime.cwasm"));
    if let Some(wt) = &wasmtime {
        assert!(Command::new(wt).args(["compile", &wasm_s, "-o", &wt_cwasm]).status().unwrap().success(), "wasmtime compile");
    }
    let wasce_kvm = [wasce.as_str(), "exec", &cwasm_s];
    let wasce_proc = [wasce.as_str(), "exec", "--isolation", "process", &cwasm_s];
    let (mut k, mut p, mut w) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..runs {
        let mut order = vec![0, 1, 2];
        if round % 2 == 1 {
            order.reverse();
        }
        for which in order {
            match which {
                0 => k.push(run(&wasce_kvm)),
                1 => p.push(run(&wasce_proc)),
                _ => {
                    if let Some(wt) = &wasmtime {
                        w.push(run(&[wt.as_str(), "run", "--allow-precompiled", &wt_cwasm]));
                    }
                }
            }
        }
    }
    println!("hello world from a precompiled artifact, whole process, {runs} runs each, interleaved");
    println!();
    println!("| command | p50 ms | p99 ms | min ms | peak RSS MiB (median) |");
    println!("|---|---|---|---|---|");
    println!("| wasce exec hello.cwasm (KVM) | {} |", stats(k));
    println!("| wasce exec --isolation process hello.cwasm | {} |", stats(p));
    if !w.is_empty() {
        println!("| wasmtime run --allow-precompiled hello.cwasm | {} |", stats(w));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
