//! Group 5, compute: the Sightglass programs in `../shared/workloads/sightglass` and speedtest1
//! `--memdb`, each engine running its own precompiled artifact.
//!
//! A Sightglass program brackets its measured work with `bench.start` / `bench.end` imports.
//! Both engines get the same provider, a small module preloaded as `bench` (`TIMER`), which
//! reads the monotonic clock through WASI at `start` and prints the elapsed nanoseconds to
//! stderr at `end`; so the time excludes startup and compilation alike in both. `start` writes
//! to its own memory before it reads the clock: the first touch of that page is a page fault,
//! which in the VM is a hypervisor fault (about 15 µs on the nested host, against 1-4 µs for a
//! process), and the provider's own fault is not the program's work. Each run gets a
//! fresh copy of the benchmark's folder (its inputs) preopened as `.`, argv[0] the module's file
//! name and an empty stdin, as Sightglass runs them.
//!
//! With `--wasce-before PATH` an earlier wasce build runs too, in both modes, interleaved with
//! the rest, and the table gains its before/after ratios (a compiler change's evidence).

use super::{interleave, precompile};
use crate::report::{table, Section};
use crate::stats::{geomean, median, Spread};
use crate::svg::Bars;
use crate::{measure, progress, Ctx};
use std::path::{Path, PathBuf};

const TIMER: &str = r#"(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $t0 (mut i64) (i64.const 0))
  (data (i32.const 64) "wasce-bench-ns: ")
  (func $now (result i64)
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 0)))
    (i64.load (i32.const 0)))
  ;; the first store is the provider's own first touch of its memory: made before the clock is
  ;; read, so that its page fault is not timed
  (func (export "start") (i64.store (i32.const 0) (i64.const 0)) (global.set $t0 (call $now)))
  (func (export "end")
    (local $d i64) (local $p i32)
    (local.set $d (i64.sub (call $now) (global.get $t0)))
    (local.set $p (i32.const 200))
    (i32.store8 (i32.const 200) (i32.const 10))
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $d) (i64.const 10)))))
      (local.set $d (i64.div_u (local.get $d) (i64.const 10)))
      (br_if $digits (i64.ne (local.get $d) (i64.const 0))))
    ;; the prefix right before the digits, so that one iovec holds the line (wasmtime writes
    ;; only the first iovec of a stdio write)
    (local.set $p (i32.sub (local.get $p) (i32.const 16)))
    (memory.copy (local.get $p) (i32.const 64) (i32.const 16))
    (i32.store (i32.const 8) (local.get $p))
    (i32.store (i32.const 12) (i32.sub (i32.const 201) (local.get $p)))
    (drop (call $fd_write (i32.const 2) (i32.const 8) (i32.const 1) (i32.const 24)))))"#;

/// Fresh memory, touched once: grow by 64 MiB, then write one byte per 4 KiB page of it
/// (timed by the same provider). Every write is a first touch: in the VM a fault the
/// hypervisor resolves, once per 4 KiB page, or once per 2 MiB page where both the guest
/// mapping and the host memory are huge.
const SWEEP: &str = r#"(module
  (import "bench" "start" (func $start))
  (import "bench" "end" (func $end))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $p i32) (local $end i32)
    (drop (memory.grow (i32.const 1024)))
    (local.set $p (i32.const 65536))
    (local.set $end (i32.const 67174400))
    (call $start)
    (loop $l
      (i32.store8 (local.get $p) (i32.const 1))
      (local.set $p (i32.add (local.get $p) (i32.const 4096)))
      (br_if $l (i32.lt_u (local.get $p) (local.get $end))))
    (call $end)))"#;

/// The benchmarks of `--quick`: short ones from different suites.
const QUICK: [&str; 8] = [
    "shootout/shootout-fib2",
    "shootout/shootout-sieve",
    "shootout/shootout-matrix",
    "shootout/shootout-heapsort",
    "shootout/shootout-keccak",
    "quicksort/benchmark",
    "blake3-scalar/benchmark",
    "richards/benchmark",
];

