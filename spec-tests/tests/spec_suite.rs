//! The official WebAssembly 2.0 spec suite (`../shared/testsuite/*.wast`, 147 scripts) run
//! against wasce with WebAssembly 2.0 features only. Prints a per-file table and totals, and
//! fails on any result that differs from `expected-failures.txt` (an unlisted failure, or a
//! listed assertion that now passes).

use wasce_engine::{Features, Isolation, Settings};
use wasce_spec_tests::suite::{self, Group};

#[test]
fn spec_suite_process_mode() {
    run_suite(Isolation::Process);
}

/// Needs /dev/kvm: without it every script fails with an error saying KVM is not available.
#[test]
fn spec_suite_kvm_mode() {
    run_suite(Isolation::Kvm);
}

fn run_suite(isolation: Isolation) {
    let base = suite::testsuite_dir();
    let scripts = suite::scripts_in(&base);
    assert_eq!(scripts.len(), 147, "expected the 147 top-level scripts of the 2.0 suite");
    // The 2.0 scripts assume 2.0: some assert that what a later proposal allows is invalid.
    let settings = Settings { features: Features::NONE, ..Settings::default() };
    let run = suite::run(&[Group { scripts, base, settings }], isolation);
    suite::check(&run, isolation, &suite::repo_root().join("spec-tests/expected-failures.txt"), "spec suite 2.0");
    assert!(run.percent() >= 99.5);
}
