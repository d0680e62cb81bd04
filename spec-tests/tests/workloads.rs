//! Real programs as WASI commands, in both isolation modes: the acceptance workloads of WASI.
//!
//! - **Sightglass** (`../shared/workloads/sightglass`): every benchmark program (`*.wasm` in each
//!   benchmark folder) is compiled once and run in each mode the way Sightglass runs it: argv is
//!   the module's file name, no environment, stdin at end-of-file, a fresh copy of the
//!   benchmark's folder preopened as `.` (the shared folder is read-only data and the tests run
//!   as root, so the guest gets a copy: the folder's files except the `.wasm` programs), and the
//!   `bench.start` / `bench.end` imports (`[] -> []`) provided as timers that record when the
//!   program called them. Stdout and stderr are captured and compared with
//!   `<stem>.stdout.expected` / `<stem>.stderr.expected`, or `default.{stdout,stderr}.expected`
//!   when the benchmark has none of its own (Sightglass's lookup), line by line as Sightglass
//!   compares them ([`same_lines`]). A run passes when it exits
//!   with status 0 and both streams match.
//!
//!   A benchmark whose folder has no expected output at all is listed in [`NO_EXPECTED_OUTPUT`]
//!   (Sightglass only warns for those); it must exit 0, and its output in KVM mode must equal its
//!   output in process mode (the KVM test also runs it in process mode to compare).
//!
//!   A benchmark that cannot run in a mode is listed in [`NOT_RUNNABLE`] with the reason (none
//!   is); one that passes in KVM mode but takes over 10 s there is listed in [`SLOW_IN_KVM`] with
//!   what was measured, and the default run leaves it out of KVM mode. Both are reported in the
//!   table (SKIP / SLOW) with the reason, never silently. `WASCE_WORKLOADS_ALL=1` runs the
//!   listed ones too (and then fails on any that does not pass: a stale entry shows).
//!   `WASCE_WORKLOADS_FILTER=a,b` runs only the benchmarks whose name contains `a` or `b`;
//!   `WASCE_WORKLOADS_TIMEOUT=<seconds>` changes the per-run limit ([`TIMEOUT`]).
//! - **SQLite speedtest1** (`../shared/workloads/sqlite`): `speedtest1.wasm --memdb` and on disk
//!   (a fresh temporary directory preopened as `.`, database `speedtest1.db` in it), and
//!   `speedtest1-dotlock.wasm` on disk; each must exit 0 and print the `TOTAL` line. The sizes
//!   are per mode ([`SPEEDTEST_SIZE`]).
//!
//! Every test prints a table (program, mode, result, wall time). The tests share the machine's two
//! cores: one test runs at a time ([`exclusive`]), with [`WORKERS`] runs in parallel inside it.

use std::collections::BTreeMap;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use wasce_engine::wasi::{add_to_linker, run_command, Preopen, Stdio, WasiConfig};
use wasce_engine::{Extern, FuncType, Isolation, Linker, Module, Settings, Store, StoreConfig};

/// How many Sightglass programs the shared folder holds; guards against silently running fewer.
const EXPECTED_BENCHMARKS: usize = 118;

/// Benchmarks whose folder has no `*.stdout.expected` / `*.stderr.expected` at all (upstream
/// Sightglass ships none for them), with what they print. They must exit 0 and print the same in
/// both modes.
const NO_EXPECTED_OUTPUT: &[(&str, Compare)] = &[
    // Prints `That took <seconds> seconds.`: compared with the numbers masked.
    ("hashset/benchmark", Compare::NumbersMasked),
    ("richards/benchmark", Compare::Exact),
    ("sqlite3/sqlite3", Compare::Exact),
];

/// How a benchmark without expected output is compared across modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compare {
    Exact,
    /// Runs of digits and dots are masked (the program prints a measured time).
    NumbersMasked,
}

/// Benchmarks that cannot run in a mode, with the reason. Each entry is (`folder/stem`, modes,
/// reason). Empty: every benchmark runs and passes in both modes.
const NOT_RUNNABLE: &[(&str, &[Isolation], &str)] = &[];

