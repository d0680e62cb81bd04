//! The official WebAssembly 2.0 spec suite (`../shared/testsuite/*.wast`, 147 scripts) run
//! against wasce. Prints a per-file table and totals, and fails on any result that differs from
//! `expected-failures.txt` (an unlisted failure, or a listed assertion that now passes).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn suite_dir() -> PathBuf {
    let dir = repo_root().join("../shared/testsuite");
    assert!(
        dir.is_dir(),
        "the spec suite is missing: expected it at {} (../shared/testsuite beside the repo)",
        dir.display()
    );
    dir
}

fn expected_failures() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join("spec-tests/expected-failures.txt")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn spec_suite_process_mode() {
    run_suite(wasce_engine::Isolation::Process);
}

/// Needs /dev/kvm: without it every script fails with an error saying KVM is not available.
#[test]
fn spec_suite_kvm_mode() {
    run_suite(wasce_engine::Isolation::Kvm);
}

fn run_suite(isolation: wasce_engine::Isolation) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wast"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 147, "expected the 147 top-level scripts of the 2.0 suite");

    let queue = Mutex::new(files.clone());
    let results = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some(path) = queue.lock().unwrap().pop() else { break };
                let outcome = wasce_engine::wast::run_file(&path, isolation);
                results.lock().unwrap().push((path, outcome));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));

    let (mut passed, mut failed) = (0u32, 0u32);
    let mut actual = BTreeSet::new();
    let mut messages = Vec::new();
    println!("{:<34} {:>7} {:>7}", "script", "passed", "failed");
    for (path, outcome) in &results {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        match outcome {
            Ok(o) => {
                println!("{:<34} {:>7} {:>7}", name, o.passed, o.failed);
                passed += o.passed;
                failed += o.failed;
                for (line, msg) in &o.failures {
                    actual.insert(format!("{name}:{line}"));
                    messages.push(format!("{name}:{line}: {msg}"));
                }
            }
            Err(e) => {
                println!("{name}: {e}");
                failed += 1;
                actual.insert(format!("{name}:0"));
                messages.push(format!("{name}: {e}"));
            }
        }
    }
    let total = passed + failed;
    println!("spec suite ({isolation:?}): {passed} passed, {failed} failed of {total} assertions ({:.3} %)", 100.0 * passed as f64 / total as f64);

    let expected = expected_failures();
    let unexpected: Vec<_> = messages.iter().filter(|m| !expected.contains(m.split(": ").next().unwrap())).collect();
    let fixed: Vec<_> = expected.difference(&actual).collect();
    for m in &unexpected {
        println!("UNEXPECTED FAILURE {m}");
    }
    for f in &fixed {
        println!("NOW PASSING (remove from expected-failures.txt) {f}");
    }
    assert!(unexpected.is_empty() && fixed.is_empty(), "{} unexpected failures, {} unexpectedly passing", unexpected.len(), fixed.len());
    assert!(passed as f64 >= 0.995 * total as f64);
}
