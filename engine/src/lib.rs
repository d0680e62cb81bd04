//! wasce-engine: loads compiled modules, instantiates and links them in a store, and runs them.
//!
//! * `code` maps code images and finds traps by PC; `memory` is linear memory.
//! * `store` holds instances and implements what compiled code asks of the runtime.
//! * `builtins` is the builtin table of process mode; `process` enters compiled code on the
//!   calling thread and turns faults into traps.
//! * `linker` resolves imports by name.
//! * `wast` runs WebAssembly spec scripts (`wasce wast`, and the spec suite in spec-tests).

pub mod arena;
pub mod builtins;
pub mod code;
pub mod error;
pub mod kvm;
pub mod linker;
pub mod memory;
mod process;
pub mod store;
pub mod types;
pub mod values;
pub mod wasi;
pub mod wast;

pub use code::LoadedModule;
pub use error::{Error, TrapError};
pub use linker::Linker;
pub use store::{Caller, Extern, FuncId, GlobalId, HostFn, InstanceId, Isolation, MemoryId, Module, Stats, Store, StoreConfig, TableId};
pub use values::Val;
pub use wasce_compiler::{module::FuncType, BoundsChecks, Settings, Trap};

/// Compile a WebAssembly binary and load it for execution.
pub fn load(wasm: &[u8], settings: &Settings) -> Result<Module, Error> {
    let compiled = wasce_compiler::compile(wasm, settings)?;
    LoadedModule::new(compiled)
}
