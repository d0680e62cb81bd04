//! wasce-benches: wasce measured side by side with wasmtime and with its own in-process mode.
//!
//! One command (`benches/run.sh [--quick]`, which builds and then runs `wasce-bench`) sets up
//! the baseline, runs every group with the engines interleaved (A B C, C B A, ...) so that the
//! machine's noise falls on all of them alike, and writes `benches/RESULTS.md` with SVG plots.
//! Claims are ratios measured in the same run; every ratio carries its spread (min–max over the
//! interleaved pairs).
//!
//! - `measure`: child processes with wall time and peak RSS (`wait4`), /proc readings.
//! - `stats`: medians, percentiles, per-pair ratios, geometric means.
//! - `svg`: bar charts. `report`: the RESULTS.md writer.
//! - `groups`: one module per group of the issue (startup, memory and density, WASI calls,
//!   compute, speedtest1 on disk, compile).

pub mod groups;
pub mod measure;
pub mod report;
pub mod stats;
pub mod svg;

use std::path::PathBuf;

/// What every group needs to know.
pub struct Ctx {
    /// `--quick`: fewer runs and a subset of the workloads (a smoke run, minutes not tens).
    pub quick: bool,
    /// The `wasce` binary (release build).
    pub wasce: PathBuf,
    /// The baseline `wasmtime` binary.
    pub wasmtime: PathBuf,
    /// `../shared` (workloads).
    pub shared: PathBuf,
    /// A scratch directory for this run, removed at the end.
    pub scratch: PathBuf,
    /// This executable (re-run for measurements that need a fresh process).
    pub self_exe: PathBuf,
    /// `--wasce-before PATH`: an earlier wasce build whose compute figures go next to this one's.
    pub before: Option<PathBuf>,
}

impl Ctx {
    /// Pick the quick or the full value.
    pub fn pick<T>(&self, quick: T, full: T) -> T {
        if self.quick { quick } else { full }
    }

    /// A fresh directory under the scratch directory.
    pub fn fresh_dir(&self, name: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = self.scratch.join(format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        dir
    }

    /// Write `bytes` to `name` in the scratch directory and return its path as a string.
    pub fn scratch_file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.scratch.join(name);
        std::fs::write(&path, bytes).expect("write scratch file");
        path.to_string_lossy().into_owned()
    }

    pub fn wasce(&self) -> String {
        self.wasce.to_string_lossy().into_owned()
    }

    /// The earlier build of `--wasce-before`, if given.
    pub fn before(&self) -> Option<String> {
        self.before.as_ref().map(|p| p.to_string_lossy().into_owned())
    }

    pub fn wasmtime(&self) -> String {
        self.wasmtime.to_string_lossy().into_owned()
    }
}

/// Print progress on stderr (stdout stays free for the caller).
#[macro_export]
macro_rules! progress {
    ($($t:tt)*) => { eprintln!("[bench] {}", format!($($t)*)) };
}
