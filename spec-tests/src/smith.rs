//! wasm-smith restricted to exactly the features wasce implements: WebAssembly 2.0 and the
//! later proposals in `wasce_engine::Features` (wasce rejects the others at validation).
//! Generators start from `implemented()` and set their own sizes and policies on top (several
//! memories come from their `max_memories`).

/// wasm-smith's defaults with the WebAssembly 2.0 proposals on and every later one off.
pub fn wasm2() -> wasm_smith::Config {
    wasm_smith::Config {
        // WebAssembly 2.0.
        bulk_memory_enabled: true,
        multi_value_enabled: true,
        reference_types_enabled: true,
        saturating_float_to_int_enabled: true,
        sign_extension_ops_enabled: true,
        simd_enabled: true,
        // Everything after 2.0.
        compact_imports_enabled: false,
        custom_descriptors_enabled: false,
        custom_page_sizes_enabled: false,
        exceptions_enabled: false,
        extended_const_enabled: false,
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
    wasm_smith::Config { memory64_enabled: true, ..wasm2() }
}
