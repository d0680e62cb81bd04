//! Snapshots of a store, put back in place (`Store::restore`): what makes a pooled store
//! reusable with nothing of one run visible to the next (see `crate::warm`).
//!
//! A snapshot records everything a guest call can change in a store: the arena's bytes (vmctx
//! blocks, globals, table elements, the fuel cell, the guest WASI data; in the VM the guest
//! can write all of it), each linear memory's size and bytes, the host's records of tables
//! (where their elements live, sizes) and of element and data segments (`elem.drop`,
//! `data.drop`). Restoring writes back only the pages that differ, shrinks memories that grew
//! (taking the grown part out of the guest first, `Vm::shrink`), forgets arena blocks handed out since, and
//! scrubs the VM (FPU/SIMD registers, the touched guest stack pages). Instances, functions and
//! host objects created after the snapshot cannot be taken back: restoring then fails.

use super::Store;
use crate::error::Error;
use crate::memory::WASM_PAGE;

/// The state of a store at one point, for [`Store::restore`]. It belongs to the store it was
/// taken of (it holds addresses of that store's arena).
pub struct StoreSnapshot {
    arena_base: u64,
    arena_mark: u64,
    arena: Vec<u8>,
    memories: Vec<(u64, Vec<u8>)>,
    tables: Vec<(u64, u64, u64)>,
    table_elements: u64,
    shape: [usize; 5],
    segments: Vec<(Vec<Vec<u64>>, Vec<bool>)>,
    stack_limit: u64,
}

impl StoreSnapshot {
    /// Host memory the snapshot holds (bytes).
    pub fn size(&self) -> usize {
        self.arena.len() + self.memories.iter().map(|(_, m)| m.len()).sum::<usize>()
    }
}

impl Store {
    fn shape(&self) -> [usize; 5] {
        [self.funcs.len(), self.memories.len(), self.tables.len(), self.globals.len(), self.instances.len()]
    }

    /// Record this store's state (between calls), for [`Store::restore`].
    pub fn snapshot(&self) -> Result<StoreSnapshot, Error> {
        if self.depth != 0 || !self.pending_maps.is_empty() {
            return Err(Error::Usage("a store can be snapshotted only between calls".into()));
        }
        Ok(StoreSnapshot {
            arena_base: self.arena.base(),
            arena_mark: self.arena.mark(),
            arena: self.arena.bytes(self.arena.exposed()).to_vec(),
            memories: self.memories.iter().map(|m| (m.mem.pages(), m.mem.as_slice().to_vec())).collect(),
            tables: self.tables.iter().map(|t| (t.base as u64, t.len, t.cap)).collect(),
            table_elements: self.table_elements,
            shape: self.shape(),
            segments: self.instances.iter().map(|i| (i.elems.clone(), i.dropped_datas.clone())).collect(),
            stack_limit: self.stack_limit,
        })
    }

    /// Put the store back as it was at `snap` (taken of this store): memories, tables,
    /// globals, every vmctx, the fuel cell and the guest WASI data; in the VM also the
    /// FPU/SIMD registers and the guest stack. Only between calls.
    ///
    /// An error leaves the store unusable (drop it): a memory that grew could not be taken out
    /// of the VM, or the store created objects since the snapshot.
    pub fn restore(&mut self, snap: &StoreSnapshot) -> Result<(), Error> {
        if snap.arena_base != self.arena.base() {
            return Err(Error::Usage("the snapshot is of another store".into()));
        }
        if self.depth != 0 {
            return Err(Error::Usage("a store can be restored only between calls".into()));
        }
        if snap.shape != self.shape() {
            return Err(Error::Usage("the store created instances or objects since the snapshot; it cannot be restored".into()));
        }
        for (i, (pages, bytes)) in snap.memories.iter().enumerate() {
            let (base, size) = (self.memories[i].mem.base() as u64, self.memories[i].mem.size());
            if size < pages * WASM_PAGE {
                return Err(Error::Usage("a memory is smaller than in the snapshot".into()));
            }
            if size > pages * WASM_PAGE {
                // Out of the guest first (the PTEs above, the memslots wholly above), then the
                // host pages above replaced by fresh zero pages (`LinearMemory::shrink_to`). The region keeps its
                // guest-physical range: growing again maps the same addresses.
                if let Some(vm) = self.vm.as_mut() {
                    if let Err(e) = vm.shrink(base, pages * WASM_PAGE) {
                        // Possibly still reachable: keep the memory (never freed) and stop.
                        return Err(Error::Resource(format!("cannot take a grown memory out of the VM: {e}")));
                    }
                }
                let obj = &mut self.memories[i];
                obj.mem.shrink_to(*pages).map_err(|e| Error::Resource(format!("cannot shrink a memory back: {e}")))?;
                // SAFETY: the memory's VMDef is live in the arena (the arena restore below
                // writes the same value back).
                unsafe { (*obj.def).length = obj.mem.size() };
            }
            let data = self.memories[i].mem.as_mut_slice();
            for (d, s) in data.chunks_mut(4096).zip(bytes.chunks(4096)) {
                if d != s {
                    d.copy_from_slice(s);
                }
            }
        }
        for (t, &(base, len, cap)) in self.tables.iter_mut().zip(&snap.tables) {
            t.base = base as *mut u64;
            t.len = len;
            t.cap = cap;
        }
        self.table_elements = snap.table_elements;
        for (inst, (elems, dropped)) in self.instances.iter_mut().zip(&snap.segments) {
            inst.elems.clone_from(elems);
            inst.dropped_datas.clone_from(dropped);
        }
        // The arena last: it holds the memory and table definitions written above.
        self.arena.restore(snap.arena_mark, &snap.arena);
        for t in &mut self.tables {
            t.sync_def();
        }
        for m in &self.memories {
            // SAFETY: the memory's VMDef is live in the arena.
            unsafe {
                debug_assert_eq!((*m.def).base, m.mem.base() as u64);
                (*m.def).length = m.mem.size();
            }
        }
        self.stack_limit = snap.stack_limit;
        self.pending_error = None;
        self.deadline = None;
        self.grow_failures = 0;
        self.flush_maps()?;
        if let Some(vm) = self.vm.as_mut() {
            vm.scrub()?;
        }
        Ok(())
    }

