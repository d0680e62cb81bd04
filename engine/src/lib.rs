//! wasce-engine: loads compiled modules, instantiates and links them in a store, and runs them.
//!
//! * `code` maps code images and finds traps by PC; `memory` is linear memory.
//! * `store` holds instances and implements what compiled code asks of the runtime.
//! * `builtins` is the builtin table of process mode; `process` enters compiled code on the
//!   calling thread and turns faults into traps.
//! * `linker` resolves imports by name.
//! * `cache` is the compile cache of `wasce exec` (artifacts keyed by module and compiler).
//! * `key` is the per-user secret that authenticates artifacts and cache entries.
//! * `confined` compiles untrusted modules in a confined worker process, within a time and a
//!   memory bound (`compile_confined`).
//! * `sandbox` confines the host process after setup (no_new_privs, seccomp per thread,
//!   Landlock to the preopens).
//! * `warm` runs a WASI program many times in pooled, snapshot-restored instances (warm
//!   starts: `Prelinked`, `WarmInstance`, `Pool`), what `wasce serve` is built on.
//! * `wast` runs WebAssembly spec scripts (`wasce wast`, and the spec suite in spec-tests).

pub mod arena;
pub mod builtins;
pub mod cache;
pub mod code;
pub mod confined;
pub mod error;
pub mod key;
pub mod kvm;
pub mod linker;
pub mod memory;
mod os;
mod process;
pub mod sandbox;
pub mod store;
pub mod types;
pub mod values;
pub mod wasi;
pub mod warm;
pub mod wast;

pub use code::LoadedModule;
pub use confined::{compile_confined, load_confined, CompileLimits, CompileWorkerError};
pub use error::{Error, TrapError};
pub use linker::Linker;
pub use store::{InstanceImage, StoreSnapshot, Caller, Extern, FuncId, GlobalId, HostFn, HostcallTransport, InstanceId, Isolation, MemoryId, Module, Stats, Store, StoreConfig, TableId};
pub use values::Val;
pub use wasce_compiler::{module::FuncType, BoundsChecks, Features, Settings, Trap};

/// Compile a WebAssembly binary in this process and load it for execution. For modules you do
/// not trust, use [`load_confined`] (a confined worker process, bounded in time and memory).
pub fn load(wasm: &[u8], settings: &Settings) -> Result<Module, Error> {
    let compiled = wasce_compiler::compile(wasm, settings)?;
    LoadedModule::new(compiled)
}

/// Compile a WebAssembly binary into an AOT artifact (the bytes of a `.cwasm` file) for this
/// host, authenticated under this user's key (`key::user_key`), to be loaded later with
/// `load_artifact`.
pub fn compile_to_artifact(wasm: &[u8], settings: &Settings) -> Result<Vec<u8>, Error> {
    let compiled = wasce_compiler::compile(wasm, settings)?;
    artifact_of(&compiled, settings)
}

/// The AOT artifact (the bytes of a `.cwasm` file) of a module compiled with `settings`, e.g.
/// by [`compile_confined`], authenticated under this user's key (`key::user_key`).
pub fn artifact_of(compiled: &wasce_compiler::CompiledModule, settings: &Settings) -> Result<Vec<u8>, Error> {
    wasce_compiler::artifact::serialize(compiled, settings, key::user_key()?)
        .map_err(|e| Error::Compile(wasce_compiler::CompileError::Isa(e.to_string())))
}

/// Load an AOT artifact written by `compile_to_artifact` (`wasce compile`), without compiling:
/// the file is read once, its MAC verified under this user's key (so a file changed by anyone
/// without the key, a guest included, is refused), its metadata checked, and its code copied
/// into executable memory. A truncated, corrupted, foreign or incompatible (other wasce
/// version, other ISA) artifact is an error.
pub fn load_artifact(path: impl AsRef<std::path::Path>) -> Result<Module, Error> {
    LoadedModule::from_artifact(path.as_ref())
}

/// Whether `bytes` start like an AOT artifact (rather than WebAssembly binary or text).
pub fn is_artifact(bytes: &[u8]) -> bool {
    wasce_compiler::artifact::is_artifact(bytes)
}
