//! The engine's errors: one type at the embedding boundary.

use wasce_compiler::{CompileError, Trap};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// An import could not be satisfied.
    #[error("{0}")]
    Link(String),
    /// Execution trapped.
    #[error("{0}")]
    Trap(TrapError),
    /// A WebAssembly exception was thrown and not caught.
    #[error("uncaught WebAssembly exception")]
    Exception,
    /// A configured limit was exceeded.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The host could not provide a resource (memory mapping, VM, ...).
    #[error("{0}")]
    Resource(String),
    /// A host function failed.
    #[error("{0}")]
    Host(String),
    /// The program asked to exit (WASI `proc_exit`).
    #[error("exit with status {0}")]
    Exit(i32),
    /// The host could not confine itself (`crate::sandbox`).
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// The artifact key (`crate::key`) could not be loaded or created.
    #[error(transparent)]
    Key(#[from] crate::key::KeyError),
    /// A confined compile (`crate::confined`) ran out of its bounds, was stopped by its
    /// sandbox, or its worker failed.
    #[error(transparent)]
    CompileWorker(#[from] crate::confined::CompileWorkerError),
    /// The caller misused the API (wrong argument count or type, unknown export).
    #[error("{0}")]
    Usage(String),
}

/// A trap with the wasm backtrace (innermost first) at the time it happened.
#[derive(Debug, Clone)]
pub struct TrapError {
    pub trap: Trap,
    pub backtrace: Vec<String>,
}

impl std::fmt::Display for TrapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wasm trap: {}", self.trap.message())
    }
}

impl Error {
    /// The timeout's trap (`Trap::Interrupt`), for a host function whose call passed its
    /// deadline (`Store::deadline`); the backtrace is filled in where the guest called it.
    pub fn interrupt() -> Error {
        Error::Trap(TrapError { trap: Trap::Interrupt, backtrace: Vec::new() })
    }

    /// The trap, if this error is one.
    pub fn trap(&self) -> Option<Trap> {
        match self {
            Error::Trap(t) => Some(t.trap),
            _ => None,
        }
    }
}
