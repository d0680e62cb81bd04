//! Warm starts with the library API: compile a WASI program once, keep initialised instances of
//! it warm (each in its own VM in KVM mode), and run it many times with nothing of one run
//! visible to the next.
//!
//!     cargo run --release -p wasce-engine --example warm_pool [--isolation process]
//!
//! The program counts its runs in linear memory and in a global: every run prints `run 1`,
//! because each one starts from the snapshot taken after initialisation.

use std::sync::Arc;
use std::time::{Duration, Instant};
use wasce_engine::warm::{Pool, Prelinked, RunRequest, WarmConfig};
use wasce_engine::wasi::WasiConfig;
use wasce_engine::{Isolation, Settings, StoreConfig};

const PROGRAM: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $runs (mut i32) (i32.const 0))
  (data (i32.const 100) "run ?\n")
  (func (export "_start")
    ;; count in memory (address 0) and in the global
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (global.set $runs (i32.add (global.get $runs) (i32.const 1)))
    (i32.store8 (i32.const 104) (i32.add (i32.const 48) (i32.add (i32.load (i32.const 0)) (i32.sub (global.get $runs) (i32.const 1)))))
    ;; iovec at 16: "run N\n"
    (i32.store (i32.const 16) (i32.const 100))
    (i32.store (i32.const 20) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))"#;

fn main() -> Result<(), wasce_engine::Error> {
    let isolation = if std::env::args().any(|a| a == "process") { Isolation::Process } else { Isolation::Kvm };
    // 1. Compile once (for untrusted modules use `wasce_engine::compile_confined`).
    let module = wasce_engine::load(&wat::parse_str(PROGRAM).expect("valid text"), &Settings::default())?;
    // 2. Pre-link: imports checked against WASI, the entry point found, limits fixed.
    let config = WarmConfig {
        store: StoreConfig {
            isolation,
            // The longest any run may take (KVM mode); a run may ask for less.
            timeout: (isolation == Isolation::Kvm).then_some(Duration::from_secs(5)),
            ..StoreConfig::default()
        },
        wasi: WasiConfig { args: vec!["counter".into()], ..WasiConfig::default() },
        ..WarmConfig::default()
    };
    let prelinked = Arc::new(Prelinked::new(module, config)?);

    // 3a. One warm instance: a VM, the instance initialised, a snapshot; every run is restored.
    let mut instance = prelinked.instantiate()?;
    let mut times = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        // Per-run limits: time (KVM mode), fuel, memory, output; arguments, environment, stdin.
        let timeout = (isolation == Isolation::Kvm).then_some(Duration::from_millis(200));
        let r = instance.run(&RunRequest { timeout, ..RunRequest::default() })?;
        times.push(t.elapsed());
        assert_eq!(r.stdout, b"run 1\n", "a run saw state of an earlier one");
    }
    times.sort();
    println!("{isolation:?}: 1000 runs, each printed `run 1`; per run (restore included) p50 {:?}, p99 {:?}", times[500], times[990]);

    // 3b. A pool of warm instances shared by threads.
    let pool = Arc::new(Pool::new(prelinked, 2)?);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let r = pool.run(&RunRequest::default(), Duration::from_secs(10)).expect("a run");
                    assert_eq!(r.stdout, b"run 1\n");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    println!("pool: 400 runs on 4 threads over {} instances", pool.size());
    // Memory goes back to the system as the pool shrinks.
    pool.shrink_to(0);
    Ok(())
}
