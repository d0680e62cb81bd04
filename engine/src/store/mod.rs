//! The store: every instance, function, memory, table and global of one isolated program.
//!
//! * `mod.rs`: the objects, host-created externs, exports and accessors.
//! * `instantiate.rs`: filling a vmctx, linking imports, running segments and `start`.
//! * `call.rs`: calling into compiled code in either isolation mode, and turning stops into traps.
//! * `ops.rs`: what compiled code asks of the runtime (the builtins), with every
//!   guest-supplied index, address and length checked.
//!
//! Everything compiled code touches besides linear memory lives in the store's arena, so that
//! in the VM the guest sees exactly that and nothing else of the host.

mod call;
pub(crate) use call::prime_thread_stack;
mod gc;
pub use gc::AnyKind;
mod instantiate;
mod ops;
mod snapshot;
pub use snapshot::{InstanceImage, StoreSnapshot};
#[doc(hidden)]
pub mod testing;

use crate::arena::Arena;
use crate::code::LoadedModule;
use crate::error::Error;
use crate::kvm::{self, MapRequest, PageSize, Perm, Vm};
use crate::memory::{LinearMemory, MAX_PAGES, WASM_PAGE};
use crate::values::Val;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use wasce_compiler::module::{ExportKind, FuncType, GlobalType, MemoryType, TableType};
use wasce_compiler::vmctx::{self, VmctxLayout};

pub use ops::dispatch_builtin;

pub type Module = Arc<LoadedModule>;

/// Where compiled code runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// In a KVM guest at CPL3: the VM boundary, then WebAssembly semantics.
    Kvm,
    /// On the calling thread of this process: WebAssembly semantics only.
    Process,
}

/// How host calls leave the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostcallTransport {
    /// Every host call is a VM exit.
    Exit,
    /// Host calls go through the shared-memory ring served by a host thread; the exit is the
    /// fallback when the server is asleep or slow.
    Ring,
    /// The ring when the machine has more than one CPU, else exits.
    Auto,
}

/// Limits and choices applied to everything a store creates.
///
/// What a store costs the host is bounded by these limits, never by a size a module declares:
/// memories and tables are committed lazily (a declared minimum costs address space, and host
/// memory only where the guest writes), and the limits that multiply (several tables, several
/// instances) have a store-wide bound too.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub isolation: Isolation,
    /// Pages of each linear memory.
    pub max_memory_pages: u64,
    /// Elements of each table.
    pub max_table_elements: u64,
    /// Elements of all the store's tables together, host-created ones included: declaring or
    /// growing past it fails (instantiation with `Error::Limit`, `table.grow` with -1). Eight
    /// bytes of host memory per element, at most, plus what growth leaves behind.
    pub max_table_elements_total: u64,
    /// Bytes of native stack compiled code may use.
    pub max_wasm_stack: usize,
    /// Wall-clock limit of each call from the host (VM only).
    pub timeout: Option<Duration>,
    /// How host calls leave the VM (VM only).
    pub hostcall: HostcallTransport,
    /// Fuel for modules compiled with `Settings::consume_fuel` (one unit per operator);
    /// `None` is unlimited.
    pub fuel: Option<u64>,
    /// Bytes of exception objects the store may hold (in chunks of the store arena, never
    /// freed before the store except for a caught object that was the last thrown); throwing
    /// past it traps.
    pub max_exception_bytes: u64,
    /// Bytes of GC objects (structs and arrays) the store may hold: the GC heap is chunks of
    /// the store arena, never freed before the store; allocating past it traps with "GC heap
    /// out of memory".
    pub max_gc_heap_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            isolation: Isolation::Kvm,
            max_memory_pages: MAX_PAGES,
            max_table_elements: 10_000_000,
            max_table_elements_total: 10_000_000,
            max_wasm_stack: 1 << 20,
            timeout: None,
            hostcall: HostcallTransport::Auto,
            fuel: None,
            max_exception_bytes: 64 << 20,
            max_gc_heap_bytes: 256 << 20,
        }
    }
}

