//! The WebAssembly 3.0 spec suite (`../shared/testsuite/proposals/wasm-3.0`, with its `legacy/`
//! exception-handling scripts) with every implemented feature, and the threads proposal's
//! scripts (`proposals/threads`) with the features that proposal is written against (2.0 plus
//! threads: it predates multi-memory and asserts that a second memory is invalid).
//!
//! Each run must match `expected-failures-3.0.txt` exactly: every assertion wasce fails is
//! listed there with its reason, and a listed assertion that passes fails the test until it is
//! removed. The percentage is printed; the goal is the whole suite.

use wasce_engine::{Features, Isolation, Settings};
use wasce_spec_tests::suite::{self, Group};

#[test]
fn proposals_suite_process_mode() {
    run_suites(Isolation::Process);
}

/// Needs /dev/kvm: without it every script fails with an error saying KVM is not available.
#[test]
fn proposals_suite_kvm_mode() {
    run_suites(Isolation::Kvm);
}

fn run_suites(isolation: Isolation) {
    let base = suite::testsuite_dir().join("proposals");
    let wasm3 = base.join("wasm-3.0");
    let mut scripts = suite::scripts_in(&wasm3);
    assert!(scripts.len() >= 130, "expected the wasm-3.0 scripts in {}", wasm3.display());
    scripts.extend(suite::scripts_in(&wasm3.join("legacy")));
    let threads = suite::scripts_in(&base.join("threads"));
    assert!(!threads.is_empty(), "expected the threads scripts in {}", base.join("threads").display());
    let threads_features = Features::THREADS;
    let groups = [
        Group { scripts, base: base.clone(), settings: Settings::default() },
        Group { scripts: threads, base: base.clone(), settings: Settings { features: threads_features, ..Settings::default() } },
    ];
    let run = suite::run(&groups, isolation);
    suite::check(&run, isolation, &suite::repo_root().join("spec-tests/expected-failures-3.0.txt"), "spec suite 3.0 + threads");
}