/// Benchmarks that pass in KVM mode but take more than 10 s there, so the default run leaves them
/// out of KVM mode (they always run in process mode); `WASCE_WORKLOADS_ALL=1` runs them, and
/// then they must pass. Empty since `memory.copy`/`memory.fill` run inside the guest (they used to
/// be VM exits: shootout-minicsv took 317 s in KVM mode against 0.8 s in process mode).
const SLOW_IN_KVM: &[(&str, &str)] = &[];

/// `speedtest1 --size` per mode (the same in both since bulk memory and host calls stopped
/// costing a VM exit each).
const SPEEDTEST_SIZE: [(Isolation, u32); 2] = [(Isolation::Kvm, 10), (Isolation::Process, 10)];

/// Wall-clock limit of one run (`WASCE_WORKLOADS_TIMEOUT=<seconds>` overrides it).
const TIMEOUT: Duration = Duration::from_secs(120);

/// Wall-clock limit of one run when `WASCE_WORKLOADS_ALL=1` runs the slow benchmarks too.
const TIMEOUT_ALL: Duration = Duration::from_secs(600);

fn timeout() -> Duration {
    let default = if run_all_listed() { TIMEOUT_ALL } else { TIMEOUT };
    std::env::var("WASCE_WORKLOADS_TIMEOUT").ok().and_then(|s| s.parse().ok()).map_or(default, Duration::from_secs)
}

/// Runs in parallel (the machine has 2 cores).
const WORKERS: usize = 2;

#[test]
fn sightglass_kvm_mode() {
    run_sightglass(Isolation::Kvm);
}

#[test]
fn sightglass_process_mode() {
    run_sightglass(Isolation::Process);
}

#[test]
fn speedtest1_kvm_mode() {
    run_speedtest(Isolation::Kvm);
}

#[test]
fn speedtest1_process_mode() {
    run_speedtest(Isolation::Process);
}

// ---------------------------------------------------------------------------------------------
// Shared machinery

fn workloads_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/workloads");
    assert!(
        dir.join("sightglass").is_dir() && dir.join("sqlite").is_dir(),
        "the workloads are missing: expected ../shared/workloads/{{sightglass,sqlite}} beside the repository (looked in {})",
        dir.display()
    );
    dir
}

/// One test at a time: the tests share two cores. A failed test poisons the lock; the others
/// still run.
fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn run_all_listed() -> bool {
    std::env::var_os("WASCE_WORKLOADS_ALL").is_some_and(|v| v != "0")
}

/// What one run of a WASI command needs.
struct Invocation {
    args: Vec<String>,
    /// Host directory preopened as `.`.
    dir: Option<PathBuf>,
}

/// What one run produced.
struct Outcome {
    /// Exit status, or the engine error (trap, link error, timeout, ...).
    status: Result<i32, String>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    wall: Duration,
    /// Time between the program's `bench.start` and `bench.end` calls, when it made both.
    bench: Option<Duration>,
    /// Hypercalls (VM exits) the run made (KVM mode).
    exits: u64,
}

impl Outcome {
    fn error(msg: String) -> Outcome {
        Outcome { status: Err(msg), stdout: vec![], stderr: vec![], wall: Duration::ZERO, bench: None, exits: 0 }
    }
}

/// Run `module` as a WASI command on its own thread, so that a hung or panicking run becomes a
/// failure instead of stopping the test.
fn run_wasi(module: &Module, inv: Invocation, isolation: Isolation) -> Outcome {
    let module = module.clone();
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    let spawned = std::thread::Builder::new().name(inv.args[0].clone()).spawn(move || {
        let outcome = catch_unwind(AssertUnwindSafe(|| run_wasi_here(&module, &inv, isolation))).unwrap_or_else(|payload| {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Outcome::error(format!("panicked: {msg}"))
        });
        let _ = tx.send(outcome);
    });
    let failed = |msg: String| Outcome { wall: started.elapsed(), ..Outcome::error(msg) };
    if let Err(e) = spawned {
        return failed(format!("spawning the run thread: {e}"));
    }
    // KVM mode: the store's own timeout fires first. Process mode cannot be interrupted: the run
    // is abandoned (its thread keeps a core busy until it ends).
    match rx.recv_timeout(timeout() + Duration::from_secs(10)) {
        Ok(mut outcome) => {
            outcome.wall = started.elapsed();
            outcome
        }
        Err(RecvTimeoutError::Timeout) => failed(format!("timed out after {}s (run abandoned)", timeout().as_secs())),
        Err(RecvTimeoutError::Disconnected) => failed("the run thread died without a result".into()),
    }
}