macro_rules! id_type {
    ($($name:ident),*) => {$(
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub(crate) u32);
    )*};
}
id_type!(FuncId, MemoryId, TableId, GlobalId, InstanceId, TagId);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extern {
    Func(FuncId),
    Memory(MemoryId),
    Table(TableId),
    Global(GlobalId),
    /// An exception tag.
    Tag(TagId),
}

/// What a host function sees: the store and the instance it runs for.
pub struct Caller<'a> {
    pub store: &'a mut Store,
    /// The instance that imported the function, when compiled code called it (`None` when the
    /// embedder called it with `Store::call`). A host function always runs for an instance that
    /// imported it: when wasm of another instance calls it through a function reference (a
    /// table, `ref.func`), it still runs for the importer, whose memory it acts on, as the
    /// reference closes over its import.
    pub instance: Option<InstanceId>,
}

pub type HostFn = Arc<dyn Fn(&mut Caller<'_>, &[Val], &mut [Val]) -> Result<(), Error> + Send + Sync>;

enum FuncData {
    Wasm { instance: u32, index: u32, ty: FuncType, type_id: u64 },
    Host { ty: FuncType, f: HostFn },
    /// A host function with an exit-free implementation in the guest runtime (VM only):
    /// `routine` is its guest address, `data` what its context points at; `f` serves the calls
    /// the routine hands back.
    Guest { ty: FuncType, f: HostFn, routine: u64, data: u64 },
}

/// `VMMemoryDef` / `VMTableDef` as compiled code reads them.
#[repr(C)]
pub(crate) struct VMDef {
    pub base: u64,
    pub length: u64,
}

const _: () = assert!(std::mem::size_of::<VMDef>() == vmctx::DEF_SIZE as usize);
const _: () = assert!(wasce_compiler::builtins::Builtin::COUNT as u64 <= wasce_hypercall::HCALL_MAX_BUILTIN);
const _: () = assert!(wasce_compiler::builtins::Builtin::HostCall as u64 == wasce_hypercall::HCALL_HOST_CALL);
const _: () = assert!(wasce_compiler::builtins::Builtin::MemoryFill as u64 == wasce_hypercall::HCALL_MEMORY_FILL);
const _: () = assert!(wasce_compiler::builtins::Builtin::MemoryCopy as u64 == wasce_hypercall::HCALL_MEMORY_COPY);

struct MemoryObj {
    mem: LinearMemory,
    ty: MemoryType,
    /// In the arena: the defining instance's vmctx slot, or a standalone definition.
    def: *mut VMDef,
}

/// A table: elements in the arena (`base`, `len` of `cap`), mirrored in its `VMDef`.
struct TableObj {
    base: *mut u64,
    len: u64,
    cap: u64,
    ty: TableType,
    max: u64,
    def: *mut VMDef,
    /// Defined by a module whose indirect calls make no exception check: only functions that
    /// cannot leave an exception pending may enter it (`TableContract`).
    nothrow: bool,
}

impl TableObj {
    fn elems(&self) -> &[u64] {
        // SAFETY: `base` points at `cap >= len` elements in the arena.
        unsafe { std::slice::from_raw_parts(self.base, self.len as usize) }
    }

    fn elems_mut(&mut self) -> &mut [u64] {
        // SAFETY: as above; `&mut self` gives the host exclusive access while no guest runs it.
        unsafe { std::slice::from_raw_parts_mut(self.base, self.len as usize) }
    }

    fn sync_def(&mut self) {
        // SAFETY: `def` points at this table's VMDef in the arena.
        unsafe {
            (*self.def).base = self.base as u64;
            (*self.def).length = self.len;
        }
    }
}

struct GlobalObj {
    /// A 16-byte slot in the arena.
    ptr: *mut u128,
    ty: GlobalType,
}

/// An exception tag: its type, and (by its index) the identity compiled code compares.
struct TagObj {
    ty: FuncType,
    /// The canonical id of its type (`crate::types`).
    type_id: u64,
}

impl TagId {
    /// The value in vmctx tag slots and exception objects that stands for this tag.
    fn identity(self) -> u64 {
        self.0 as u64 + 1
    }
}

struct InstanceData {
    module: Module,
    vmctx: *mut u8,
    funcs: Vec<FuncId>,
    memories: Vec<MemoryId>,
    tables: Vec<TableId>,
    globals: Vec<GlobalId>,
    tags: Vec<TagId>,
    /// Resolved reference values of each element segment; emptied by `elem.drop`.
    elems: Vec<Vec<u64>>,
    dropped_datas: Vec<bool>,
}

impl InstanceData {
    fn layout(&self) -> VmctxLayout {
        self.module.compiled.layout
    }

    fn read_u64(&self, offset: u32) -> u64 {
        debug_assert!(offset + 8 <= self.layout().size);
        // SAFETY: offsets come from this module's layout, which sized the vmctx.
        unsafe { (self.vmctx.add(offset as usize) as *const u64).read() }
    }

    fn write_u64(&self, offset: u32, v: u64) {
        debug_assert!(offset + 8 <= self.layout().size);
        // SAFETY: as in `read_u64`.
        unsafe { (self.vmctx.add(offset as usize) as *mut u64).write(v) }
    }
}

pub struct Store {
    // The VM drops first: its memslots point into the memory below.
    vm: Option<Box<Vm>>,
    config: StoreConfig,
    arena: Arena,
    funcs: Vec<FuncData>,
    memories: Vec<MemoryObj>,
    tables: Vec<TableObj>,
    globals: Vec<GlobalObj>,
    tags: Vec<TagObj>,
    instances: Vec<InstanceData>,
    /// vmctx address → instance, to identify callers from guest-supplied values.
    /// Looked up on every builtin and host call: FxHash, as `host_imports`.
    vmctx_index: rustc_hash::FxHashMap<u64, u32>,
    /// Import record address → (importing instance, host function): the only names under which
    /// compiled code can call a host function (see `ops::host_call`). A record is the address
    /// of the import's `VMFuncRef` in the importer's vmctx; it is looked up, never dereferenced.
    /// Looked up on every host call, so hashed with FxHash rather than SipHash: the keys are the
    /// host's own addresses, and the guest only ever looks up.
    host_imports: rustc_hash::FxHashMap<u64, (u32, FuncId)>,
    /// Elements of all tables (their current sizes), against `max_table_elements_total`.
    table_elements: u64,
    /// Host memory that could not be taken out of the VM after a failed instantiation: kept
    /// (never freed) for as long as the VM lives. Empty unless KVM refused to delete a memslot.
    quarantine: Vec<Quarantined>,
    /// Code images already mapped into the VM.
    mapped_code: HashSet<u64>,
    /// Mappings the VM still has to make.
    pending_maps: Vec<MapRequest>,
    /// Guest stack range (VM only), for checking guest-passed pointers.
    guest_stack: Option<(u64, u64)>,
    stack_limit: u64,
    /// The store's fuel cell (an i64 in the arena; every vmctx points at it).
    fuel: *mut i64,
    /// The store's exception state (`vmctx::EXN_*`, in the arena; every vmctx points at it),
    /// and the bytes of exception chunks handed out so far.
    exn_state: *mut u64,
    exn_bytes: u64,
    /// The GC heap (`gc.rs`).
    gc: gc::GcHeap,
    /// Nesting depth of host → wasm calls.
    depth: u32,
    /// The error a host function reported, surfaced when its `HostError` trap unwinds.
    pending_error: Option<Error>,
    /// The deadline of the guest call in progress (`config.timeout`), for host functions.
    deadline: Option<std::time::Instant>,
    /// Counters: guest exits (VM) and calls.
    pub(crate) stats: Stats,
    /// `memory.grow` calls refused for a limit since creation or the last restore.
    grow_failures: u64,
}

/// What a store has done, for `--stats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Hypercalls (VM exits) served.
    pub hypercalls: u64,
    /// Host calls served over the ring.
    pub ring_calls: u64,
    pub calls: u64,
}

