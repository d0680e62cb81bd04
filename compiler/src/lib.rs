//! wasce-compiler: WebAssembly 2.0 to x86-64.
//!
//! `compile` validates a module with wasmparser, translates every function body to Cranelift IR
//! (`translate`), compiles the bodies in parallel, and links them with per-type trampolines into
//! one position-independent code image (`CompiledModule`). The image contains no host address:
//! calls between functions are PC-relative, everything else is reached through the vmctx
//! (`vmctx`), and runtime services through the builtin table (`builtins`). Faulting instructions
//! are listed in the trap table (`trap`).

pub mod artifact;
pub mod builtins;
mod compile;
pub mod features;
pub mod image;
pub mod module;
mod parse;
pub mod trampoline;
mod translate;
pub mod trap;
pub mod vmctx;

pub use features::Features;
pub use compile::{compile, func_at, isa_description, trap_at, CompiledModule, FuncLoc};
pub use translate::{TableContract, ThrowDeps};
pub use module::ModuleInfo;
pub use trap::Trap;

/// How linear-memory accesses are kept in bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoundsChecks {
    /// 8 GiB of reserved address space per memory: accesses are never checked, a stray one
    /// faults in the guard region.
    GuardPages,
    /// Every access is compared with the memory's current length.
    Explicit,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub bounds_checks: BoundsChecks,
    /// Compile function bodies on all cores.
    pub parallel: bool,
    /// Meter execution: every operator costs one unit of the store's fuel, checked at function
    /// entry and loop headers; running out traps with `OutOfFuel`.
    pub consume_fuel: bool,
    /// The proposals past WebAssembly 2.0 that modules may use (all implemented ones by default).
    pub features: Features,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { bounds_checks: BoundsChecks::GuardPages, parallel: true, consume_fuel: false, features: Features::all() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The module failed validation or decoding; the message carries the byte offset.
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("code generation failed in function {func}: {message}")]
    Codegen { func: u32, message: String },
    #[error("no code generator for this host: {0}")]
    Isa(String),
}