fn run_wasi_here(module: &Module, inv: &Invocation, isolation: Isolation) -> Outcome {
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    // `bench.start` / `bench.end` record when they were called.
    let marks: Arc<Mutex<(Option<Instant>, Option<Instant>)>> = Arc::default();
    let config = WasiConfig {
        args: inv.args.clone(),
        preopens: inv.dir.iter().map(|host| Preopen { host: host.clone(), guest: ".".into() }).collect(),
        stdin: Stdio::Null,
        stdout: Stdio::Capture(stdout.clone()),
        stderr: Stdio::Capture(stderr.clone()),
        ..WasiConfig::default()
    };
    let mut exits = 0;
    let status = (|| {
        let timeout = matches!(isolation, Isolation::Kvm).then_some(timeout());
        let mut store = Store::new(StoreConfig { isolation, timeout, ..StoreConfig::default() }).map_err(|e| format!("creating the store: {e}"))?;
        let mut linker = Linker::new();
        for (name, is_end) in [("start", false), ("end", true)] {
            let marks = marks.clone();
            let f = store.new_host_func(
                FuncType { params: vec![], results: vec![] },
                Arc::new(move |_, _, _| {
                    let mut m = marks.lock().unwrap_or_else(PoisonError::into_inner);
                    let slot = if is_end { &mut m.1 } else { &mut m.0 };
                    slot.get_or_insert_with(Instant::now);
                    Ok(())
                }),
            );
            linker.define("bench", name, Extern::Func(f));
        }
        add_to_linker(&mut store, &mut linker, config).map_err(|e| format!("setting up WASI: {e}"))?;
        let status = run_command(&mut store, &linker, module).map_err(|e| e.to_string());
        exits = store.stats().hypercalls;
        status
    })();
    let take = |buf: &Arc<Mutex<Vec<u8>>>| std::mem::take(&mut *buf.lock().unwrap_or_else(PoisonError::into_inner));
    let bench = match *marks.lock().unwrap_or_else(PoisonError::into_inner) {
        (Some(s), Some(e)) => Some(e.saturating_duration_since(s)),
        _ => None,
    };
    Outcome { status, stdout: take(&stdout), stderr: take(&stderr), wall: Duration::ZERO, bench, exits }
}

/// Run `jobs` on [`WORKERS`] threads; results in the order of `jobs`.
fn parallel<T: Sync, R: Send>(jobs: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = Mutex::new(0usize);
    let results = Mutex::new((0..jobs.len()).map(|_| None).collect::<Vec<Option<R>>>());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| loop {
                let i = {
                    let mut next = next.lock().unwrap();
                    *next += 1;
                    *next - 1
                };
                let Some(job) = jobs.get(i) else { break };
                let r = f(job);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    results.into_inner().unwrap().into_iter().map(Option::unwrap).collect()
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// The first line where `got` and `want` differ, for a failure message.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let (g, w) = (String::from_utf8_lossy(got), String::from_utf8_lossy(want));
    let (gl, wl): (Vec<&str>, Vec<&str>) = (g.split('\n').collect(), w.split('\n').collect());
    for i in 0..gl.len().max(wl.len()) {
        let (a, b) = (gl.get(i), wl.get(i));
        if a != b {
            let show = |l: Option<&&str>| match l {
                Some(l) if l.chars().count() > 120 => format!("{:?}…", l.chars().take(120).collect::<String>()),
                Some(l) => format!("{l:?}"),
                None => "<end>".into(),
            };
            return format!("line {}: got {}, expected {} ({} vs {} bytes)", i + 1, show(a), show(b), got.len(), want.len());
        }
    }
    format!("{} vs {} bytes", got.len(), want.len())
}

fn stderr_hint(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    match lines.len() {
        0 => String::new(),
        n => format!(" — stderr: {}", lines[n.saturating_sub(3)..].join(" | ")),
    }
}

// ---------------------------------------------------------------------------------------------
// Sightglass

struct Benchmark {
    /// `folder/stem`.
    name: String,
    folder: PathBuf,
    file_name: String,
    module: Result<Module, String>,
    compile_time: Duration,
    /// Expected stdout / stderr, `None` when the folder has no expectation for this benchmark.
    expected_stdout: Option<Vec<u8>>,
    expected_stderr: Option<Vec<u8>>,
}

/// Every Sightglass program, compiled once and shared by both modes.
fn benchmarks() -> &'static [Benchmark] {
    static BENCHMARKS: OnceLock<Vec<Benchmark>> = OnceLock::new();
    BENCHMARKS.get_or_init(|| {
        let root = workloads_dir().join("sightglass");
        let mut wasms = Vec::new();
        for folder in fs::read_dir(&root).unwrap_or_else(|e| panic!("reading {}: {e}", root.display())) {
            let folder = folder.unwrap().path();
            if !folder.is_dir() {
                continue;
            }
            for file in fs::read_dir(&folder).unwrap() {
                let path = file.unwrap().path();
                if path.extension().is_some_and(|e| e == "wasm") {
                    wasms.push(path);
                }
            }
        }
        wasms.sort();
        assert_eq!(wasms.len(), EXPECTED_BENCHMARKS, "expected {EXPECTED_BENCHMARKS} Sightglass programs in {}", root.display());
        let started = Instant::now();
        let benchmarks = parallel(&wasms, |path| load_benchmark(path));
        let total: Duration = benchmarks.iter().map(|b| b.compile_time).sum();
        println!(
            "compiled {} Sightglass programs in {} wall ({} of compile time)",
            benchmarks.len(),
            secs(started.elapsed()),
            secs(total)
        );
        benchmarks
    })
}