    /// Change the wall-clock limit of each call from the host. In the VM, a limit needs the
    /// watchdog, which exists only if the store was created with a `timeout`.
    pub fn set_timeout(&mut self, timeout: Option<std::time::Duration>) -> Result<(), Error> {
        if timeout.is_some() && self.vm.as_ref().is_none_or(|vm| vm.kicker().is_none()) {
            return Err(Error::Usage("timeouts need a VM store created with a timeout".into()));
        }
        self.config.timeout = timeout;
        Ok(())
    }

    /// Lower (or raise, up to what each memory declares and `StoreConfig::max_memory_pages`)
    /// how far every memory may grow, in pages; `memory.grow` past it fails.
    pub fn set_memory_limit(&mut self, pages: u64) {
        let cap = pages.min(self.config.max_memory_pages);
        for m in &mut self.memories {
            let declared = m.ty.max.unwrap_or(crate::memory::MAX_PAGES);
            m.mem.set_max_pages(cap.min(declared).max(m.mem.pages()));
        }
    }

    /// How many `memory.grow` calls failed (over a limit) since the store was made or last
    /// restored.
    pub fn grow_failures(&self) -> u64 {
        self.grow_failures
    }

    /// Bytes of all linear memories together (they never shrink during a call: after a call,
    /// its peak).
    pub fn memory_bytes(&self) -> u64 {
        self.memories.iter().map(|m| m.mem.size()).sum()
    }
}

/// A reference value that another store can rebuild: a function by its index in the instance.
#[derive(Clone, Debug)]
enum Slot {
    Raw(u128),
    Func(Option<u32>),
}

/// An initialised instance, portable to a fresh store (`Store::instantiate_image`): its
/// memories (contents in sealed memfds, mapped copy-on-write by every store that starts from
/// it), globals, tables and segment state, with function references as function indices. For
/// modules that import no memory, table or global, and whose tables and globals hold no
/// non-null `externref`.
pub struct InstanceImage {
    module: super::Module,
    memories: Vec<(u64, Option<crate::code::MemoryImage>)>,
    globals: Vec<Slot>,
    tables: Vec<Vec<Option<u32>>>,
    elems: Vec<Vec<Slot>>,
    dropped_datas: Vec<bool>,
}

impl InstanceImage {
    pub fn module(&self) -> &super::Module {
        &self.module
    }
}

fn not_portable(what: &str) -> Error {
    Error::Usage(format!("the instance cannot be imaged for another store: {what}"))
}

impl Store {
    /// The function index of reference `addr` in instance `inst`.
    fn func_index(&self, inst: usize, addr: u64) -> Result<Option<u32>, Error> {
        if addr == 0 {
            return Ok(None);
        }
        let data = &self.instances[inst];
        let start = data.vmctx as u64 + data.layout().funcrefs as u64;
        let size = wasce_compiler::vmctx::FUNCREF_SIZE as u64;
        match addr.checked_sub(start) {
            Some(off) if off % size == 0 && off / size < data.funcs.len() as u64 => Ok(Some((off / size) as u32)),
            _ => Err(not_portable("a reference to a function of another instance")),
        }
    }

    fn func_addr(&self, inst: usize, index: Option<u32>) -> u64 {
        let data = &self.instances[inst];
        index.map_or(0, |i| data.vmctx as u64 + data.layout().funcref(i) as u64)
    }

