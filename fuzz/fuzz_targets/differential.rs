//! Differential fuzzing: the input drives wasm-smith, and the module it makes runs in wasmi and
//! in wasce (KVM isolation when `/dev/kvm` works, process isolation with guard pages and with
//! explicit bounds checks), through the oracle in `wasce_spec_tests::differential`. Any
//! divergence (results, trap class, exported globals, memory and table state after each step),
//! a module either engine rejects, or a panic is a crash; inconclusive runs (wasmi out of fuel,
//! a stack overflow, a resource limit) are not.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use wasce_spec_tests::differential::{check, generate, kvm_available, Options};

/// wasmi fuel per step (instantiation or call).
const FUEL: u64 = 100_000;

fn options() -> &'static Options {
    static OPTIONS: OnceLock<Options> = OnceLock::new();
    OPTIONS.get_or_init(|| Options { fuel: FUEL, kvm: kvm_available() })
}

fuzz_target!(|data: &[u8]| {
    let Ok(wasm) = generate::module(&mut Unstructured::new(data)) else { return };
    if let Err(divergence) = check(&wasm, options()) {
        let path = std::env::temp_dir().join("wasce-differential-crash.wasm");
        let saved = std::fs::write(&path, &wasm).map_or_else(|e| format!("not saved: {e}"), |()| path.display().to_string());
        panic!("divergence (module {saved}): {divergence}");
    }
});