fn load_benchmark(wasm: &Path) -> Benchmark {
    let folder = wasm.parent().unwrap().to_path_buf();
    let stem = wasm.file_stem().unwrap().to_string_lossy().into_owned();
    let name = format!("{}/{stem}", folder.file_name().unwrap().to_string_lossy());
    let started = Instant::now();
    let module = fs::read(wasm)
        .map_err(|e| format!("reading {}: {e}", wasm.display()))
        .and_then(|bytes| wasce_engine::load(&bytes, &Settings::default()).map_err(|e| format!("compile: {e}")));
    let compile_time = started.elapsed();
    // Sightglass's lookup: `<stem>.<stream>.expected`, else `default.<stream>.expected`.
    let expected = |stream: &str| {
        [format!("{stem}.{stream}.expected"), format!("default.{stream}.expected")]
            .iter()
            .map(|f| folder.join(f))
            .find(|p| p.is_file())
            .map(|p| fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())))
    };
    Benchmark {
        name,
        file_name: wasm.file_name().unwrap().to_string_lossy().into_owned(),
        module,
        compile_time,
        expected_stdout: expected("stdout"),
        expected_stderr: expected("stderr"),
        folder,
    }
}

/// A fresh, writable copy of a benchmark folder's files, leaving out the `.wasm` programs (they
/// are not inputs, and libsodium's folder holds 80 of them).
fn copy_inputs(folder: &Path) -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("wasce-sightglass-").tempdir()?;
    for entry in fs::read_dir(folder)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_none_or(|e| e != "wasm") {
            let to = dir.path().join(path.file_name().unwrap());
            fs::copy(&path, &to)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(dir)
}

fn run_benchmark(b: &Benchmark, isolation: Isolation) -> Outcome {
    let module = match &b.module {
        Ok(m) => m,
        Err(e) => return Outcome::error(e.clone()),
    };
    let dir = match copy_inputs(&b.folder) {
        Ok(d) => d,
        Err(e) => {
            return Outcome::error(format!("copying {}: {e}", b.folder.display()))
        }
    };
    run_wasi(module, Invocation { args: vec![b.file_name.clone()], dir: Some(dir.path().to_path_buf()) }, isolation)
}

/// Sightglass's comparison: line by line (`str::lines`), so a missing final newline or `\r\n`
/// line ends do not count (libsodium's `default.stdout.expected` is `0` where the programs print
/// `0\n`).
fn same_lines(got: &[u8], want: &[u8]) -> bool {
    let (g, w) = (String::from_utf8_lossy(got), String::from_utf8_lossy(want));
    g.lines().eq(w.lines())
}