    fn slot_of(&self, inst: usize, value: u128, ty: wasce_compiler::module::WasmType) -> Result<Slot, Error> {
        match ty.as_ref_type() {
            None => Ok(Slot::Raw(value)),
            Some(r) if r.heap.is_func() => Ok(Slot::Func(self.func_index(inst, value as u64)?)),
            Some(_) if value == 0 => Ok(Slot::Raw(0)),
            Some(_) => Err(not_portable("a non-null externref")),
        }
    }

    /// Image `instance` as it is now (between calls), for `instantiate_image` in other stores.
    pub fn instance_image(&self, instance: super::InstanceId) -> Result<InstanceImage, Error> {
        let i = instance.0 as usize;
        let data = &self.instances[i];
        let info = &data.module.compiled.info;
        if info.num_imported_memories + info.num_imported_tables + info.num_imported_globals != 0 {
            return Err(not_portable("it imports a memory, table or global"));
        }
        let mut memories = Vec::new();
        for m in &data.memories {
            let mem = &self.memories[m.0 as usize].mem;
            memories.push((mem.pages(), crate::code::MemoryImage::of_contents(mem.as_slice())?));
        }
        let globals = data.globals.iter().map(|g| {
            let obj = &self.globals[g.0 as usize];
            // SAFETY: global pointers point at live 16-byte slots.
            self.slot_of(i, unsafe { *obj.ptr }, obj.ty.ty)
        }).collect::<Result<Vec<_>, _>>()?;
        let mut tables = Vec::new();
        for t in &data.tables {
            let obj = &self.tables[t.0 as usize];
            let elems = obj.elems().iter().map(|e| match self.slot_of(i, *e as u128, obj.ty.elem)? {
                Slot::Func(f) => Ok(f),
                Slot::Raw(_) => Ok(None),
            }).collect::<Result<Vec<_>, Error>>()?;
            tables.push(elems);
        }
        let elems = data.elems.iter().enumerate().map(|(s, items)| {
            let ty = info.elems[s].ty;
            items.iter().map(|e| self.slot_of(i, *e as u128, ty)).collect::<Result<Vec<_>, _>>()
        }).collect::<Result<Vec<_>, _>>()?;
        Ok(InstanceImage { module: data.module.clone(), memories, globals, tables, elems, dropped_datas: data.dropped_datas.clone() })
    }

    /// Instantiate `image.module` with `imports` and give it the image's state instead of
    /// running its segments and start function: memories are mapped copy-on-write from the
    /// image, globals, tables and segments are set as they were imaged.
    pub fn instantiate_image(&mut self, image: &InstanceImage, imports: &[super::Extern]) -> Result<super::InstanceId, Error> {
        let id = self.instantiate_with(&image.module, imports, false)?;
        let i = id.0 as usize;
        for (k, (pages, img)) in image.memories.iter().enumerate() {
            let m = self.instances[i].memories[k].0 as usize;
            let cur = self.memories[m].mem.pages();
            if *pages > cur && self.memory_grow(id, k as u32, pages - cur) == u64::MAX {
                return Err(Error::Limit(format!("memory {k} cannot grow to the image's {pages} pages")));
            }
            if let Some(img) = img {
                self.memories[m].mem.map_image(img).map_err(|e| Error::Resource(format!("cannot map a memory image: {e}")))?;
            }
        }
        for (k, slot) in image.globals.iter().enumerate() {
            let value = match slot {
                Slot::Raw(v) => *v,
                Slot::Func(f) => self.func_addr(i, *f) as u128,
            };
            let g = self.instances[i].globals[k].0 as usize;
            // SAFETY: global pointers point at live 16-byte slots.
            unsafe { *self.globals[g].ptr = value };
        }
        for (k, elems) in image.tables.iter().enumerate() {
            let t = self.instances[i].tables[k].0 as usize;
            let len = self.tables[t].len;
            if elems.len() as u64 > len && self.table_grow(id, k as u32, elems.len() as u64 - len, 0) == u64::MAX {
                return Err(Error::Limit(format!("table {k} cannot grow to the image's {} elements", elems.len())));
            }
            let addrs: Vec<u64> = elems.iter().map(|f| self.func_addr(i, *f)).collect();
            let table = self.tables[t].elems_mut();
            if table.len() != addrs.len() {
                return Err(Error::Usage(format!("table {k} is larger than in the image")));
            }
            table.copy_from_slice(&addrs);
        }
        let elems = image.elems.iter().map(|items| items.iter().map(|s| match s {
            Slot::Raw(v) => *v as u64,
            Slot::Func(f) => self.func_addr(i, *f),
        }).collect()).collect();
        self.instances[i].elems = elems;
        self.instances[i].dropped_datas.clone_from(&image.dropped_datas);
        self.flush_maps()?;
        Ok(id)
    }
}