/// Host memory the guest may still reach, kept alive until the store drops (VM first).
#[allow(dead_code)] // held only to delay the drop
enum Quarantined {
    Memory(LinearMemory),
    Code(Module),
}

// SAFETY: raw pointers in the store point into memory the store owns; it is used by one
// thread at a time (`&mut self` for every operation that runs code).
unsafe impl Send for Store {}

impl Store {
    /// The guest TSC's frequency in this store's VM, if KVM reports it (KVM mode).
    pub(crate) fn vm_tsc_khz(&self) -> Option<u32> {
        self.vm.as_ref().and_then(|vm| vm.tsc_khz())
    }

    pub fn new(config: StoreConfig) -> Result<Store, Error> {
        let arena = Arena::new()?;
        let (vm, guest_stack, stack_limit) = match config.isolation {
            Isolation::Kvm => {
                let ring = match config.hostcall {
                    HostcallTransport::Exit => false,
                    HostcallTransport::Ring => true,
                    HostcallTransport::Auto => std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
                };
                let vm = Vm::new(config.max_wasm_stack as u64, ring, config.timeout.is_some())?;
                // Where KVM does not report the guest TSC's rate, exit-free WASI's clocks need it
                // measured (2 ms, once per process), now, before the host confines itself.
                crate::wasi::prepare_clocks(vm.tsc_khz());
                let (lo, hi) = vm.stack_range();
                (Some(Box::new(vm)), Some((lo, hi)), lo + kvm::STACK_RED_ZONE)
            }
            Isolation::Process => {
                if config.timeout.is_some() {
                    return Err(Error::Usage("timeouts need `--isolation kvm` (process mode cannot interrupt compiled code)".into()));
                }
                (None, None, 0)
            }
        };
        let mut arena = arena;
        let fuel = arena.alloc(8, 8)? as *mut i64;
        // SAFETY: a fresh 8-byte arena slot.
        unsafe { fuel.write(config.fuel.map_or(i64::MAX, |f| f.min(i64::MAX as u64) as i64)) };
        // Zero when handed out: nothing pending, an empty chunk.
        let exn_state = arena.alloc(vmctx::EXN_STATE_SIZE as u64, 16)? as *mut u64;
        // The GC state starts empty (next = end = 0): the first allocation asks for a chunk.
        let gc_state = arena.alloc(vmctx::GC_STATE_SIZE as u64, 8)? as *mut u64;
        // The subtype table starts empty (len 0: every lookup misses).
        let gc_types = arena.alloc(vmctx::GC_TYPES_SIZE as u64, 8)? as *mut u64;
        let mut store = Store {
            vm,
            config,
            arena,
            funcs: Vec::new(),
            memories: Vec::new(),
            tables: Vec::new(),
            globals: Vec::new(),
            tags: Vec::new(),
            instances: Vec::new(),
            vmctx_index: Default::default(),
            host_imports: Default::default(),
            table_elements: 0,
            quarantine: Vec::new(),
            mapped_code: HashSet::new(),
            pending_maps: Vec::new(),
            guest_stack,
            stack_limit,
            fuel,
            exn_state,
            exn_bytes: 0,
            gc: gc::GcHeap::new(gc_state, gc_types),
            depth: 0,
            pending_error: None,
            deadline: None,
            stats: Stats::default(),
            grow_failures: 0,
        };
        let (base, exposed) = (store.arena.base(), store.arena.exposed());
        store.request_map(base, crate::arena::ARENA_RESERVE, exposed, Perm::ReadWrite);
        store.flush_maps()?;
        Ok(store)
    }

