//! Code memory: a compiled module's image in read-execute memory, and the registry the trap
//! handler consults to turn a faulting PC into a trap.
//!
//! Code only ever runs from anonymous memory that this process filled and then made
//! read-execute: never from a file mapping. A `MAP_PRIVATE` mapping of a file keeps following
//! the file for every page the process has not written, so code mapped from an artifact could
//! be rewritten under a running program by anyone able to write the file (a guest whose
//! preopen contains it). An artifact (`LoadedModule::from_artifact`) is read once into memory,
//! its MAC verified under the user's key (`crate::key`), and its code copied out of that one
//! verified copy.
//!
//! A VM does not map those pages: it maps a copy of the code in ordinary read-write memory
//! that the host never executes (`CodeMemory::guest_pages`, made once per module, shared by
//! every VM). KVM fills in its own translations of a guest page together with up to seven
//! neighbours only when the host pages behind them are present and writable (the prefetch of
//! KVM's MMU takes them with `FOLL_WRITE`): over the read-execute pages every 4 KiB of code
//! the guest runs first is a fault of its own (tens of µs each on a nested host), over the
//! copy one fault in eight, provided the code starts on a group of eight pages
//! (`PREFETCH_GROUP`). The guest's page tables map the copy read-execute at the address
//! of the host's code, so the guest sees the same code at the same address and cannot write
//! it; the host never writes the copy after making it.
//!
//! A module whose data segments form a memory image (`wasce_compiler::image`) keeps that image
//! in a sealed memfd (written once, then sealed against any change), which instances map
//! copy-on-write over their memory (`MemoryImage`).

use crate::error::Error;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use wasce_compiler::artifact::{self, ArtifactError};
use wasce_compiler::image::ImagePlan;
use wasce_compiler::module::ModuleInfo;
use wasce_compiler::vmctx::VmctxLayout;
use wasce_compiler::{CompileError, CompiledModule, FuncLoc, Trap};

const PAGE: usize = 4096;
/// The alignment of code (its guest-virtual address is the host's). KVM's shadow MMU fills in
/// the translations of a faulting 4 KiB page's aligned group of eight (`PTE_PREFETCH_NUM`) in
/// order, and stops at the first entry it cannot fill: in the group where code started
/// mid-group, the unmapped page before it stopped every prefetch (measured: a libsodium test's
/// code faulted five times before, twice after).
const PREFETCH_GROUP: usize = 8 * PAGE;

/// A code image in read-execute memory, page-aligned. Unmapped on drop.
pub struct CodeMemory {
    base: *mut u8,
    /// Bytes of code.
    len: usize,
    /// Bytes mapped (`len` rounded up to whole pages, at least one page).
    mapped: usize,
    /// The copy VMs map (`guest_pages`), made on first use.
    guest: std::sync::OnceLock<GuestPages>,
}

/// A copy of a code image in read-write, never executable memory: the pages a VM maps as the
/// code (see the module documentation). Written once when made, never again. Unmapped on drop.
struct GuestPages {
    base: *mut u8,
    mapped: usize,
}

// SAFETY: the mapping is owned by this value and never written after construction.
unsafe impl Send for GuestPages {}
// SAFETY: as above; nothing writes through a shared reference.
unsafe impl Sync for GuestPages {}

impl Drop for GuestPages {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly our mapping; the VMs that mapped it are gone (a store
        // drops its VM before the modules it holds).
        unsafe { libc::munmap(self.base as *mut _, self.mapped) };
    }
}

// SAFETY: the mapping is immutable (read-execute) after construction and owned by this value;
// the VM's copy is made once, behind a `OnceLock`, and never written after.
unsafe impl Send for CodeMemory {}
// SAFETY: as above; through a shared reference nothing is written but the `OnceLock`'s one-time
// initialisation (a fresh mapping published whole).
unsafe impl Sync for CodeMemory {}

