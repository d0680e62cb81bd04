//! Snapshots of a store, put back in place (`Store::restore`): what makes a pooled store
//! reusable with nothing of one run visible to the next (see `crate::warm`).
//!
//! A snapshot records everything a guest call can change in a store: the arena's bytes (vmctx
//! blocks, globals, table elements, the fuel cell, the guest WASI data; in the VM the guest
//! can write all of it), each linear memory's size and bytes, the host's records of tables
//! (where their elements live, sizes) and of element and data segments (`elem.drop`,
//! `data.drop`). Restoring writes back only the pages that differ, shrinks memories that grew
//! (taking the grown part out of the guest first), forgets arena blocks handed out since, and
//! scrubs the VM (FPU/SIMD registers, the touched guest stack pages). Instances, functions and
//! host objects created after the snapshot cannot be taken back: restoring then fails.

use super::Store;
use crate::error::Error;
use crate::kvm::Perm;
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
            let (base, size, max) = {
                let m = &self.memories[i];
                // The reservation it was first mapped with (whatever `set_memory_limit` did since).
                (m.mem.base() as u64, m.mem.size(), m.ty.max.unwrap_or(crate::memory::MAX_PAGES).min(self.config.max_memory_pages))
            };
            if size < pages * WASM_PAGE {
                return Err(Error::Usage("a memory is smaller than in the snapshot".into()));
            }
            if size > pages * WASM_PAGE {
                // Out of the guest first (its memslots deleted, so no translation is left to
                // the pages given back), then shrunk on the host, then mapped again.
                if !self.unmap_host_range(base) {
                    return Err(Error::Resource("cannot take a grown memory out of the VM".into()));
                }
                let obj = &mut self.memories[i];
                obj.mem.shrink_to(*pages).map_err(|e| Error::Resource(format!("cannot shrink a memory back: {e}")))?;
                // SAFETY: the memory's VMDef is live in the arena (the arena restore below
                // writes the same value back).
                unsafe { (*obj.def).length = obj.mem.size() };
                let reserve = Self::memory_reserve(max).max(WASM_PAGE);
                self.request_map(base, reserve, pages * WASM_PAGE, Perm::ReadWrite);
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