    /// The VM's helper threads (ring server, watchdog), for the sandbox to confine.
    pub(crate) fn helper_threads(&self) -> (Option<&kvm::RingServer>, Option<&kvm::Kicker>) {
        match &self.vm {
            Some(vm) => (vm.ring(), vm.kicker()),
            None => (None, None),
        }
    }

    /// Fuel left (meaningful for modules compiled with fuel metering).
    pub fn fuel_remaining(&self) -> u64 {
        // SAFETY: the fuel cell lives in the arena for the store's lifetime.
        unsafe { self.fuel.read() }.max(0) as u64
    }

    /// Set the fuel left.
    pub fn set_fuel(&mut self, fuel: u64) {
        // SAFETY: as above.
        unsafe { self.fuel.write(fuel.min(i64::MAX as u64) as i64) };
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn isolation(&self) -> Isolation {
        self.config.isolation
    }

    /// The deadline of the guest call in progress, when the store has a `timeout` (else None).
    /// A host function that can block or run long must not outlast it: it waits at most until
    /// then, and once it has passed it returns `Error::interrupt()`, which ends the call with
    /// the same trap as the timeout's kick (the kick alone cannot stop a host function).
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.deadline
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.stats;
        stats.ring_calls = self.vm.as_ref().and_then(|vm| vm.ring()).map_or(0, |r| r.served());
        stats
    }

