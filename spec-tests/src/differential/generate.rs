//! Generating modules for differential runs: wasm-smith restricted to what both engines run
//! identically.

use arbitrary::Unstructured;

use super::limits;

/// Loop iterations and calls a module instrumented by `ensure_termination` may make before its
/// own fuel check executes `unreachable` (a deterministic trap in both engines).
const SMITH_FUEL: u32 = 100;

/// The wasm-smith configuration: the WebAssembly 2.0 features wasce implements (MVP, multi-value,
/// bulk memory, reference types, fixed-width SIMD, sign extension, saturating float-to-int,
/// mutable globals), no imports, every item exported, every NaN canonicalised, and memories and
/// tables declared below the limits both engines enforce (so a limit can only be met by a
/// `grow`, where both return -1).
pub fn smith_config(u: &mut Unstructured<'_>) -> arbitrary::Result<wasm_smith::Config> {
    Ok(wasm_smith::Config {
        // Half the modules avoid traps, so calls run further; half do not, so traps get compared.
        disallow_traps: u.arbitrary()?,
        canonicalize_nans: true,
        allow_floats: true,
        // Nothing to import: the module is all there is to compare.
        max_imports: 0,
        max_memories: 3,
        max_tables: 4,
        // A function needs a type: without `min_types`, wasm-smith may generate neither.
        min_types: 1,
        min_funcs: 1,
        max_funcs: 12,
        max_instructions: 200,
        max_nesting_depth: 8,
        max_types: 16,
        max_globals: 10,
        max_data_segments: 4,
        max_element_segments: 4,
        max_elements: 16,
        max_table_elements: limits::MAX_DECLARED_TABLE_ELEMENTS,
        max_memory32_bytes: limits::MAX_DECLARED_MEMORY_PAGES * limits::WASM_PAGE,
        max_memory64_bytes: (limits::MAX_DECLARED_MEMORY_PAGES * limits::WASM_PAGE) as u128,
        export_everything: true,
        ..crate::smith::implemented()
    })
}

/// A module from `u`. Three modules in four get wasm-smith's own termination fuel (a global
/// checked in every loop and function), which makes non-terminating calls trap deterministically
/// rather than end the run as inconclusive; the rest keep their loops as generated.
pub fn module(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let config = smith_config(u)?;
    let terminate = u.ratio(3u8, 4u8)?;
    let mut module = wasm_smith::Module::new(config, u)?;
    if terminate {
        module.ensure_termination(SMITH_FUEL).map_err(|_| arbitrary::Error::IncorrectFormat)?;
    }
    Ok(module.to_bytes())
}
