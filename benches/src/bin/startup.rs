//! Startup latency of an isolated instance, in both isolation modes, inside one process:
//!
//! * `first guest instruction`: create the store (in KVM mode: the VM, its vCPU, page tables
//!   and stack) and run one empty exported function — the first instruction the guest executes
//!   is the entry stub, so this is the time to a running guest plus one return;
//! * `_start of an empty module`: create the store, link WASI, instantiate a precompiled empty
//!   command module and run its `_start` to completion.
//!
//! Modes are interleaved (KVM, process, KVM, ...) so machine noise hits both alike.
//! Usage: `startup [--runs N]` (default 200).

use std::time::{Duration, Instant};
use wasce_engine::wasi::{self, WasiConfig};
use wasce_engine::{Extern, Isolation, Linker, Settings, Store, StoreConfig};

const EMPTY: &str = r#"(module (func (export "_start")) (func (export "nop")))"#;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "| {name} | {:.0} | {:.0} | {:.0} | {:.0} |",
        us(percentile(&samples, 0.5)),
        us(percentile(&samples, 0.99)),
        us(samples[0]),
        us(*samples.last().unwrap())
    );
}

fn main() {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .map(|n| n.parse().expect("--runs N"))
        .unwrap_or(200);
    let module = wasce_engine::load(&wat::parse_str(EMPTY).unwrap(), &Settings::default()).expect("compile");
    let modes = [Isolation::Kvm, Isolation::Process];
    let mut first: Vec<Vec<Duration>> = vec![Vec::new(); 2];
    let mut start: Vec<Vec<Duration>> = vec![Vec::new(); 2];
    let mut create: Vec<Vec<Duration>> = vec![Vec::new(); 2];
    for _ in 0..runs {
        for (i, &isolation) in modes.iter().enumerate() {
            // First guest instruction.
            let t0 = Instant::now();
            let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).expect("store");
            let t1 = Instant::now();
            let inst = Linker::new().instantiate(&mut store, &module).expect("instantiate");
            let Some(Extern::Func(nop)) = store.export(inst, "nop") else { unreachable!() };
            store.call(nop, &[]).expect("call");
            first[i].push(t0.elapsed());
            create[i].push(t1 - t0);
            drop(store);

            // A finished _start.
            let t0 = Instant::now();
            let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).expect("store");
            let mut linker = Linker::new();
            wasi::add_to_linker(&mut store, &mut linker, WasiConfig::default()).expect("wasi");
            let code = wasi::run_command(&mut store, &linker, &module).expect("_start");
            assert_eq!(code, 0);
            start[i].push(t0.elapsed());
        }
    }
    println!("startup, {runs} runs per mode, interleaved; µs");
    println!();
    println!("| what | p50 | p99 | min | max |");
    println!("|---|---|---|---|---|");
    for (i, mode) in ["kvm", "process"].iter().enumerate() {
        report(&format!("{mode}: create store{}", if i == 0 { " (VM + vCPU)" } else { "" }), create[i].clone());
        report(&format!("{mode}: create → first guest instruction returns"), first[i].clone());
        report(&format!("{mode}: create → finished `_start` (WASI linked)"), start[i].clone());
    }
}
