//! Running a set of spec scripts against wasce and comparing the outcome with an
//! expected-failures file, shared by the 2.0 suite (`tests/spec_suite.rs`) and the 3.0 and
//! threads suites (`tests/proposals_suite.rs`).
//!
//! An expected-failures file lists one assertion per line, `SCRIPT:LINE  reason` (SCRIPT relative
//! to the suite's folder; `#` starts a comment). A line may end with `[kvm]` or `[process]` when
//! the assertion fails in one isolation mode only. A run fails on any assertion that fails
//! unlisted, and on any listed one that now passes, so the file always says exactly what does
//! not work. `WASCE_BLESS=1` rewrites the file from the run instead (keeping the reasons of
//! lines that stay), for a human to review in the diff.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use wasce_engine::{Isolation, Settings};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `../shared/testsuite` beside the repository; a missing suite is a loud failure.
pub fn testsuite_dir() -> PathBuf {
    let dir = repo_root().join("../shared/testsuite");
    assert!(dir.is_dir(), "the spec suite is missing: expected it at {} (../shared/testsuite beside the repo)", dir.display());
    dir
}

/// The `.wast` files directly in `dir`, sorted.
pub fn scripts_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wast"))
        .collect();
    files.sort();
    files
}

/// One group of scripts run with the same settings; `name` is the scripts' prefix in the
/// expected-failures file (their path relative to the suite folder).
pub struct Group {
    pub scripts: Vec<PathBuf>,
    pub base: PathBuf,
    pub settings: Settings,
}

/// The outcome of a run: totals and the failing assertions with their messages.
pub struct Run {
    pub passed: u32,
    pub failed: u32,
    /// `SCRIPT:LINE` → message.
    pub failures: BTreeMap<String, String>,
}

impl Run {
    pub fn percent(&self) -> f64 {
        100.0 * self.passed as f64 / (self.passed + self.failed).max(1) as f64
    }
}

/// Run every script of `groups` (on all cores), print a table, and return the outcome.
pub fn run(groups: &[Group], isolation: Isolation) -> Run {
    let queue: Vec<(PathBuf, String, Settings)> = groups
        .iter()
        .flat_map(|g| {
            g.scripts.iter().map(|p| {
                let name = p.strip_prefix(&g.base).unwrap_or(p).to_string_lossy().into_owned();
                (p.clone(), name, g.settings.clone())
            })
        })
        .collect();
    let queue = Mutex::new(queue);
    let results = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some((path, name, settings)) = queue.lock().unwrap().pop() else { break };
                let outcome = wasce_engine::wast::run_file_with(&path, isolation, settings);
                results.lock().unwrap().push((name, outcome));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));

    let mut run = Run { passed: 0, failed: 0, failures: BTreeMap::new() };
    println!("{:<40} {:>7} {:>7}", "script", "passed", "failed");
    for (name, outcome) in &results {
        match outcome {
            Ok(o) => {
                println!("{:<40} {:>7} {:>7}", name, o.passed, o.failed);
                run.passed += o.passed;
                run.failed += o.failed;
                for (line, msg) in &o.failures {
                    run.failures.insert(format!("{name}:{line}"), msg.clone());
                }
            }
            Err(e) => {
                println!("{name}: {e}");
                run.failed += 1;
                run.failures.insert(format!("{name}:0"), e.clone());
            }
        }
    }
    run
}

/// A parsed expected-failures file: `SCRIPT:LINE` → (reason, the one mode it is limited to).
fn read_expected(path: &Path) -> BTreeMap<String, (String, Option<String>)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (key, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            let rest = rest.trim();
            let (reason, mode) = match rest.rsplit_once('[') {
                Some((r, m)) if m == "kvm]" || m == "process]" => (r.trim(), Some(m.trim_end_matches(']').to_string())),
                _ => (rest, None),
            };
            (key.to_string(), (reason.to_string(), mode))
        })
        .collect()
}

fn mode_name(isolation: Isolation) -> &'static str {
    match isolation {
        Isolation::Kvm => "kvm",
        Isolation::Process => "process",
    }
}

/// Compare `run` with the expected-failures file (or rewrite it under `WASCE_BLESS=1`); panics
/// listing every difference.
pub fn check(run: &Run, isolation: Isolation, expected_file: &Path, label: &str) {
    let total = run.passed + run.failed;
    println!("{label} ({isolation:?}): {} passed, {} failed of {total} assertions ({:.3} %)", run.passed, run.failed, run.percent());
    let mode = mode_name(isolation);
    let expected = read_expected(expected_file);
    let applies = |m: &Option<String>| m.as_deref().is_none_or(|m| m == mode);
    if std::env::var_os("WASCE_BLESS").is_some() {
        bless(run, isolation, expected_file, &expected);
        return;
    }
    let unexpected: Vec<_> = run.failures.iter().filter(|(k, _)| !expected.get(*k).is_some_and(|(_, m)| applies(m))).collect();
    let fixed: Vec<_> = expected.iter().filter(|(k, (_, m))| applies(m) && !run.failures.contains_key(*k)).map(|(k, _)| k).collect();
    for (k, m) in &unexpected {
        println!("UNEXPECTED FAILURE {k}: {m}");
    }
    for k in &fixed {
        println!("NOW PASSING (remove from {}) {k}", expected_file.display());
    }
    assert!(
        unexpected.is_empty() && fixed.is_empty(),
        "{label}: {} unexpected failures, {} unexpectedly passing (see above; WASCE_BLESS=1 rewrites {})",
        unexpected.len(),
        fixed.len(),
        expected_file.display()
    );
}

/// Rewrite the expected-failures file for this mode: keep the header comments and the other
/// mode's lines, list this run's failures (an assertion failing in both modes has no mode tag).
fn bless(run: &Run, isolation: Isolation, file: &Path, old: &BTreeMap<String, (String, Option<String>)>) {
    let mode = mode_name(isolation);
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#') || l.trim().is_empty()).collect();
    let mut entries: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for (k, (reason, m)) in old {
        let modes: BTreeSet<String> = match m {
            Some(m) => [m.clone()].into(),
            None => ["kvm".to_string(), "process".to_string()].into(),
        };
        let modes: BTreeSet<String> = modes.into_iter().filter(|m| m != mode).collect();
        if !modes.is_empty() {
            entries.insert(k.clone(), (reason.clone(), modes));
        }
    }
    for (k, msg) in &run.failures {
        let reason = old.get(k).map_or_else(|| one_line(msg), |(r, _)| r.clone());
        entries.entry(k.clone()).or_insert_with(|| (reason, BTreeSet::new())).1.insert(mode.to_string());
    }
    let mut out = header.join("\n");
    out.push('\n');
    let mut keys: Vec<&String> = entries.keys().collect();
    keys.sort_by_key(|k| {
        let (script, line) = k.rsplit_once(':').unwrap_or((k, "0"));
        (script.to_string(), line.parse::<u64>().unwrap_or(0))
    });
    for k in keys {
        let (reason, modes) = &entries[k];
        let tag = if modes.len() == 1 { format!("  [{}]", modes.iter().next().unwrap()) } else { String::new() };
        out.push_str(&format!("{k}  {reason}{tag}\n"));
    }
    std::fs::write(file, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
    println!("wrote {}", file.display());
}

/// A failure message as one short line (the reason recorded by `bless`).
fn one_line(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or("").trim();
    let line: String = line.chars().take(160).collect();
    line
}
