//! Exception handling: the proposal's scripts that need no other 3.0 feature
//! (`../shared/testsuite/proposals/exception-handling/`), and wasce's own scripts
//! (`spec-tests/wast/exceptions/`: the scripts that also use tail calls, without them;
//! per-instance tags; exception objects, exnref in globals and tables), in both isolation
//! modes; every assertion must pass. The proposal's scripts run with the features that proposal
//! is written against (2.0 plus exceptions: it predates multi-memory and asserts that a memory
//! index other than zero is malformed); wasce's own with every implemented feature.

use std::path::{Path, PathBuf};
use wasce_engine::{Features, Isolation, Settings};

const PROPOSAL: &[&str] =
    &["binary", "exports", "imports", "ref_null", "tag", "throw", "throw_ref", "legacy/rethrow", "legacy/throw"];

/// The scripts, each with its settings.
fn scripts() -> Vec<(PathBuf, Settings)> {
    let proposal = Settings { features: Features::EXCEPTIONS.with(Features::LEGACY_EXCEPTIONS, true), ..Settings::default() };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<(PathBuf, Settings)> = PROPOSAL
        .iter()
        .map(|f| (root.join(format!("../../shared/testsuite/proposals/exception-handling/{f}.wast")), proposal.clone()))
        .collect();
    let own = root.join("wast/exceptions");
    let mut mine: Vec<PathBuf> = std::fs::read_dir(&own)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wast"))
        .collect();
    mine.sort();
    files.extend(mine.into_iter().map(|p| (p, Settings::default())));
    files
}

fn run(isolation: Isolation) {
    let mut failures = Vec::new();
    for (path, settings) in scripts() {
        match wasce_engine::wast::run_file_with(&path, isolation, settings) {
            Ok(outcome) => {
                println!("{}: {} passed, {} failed", path.display(), outcome.passed, outcome.failed);
                for (line, msg) in &outcome.failures {
                    failures.push(format!("{}:{line}: {msg}", path.display()));
                }
                if outcome.passed == 0 {
                    failures.push(format!("{}: no assertion ran", path.display()));
                }
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn exceptions_process_mode() {
    run(Isolation::Process);
}

/// Needs /dev/kvm.
#[test]
fn exceptions_kvm_mode() {
    run(Isolation::Kvm);
}