/// Every Sightglass program: (name `folder/stem`, path), sorted.
fn programs(shared: &Path) -> Vec<(String, PathBuf)> {
    let root = shared.join("workloads/sightglass");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&root).expect("sightglass folder").flatten() {
        if !dir.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "wasm") {
                let name = format!("{}/{}", dir.file_name().to_string_lossy(), p.file_stem().unwrap().to_string_lossy());
                out.push((name, p));
            }
        }
    }
    out.sort();
    out
}

/// A fresh copy of the program's folder without the `.wasm` programs.
fn inputs(ctx: &Ctx, program: &Path) -> PathBuf {
    let dir = ctx.fresh_dir("sightglass");
    for f in std::fs::read_dir(program.parent().unwrap()).unwrap().flatten() {
        let p = f.path();
        if p.is_file() && p.extension().is_none_or(|e| e != "wasm") {
            std::fs::copy(&p, dir.join(f.file_name())).unwrap();
        }
    }
    dir
}

/// The nanoseconds the timer printed, summed over start/end pairs; `None` if the program never
/// called `bench.end` (a few exit first). A line that does not parse is an error.
fn timer_ns(r: &measure::Run, what: &str) -> Option<f64> {
    let lines: Vec<&str> = r.stderr.lines().filter_map(|l| l.strip_prefix("wasce-bench-ns: ")).collect();
    let ns: Vec<f64> = lines.iter().map(|l| l.trim().parse().unwrap_or_else(|_| panic!("{what}: bad timer line {l:?}"))).collect();
    (!ns.is_empty()).then(|| ns.iter().sum())
}

