//! Process mode: compiled code runs on the calling thread. A fault in compiled code is caught by
//! a signal handler, looked up in the trap table and turned into a `Trap`, resuming the host
//! right after the call that entered wasm.

mod enter;
mod signals;

pub use enter::{call_entry, HostSection};

/// Install the trap handlers and this thread's alternate signal stack now (rather than on the
/// first call), so that calling compiled code later needs no `rt_sigaction`, `sigaltstack` or
/// `mmap` (the sandbox confines the thread in between).
pub(crate) fn prepare_thread() {
    signals::ensure_installed();
}