/// Why `outcome` is not a pass (`None` when it is). `reference` is process mode's run of a
/// benchmark without expected output.
fn check_benchmark(b: &Benchmark, outcome: &Outcome, reference: Option<&Outcome>) -> Option<String> {
    match &outcome.status {
        Ok(0) => {}
        Ok(code) => return Some(format!("exit status {code}{}", stderr_hint(&outcome.stderr))),
        Err(e) => return Some(format!("{e}{}", stderr_hint(&outcome.stderr))),
    }
    let masked = no_expected_output(&b.name).is_some_and(|(_, compare)| compare == Compare::NumbersMasked);
    let mut problems = Vec::new();
    for (stream, got, want, other) in [
        ("stdout", &outcome.stdout, &b.expected_stdout, reference.map(|r| &r.stdout)),
        ("stderr", &outcome.stderr, &b.expected_stderr, reference.map(|r| &r.stderr)),
    ] {
        match (want, other) {
            (Some(want), _) if !same_lines(got, want) => {
                problems.push(format!("{stream} differs from the expected: {}", first_difference(got, want)))
            }
            (None, Some(other)) if mask(got, masked) != mask(other, masked) => {
                problems.push(format!("{stream} differs from process mode's: {}", first_difference(got, other)))
            }
            _ => {}
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// `text` with every run of digits and dots replaced by `#` when `masked`.
fn mask(text: &[u8], masked: bool) -> Vec<u8> {
    if !masked {
        return text.to_vec();
    }
    let mut out = Vec::with_capacity(text.len());
    for &c in text {
        let numeric = c.is_ascii_digit() || c == b'.';
        if !(numeric && out.last() == Some(&b'#')) {
            out.push(if numeric { b'#' } else { c });
        }
    }
    out
}

fn no_expected_output(name: &str) -> Option<(&'static str, Compare)> {
    NO_EXPECTED_OUTPUT.iter().find(|(n, _)| *n == name).copied()
}

/// `WASCE_WORKLOADS_FILTER=a,b`: run only the benchmarks whose name contains `a` or `b`.
fn filtered_in(name: &str) -> bool {
    match std::env::var("WASCE_WORKLOADS_FILTER") {
        Ok(f) if !f.is_empty() => f.split(',').any(|part| name.contains(part)),
        _ => true,
    }
}

fn run_sightglass(isolation: Isolation) {
    let _guard = exclusive();
    let benchmarks = benchmarks();
    // The lists must name real benchmarks, and NO_EXPECTED_OUTPUT must be exactly the ones
    // without expectations.
    for name in NOT_RUNNABLE.iter().map(|e| e.0).chain(SLOW_IN_KVM.iter().map(|e| e.0)) {
        assert!(benchmarks.iter().any(|b| b.name == name), "`{name}` is listed but is not a Sightglass program");
    }
    let without: Vec<&str> = benchmarks
        .iter()
        .filter(|b| b.expected_stdout.is_none() && b.expected_stderr.is_none())
        .map(|b| b.name.as_str())
        .collect();
    let listed: Vec<&str> = NO_EXPECTED_OUTPUT.iter().map(|e| e.0).collect();
    assert_eq!(without, listed, "the benchmarks without expected output changed: update NO_EXPECTED_OUTPUT");
    for b in benchmarks {
        assert!(
            b.expected_stdout.is_some() == b.expected_stderr.is_some(),
            "{}: has expected output for one stream only",
            b.name
        );
    }

    let all = run_all_listed();
    let not_runnable = |b: &Benchmark| NOT_RUNNABLE.iter().find(|(n, modes, _)| *n == b.name && modes.contains(&isolation)).map(|e| e.2);
    let slow = |b: &Benchmark| {
        (isolation == Isolation::Kvm).then(|| SLOW_IN_KVM.iter().find(|(n, _)| *n == b.name).map(|e| e.1)).flatten()
    };
    let selected: Vec<&Benchmark> = benchmarks.iter().filter(|b| filtered_in(&b.name)).collect();
    let started = Instant::now();
    let outcomes: Vec<Option<Outcome>> =
        parallel(&selected, |b| (all || (not_runnable(b).is_none() && slow(b).is_none())).then(|| run_benchmark(b, isolation)));
    // Benchmarks without expectations are compared with process mode's output.
    let references: BTreeMap<&str, Outcome> = if isolation == Isolation::Kvm {
        let refs: Vec<&Benchmark> = selected
            .iter()
            .zip(&outcomes)
            .filter(|(b, o)| o.is_some() && no_expected_output(&b.name).is_some())
            .map(|(b, _)| *b)
            .collect();
        let outs = parallel(&refs, |b| run_benchmark(b, Isolation::Process));
        refs.iter().map(|b| b.name.as_str()).zip(outs).collect()
    } else {
        BTreeMap::new()
    };
    let elapsed = started.elapsed();

    let mode = format!("{isolation:?}");
    let (mut passed, mut failed, mut skipped, mut deferred) = (0, 0, 0, 0);
    let mut problems = Vec::new();
    println!(
        "\n{:<50} {:<7} {:<6} {:>8} {:>8} {:>8} {:>9}  note",
        "benchmark", "mode", "result", "wall", "bench", "compile", "exits"
    );
    let mut slowest: Vec<(Duration, &str)> = Vec::new();
    for (b, outcome) in selected.iter().zip(&outcomes) {
        let why_listed = not_runnable(b);
        let (result, wall, bench, exits, note) = match outcome {
            None if why_listed.is_some() => {
                skipped += 1;
                ("SKIP", "-".to_string(), "-".to_string(), "-".to_string(), format!("not runnable: {}", why_listed.unwrap()))
            }
            None => {
                deferred += 1;
                let why = slow(b).unwrap();
                ("SLOW", "-".to_string(), "-".to_string(), "-".to_string(), format!("not run (WASCE_WORKLOADS_ALL=1 runs it): {why}"))
            }
            Some(o) => {
                slowest.push((o.wall, &b.name));
                let verdict = check_benchmark(b, o, references.get(b.name.as_str()));
                let mut note = verdict.clone().unwrap_or_default();
                if let (None, Some((_, compare))) = (&verdict, no_expected_output(&b.name)) {
                    note = "no expected output: exit 0".into();
                    if isolation == Isolation::Kvm {
                        note += ", same output as process mode";
                        if compare == Compare::NumbersMasked {
                            note += " (numbers masked)";
                        }
                    }
                }
                let result = match (&verdict, why_listed) {
                    (None, None) => {
                        passed += 1;
                        "PASS"
                    }
                    (Some(v), None) => {
                        failed += 1;
                        problems.push(format!("FAIL {}: {v}", b.name));
                        "FAIL"
                    }
                    (Some(v), Some(why)) => {
                        skipped += 1;
                        note = format!("listed as not runnable ({why}); {v}");
                        "XFAIL"
                    }
                    (None, Some(why)) => {
                        passed += 1;
                        problems.push(format!("{} passes but NOT_RUNNABLE lists it ({why}): remove the entry", b.name));
                        "XPASS"
                    }
                };
                let exits = if isolation == Isolation::Kvm { o.exits.to_string() } else { "-".into() };
                (result, secs(o.wall), o.bench.map_or("-".into(), secs), exits, note)
            }
        };
        println!(
            "{:<50} {:<7} {:<6} {:>8} {:>8} {:>8} {:>9}  {note}",
            b.name,
            mode,
            result,
            wall,
            bench,
            secs(b.compile_time),
            exits
        );
    }
    slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
    let top: Vec<String> = slowest.iter().take(5).map(|(d, n)| format!("{n} {}", secs(*d))).collect();
    println!(
        "sightglass ({mode}): {passed} passed, {failed} failed, {skipped} not runnable, {deferred} too slow for the default run, of {} selected, in {} (slowest: {})",
        selected.len(),
        secs(elapsed),
        top.join(", ")
    );
    assert!(problems.is_empty(), "sightglass ({mode}): {} problem(s):\n{}", problems.len(), problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// SQLite speedtest1

struct Speedtest {
    label: &'static str,
    wasm: &'static str,
    /// Arguments after argv[0]; the on-disk runs get a fresh directory preopened as `.`.
    args: Vec<String>,
    on_disk: bool,
}

fn speedtest_module(wasm: &str) -> &'static Result<Module, String> {
    static MODULES: OnceLock<Mutex<BTreeMap<String, &'static Result<Module, String>>>> = OnceLock::new();
    let mut map = MODULES.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
    map.entry(wasm.to_string()).or_insert_with(|| {
        let path = workloads_dir().join("sqlite").join(wasm);
        let started = Instant::now();
        let module = fs::read(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))
            .and_then(|bytes| wasce_engine::load(&bytes, &Settings::default()).map_err(|e| format!("compile: {e}")));
        println!("compiled {wasm} in {}", secs(started.elapsed()));
        Box::leak(Box::new(module))
    })
}

fn run_speedtest(isolation: Isolation) {
    let _guard = exclusive();
    let size = SPEEDTEST_SIZE.iter().find(|(m, _)| *m == isolation).unwrap().1.to_string();
    let runs = [
        Speedtest { label: "speedtest1 --memdb", wasm: "speedtest1.wasm", args: vec!["--memdb".into(), "--size".into(), size.clone()], on_disk: false },
        Speedtest { label: "speedtest1 (disk)", wasm: "speedtest1.wasm", args: vec!["--size".into(), size.clone(), "speedtest1.db".into()], on_disk: true },
        Speedtest {
            label: "speedtest1-dotlock (disk)",
            wasm: "speedtest1-dotlock.wasm",
            args: vec!["--size".into(), size.clone(), "speedtest1.db".into()],
            on_disk: true,
        },
    ];
    for r in &runs {
        speedtest_module(r.wasm);
    }
    let outcomes = parallel(&runs, |r| {
        let module = match speedtest_module(r.wasm) {
            Ok(m) => m,
            Err(e) => return (Outcome::error(e.clone()), None),
        };
        let dir = r.on_disk.then(|| tempfile::Builder::new().prefix("wasce-speedtest1-").tempdir().expect("creating a temporary directory"));
        let args = std::iter::once(r.wasm.to_string()).chain(r.args.iter().cloned()).collect();
        let outcome = run_wasi(module, Invocation { args, dir: dir.as_ref().map(|d| d.path().to_path_buf()) }, isolation);
        let db_size = dir.as_ref().and_then(|d| fs::metadata(d.path().join("speedtest1.db")).ok()).map(|m| m.len());
        (outcome, db_size)
    });

    let mode = format!("{isolation:?}");
    let mut problems = Vec::new();
    println!("\n{:<28} {:<8} {:<6} {:>8} {:>10} {:>9}  note", "program", "mode", "result", "wall", "TOTAL", "exits");
    for (r, (o, db_size)) in runs.iter().zip(&outcomes) {
        let stdout = String::from_utf8_lossy(&o.stdout);
        let total = stdout.lines().find(|l| l.trim_start().starts_with("TOTAL"));
        let total_time = total.and_then(|l| l.split_whitespace().last()).unwrap_or("-");
        let verdict = match (&o.status, total) {
            (Ok(0), Some(_)) if !r.on_disk || db_size.is_some_and(|s| s > 0) => None,
            (Ok(0), Some(_)) => Some("no database file was written".to_string()),
            (Ok(0), None) => Some(format!("no TOTAL line in stdout (last: {:?})", stdout.lines().last().unwrap_or(""))),
            (Ok(code), _) => Some(format!("exit status {code}{}", stderr_hint(&o.stderr))),
            (Err(e), _) => Some(format!("{e}{}", stderr_hint(&o.stderr))),
        };
        let mut note = format!("--size {size}");
        if let Some(s) = db_size {
            note += &format!(", database {} KiB", s / 1024);
        }
        if let Some(v) = &verdict {
            note += &format!(": {v}");
            problems.push(format!("FAIL {} ({mode}): {v}", r.label));
        }
        let result = if verdict.is_none() { "PASS" } else { "FAIL" };
        let exits = if isolation == Isolation::Kvm { o.exits.to_string() } else { "-".into() };
        println!("{:<28} {:<8} {:<6} {:>8} {:>10} {:>9}  {note}", r.label, mode, result, secs(o.wall), total_time, exits);
    }
    assert!(problems.is_empty(), "speedtest1 ({mode}): {} problem(s):\n{}", problems.len(), problems.join("\n"));
}