pub fn run(ctx: &Ctx) -> Section {
    let rounds = ctx.pick(1, 3);
    let mut all = programs(&ctx.shared);
    if ctx.quick {
        all.retain(|(n, _)| QUICK.contains(&n.as_str()));
    }
    let timer = ctx.scratch_file("timer.wasm", &wat::parse_str(TIMER).unwrap());
    let (timer_ours, timer_theirs) = precompile(ctx, &timer, "timer");
    let timer_before = super::precompile_before(ctx, &timer, "timer");
    let engines = if ctx.before.is_some() { 5 } else { 3 };
    let mut rows = Vec::new();
    // Per round and program: KVM / wasmtime, process / wasmtime, and (with an earlier build)
    // KVM / before, process / before.
    let mut per_round_ratios: Vec<Vec<Vec<f64>>> = vec![Vec::new(); rounds];
    let mut medians: Vec<(String, f64, f64)> = Vec::new();
    for (k, (name, path)) in all.iter().enumerate() {
        progress!("compute: [{}/{}] {name}, {rounds} rounds", k + 1, all.len());
        let (ours, theirs) = precompile(ctx, &path.to_string_lossy(), &name.replace('/', "-"));
        let before = super::precompile_before(ctx, &path.to_string_lossy(), &name.replace('/', "-"));
        let argv0 = path.file_name().unwrap().to_string_lossy().into_owned();
        // (timer ns, whole-process wall ns) per engine and round.
        let mut samples: Vec<Vec<(Option<f64>, f64)>> = vec![Vec::new(); engines];
        interleave(rounds, engines, |_, i| {
            let dir = inputs(ctx, path);
            let (mut cmd, artifact) = super::engine_cmd(ctx, i, &ours, &theirs, before.as_deref());
            let timer = match i {
                0 | 1 => timer_ours.clone(),
                2 => timer_theirs.clone(),
                _ => timer_before.clone().expect("the timer compiled by the earlier build"),
            };
            cmd.extend(["--preload".into(), format!("bench={timer}")]);
            cmd.extend(["--dir".into(), format!("{}::.", dir.display()), "--argv0".into(), argv0.clone()]);
            cmd.push(artifact);
            let r = measure::run(&cmd, Some(&dir), &ctx.scratch);
            samples[i].push((timer_ns(&r, name), r.wall.as_nanos() as f64));
            let _ = std::fs::remove_dir_all(&dir);
        });
        // Programs that never call `bench.end` are timed as whole processes, in every engine.
        let timed = samples.iter().flatten().all(|s| s.0.is_some());
        let ns: Vec<Vec<f64>> = samples.iter().map(|v| v.iter().map(|s| if timed { s.0.unwrap() } else { s.1 }).collect()).collect();
        let name = if timed { name.clone() } else { format!("{name} (whole process: no `bench.end`)") };
        push_ratios(&mut per_round_ratios, &ns);
        let (kvm, process) = (Spread::ratios(&ns[0], &ns[2]), Spread::ratios(&ns[1], &ns[2]));
        let mut row = vec![name.clone(), format!("{:.2}", median(&ns[2]) / 1e6), format!("{:.2}", median(&ns[0]) / 1e6), kvm.to_string(), process.to_string()];
        row.extend(before_columns(&ns));
        rows.push(row);
        medians.push((name.clone(), kvm.median, process.median));
    }

    progress!("compute: first-touch sweep of 64 MiB");
    let sweep = ctx.scratch_file("sweep.wasm", &wat::parse_str(SWEEP).unwrap());
    let (sweep_ours, sweep_theirs) = precompile(ctx, &sweep, "sweep");
    let mut sweep_ns: Vec<Vec<f64>> = vec![Vec::new(); 3];
    interleave(ctx.pick(3, 7), 3, |_, i| {
        let (mut cmd, artifact) = super::engine_cmd(ctx, i, &sweep_ours, &sweep_theirs, None);
        cmd.extend(["--preload".into(), format!("bench={}", if i == 2 { &timer_theirs } else { &timer_ours })]);
        cmd.push(artifact);
        let r = measure::run(&cmd, None, &ctx.scratch);
        sweep_ns[i].push(timer_ns(&r, "sweep").expect("the sweep calls bench.end"));
    });
    let (sweep_kvm, sweep_process) = (Spread::ratios(&sweep_ns[0], &sweep_ns[2]), Spread::ratios(&sweep_ns[1], &sweep_ns[2]));

    progress!("compute: speedtest1 --memdb");
    let size = ctx.pick(5, 20);
    let t = super::speedtest::totals(ctx, "speedtest1.wasm", true, size, rounds, true);
    push_ratios(&mut per_round_ratios, &t);
    let (kvm, process) = (Spread::ratios(&t[0], &t[2]), Spread::ratios(&t[1], &t[2]));
    let memdb_name = format!("speedtest1 --memdb --size {size}");
    let mut row = vec![memdb_name.clone(), format!("{:.0}", median(&t[2]) * 1e3), format!("{:.0}", median(&t[0]) * 1e3), kvm.to_string(), process.to_string()];
    row.extend(before_columns(&t));
    rows.push(row);
    medians.push((memdb_name, kvm.median, process.median));

    // Geometric mean over all programs, per interleaved round: its spread is over rounds.
    let geo = |which: usize| Spread::of(&per_round_ratios.iter().map(|r| geomean(&r.iter().map(|x| x[which]).collect::<Vec<_>>())).collect::<Vec<_>>());
    let (geo_kvm, geo_process) = (geo(0), geo(1));
    let before_geo = if engines == 5 {
        format!(
            "**Against the earlier build (`--wasce-before`): KVM {}, process {}** (geometric means of this build / the earlier one).\n\n",
            geo(2),
            geo(3)
        )
    } else {
        String::new()
    };
    let n = medians.len();
    let mut body = format!(
        "{n} programs ({} Sightglass programs{} and speedtest1 `--memdb`), {rounds} interleaved round(s); time inside \
         `bench.start`..`bench.end` for Sightglass (speedtest1: its TOTAL), each engine running its own \
         precompiled artifact. Ratio = wasce / wasmtime per pair, median (min–max).\n\n\
         **Geometric mean of the ratios: wasce KVM {geo_kvm}, wasce process {geo_process}** (spread over rounds).\n\n{before_geo}",
        n - 1,
        if ctx.quick { ", the `--quick` subset" } else { "" }
    );
    let mut columns = vec!["program", "wasmtime ms", "wasce KVM ms", "KVM / wasmtime", "process / wasmtime"];
    if engines == 5 {
        columns.extend(["KVM / before", "process / before"]);
    }
    body += &table(&columns, &rows);
    body += &format!(
        "\n**First touch of fresh memory** (grow by 64 MiB, write one byte per 4 KiB page, {} interleaved rounds; \
         not in the geometric mean): wasmtime {:.1} ms, wasce KVM {:.1} ms, wasce process {:.1} ms (medians); \
         KVM / wasmtime {sweep_kvm}, process / wasmtime {sweep_process}.\n",
        sweep_ns[2].len(),
        median(&sweep_ns[2]) / 1e6,
        median(&sweep_ns[0]) / 1e6,
        median(&sweep_ns[1]) / 1e6,
    );
    let mut sorted = medians.clone();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    let plot = Bars {
        title: "compute: time relative to wasmtime (sorted, slowest first)".into(),
        unit: "ratio to wasmtime (1 = as fast)".into(),
        series: vec!["wasce KVM".into(), "wasce process".into()],
        rows: sorted.iter().map(|(n, k, p)| (n.clone(), vec![*k, *p])).collect(),
        reference: Some(1.0),
        log: false,
    };
    let behind = |which: usize| -> (usize, String) {
        let mut v: Vec<(&String, f64)> = medians.iter().map(|m| (&m.0, if which == 0 { m.1 } else { m.2 })).filter(|m| m.1 > 1.05).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        (v.len(), v.iter().take(5).map(|(n, r)| format!("{n} ({r:.2}×)")).collect::<Vec<_>>().join(", "))
    };
    let ((kvm_behind, kvm_worst), (proc_behind, proc_worst)) = (behind(0), behind(1));
    let meaning = format!(
        "Across {n} programs wasce takes {:.2}× wasmtime's time in the VM and {:.2}× in process mode (geometric \
         means). Process mode runs the same compiled code without the VM, so it measures the compiler: behind \
         wasmtime by over 5% on {proc_behind} of {n} (worst: {}). The gap between the two columns is the VM: \
         every first touch of a guest page is a fault that KVM resolves, and on this nested (PVM) host each \
         costs microseconds to tens of microseconds, so programs that are short or sweep fresh memory pay most. \
         Linear memory is mapped with 2 MiB guest pages over transparent huge pages wherever a whole aligned \
         2 MiB lies inside it (the first-touch line shows the effect); the first 2 MiB of a small memory, the \
         code and the stack still fault per 4 KiB page. In the VM wasce is behind on {kvm_behind} of {n}; \
         the worst are {kvm_worst}.",
        geo_kvm.median,
        geo_process.median,
        if proc_worst.is_empty() { "none".to_string() } else { proc_worst },
    );
    Section {
        title: "5. Compute".into(),
        body,
        meaning,
        plots: vec![("compute.svg".into(), plot.render())],
        headlines: vec![
            (format!("compute geomean over {n} programs, wasce KVM / wasmtime"), geo_kvm.to_string()),
            ("speedtest1 --memdb, wasce KVM / wasmtime".into(), kvm.to_string()),
            ("first touch of 64 MiB, wasce KVM / wasmtime".into(), sweep_kvm.to_string()),
        ],
    }
}

/// Per round, one program's ratios: KVM and process against wasmtime, then (with an earlier
/// build, engines 3 and 4) KVM and process against the earlier build.
fn push_ratios(per_round: &mut [Vec<Vec<f64>>], ns: &[Vec<f64>]) {
    for (round, ratios) in per_round.iter_mut().enumerate() {
        let mut r = vec![ns[0][round] / ns[2][round], ns[1][round] / ns[2][round]];
        if ns.len() == 5 {
            r.extend([ns[0][round] / ns[3][round], ns[1][round] / ns[4][round]]);
        }
        ratios.push(r);
    }
}

/// The before/after columns of a row (none without an earlier build).
fn before_columns(ns: &[Vec<f64>]) -> Vec<String> {
    if ns.len() < 5 {
        return Vec::new();
    }
    vec![Spread::ratios(&ns[0], &ns[3]).to_string(), Spread::ratios(&ns[1], &ns[4]).to_string()]
}