impl CodeMemory {
    /// Copy `code` into fresh anonymous memory and make it read-execute.
    pub fn new(code: &[u8]) -> Result<CodeMemory, Error> {
        let len = code.len().max(1).div_ceil(PAGE) * PAGE;
        let base = crate::os::map_anonymous_aligned(len, PREFETCH_GROUP, libc::PROT_READ | libc::PROT_WRITE)
            .map_err(|e| Error::Resource(format!("cannot map code: {e}")))?;
        // SAFETY: `code.len() <= len` bytes of the new, writable mapping are written, then the
        // whole mapping (ours alone) is sealed read-execute, or unmapped on failure.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), base, code.len());
            if libc::mprotect(base as *mut _, len, libc::PROT_READ | libc::PROT_EXEC) != 0 {
                libc::munmap(base as *mut _, len);
                return Err(Error::Resource("cannot make code executable".into()));
            }
        }
        Ok(CodeMemory { base, len: code.len(), mapped: len, guest: std::sync::OnceLock::new() })
    }

    /// The host address of the pages a VM maps as this code: a copy in read-write memory the
    /// host never executes, made on the first call (`mapped_len` bytes, the rest zero).
    pub fn guest_pages(&self) -> Result<u64, Error> {
        if let Some(g) = self.guest.get() {
            return Ok(g.base as u64);
        }
        let base = crate::os::map_anonymous(self.mapped, libc::PROT_READ | libc::PROT_WRITE)
            .map_err(|e| Error::Resource(format!("cannot map code for the VM: {e}")))?;
        // SAFETY: `len <= mapped` bytes are copied from our read-execute mapping into the new
        // one, which nothing else refers to yet.
        unsafe { std::ptr::copy_nonoverlapping(self.base, base, self.len) };
        // Another thread may have made its copy first: then ours is dropped (unmapped).
        let _ = self.guest.set(GuestPages { base, mapped: self.mapped });
        self.guest.get().map(|g| g.base as u64).ok_or_else(|| Error::Resource("cannot map code for the VM".into()))
    }

    /// Bytes mapped (the code rounded up to whole pages).
    pub fn mapped_len(&self) -> usize {
        self.mapped
    }

    pub fn base(&self) -> usize {
        self.base as usize
    }

    /// Bytes of code (the mapping is this rounded up to whole pages).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The code bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes from `base` are mapped readable for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.base, self.len) }
    }
}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly our mapping; no registered module refers to it any more.
        unsafe { libc::munmap(self.base as *mut _, self.mapped) };
    }
}

/// A memory image in a sealed memfd: `plan.len` bytes at `file_offset`, for `plan.offset` in
/// memory 0. Mapped private (copy-on-write) by `LinearMemory::map_image`: instances share the
/// pages until they write them, and nothing an instance writes reaches the file. The seals
/// (no write, grow, shrink or further sealing) mean nobody, not even this process, can change
/// the pages an instance has not written yet.
pub struct MemoryImage {
    file: std::fs::File,
    file_offset: u64,
    pub plan: ImagePlan,
}