    /// CPU time used by the VM's ring server thread, if it has one.
    pub fn ring_server_cpu_time(&self) -> Option<Duration> {
        self.vm.as_ref().and_then(|vm| vm.ring()).map(|r| r.cpu_time())
    }

    // ---- Guest mappings ------------------------------------------------------------------------

    fn request_map(&mut self, host: u64, reserve: u64, len: u64, perm: Perm) {
        self.request_map_sized(host, reserve, len, perm, PageSize::Small);
    }

    /// Map (the accessible part of) memory `m` of the store: with 2 MiB leaves where they fit.
    fn request_map_memory(&mut self, m: usize) {
        let mem = &self.memories[m].mem;
        let (base, size, reserve) = (mem.base() as u64, mem.size(), Self::memory_reserve(mem.max_pages()).max(WASM_PAGE));
        self.request_map_sized(base, reserve, size, Perm::ReadWrite, PageSize::Huge);
    }

    fn request_map_sized(&mut self, host: u64, reserve: u64, len: u64, perm: Perm, size: PageSize) {
        if self.config.isolation == Isolation::Kvm {
            self.pending_maps.push(MapRequest { host, backing: host, reserve, len, perm, size });
        }
    }

    /// Map a module's code (read-execute, at the host's address of it) over the copy VMs use
    /// (`CodeMemory::guest_pages`).
    fn request_map_code(&mut self, code: &crate::code::CodeMemory) -> Result<(), Error> {
        if self.config.isolation == Isolation::Kvm {
            let len = code.mapped_len() as u64;
            let backing = code.guest_pages()?;
            self.pending_maps.push(MapRequest { host: code.base() as u64, backing, reserve: len, len, perm: Perm::ReadExecute, size: PageSize::Small });
        }
        Ok(())
    }

    /// Allocate from the arena, and record that more of it is exposed to the guest (it is
    /// mapped up to the last page blocks were handed out from, see `Arena`).
    fn arena_alloc(&mut self, size: u64, align: u64) -> Result<*mut u8, Error> {
        let before = self.arena.exposed();
        let p = self.arena.alloc(size, align)?;
        if self.arena.exposed() != before {
            let (base, exposed) = (self.arena.base(), self.arena.exposed());
            self.request_map(base, crate::arena::ARENA_RESERVE, exposed, Perm::ReadWrite);
        }
        Ok(p)
    }

