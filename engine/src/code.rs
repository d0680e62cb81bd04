//! Code memory: a compiled module's image mapped read-execute, and the registry the trap
//! handler consults to turn a faulting PC into a trap.

use crate::error::Error;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use wasce_compiler::CompiledModule;

pub struct CodeMemory {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is immutable (read-execute) after construction.
unsafe impl Send for CodeMemory {}
unsafe impl Sync for CodeMemory {}

impl CodeMemory {
    pub fn new(code: &[u8]) -> Result<CodeMemory, Error> {
        let page = 4096;
        let len = code.len().max(1).div_ceil(page) * page;
        // SAFETY: a fresh anonymous mapping of `len` bytes.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Error::Resource(format!("cannot map code: {}", std::io::Error::last_os_error())));
        }
        let base = base as *mut u8;
        // SAFETY: `code.len() <= len` bytes of the new mapping are written, then it is sealed RX.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), base, code.len());
            if libc::mprotect(base as *mut _, len, libc::PROT_READ | libc::PROT_EXEC) != 0 {
                libc::munmap(base as *mut _, len);
                return Err(Error::Resource("cannot make code executable".into()));
            }
        }
        Ok(CodeMemory { base, len })
    }

    pub fn base(&self) -> usize {
        self.base as usize
    }
}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly our mapping; no registered module refers to it any more.
        unsafe { libc::munmap(self.base as *mut _, self.len) };
    }
}

/// A compiled module loaded into executable memory.
pub struct LoadedModule {
    pub compiled: CompiledModule,
    pub code: CodeMemory,
}

impl LoadedModule {
    pub fn new(compiled: CompiledModule) -> Result<Arc<LoadedModule>, Error> {
        let code = CodeMemory::new(&compiled.code)?;
        let module = Arc::new(LoadedModule { compiled, code });
        register(&module);
        Ok(module)
    }

    pub fn code_base(&self) -> u64 {
        self.code.base() as u64
    }

    pub fn code_range(&self) -> std::ops::Range<usize> {
        self.code.base()..self.code.base() + self.compiled.code.len()
    }
}

impl Drop for LoadedModule {
    fn drop(&mut self) {
        if let Ok(mut reg) = REGISTRY.write() {
            reg.remove(&self.code.base());
        }
    }
}

/// Code start → (end, module). Weak references: the registry never keeps code alive.
static REGISTRY: RwLock<BTreeMap<usize, (usize, std::sync::Weak<LoadedModule>)>> = RwLock::new(BTreeMap::new());

fn register(module: &Arc<LoadedModule>) {
    let r = module.code_range();
    REGISTRY.write().unwrap().insert(r.start, (r.end, Arc::downgrade(module)));
}

/// Read the registry from a signal handler: never blocks on a lock, but waits out a writer on
/// another thread (registration is short). Only a writer on this same thread could hold it
/// forever, and no thread registers code while it runs compiled code.
fn read_registry_from_handler() -> Option<std::sync::RwLockReadGuard<'static, BTreeMap<usize, (usize, std::sync::Weak<LoadedModule>)>>> {
    for _ in 0..100_000_000u32 {
        match REGISTRY.try_read() {
            Ok(guard) => return Some(guard),
            Err(std::sync::TryLockError::WouldBlock) => std::hint::spin_loop(),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
        }
    }
    None
}

/// What the trap handler learns about a PC. Allocation-free; returns `None` if the PC is not
/// in compiled code.
pub fn lookup_trap(pc: usize) -> Option<wasce_compiler::Trap> {
    let reg = read_registry_from_handler()?;
    let (start, (end, module)) = reg.range(..=pc).next_back()?;
    if pc >= *end {
        return None;
    }
    // Upgrading a Weak does not allocate.
    let module = module.upgrade()?;
    module.compiled.trap_at((pc - start) as u32)
}

/// Whether `pc` is inside compiled code; and the function there, for backtraces.
pub fn lookup_func(pc: usize) -> Option<(Arc<LoadedModule>, u32)> {
    let reg = REGISTRY.read().ok()?;
    let (start, (end, module)) = reg.range(..=pc).next_back()?;
    if pc >= *end {
        return None;
    }
    let module = module.upgrade()?;
    let func = module.compiled.func_at((pc - start) as u32)?;
    Some((module, func))
}

pub fn is_wasm_pc(pc: usize) -> bool {
    let Some(reg) = read_registry_from_handler() else { return false };
    matches!(reg.range(..=pc).next_back(), Some((_, (end, _))) if pc < *end)
}