impl MemoryImage {
    /// An image held in an anonymous memory file, sealed so that nobody can change it.
    fn in_memfd(plan: ImagePlan, bytes: &[u8]) -> Result<MemoryImage, Error> {
        use std::io::Write;
        use std::os::fd::FromRawFd;
        let err = |what: &str, e: std::io::Error| Error::Resource(format!("cannot {what} a memory image: {e}"));
        // SAFETY: memfd_create with a NUL-terminated name; it returns a new descriptor or -1.
        let fd = unsafe { libc::memfd_create(c"wasce-memory-image".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if fd < 0 {
            return Err(err("create", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        file.write_all(bytes).map_err(|e| err("write", e))?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on a descriptor we own; F_ADD_SEALS takes an int argument.
        if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } != 0 {
            return Err(err("seal", std::io::Error::last_os_error()));
        }
        Ok(MemoryImage { file, file_offset: 0, plan })
    }

    /// An image of `bytes` (a memory's contents) from offset 0, in a sealed memfd that holds
    /// only its non-zero pages (the rest is a hole, which costs nothing); `None` if `bytes` are
    /// all zero.
    pub(crate) fn of_contents(bytes: &[u8]) -> Result<Option<MemoryImage>, Error> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let page = wasce_compiler::image::IMAGE_PAGE as usize;
        let Some(last) = bytes.chunks(page).rposition(|p| p.iter().any(|b| *b != 0)) else { return Ok(None) };
        let len = (last + 1) * page;
        let err = |what: &str, e: std::io::Error| Error::Resource(format!("cannot {what} a memory image: {e}"));
        // SAFETY: memfd_create with a NUL-terminated name; it returns a new descriptor or -1.
        let fd = unsafe { libc::memfd_create(c"wasce-snapshot-image".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if fd < 0 {
            return Err(err("create", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        file.set_len(len as u64).map_err(|e| err("size", e))?;
        use std::os::unix::fs::FileExt;
        for (i, p) in bytes[..len].chunks(page).enumerate() {
            if p.iter().any(|b| *b != 0) {
                file.write_all_at(p, (i * page) as u64).map_err(|e| err("write", e))?;
            }
        }
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on a descriptor we own; F_ADD_SEALS takes an int argument.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(err("seal", std::io::Error::last_os_error()));
        }
        Ok(Some(MemoryImage { file, file_offset: 0, plan: ImagePlan { offset: 0, len: len as u64 } }))
    }

    /// The file and the offset of the image in it.
    pub fn source(&self) -> (&std::fs::File, u64) {
        (&self.file, self.file_offset)
    }
}

/// A compiled module as loaded: `CompiledModule` with its code image in executable memory
/// instead of a byte vector.
pub struct Compiled {
    pub info: ModuleInfo,
    pub layout: VmctxLayout,
    pub code: CodeMemory,
    /// Location of each defined function (index minus imported functions).
    pub funcs: Vec<FuncLoc>,
    /// Entry trampoline of each module type.
    pub entry_trampolines: Vec<FuncLoc>,
    /// Host-call trampoline of each module type.
    pub host_trampolines: Vec<FuncLoc>,
    /// Faulting instructions: (code offset, trap), sorted by offset.
    pub traps: Vec<(u32, Trap)>,
    /// The initial contents of memory 0, to be mapped copy-on-write, if the module has them
    /// as an image.
    pub image: Option<MemoryImage>,
    /// What the code assumes of tables shared with other modules (`Store::instantiate`
    /// enforces it).
    pub tables: wasce_compiler::TableContract,
}

impl Compiled {
    fn new(module: CompiledModule, code: CodeMemory, image: Option<MemoryImage>) -> Compiled {
        let CompiledModule { info, layout, code: _, funcs, entry_trampolines, host_trampolines, traps, consume_fuel: _, tables } = module;
        Compiled { info, layout, code, funcs, entry_trampolines, host_trampolines, traps, image, tables }
    }

    /// The trap recorded for the instruction at `offset`, if any.
    pub fn trap_at(&self, offset: u32) -> Option<Trap> {
        wasce_compiler::trap_at(&self.traps, offset)
    }

    /// The defined function whose code contains `offset` (as a function index).
    pub fn func_at(&self, offset: u32) -> Option<u32> {
        wasce_compiler::func_at(&self.funcs, self.info.num_imported_funcs, offset)
    }
}

/// A compiled module loaded into executable memory.
pub struct LoadedModule {
    pub compiled: Compiled,
    /// The module's types in the store's canonical form (`crate::types`).
    pub types: crate::types::CanonicalTypes,
}

impl LoadedModule {
    /// Load a module compiled in this process: its code is copied into executable memory.
    pub fn new(compiled: CompiledModule) -> Result<Arc<LoadedModule>, Error> {
        let code = CodeMemory::new(&compiled.code)?;
        let image = match ImagePlan::of(&compiled.info) {
            Some(plan) => Some(MemoryImage::in_memfd(plan, &plan.build(&compiled.info))?),
            None => None,
        };
        Self::register_new(Compiled::new(compiled, code, image))
    }

    /// Load an AOT artifact (`wasce compile`) from a file: read it once, then as
    /// `from_artifact_bytes` under this user's key (`crate::key::user_key`).
    pub fn from_artifact(path: &Path) -> Result<Arc<LoadedModule>, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
        let key = crate::key::user_key()?;
        Self::from_artifact_bytes(&bytes, key).map_err(|e| match e {
            Error::Compile(CompileError::Invalid(m)) => Error::Compile(CompileError::Invalid(format!("{}: {m}", path.display()))),
            other => other,
        })
    }

    /// Load an AOT artifact from its bytes: verify its MAC under `key` and decode its metadata
    /// (`artifact::deserialize`), then copy its code into executable memory and its memory
    /// image into a sealed memfd. Nothing is compiled; nothing keeps referring to `bytes`.
    pub fn from_artifact_bytes(bytes: &[u8], key: &artifact::Key) -> Result<Arc<LoadedModule>, Error> {
        let invalid = |e: ArtifactError| Error::Compile(CompileError::Invalid(e.to_string()));
        let artifact = artifact::deserialize(bytes, key).map_err(invalid)?;
        let code = CodeMemory::new(artifact.code)?;
        let image = match artifact.image {
            Some(plan) => Some(MemoryImage::in_memfd(plan, &bytes[artifact.header.image.clone()])?),
            None => None,
        };
        Self::register_new(Compiled::new(artifact.module, code, image))
    }

    fn register_new(compiled: Compiled) -> Result<Arc<LoadedModule>, Error> {
        let types = crate::types::CanonicalTypes::new(&compiled.info)
            .map_err(|e| Error::Compile(CompileError::Invalid(format!("malformed module: {e}"))))?;
        let module = Arc::new(LoadedModule { compiled, types });
        register(&module);
        Ok(module)
    }

    pub fn code_base(&self) -> u64 {
        self.compiled.code.base() as u64
    }

    pub fn code_range(&self) -> std::ops::Range<usize> {
        self.compiled.code.base()..self.compiled.code.base() + self.compiled.code.len()
    }
}

impl Drop for LoadedModule {
    fn drop(&mut self) {
        if let Ok(mut reg) = REGISTRY.write() {
            reg.remove(&self.compiled.code.base());
        }
    }
}

/// Code start → (end, module). Weak references: the registry never keeps code alive.
type Registry = BTreeMap<usize, (usize, std::sync::Weak<LoadedModule>)>;
static REGISTRY: RwLock<Registry> = RwLock::new(BTreeMap::new());

fn register(module: &Arc<LoadedModule>) {
    let r = module.code_range();
    REGISTRY.write().unwrap().insert(r.start, (r.end, Arc::downgrade(module)));
}

/// Read the registry from a signal handler: never blocks on a lock, but waits out a writer on
/// another thread (registration is short). Only a writer on this same thread could hold it
/// forever, and no thread registers code while it runs compiled code.
fn read_registry_from_handler() -> Option<std::sync::RwLockReadGuard<'static, Registry>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The permissions column of this process's mapping that contains `addr`.
    fn perms_at(addr: usize) -> String {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for line in maps.lines() {
            let (range, rest) = line.split_once(' ').unwrap();
            let (lo, hi) = range.split_once('-').unwrap();
            let (lo, hi) = (usize::from_str_radix(lo, 16).unwrap(), usize::from_str_radix(hi, 16).unwrap());
            if (lo..hi).contains(&addr) {
                return rest[..4].to_string();
            }
        }
        panic!("{addr:#x} is not mapped");
    }

    #[test]
    fn the_vm_maps_a_copy_of_the_code_that_the_host_never_executes() {
        let code: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mem = CodeMemory::new(&code).unwrap();
        let guest = mem.guest_pages().unwrap();
        assert_eq!(mem.guest_pages().unwrap(), guest, "made once");
        assert_ne!(guest, mem.base() as u64);
        assert_eq!(mem.mapped_len(), 8192);
        // SAFETY: `guest_pages` maps `mapped_len` readable bytes for as long as `mem` lives.
        let copy = unsafe { std::slice::from_raw_parts(guest as *const u8, mem.mapped_len()) };
        assert_eq!(&copy[..code.len()], &code[..]);
        assert!(copy[code.len()..].iter().all(|b| *b == 0));
        assert_eq!(perms_at(mem.base()), "r-xp", "the host's own code stays read-execute");
        assert_eq!(perms_at(guest as usize), "rw-p", "the copy is never executable in the host");
    }
}
