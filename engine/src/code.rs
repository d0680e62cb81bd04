//! Code memory: a compiled module's image mapped read-execute, and the registry the trap
//! handler consults to turn a faulting PC into a trap.
//!
//! An image is either copied into anonymous memory (a module compiled in this process) or
//! mapped straight from an AOT artifact file (`LoadedModule::from_artifact`): no compilation,
//! no copy, and the page cache shares it between processes. Either way the code starts on a
//! page boundary and is read-execute, and the module is registered for trap lookup by PC.
//!
//! A module whose data segments form a memory image (`wasce_compiler::image`) keeps that image
//! in a file, which instances map copy-on-write over their memory (`MemoryImage`): the
//! artifact's own image section, or a sealed memfd for a module compiled in this process.

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

/// Where a code image's pages come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeSource {
    /// Copied into an anonymous private mapping.
    Anonymous,
    /// Mapped privately from an artifact file (clean page-cache pages, never written).
    File,
}

/// A code image in read-execute memory, page-aligned. Unmapped on drop.
pub struct CodeMemory {
    base: *mut u8,
    /// Bytes of code.
    len: usize,
    /// Bytes mapped (`len` rounded up to whole pages, at least one page).
    mapped: usize,
    source: CodeSource,
}

// SAFETY: the mapping is immutable (read-execute) after construction and owned by this value.
unsafe impl Send for CodeMemory {}
// SAFETY: as above; nothing can write through a shared reference.
unsafe impl Sync for CodeMemory {}

impl CodeMemory {
    /// Copy `code` into fresh anonymous memory and make it read-execute.
    pub fn new(code: &[u8]) -> Result<CodeMemory, Error> {
        let len = code.len().max(1).div_ceil(PAGE) * PAGE;
        let base = crate::os::map_anonymous(len, libc::PROT_READ | libc::PROT_WRITE)
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
        Ok(CodeMemory { base, len: code.len(), mapped: len, source: CodeSource::Anonymous })
    }

    /// Make the pages of `file` from `offset` (page-aligned) to the end of the file the code
    /// image, read-execute, taking them over from the file mapping: the rest of it is unmapped.
    /// On failure the mapping is given back untouched.
    fn from_file_mapping(file: FileMapping, offset: usize) -> Result<CodeMemory, (FileMapping, std::io::Error)> {
        debug_assert!(offset.is_multiple_of(PAGE) && offset < file.len);
        let mapped = file.mapped() - offset;
        // SAFETY: `offset` is page-aligned and inside the file mapping, which we own; its tail
        // [offset, mapped end) becomes the code. The file is opened read-only and mapped
        // private, so PROT_EXEC needs no write access and nothing can write these pages.
        let base = unsafe { file.base.add(offset) };
        // SAFETY: see above; mprotect only changes the protection of pages we own.
        if unsafe { libc::mprotect(base as *mut _, mapped, libc::PROT_READ | libc::PROT_EXEC) } != 0 {
            return Err((file, std::io::Error::last_os_error()));
        }
        // SAFETY: unmapping the head of our own file mapping ([base, base + offset)), which
        // nothing refers to any more (the metadata was decoded into owned values).
        unsafe { libc::munmap(file.base as *mut _, offset) };
        let code = CodeMemory { base, len: file.len - offset, mapped, source: CodeSource::File };
        std::mem::forget(file); // its remaining pages now belong to `code`
        Ok(code)
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

    pub fn source(&self) -> CodeSource {
        self.source
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

/// A whole file mapped read-only and private; unmapped on drop.
struct FileMapping {
    base: *mut u8,
    /// Bytes of file.
    len: usize,
}

impl FileMapping {
    fn open(file: &std::fs::File, len: usize) -> std::io::Result<FileMapping> {
        use std::os::fd::AsRawFd;
        // SAFETY: a new read-only private mapping of `len` (> 0) bytes of an open file; it
        // does not overlap any existing memory.
        let base = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(FileMapping { base: base as *mut u8, len })
    }

    fn mapped(&self) -> usize {
        self.len.div_ceil(PAGE) * PAGE
    }

    /// The file's bytes.
    ///
    /// As with any file mapping, another process that writes the file while it is mapped
    /// changes what is seen here; an artifact is trusted like an executable and must not be
    /// rewritten in place while loaded (`wasce compile` replaces files by renaming).
    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes from `base` are mapped readable for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.base, self.len) }
    }
}

impl Drop for FileMapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly our own mapping; the borrowed `bytes()` cannot outlive it.
        unsafe { libc::munmap(self.base as *mut _, self.mapped()) };
    }
}

/// A memory image in a file: `plan.len` bytes at `file_offset`, for `plan.offset` in memory 0.
/// Mapped private (copy-on-write) by `LinearMemory::map_image`: instances share the file's
/// pages until they write them, and nothing an instance writes reaches the file.
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
}

impl Compiled {
    fn new(module: CompiledModule, code: CodeMemory, image: Option<MemoryImage>) -> Compiled {
        let CompiledModule { info, layout, code: _, funcs, entry_trampolines, host_trampolines, traps, consume_fuel: _ } = module;
        Compiled { info, layout, code, funcs, entry_trampolines, host_trampolines, traps, image }
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
}

impl LoadedModule {
    /// Load a module compiled in this process: its code is copied into executable memory.
    pub fn new(compiled: CompiledModule) -> Result<Arc<LoadedModule>, Error> {
        let code = CodeMemory::new(&compiled.code)?;
        let image = match ImagePlan::of(&compiled.info) {
            Some(plan) => Some(MemoryImage::in_memfd(plan, &plan.build(&compiled.info))?),
            None => None,
        };
        Ok(Self::register_new(Compiled::new(compiled, code, image)))
    }

    /// Load an AOT artifact (`wasce compile`): map the file, verify it and decode its metadata,
    /// then map its code section read-execute straight from the file. Nothing is compiled or
    /// copied (except on a file system mounted `noexec`, where the code is copied instead).
    pub fn from_artifact(path: &Path) -> Result<Arc<LoadedModule>, Error> {
        let invalid = |e: ArtifactError| Error::Compile(CompileError::Invalid(format!("{}: {e}", path.display())));
        let io = |what: &str, e: std::io::Error| Error::Resource(format!("cannot {what} {}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
        let len = file.metadata().map_err(|e| io("read", e))?.len();
        if len == 0 {
            return Err(invalid(ArtifactError::NotAnArtifact));
        }
        let len = usize::try_from(len).map_err(|_| io("map", std::io::ErrorKind::FileTooLarge.into()))?;
        let mapping = FileMapping::open(&file, len).map_err(|e| io("map", e))?;

        let artifact = artifact::deserialize(mapping.bytes()).map_err(invalid)?;
        let code_range = artifact.header.code.clone();
        // The file stays open for instances to map the image from (mappings outlive renames).
        let image = artifact.image.map(|plan| MemoryImage { file, file_offset: artifact.header.image.start as u64, plan });
        let module = artifact.module;
        let code = if code_range.is_empty() {
            drop(mapping);
            CodeMemory::new(&[])?
        } else {
            match CodeMemory::from_file_mapping(mapping, code_range.start) {
                Ok(code) => code,
                // A `noexec` file system refuses executable file mappings: copy the code.
                Err((mapping, e)) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                    CodeMemory::new(&mapping.bytes()[code_range])?
                }
                Err((_, e)) => return Err(io("map the code of", e)),
            }
        };
        Ok(Self::register_new(Compiled::new(module, code, image)))
    }

    fn register_new(compiled: Compiled) -> Arc<LoadedModule> {
        let module = Arc::new(LoadedModule { compiled });
        register(&module);
        module
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
