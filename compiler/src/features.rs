//! The WebAssembly proposals past 2.0 that wasce implements, as one table: each feature's bit
//! (recorded in artifacts and cache names), its name on the command line (`-W NAME=y|n`, as
//! wasmtime spells them) and the wasmparser features it turns on. Every implemented feature is
//! on by default, so a module that uses it just runs; a disabled one makes such modules
//! invalid. A proposal that is not in the table is not implemented: wasmparser rejects modules
//! that use it.

use wasmparser::WasmFeatures;

macro_rules! features {
    ($( $(#[$doc:meta])* $konst:ident = $bit:literal, $name:literal, $wp:expr; )*) => {
        impl Features {
            $( $(#[$doc])* pub const $konst: Features = Features(1 << $bit); )*

            /// Every implemented feature: name, flag, wasmparser features.
            pub const TABLE: &'static [(&'static str, Features, WasmFeatures)] = &[
                $( ($name, Features::$konst, $wp), )*
            ];
        }
    };
}

/// A set of WebAssembly features beyond 2.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Features(u32);

features! {
    /// 64-bit memory and table indices (memory64 and table64).
    MEMORY64 = 0, "memory64", WasmFeatures::MEMORY64;
    /// More than one memory per module.
    MULTI_MEMORY = 1, "multi-memory", WasmFeatures::MULTI_MEMORY;
    /// Atomics and shared memories (one thread of execution: `translate/atomic.rs`).
    THREADS = 2, "threads", WasmFeatures::THREADS;
    /// Arithmetic and `global.get` in constant expressions.
    EXTENDED_CONST = 3, "extended-const", WasmFeatures::EXTENDED_CONST;
    /// Relaxed SIMD, with deterministic choices (`translate/simd.rs`).
    RELAXED_SIMD = 4, "relaxed-simd", WasmFeatures::RELAXED_SIMD;
    /// `return_call`, `return_call_indirect`, `return_call_ref` (wasm functions use Cranelift's
    /// tail-call convention).
    TAIL_CALL = 5, "tail-call", WasmFeatures::TAIL_CALL;
    /// Typed function references: `(ref null? $t)`, `call_ref`, `br_on_null`, ...
    FUNCTION_REFERENCES = 6, "function-references", WasmFeatures::FUNCTION_REFERENCES;
    /// Exception handling, the standard `exnref` form (`translate/exceptions.rs`).
    EXCEPTIONS = 7, "exceptions", WasmFeatures::EXCEPTIONS;
    /// The legacy exception-handling form (`try`/`catch`/`rethrow`/`delegate`).
    LEGACY_EXCEPTIONS = 9, "legacy-exceptions", WasmFeatures::LEGACY_EXCEPTIONS;
    /// Garbage collection: struct, array and i31 references, casts, recursive and sub types
    /// (`translate/gc.rs`; objects are never freed before their store).
    GC = 8, "gc", WasmFeatures::GC;
}

impl Features {
    pub const NONE: Features = Features(0);

    /// Every implemented feature (the default).
    pub fn all() -> Features {
        Features(Self::TABLE.iter().fold(0, |acc, (_, f, _)| acc | f.0))
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    /// The set with these bits, or `None` if one of them names no implemented feature.
    pub fn from_bits(bits: u32) -> Option<Features> {
        (bits & !Features::all().0 == 0).then_some(Features(bits))
    }

    pub fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn with(self, other: Features, on: bool) -> Features {
        if on { Features(self.0 | other.0) } else { Features(self.0 & !other.0) }
    }

    /// The feature called `name` on the command line.
    pub fn by_name(name: &str) -> Option<Features> {
        Self::TABLE.iter().find(|(n, _, _)| *n == name).map(|(_, f, _)| *f)
    }

    /// Names of the features in this set, in table order.
    pub fn names(self) -> Vec<&'static str> {
        Self::TABLE.iter().filter(|(_, f, _)| self.contains(*f)).map(|(n, _, _)| *n).collect()
    }

    /// What the validator accepts: WebAssembly 2.0 plus these features.
    pub fn wasmparser(self) -> WasmFeatures {
        Self::TABLE.iter().filter(|(_, f, _)| self.contains(*f)).fold(WasmFeatures::WASM2, |acc, (_, _, wp)| acc | *wp)
    }
}

impl Default for Features {
    fn default() -> Self {
        Features::all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_bits_are_distinct_and_round_trip() {
        let mut seen = 0u32;
        for (name, f, _) in Features::TABLE {
            assert_eq!(f.bits().count_ones(), 1, "{name}");
            assert_eq!(seen & f.bits(), 0, "{name} reuses a bit");
            seen |= f.bits();
            assert_eq!(Features::by_name(name), Some(*f));
        }
        assert_eq!(Features::from_bits(seen), Some(Features::all()));
        assert_eq!(Features::from_bits(1 << 31), None);
    }

    #[test]
    fn a_disabled_feature_is_not_validated() {
        let f = Features::all().with(Features::MEMORY64, false);
        assert!(!f.wasmparser().contains(WasmFeatures::MEMORY64));
        assert!(Features::all().wasmparser().contains(WasmFeatures::MEMORY64));
        assert!(f.wasmparser().contains(WasmFeatures::SIMD));
    }
}
