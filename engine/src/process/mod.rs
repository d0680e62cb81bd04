//! Process mode: compiled code runs on the calling thread. A fault in compiled code is caught by
//! a signal handler, looked up in the trap table and turned into a `Trap`, resuming the host
//! right after the call that entered wasm.

mod enter;
mod signals;

pub use enter::call_entry;
