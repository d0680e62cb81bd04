//! wasm-smith restricted to features wasce implements: WebAssembly 2.0 and the later proposals
//! in `wasce_engine::Features` (wasce rejects the others at validation). Threads and relaxed SIMD
//! are implemented but stay off here: an atomic wait with no timeout blocks without end in a
//! one-thread store, and wasmi (the differential reference) has no threads and its own
//! relaxed-SIMD choices. Generators start from `implemented()` and set their own sizes and
//! policies on top (several memories come from their `max_memories`).

/// wasm-smith's defaults with the WebAssembly 2.0 proposals and extended-const on and every
/// later one off.
pub fn wasm2() -> wasm_smith::Config {
    wasm_smith::Config {
        // WebAssembly 2.0.
        bulk_memory_enabled: true,
        multi_value_enabled: true,
        reference_types_enabled: true,
        saturating_float_to_int_enabled: true,
        sign_extension_ops_enabled: true,
        simd_enabled: true,
        // After 2.0.
        extended_const_enabled: true,
        // Everything else after 2.0.
        compact_imports_enabled: false,
        custom_descriptors_enabled: false,
        custom_page_sizes_enabled: false,
        exceptions_enabled: false,
        gc_enabled: false,
        memory64_enabled: false,
        relaxed_simd_enabled: false,
        shared_everything_threads_enabled: false,
        tail_call_enabled: false,
        threads_enabled: false,
        wide_arithmetic_enabled: false,
        acquire_release_atomics_enabled: false,
        multibyte_array_access_enabled: false,
        ..wasm_smith::Config::default()
    }
}

/// `wasm2()` plus every later proposal wasce implements.
pub fn implemented() -> wasm_smith::Config {
    wasm_smith::Config { memory64_enabled: true, tail_call_enabled: true, ..wasm2() }
}
