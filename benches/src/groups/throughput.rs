//! Group 9, throughput: many instances at once, as a serverless host runs them. Each instance
//! is a whole `exec`/`run` process of the same WASI command, which alternates computing with
//! host calls (`WORK`: 200 rounds of a 20,000-step integer loop and a 16-byte `fd_write` to
//! stdout, which is /dev/null). `C` processes run at once (a pool of `C` launcher threads, each
//! starting the next as its last ends) until `N` have finished; the figures are instances
//! finished per second of wall time, and CPU seconds per instance (user + system of all the
//! children, every thread included: `getrusage(RUSAGE_CHILDREN)` around the batch). The
//! engines run their precompiled artifacts, interleaved batch by batch.

use super::{interleave, precompile};
use crate::report::{table, Section};
use crate::stats::{median, Spread};
use crate::{progress, Ctx};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const WORK: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\10\00\00\00\10\00\00\00")
  (data (i32.const 16) "0123456789abcdef")
  (global $sink (mut i32) (i32.const 0))
  (func (export "_start")
    (local $round i32) (local $i i32) (local $x i32)
    (loop $rounds
      (local.set $i (i32.const 0))
      (loop $steps
        (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1103515245)) (i32.const 12345)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $steps (i32.lt_u (local.get $i) (i32.const 20000))))
      (global.set $sink (local.get $x))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $round (i32.add (local.get $round) (i32.const 1)))
      (br_if $rounds (i32.lt_u (local.get $round) (i32.const 200))))))"#;

/// User + system CPU of this process's waited-for children so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Run `n` instances of `cmd`, `c` at a time: (wall time, CPU time of all of them).
fn batch(cmd: &[String], n: usize, c: usize) -> (Duration, Duration) {
    let next = AtomicUsize::new(0);
    let cpu0 = children_cpu();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..c {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let status = Command::new(&cmd[0])
                        .args(&cmd[1..])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .expect("start an instance");
                    assert!(status.success(), "{cmd:?} failed: {status}");
                }
            });
        }
    });
    (t0.elapsed(), children_cpu() - cpu0)
}

pub fn run(ctx: &Ctx) -> Section {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rounds = ctx.pick(1, 3);
    let n = ctx.pick(24, 96);
    let wasm = ctx.scratch_file("throughput.wasm", &wat::parse_str(WORK).unwrap());
    let (ours, theirs) = precompile(ctx, &wasm, "throughput");
    let engines = ["wasce KVM", "wasce process", "wasmtime"];
    let cmd = |e: usize| -> Vec<String> {
        match e {
            0 => vec![ctx.wasce(), "exec".into(), ours.clone()],
            1 => vec![ctx.wasce(), "exec".into(), "--isolation".into(), "process".into(), ours.clone()],
            _ => vec![ctx.wasmtime(), "run".into(), "--allow-precompiled".into(), theirs.clone()],
        }
    };
    let mut rows = Vec::new();
    let mut headlines = Vec::new();
    for c in [1, cores, 4 * cores] {
        progress!("throughput: {n} instances, {c} at a time, {rounds} rounds");
        // Per engine: instances per second and CPU seconds per instance, per round.
        let mut rate = vec![Vec::new(); 3];
        let mut cpu = vec![Vec::new(); 3];
        interleave(rounds, 3, |_, e| {
            let (wall, used) = batch(&cmd(e), n, c);
            rate[e].push(n as f64 / wall.as_secs_f64());
            cpu[e].push(used.as_secs_f64() / n as f64);
        });
        let rate_ratio = Spread::ratios(&rate[0], &rate[2]);
        let cpu_ratio = Spread::ratios(&cpu[0], &cpu[2]);
        let process_cpu_ratio = Spread::ratios(&cpu[1], &cpu[2]);
        rows.push(vec![
            format!("{c}"),
            format!("{:.1} / {:.1} / {:.1}", median(&rate[0]), median(&rate[1]), median(&rate[2])),
            format!("{:.1} / {:.1} / {:.1}", median(&cpu[0]) * 1e3, median(&cpu[1]) * 1e3, median(&cpu[2]) * 1e3),
            rate_ratio.to_string(),
            cpu_ratio.to_string(),
            process_cpu_ratio.to_string(),
        ]);
        if c == 4 * cores {
            headlines.push((format!("throughput, {c} at a time: wasce KVM / wasmtime instances per second"), rate_ratio.to_string()));
            headlines.push((format!("throughput, {c} at a time: wasce KVM / wasmtime CPU per instance"), cpu_ratio.to_string()));
        }
    }
    let body = format!(
        "{n} instances of one WASI command (200 rounds of a 20,000-step loop and a 16-byte `fd_write` to \
         /dev/null), C at a time, {rounds} interleaved round(s) per engine; whole processes from precompiled \
         artifacts. Rates are instances finished per second of wall time; CPU is user + system of every process \
         and thread of the batch, per instance. Engines in each cell: {}.\n\n{}",
        engines.join(" / "),
        table(
            &["C at a time", "instances/s", "CPU ms per instance", "KVM / wasmtime rate", "KVM / wasmtime CPU", "process / wasmtime CPU"],
            &rows
        )
    );
    let meaning = format!(
        "With more instances than cores ({} here), what matters is CPU per instance: every spinning or \
         waiting thread of an instance takes cycles from the others. The KVM column includes each instance's \
         VM creation and teardown and its ring server thread; process mode shows what the same code costs \
         without the VM.",
        cores
    );
    Section { title: "9. Throughput: many instances at once".into(), body, meaning, plots: Vec::new(), headlines }
}
