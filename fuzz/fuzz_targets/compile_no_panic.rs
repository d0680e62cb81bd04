//! Arbitrary bytes through validation, compilation and instantiation: none may panic, and a
//! module that compiles instantiates or fails cleanly (a trap or a limit), never otherwise.
//!
//! Imports are satisfied trivially (`wasce_spec_tests::imports`). A start function may loop
//! forever, so a module that has one is instantiated from a fuel-metered compilation.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasce_engine::store::Isolation;
use wasce_engine::{Error, Settings, StoreConfig};
use wasce_spec_tests::imports;

/// Fuel for a start function (one unit per operator).
const FUEL: u64 = 1_000_000;

fuzz_target!(|data: &[u8]| {
    let settings = Settings { parallel: false, ..Settings::default() };
    let Ok(module) = wasce_engine::load(data, &settings) else { return };
    let module = match module.compiled.info.start {
        None => module,
        Some(_) => wasce_engine::load(data, &Settings { consume_fuel: true, ..settings })
            .expect("a module that compiles also compiles with fuel metering"),
    };
    let config = StoreConfig {
        isolation: Isolation::Process,
        max_memory_pages: 1024,
        max_table_elements: 100_000,
        fuel: Some(FUEL),
        ..StoreConfig::default()
    };
    let (mut store, imports) = match imports::store_and_imports(&module, config) {
        Ok(setup) => setup,
        // An imported memory or table above the limits.
        Err(Error::Limit(_)) => return,
        Err(e) => panic!("creating the imports failed: {e}"),
    };
    match imports::instantiate(&mut store, &module, &imports) {
        Ok(_) | Err(Error::Trap(_)) | Err(Error::Limit(_)) => {}
        Err(e) => panic!("instantiation failed with an unexpected error: {e}"),
    }
});
