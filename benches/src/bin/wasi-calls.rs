//! Cost of one WASI call, in wasce (KVM and process mode) and in wasmtime, on the same loops:
//! `fd_write` of 16 bytes to /dev/null, `fd_read` of 16 bytes from /dev/zero, `fd_seek`,
//! `clock_time_get`, `random_get` (16 bytes) and `path_open`+`fd_close` of /dev/null.
//! `/dev` is preopened as `dev`. wasce is timed around `Store::call` of a loop of N calls minus
//! a loop of 0; wasmtime as whole `wasmtime run --invoke` processes, N calls minus 0 calls.
//! Rounds alternate the order of the engines. Usage: `wasi-calls [--rounds R] [--wasmtime PATH]`.

use std::process::Command;
use std::time::Instant;
use wasce_engine::wasi::{add_to_linker, Preopen, WasiConfig};
use wasce_engine::{Extern, HostcallTransport, Isolation, Linker, Settings, Store, StoreConfig, Val};

const MODULE: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "null")
  (data (i32.const 80) "zero")
  ;; iovec at 0: buf 256, len 16
  (data (i32.const 0) "\00\01\00\00\10\00\00\00")
  (func $open (param $name i32) (result i32)
    (if (call $path_open (i32.const 3) (i32.const 1) (local.get $name) (i32.const 4) (i32.const 0)
          (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 32))
      (then (unreachable)))
    (i32.load (i32.const 32)))
  (func (export "fd_write") (param $n i32)
    (local $fd i32)
    (local.set $fd (call $open (i32.const 64)))
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $n)))
      (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 40)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l))))
  (func (export "fd_read") (param $n i32)
    (local $fd i32)
    (local.set $fd (call $open (i32.const 80)))
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $n)))
      (drop (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 40)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l))))
  (func (export "fd_seek") (param $n i32)
    (local $fd i32)
    (local.set $fd (call $open (i32.const 80)))
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $n)))
      (drop (call $fd_seek (local.get $fd) (i64.const 0) (i32.const 0) (i32.const 40)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l))))
  (func (export "clock_time_get") (param $n i32)
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $n)))
      (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 40)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l))))
  (func (export "random_get") (param $n i32)
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $n)))
      (drop (call $random_get (i32.const 256) (i32.const 16)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l))))
  (func (export "open_close") (param $n i32)
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $n)))
      (drop (call $fd_close (call $open (i32.const 64))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))))
"#;

const CALLS: [&str; 6] = ["fd_write", "fd_read", "fd_seek", "clock_time_get", "random_get", "open_close"];

/// (ns per call, ring-server CPU ns per call)
fn wasce_ns(module: &wasce_engine::Module, isolation: Isolation, hostcall: HostcallTransport, func: &str, n: i32) -> (f64, f64) {
    let mut store = Store::new(StoreConfig { isolation, hostcall, ..StoreConfig::default() }).unwrap();
    let mut linker = Linker::new();
    let config = WasiConfig { preopens: vec![Preopen { host: "/dev".into(), guest: "dev".into() }], ..WasiConfig::default() };
    add_to_linker(&mut store, &mut linker, config).unwrap();
    let inst = linker.instantiate(&mut store, module).unwrap();
    let Some(Extern::Func(f)) = store.export(inst, func) else { panic!() };
    store.call(f, &[Val::I32(1)]).unwrap(); // warm up (and the open)
    let t = Instant::now();
    store.call(f, &[Val::I32(0)]).unwrap();
    let base = t.elapsed();
    let cpu0 = store.ring_server_cpu_time().unwrap_or_default();
    let t = Instant::now();
    store.call(f, &[Val::I32(n)]).unwrap();
    let wall = (t.elapsed().saturating_sub(base)).as_nanos() as f64 / n as f64;
    let cpu = (store.ring_server_cpu_time().unwrap_or_default() - cpu0).as_nanos() as f64 / n as f64;
    (wall, cpu)
}

fn wasmtime_ns(wasmtime: &str, wasm: &std::path::Path, func: &str, n: i32) -> f64 {
    let run = |n: i32| {
        let t = Instant::now();
        let st = Command::new(wasmtime)
            .args(["run", "--dir", "/dev::dev", "--invoke", func])
            .arg(wasm)
            .arg(n.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run wasmtime");
        assert!(st.success(), "wasmtime {func} {n} failed");
        t.elapsed()
    };
    let base = run(0);
    let full = run(n);
    full.saturating_sub(base).as_nanos() as f64 / n as f64
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let rounds: usize = opt("--rounds").map_or(5, |r| r.parse().unwrap());
    let wasmtime = opt("--wasmtime").or_else(|| std::env::var("WASMTIME").ok());
    let bytes = wat::parse_str(MODULE).unwrap();
    let wasm = std::env::temp_dir().join("wasce-wasi-calls.wasm");
    std::fs::write(&wasm, &bytes).unwrap();
    let module = wasce_engine::load(&bytes, &Settings::default()).unwrap();

    println!("ns per WASI call, median [min-max] of {rounds} rounds; ratio = wasce / wasmtime");
    println!();
    println!("| call | wasce kvm, ring | ring server CPU | wasce kvm, exit | wasce process | wasmtime | ring / wasmtime | exit / wasmtime | process / wasmtime |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for func in CALLS {
        let exit_free = matches!(func, "clock_time_get" | "random_get");
        let n_exit = if exit_free { 200_000 } else { 3_000 };
        let (mut k, mut cpu, mut x, mut p, mut w) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let mut order: Vec<u8> = vec![0, 1, 2, 3];
            if round % 2 == 1 {
                order.reverse();
            }
            for which in order {
                match which {
                    0 => {
                        let (wall, c) = wasce_ns(&module, Isolation::Kvm, HostcallTransport::Ring, func, 200_000);
                        k.push(wall);
                        cpu.push(c);
                    }
                    1 => x.push(wasce_ns(&module, Isolation::Kvm, HostcallTransport::Exit, func, n_exit).0),
                    3 => p.push(wasce_ns(&module, Isolation::Process, HostcallTransport::Auto, func, 200_000).0),
                    _ => {
                        if let Some(wt) = &wasmtime {
                            w.push(wasmtime_ns(wt, &wasm, func, 200_000));
                        }
                    }
                }
            }
        }
        let (km, kmin, kmax) = median(k);
        let (cm, _, _) = median(cpu);
        let (xm, xmin, xmax) = median(x);
        let (pm, pmin, pmax) = median(p);
        let fmt = |m: f64, lo: f64, hi: f64| format!("{m:.0} [{lo:.0}-{hi:.0}]");
        let (wcell, kr, xr, pr) = if w.is_empty() {
            ("n/a".to_string(), "n/a".to_string(), "n/a".to_string(), "n/a".to_string())
        } else {
            let (wm, wmin, wmax) = median(w);
            (fmt(wm, wmin, wmax), format!("{:.1}x", km / wm), format!("{:.0}x", xm / wm), format!("{:.2}x", pm / wm))
        };
        println!(
            "| {func} | {} | {cm:.0} | {} | {} | {wcell} | {kr} | {xr} | {pr} |",
            fmt(km, kmin, kmax),
            fmt(xm, xmin, xmax),
            fmt(pm, pmin, pmax)
        );
    }
}
