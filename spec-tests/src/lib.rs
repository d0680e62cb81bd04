//! The test suites run against wasce: the WebAssembly spec suite (`tests/spec_suite.rs`, through
//! the engine's wast runner) and the robustness tests. The suites' data is read from
//! `../shared` beside the repository; it is never copied in.
//!
//! `suite` runs a set of spec scripts and checks the outcome against an expected-failures file.
//! `smith` is wasm-smith restricted to WebAssembly 2.0; `imports` satisfies any module's imports trivially (for the no-panic tests and fuzz targets);
//! `differential` is the oracle of differential execution against the `wasmi` interpreter, shared
//! by `tests/differential.rs` and the cargo-fuzz targets in `fuzz/`.

pub mod differential;
pub mod imports;
pub mod smith;
pub mod suite;
