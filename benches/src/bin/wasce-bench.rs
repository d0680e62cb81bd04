//! `wasce-bench`: run the benchmark groups and write `benches/RESULTS.md` with plots.
//!
//! ```text
//! wasce-bench [--quick] [--load] [--only GROUP,...] [--out DIR] --wasce PATH --wasmtime PATH
//!             [--wasce-before PATH] [--shared DIR]
//! ```
//!
//! Normally started by `benches/run.sh`, which builds the release binaries and installs the
//! wasmtime baseline first. Groups: startup, memory, wasi, compute, speedtest, compile, warm,
//! throughput.
//!
//! `--load` keeps every core but one busy (a spinning process each) while the groups run, as on
//! a loaded serverless host, and writes `RESULTS-load.md` (plots `*-load.svg`) instead. `--wasce-before PATH` adds an earlier wasce build to the compute
//! group, interleaved with the others, for before/after figures of a compiler change.

use std::path::PathBuf;
use std::time::Instant;
use wasce_benches::{groups, measure, report, Ctx};

const GROUPS: [&str; 8] = ["startup", "memory", "wasi", "compute", "speedtest", "compile", "warm", "throughput"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--internal-spawn") {
        measure::launcher_main(&args[2..]);
        return;
    }
    if args.get(1).map(String::as_str) == Some("--internal-spin") {
        measure::spin_forever();
    }
    if args.get(1).map(String::as_str) == Some("--internal-instances") {
        let n = |i: usize| args[i].parse::<u64>().expect("a number");
        groups::memory::child(&args[2], n(3), n(4));
        return;
    }
    let opt = |name: &str| args.iter().rposition(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let quick = args.iter().any(|a| a == "--quick");
    let loaded = args.iter().any(|a| a == "--load");
    let only: Vec<String> = opt("--only").map_or(GROUPS.iter().map(|s| s.to_string()).collect(), |s| s.split(',').map(str::to_string).collect());
    if let Some(bad) = only.iter().find(|g| !GROUPS.contains(&g.as_str())) {
        eprintln!("wasce-bench: unknown group `{bad}` (groups: {})", GROUPS.join(", "));
        std::process::exit(2);
    }
    let path = |name: &str| -> PathBuf {
        let p = opt(name).unwrap_or_else(|| {
            eprintln!("wasce-bench: {name} PATH is required (benches/run.sh passes it)");
            std::process::exit(2)
        });
        std::fs::canonicalize(&p).unwrap_or_else(|e| {
            eprintln!("wasce-bench: {name} {p}: {e}");
            std::process::exit(2)
        })
    };
    let out = PathBuf::from(opt("--out").unwrap_or_else(|| "benches".into()));
    let scratch = std::env::temp_dir().join(format!("wasce-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    // Each engine runs from a copy in the scratch folder, as an installed binary would: one the
    // linker has just written sits in the page cache in small pieces, and the same bytes start
    // measurably slower from there (0.6 ms a `wasce exec` here) than from a file written whole.
    let installed = |name: &str, from: PathBuf| -> PathBuf {
        let bin = scratch.join("bin");
        std::fs::create_dir_all(&bin).expect("scratch bin folder");
        let to = bin.join(name);
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
        to
    };
    let ctx = Ctx {
        quick,
        wasce: installed("wasce", path("--wasce")),
        wasmtime: installed("wasmtime", path("--wasmtime")),
        shared: opt("--shared").map_or_else(|| PathBuf::from("../shared"), PathBuf::from).canonicalize().expect("the shared data folder (../shared)"),
        scratch: scratch.clone(),
        self_exe: std::env::current_exe().expect("own path"),
        before: opt("--wasce-before").map(|_| installed("wasce-before", path("--wasce-before"))),
    };
    // Spinning processes on every core but one, until the end of the run.
    let spinners = if loaded { measure::start_load(&ctx.self_exe) } else { Vec::new() };

    let started = Instant::now();
    let load_before = measure::load();
    let mut sections = Vec::new();
    for g in &only {
        let t = Instant::now();
        sections.push(match g.as_str() {
            "startup" => groups::startup::run(&ctx),
            "memory" => groups::memory::run(&ctx),
            "wasi" => groups::wasi::run(&ctx),
            "compute" => groups::compute::run(&ctx),
            "speedtest" => groups::speedtest::run(&ctx),
            "warm" => groups::warm::run(&ctx),
            "throughput" => groups::throughput::run(&ctx),
            _ => groups::compile::run(&ctx),
        });
        wasce_benches::progress!("{g}: done in {:.0} s", t.elapsed().as_secs_f64());
    }
    let n_spinners = spinners.len();
    measure::stop_load(spinners);
    let version = |bin: &PathBuf| {
        let out = std::process::Command::new(bin).arg("--version").output().ok();
        out.map_or_else(String::new, |o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok().map_or_else(String::new, |o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let header = format!(
        "# wasce benchmark results\n\n\
         Generated by `benches/run.sh{}` (do not edit by hand). Every ratio is wasce / baseline, measured in \
         the same run with the engines interleaved; its spread is the min–max over interleaved pairs.\n\n\
         - Mode: {}{}\n\
         - Machine: {}\n\
         - Load average (1/5/15 min): {} at the start, {} at the end\n\
         - wasce: {} (commit {commit}); baseline: {}{}\n\
         - Groups: {}; total time {:.0} s\n",
        if quick { " --quick" } else { "" },
        if quick { "`--quick` (fewer runs, a subset of the workloads: a smoke run, not the figures to quote)" } else { "full" },
        if loaded { format!("; loaded (`--load`): {n_spinners} spinning process(es) kept the other core(s) busy throughout") } else { "; quiet (no load of its own)".into() },
        measure::machine(),
        load_before,
        measure::load(),
        version(&ctx.wasce),
        version(&ctx.wasmtime),
        ctx.before.as_ref().map_or_else(String::new, |b| format!("; earlier wasce (`--wasce-before`): {}", version(b))),
        only.join(", "),
        started.elapsed().as_secs_f64()
    );
    let suffix = if loaded { "-load" } else { "" };
    report::write(&out, suffix, &header, &sections).expect("write RESULTS.md");
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!("[bench] wrote {}", out.join(format!("RESULTS{suffix}.md")).display());
}