    /// Apply recorded mappings to the VM (when it is not running the guest). On an error the
    /// requests not yet applied stay recorded.
    fn flush_maps(&mut self) -> Result<(), Error> {
        if let Some(vm) = self.vm.as_mut() {
            let mut pending = std::mem::take(&mut self.pending_maps).into_iter();
            while let Some(m) = pending.next() {
                if let Err(e) = vm.map(m) {
                    self.pending_maps = std::iter::once(m).chain(pending).collect();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Take host range `host` out of the guest before it is freed: forget requests to map it
    /// and, if the VM has mapped it, unmap it. Returns false if it may still be mapped (then
    /// the memory must never be freed).
    fn unmap_host_range(&mut self, host: u64) -> bool {
        self.pending_maps.retain(|m| m.host != host);
        match self.vm.as_mut() {
            Some(vm) => vm.unmap(host).is_ok(),
            None => true,
        }
    }

    // ---- Host-created objects -------------------------------------------------------------

    pub fn new_host_func(&mut self, ty: FuncType, f: HostFn) -> FuncId {
        self.funcs.push(FuncData::Host { ty, f });
        FuncId(self.funcs.len() as u32 - 1)
    }

    /// A host function that the guest runtime serves without leaving the VM: `routine` is the
    /// guest address of its implementation, `data` the address of data it reads (see
    /// `wasce_hypercall::WCTX_*`). In process mode this is simply `new_host_func(ty, f)`.
    pub fn new_guest_func(&mut self, ty: FuncType, f: HostFn, routine: u64, data: u64) -> FuncId {
        match self.config.isolation {
            Isolation::Kvm => self.funcs.push(FuncData::Guest { ty, f, routine, data }),
            Isolation::Process => self.funcs.push(FuncData::Host { ty, f }),
        }
        FuncId(self.funcs.len() as u32 - 1)
    }

    /// Copy `bytes` into the store arena (guest-visible, read-write); returns their address.
    pub fn alloc_guest_bytes(&mut self, bytes: &[u8]) -> Result<u64, Error> {
        let p = self.arena_alloc(bytes.len() as u64, 16)?;
        // SAFETY: a fresh arena block of bytes.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
        self.flush_maps()?;
        Ok(p as u64)
    }

    pub fn new_memory(&mut self, ty: MemoryType) -> Result<MemoryId, Error> {
        let def = self.arena_alloc(vmctx::DEF_SIZE as u64, 16)? as *mut VMDef;
        let id = self.add_memory(ty, def)?;
        self.flush_maps()?;
        Ok(id)
    }

    /// A table of `ty` (in canonical form), every element `init`.
    pub fn new_table(&mut self, ty: TableType, init: Val) -> Result<TableId, Error> {
        if !self.val_matches(&init, ty.elem) {
            return Err(Error::Usage(format!("table initial value {init} is not a {}", ty.elem)));
        }
        let def = self.arena_alloc(vmctx::DEF_SIZE as u64, 16)? as *mut VMDef;
        let id = self.add_table(ty, init.to_ref_bits(), def)?;
        self.flush_maps()?;
        Ok(id)
    }

    /// A global of `ty` (in canonical form) holding `value`.
    pub fn new_global(&mut self, ty: GlobalType, value: Val) -> Result<GlobalId, Error> {
        if !self.val_matches(&value, ty.ty) {
            return Err(Error::Usage(format!("global value {value} is not a {}", ty.ty)));
        }
        let ptr = self.arena_alloc(16, 16)? as *mut u128;
        // SAFETY: a fresh 16-byte arena slot.
        unsafe { ptr.write(value.to_slot()) };
        self.globals.push(GlobalObj { ptr, ty });
        self.flush_maps()?;
        Ok(GlobalId(self.globals.len() as u32 - 1))
    }

    fn memory_reserve(max_pages: u64) -> u64 {
        max_pages.min(MAX_PAGES) * WASM_PAGE
    }

    fn add_memory(&mut self, ty: MemoryType, def: *mut VMDef) -> Result<MemoryId, Error> {
        let max = ty.max.unwrap_or(MAX_PAGES).min(self.config.max_memory_pages);
        let mem = LinearMemory::new(ty.min, max, self.config.isolation == Isolation::Kvm)?;
        if let Some(vm) = &self.vm {
            mem.populate_small(vm.flavour().prepopulate_max());
        }
        // SAFETY: `def` is a live VMDef slot in the arena.
        unsafe {
            (*def).base = mem.base() as u64;
            (*def).length = mem.size();
        }
        self.memories.push(MemoryObj { mem, ty, def });
        self.request_map_memory(self.memories.len() - 1);
        Ok(MemoryId(self.memories.len() as u32 - 1))
    }

    /// A table of `ty.min` elements `init`. Its elements are a fresh arena block, which is zero
    /// (null) without being written (see `Arena`): a null table costs host memory only where
    /// elements are set, and its size counts against `max_table_elements_total`.
    fn add_table(&mut self, ty: TableType, init: u64, def: *mut VMDef) -> Result<TableId, Error> {
        let max = ty.max.unwrap_or(u32::MAX as u64).min(self.config.max_table_elements);
        if ty.min > max {
            return Err(Error::Limit(format!("table minimum of {} elements exceeds the limit of {max}", ty.min)));
        }
        let total = self.table_elements.saturating_add(ty.min);
        if total > self.config.max_table_elements_total {
            return Err(Error::Limit(format!(
                "a table of {} elements would bring the store's tables to {total} elements, over the limit of {} (max_table_elements_total)",
                ty.min, self.config.max_table_elements_total
            )));
        }
        let cap = ty.min.max(4);
        let base = self.arena_alloc(cap * 8, 16)? as *mut u64;
        let mut table = TableObj { base, len: ty.min, cap, ty, max, def, nothrow: false };
        if init != 0 {
            table.elems_mut().fill(init);
        }
        table.sync_def();
        self.tables.push(table);
        self.table_elements = total;
        Ok(TableId(self.tables.len() as u32 - 1))
    }

    // ---- Types of externs -----------------------------------------------------------------

    pub fn func_type(&self, f: FuncId) -> &FuncType {
        match &self.funcs[f.0 as usize] {
            FuncData::Wasm { ty, .. } | FuncData::Host { ty, .. } | FuncData::Guest { ty, .. } => ty,
        }
    }

    /// The canonical type id of function `f`.
    pub fn func_type_id(&self, f: FuncId) -> u64 {
        match &self.funcs[f.0 as usize] {
            FuncData::Wasm { type_id, .. } => *type_id,
            FuncData::Host { ty, .. } | FuncData::Guest { ty, .. } => crate::types::type_id(ty),
        }
    }

    /// Whether `v` is a value of `t` (a type in the store's canonical form): for references,
    /// the hierarchy, null only where nullable, and a function reference's type for a
    /// concrete type.
    pub fn val_matches(&self, v: &Val, t: wasce_compiler::module::WasmType) -> bool {
        use wasce_compiler::module::HeapType;
        let Some(r) = t.as_ref_type() else { return v.ty() == t };
        let top = crate::types::top(r.heap);
        match *v {
            // (A null of a concrete type may be spelled as a null funcref by embedders.)
            Val::FuncRef(0) => r.nullable && (top == HeapType::Func || matches!(r.heap, HeapType::Concrete(_))),
            Val::ExternRef(None) => r.nullable && top == HeapType::Extern,
            Val::AnyRef(0) => r.nullable && top == HeapType::Any,
            // Only null: an exception object's address from outside would be trusted by
            // compiled code (objects are made by `throw` only).
            Val::ExnRef(0) => r.nullable && top == HeapType::Exn,
            Val::FuncRef(addr) => match r.heap {
                HeapType::Func => true,
                HeapType::Concrete(id) if top == HeapType::Func => self.funcref_type_id(addr).is_some_and(|f| crate::types::is_subtype(f, id as u64)),
                _ => false,
            },
            Val::ExternRef(Some(_)) => r.heap == HeapType::Extern,
            // Only an i31 can be inside an externalised value the embedder passes.
            Val::ExternAny(raw) => r.heap == HeapType::Extern && raw & 1 == 1,
            // Embedders pass null, i31 and host values; object addresses are refused (compiled
            // code would trust them).
            Val::AnyRef(raw) => match self.any_kind(raw) {
                AnyKind::I31(_) => matches!(r.heap, HeapType::Any | HeapType::Eq | HeapType::I31),
                AnyKind::Host(_) => r.heap == HeapType::Any,
                _ => false,
            },
            _ => false,
        }
    }

    /// The canonical type id of the function reference `addr`, if it is the address of a
    /// `VMFuncRef` in one of this store's instances (embedder-supplied: looked up, checked).
    fn funcref_type_id(&self, addr: u64) -> Option<u64> {
        self.instances.iter().find_map(|inst| {
            let layout = inst.layout();
            let start = inst.vmctx as u64 + layout.funcrefs as u64;
            let n = inst.funcs.len() as u64;
            let off = addr.checked_sub(start)?;
            let size = vmctx::FUNCREF_SIZE as u64;
            (off < n * size && off % size == 0).then(|| inst.read_u64(layout.funcrefs + off as u32 + vmctx::FUNCREF_TYPE_ID))
        })
    }

    pub fn memory_type(&self, m: MemoryId) -> MemoryType {
        let obj = &self.memories[m.0 as usize];
        MemoryType { min: obj.mem.pages(), ..obj.ty }
    }

    pub fn table_type(&self, t: TableId) -> TableType {
        let obj = &self.tables[t.0 as usize];
        TableType { min: obj.len, ..obj.ty }
    }

    pub fn global_type(&self, g: GlobalId) -> GlobalType {
        self.globals[g.0 as usize].ty
    }

    pub fn tag_type(&self, t: TagId) -> &FuncType {
        &self.tags[t.0 as usize].ty
    }

    /// A tag made by the host (as if exported by a module).
    pub fn new_tag(&mut self, ty: FuncType) -> Result<TagId, Error> {
        if !ty.results.is_empty() {
            return Err(Error::Usage("a tag's type has no results".into()));
        }
        let type_id = crate::types::type_id(&ty);
        self.add_tag(ty, type_id)
    }

    /// A tag of type `ty`, whose canonical id is `type_id`.
    pub(crate) fn add_tag(&mut self, ty: FuncType, type_id: u64) -> Result<TagId, Error> {
        if !ty.results.is_empty() {
            return Err(Error::Usage("a tag's type has no results".into()));
        }
        self.tags.push(TagObj { ty, type_id });
        Ok(TagId(self.tags.len() as u32 - 1))
    }

    /// The canonical id of tag `t`'s type (a module's tag: the id of its type in that module,
    /// which may belong to a recursion group; a host tag's type is a group of its own).
    pub fn tag_type_id(&self, t: TagId) -> u64 {
        self.tags[t.0 as usize].type_id
    }
    // ---- Exports ----------------------------------------------------------------------------

    pub fn export(&self, instance: InstanceId, name: &str) -> Option<Extern> {
        let inst = &self.instances[instance.0 as usize];
        let e = inst.module.compiled.info.export(name)?;
        let i = e.index as usize;
        Some(match e.kind {
            ExportKind::Func => Extern::Func(inst.funcs[i]),
            ExportKind::Memory => Extern::Memory(inst.memories[i]),
            ExportKind::Table => Extern::Table(inst.tables[i]),
            ExportKind::Global => Extern::Global(inst.globals[i]),
            ExportKind::Tag => Extern::Tag(inst.tags[i]),
        })
    }

    pub fn exports(&self, instance: InstanceId) -> Vec<(String, Extern)> {
        let inst = &self.instances[instance.0 as usize];
        inst.module.compiled.info.exports.iter().filter_map(|e| Some((e.name.clone(), self.export(instance, &e.name)?))).collect()
    }

    pub fn module(&self, instance: InstanceId) -> &Module {
        &self.instances[instance.0 as usize].module
    }

    pub fn global_get(&self, g: GlobalId) -> Val {
        let obj = &self.globals[g.0 as usize];
        // SAFETY: global pointers point at live 16-byte slots.
        Val::from_slot(obj.ty.ty, unsafe { *obj.ptr })
    }

    pub fn global_set(&mut self, g: GlobalId, v: Val) -> Result<(), Error> {
        let obj = &self.globals[g.0 as usize];
        // (`val_matches`, not type equality: it refuses GC object addresses, which compiled
        // code would trust.)
        if !obj.ty.mutable || !self.val_matches(&v, obj.ty.ty) {
            return Err(Error::Usage("global is immutable or of another type".into()));
        }
        // SAFETY: as in global_get.
        unsafe { *self.globals[g.0 as usize].ptr = v.to_slot() };
        Ok(())
    }

    pub fn memory_data(&self, m: MemoryId) -> &[u8] {
        self.memories[m.0 as usize].mem.as_slice()
    }

    pub fn memory_data_mut(&mut self, m: MemoryId) -> &mut [u8] {
        self.memories[m.0 as usize].mem.as_mut_slice()
    }

    /// The memory a host function should use for the calling instance: its memory 0.
    pub fn instance_memory(&self, instance: InstanceId) -> Option<MemoryId> {
        self.instances[instance.0 as usize].memories.first().copied()
    }

    pub fn table_get(&self, t: TableId, index: u64) -> Option<Val> {
        let obj = &self.tables[t.0 as usize];
        let raw = *obj.elems().get(index as usize)?;
        Some(Val::from_slot(obj.ty.elem, raw as u128))
    }

    pub fn table_size(&self, t: TableId) -> u64 {
        self.tables[t.0 as usize].len
    }
}

/// `start..start+len` if it lies within `size`.
fn checked_range(start: u64, len: u64, size: usize) -> Option<std::ops::Range<usize>> {
    let end = start.checked_add(len)?;
    (end <= size as u64).then_some(start as usize..end as usize)
}

#[cfg(test)]
mod hostile_tests;
