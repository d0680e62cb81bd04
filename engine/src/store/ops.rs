//! What compiled code asks of the runtime. `dispatch_builtin` is the one entry for both
//! transports (process-mode builtin functions and VM hypercalls). Every argument is
//! guest-controlled: indices are looked up with `get`, ranges checked with `checked_range`,
//! and failures become status codes, never panics.

use super::{checked_range, FuncData, InstanceId, Store};
use crate::error::Error;
use crate::values::Val;
use smallvec::SmallVec;
use wasce_compiler::builtins::Builtin;
use wasce_compiler::{vmctx, Trap};

/// Run builtin `number` for the instance whose vmctx is `vmctx`, with arguments `args`
/// (after the vmctx). Returns the builtin's result; unknown callers or numbers fail.
pub fn dispatch_builtin(store: &mut Store, number: u64, vmctx: u64, a: [u64; 5]) -> u64 {
    const FAIL: u64 = u64::MAX;
    let Some(&id) = store.vmctx_index.get(&vmctx) else { return FAIL };
    let i = InstanceId(id);
    let Some(&builtin) = Builtin::ALL.get(number as usize) else { return FAIL };
    let status = |r: Result<(), Trap>| r.is_err() as u64;
    // Indices and lengths are full 64-bit values (memory64 and table64); compiled code
    // zero-extends 32-bit ones, and every range is checked against the host's record anyway.
    let (u32a, u32b) = (a[0] as u32, a[1] as u32);
    match builtin {
        Builtin::MemoryGrow => store.memory_grow(i, u32a, a[1]),
        Builtin::MemoryFill => match store.memory_by_def(i, a[0]) {
            Some(m) => status(store.memory_fill(i, m, a[1], a[2], a[3])),
            None => 1,
        },
        Builtin::MemoryCopy => match (store.memory_by_def(i, a[0]), store.memory_by_def(i, a[1])) {
            (Some(d), Some(s)) => status(store.memory_copy(i, d, s, a[2], a[3], a[4])),
            _ => 1,
        },
        Builtin::MemoryInit => status(store.memory_init(i, u32a, u32b, a[2], a[3], a[4])),
        Builtin::DataDrop => {
            store.data_drop(i, u32a);
            0
        }
        Builtin::TableGrow => store.table_grow(i, u32a, a[1], a[2]),
        Builtin::TableFill => status(store.table_fill(i, u32a, a[1], a[2], a[3])),
        Builtin::TableCopy => status(store.table_copy(i, u32a, u32b, a[2], a[3], a[4])),
        Builtin::TableInit => status(store.table_init(i, u32a, u32b, a[2], a[3], a[4])),
        Builtin::ElemDrop => {
            store.elem_drop(i, u32a);
            0
        }
        Builtin::HostCall => store.host_call(a[0], a[1]),
        Builtin::MemoryAtomicWait => store.atomic_wait(a[0] as i64),
        Builtin::ExnAlloc => store.exn_alloc(a[0]),
        Builtin::GcAlloc => store.gc_alloc_builtin(a[0]),
        Builtin::ArrayNewData => store.array_new_data(i, u32a, u32b, a[2] as u32 as u64, a[3] as u32 as u64),
        Builtin::ArrayNewElem => store.array_new_elem(i, u32a, u32b, a[2] as u32 as u64, a[3] as u32 as u64),
        Builtin::ArrayInitData => store.array_init_data(i, a[0], a[1] as u32 as u64, a[2], a[3] as u32 as u64, a[4] as u32 as u64),
        Builtin::ArrayInitElem => store.array_init_elem(i, a[0], a[1] as u32 as u64, a[2], a[3] as u32 as u64, a[4] as u32 as u64),
    }
}

/// Bytes of the chunks exception objects are allocated from: the first is `EXN_CHUNK_MIN`,
/// each later one as large as all before it, up to `EXN_CHUNK_MAX` (so a program that keeps
/// many makes few calls to the host); a larger object gets its own.
const EXN_CHUNK_MIN: u64 = 64 * 1024;
const EXN_CHUNK_MAX: u64 = 4 << 20;

impl Store {
    /// The `ExnAlloc` builtin: a new chunk for exception objects, holding a first object of
    /// `size` bytes, whose address it returns (0 with the store's pending error set when the
    /// store's exception bytes would pass `max_exception_bytes`). The state's `next`/`end`
    /// then describe the rest of the chunk. Nothing is read from guest-writable memory.
    fn exn_alloc(&mut self, size: u64) -> u64 {
        // The largest object: a tag of the most parameters wasmparser accepts, plus the header.
        const MAX_OBJECT: u64 = 1 << 20;
        if size == 0 || size > MAX_OBJECT || !size.is_multiple_of(16) {
            self.pending_error = Some(Error::Limit(format!("bad exception object size {size}")));
            return 0;
        }
        let left = self.config.max_exception_bytes.saturating_sub(self.exn_bytes);
        let chunk = self.exn_bytes.clamp(EXN_CHUNK_MIN, EXN_CHUNK_MAX).min(left & !15).max(size);
        if chunk > left {
            self.pending_error = Some(Error::Limit(format!(
                "exception objects would take more than {} bytes (max_exception_bytes); they are kept until the store ends",
                self.config.max_exception_bytes
            )));
            return 0;
        }
        let p = match self.arena_alloc(chunk, 16) {
            Ok(p) => p as u64,
            Err(e) => {
                self.pending_error = Some(e);
                return 0;
            }
        };
        // In the VM the new pages are mapped before the guest resumes (the hypercall path
        // applies pending maps); in process mode they are simply there.
        if self.vm.is_none() {
            let _ = self.flush_maps();
        }
        self.exn_bytes += chunk;
        // SAFETY: the exception state is a live arena block of EXN_STATE_SIZE bytes.
        unsafe {
            self.exn_state.add((vmctx::EXN_NEXT / 8) as usize).write(p + size);
            self.exn_state.add((vmctx::EXN_END / 8) as usize).write(p + chunk);
        }
        p
    }
}

impl Store {
    /// The `MemoryAtomicWait` builtin: compiled code has checked the address and found the
    /// expected value, and in a one-thread store nothing can notify, so this only sleeps for
    /// `timeout` nanoseconds (negative: without end), cut short by the call's deadline. Returns
    /// 0 when the timeout has passed; 1 when the deadline passed first, with the timeout's
    /// interrupt as the pending error (the call ends with that trap).
    fn atomic_wait(&mut self, timeout: i64) -> u64 {
        let mut deadline = crate::wasi::deadline::Deadline::default();
        deadline.begin(self.deadline);
        let wait = u64::try_from(timeout).map_or(std::time::Duration::MAX, std::time::Duration::from_nanos);
        match deadline.sleep(wait) {
            Ok(()) => 0,
            Err(_) => {
                self.pending_error = Some(Error::interrupt());
                1
            }
        }
    }

    /// The `HostCall` builtin: run the host function named by `record`, with arguments and
    /// results in the value array at `values`.
    ///
    /// `record` is what the host-call trampoline got as its callee vmctx: the address of an
    /// import record, the `VMFuncRef` of a host-function import in the importing instance's
    /// vmctx. The host accepts it only if it is in its own index of the import records of
    /// live instances, and then takes the function and the instance it runs for from that
    /// index, never from guest memory. So a host function that no instance imported cannot be
    /// called at all, and a host function never runs for an instance that did not import it.
    ///
    /// The boundary: compiled code of all instances of a store shares one VM (one address
    /// space), and raw ring-3 code in it can read every vmctx, so it can name any live import
    /// record of any instance of the store; the call then runs for that record's importer, with
    /// its memory, which that code could reach anyway. Modules that must not share host
    /// functions belong in different stores (different VMs).
    fn host_call(&mut self, record: u64, values: u64) -> u64 {
        let Some(&(importer, func)) = self.host_imports.get(&record) else { return 1 };
        let (ty, f) = match self.funcs.get(func.0 as usize) {
            Some(FuncData::Host { ty, f } | FuncData::Guest { ty, f, .. }) => (ty, f),
            _ => return 1,
        };
        let f = f.clone();
        let (nparams, nresults) = (ty.params.len(), ty.results.len());
        let nslots = nparams.max(nresults).max(1);
        // In the VM the array is on the guest stack: check it is, before touching it.
        if let Some((lo, hi)) = self.guest_stack {
            let len = 16 * nslots as u64;
            if values < lo || !values.is_multiple_of(16) || values.checked_add(len).is_none_or(|e| e > hi) {
                return 1;
            }
        }
        // SAFETY: the host-call trampoline passes an array with a slot per param and result,
        // inside the guest stack (checked above) or on this thread's stack (process mode).
        let slots = unsafe { std::slice::from_raw_parts_mut(values as *mut u128, nslots) };
        // Every WASI call comes through here: the arguments, then room for the results, on the
        // stack for the usual arity (no allocation).
        let mut vals: SmallVec<[Val; 10]> = SmallVec::new();
        vals.reserve(nparams + nresults);
        for (t, s) in ty.params.iter().zip(slots.iter()) {
            vals.push(Val::from_slot(*t, *s));
        }
        for t in &ty.results {
            vals.push(Val::null(*t));
        }
        let (args, results) = vals.split_at_mut(nparams);
        // A panicking host function is the run's error, not the host's end: on the ring server
        // it would otherwise leave the server dead, and in process mode it would unwind
        // through compiled code.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(&mut super::Caller { store: &mut *self, instance: Some(InstanceId(importer)) }, args, results)
        }));
        let r = r.unwrap_or_else(|panic| {
            let what = panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("");
            Err(Error::Host(format!("a host function panicked: {what}")))
        });
        match r {
            Ok(()) if results.iter().zip(&self.func_type(func).results).any(|(r, t)| !self.val_matches(r, *t)) => {
                let ty = self.func_type(func);
                self.pending_error = Some(Error::Host(format!("a host function returned values that do not match its type {ty}")));
                1
            }
            Ok(()) => {
                for (slot, r) in slots.iter_mut().zip(results.iter()) {
                    *slot = r.to_slot();
                }
                0
            }
            Err(e) => {
                self.pending_error = Some(e);
                1
            }
        }
    }

    /// The index (in `instance`) of the memory whose definition is at `def` (a guest-supplied
    /// address: only ever compared, never dereferenced).
    fn memory_by_def(&self, instance: InstanceId, def: u64) -> Option<u32> {
        let inst = self.instances.get(instance.0 as usize)?;
        inst.memories.iter().position(|m| self.memories[m.0 as usize].def as u64 == def).map(|i| i as u32)
    }

    fn memory_index(&self, instance: InstanceId, mem: u32) -> Option<usize> {
        let id = *self.instances.get(instance.0 as usize)?.memories.get(mem as usize)?;
        Some(id.0 as usize)
    }

    fn table_index(&self, instance: InstanceId, table: u32) -> Option<usize> {
        let id = *self.instances.get(instance.0 as usize)?.tables.get(table as usize)?;
        Some(id.0 as usize)
    }

    pub(crate) fn memory_grow(&mut self, instance: InstanceId, mem: u32, delta: u64) -> u64 {
        let Some(m) = self.memory_index(instance, mem) else { return u64::MAX };
        let obj = &mut self.memories[m];
        let Some(old) = obj.mem.grow(delta) else {
            self.grow_failures += 1;
            return u64::MAX;
        };
        // SAFETY: the memory's VMDef is live in the arena.
        unsafe { (*obj.def).length = obj.mem.size() };
        self.request_map_memory(m);
        if self.vm.is_some() {
            // Not inside a guest call: map now (inside one, the VM maps before resuming).
            if self.flush_maps().is_err() {
                return u64::MAX;
            }
        }
        old
    }

    pub(crate) fn memory_fill(&mut self, instance: InstanceId, mem: u32, dst: u64, val: u64, len: u64) -> Result<(), Trap> {
        let m = self.memory_index(instance, mem).ok_or(Trap::MemoryOutOfBounds)?;
        let data = self.memories[m].mem.as_mut_slice();
        let range = checked_range(dst, len, data.len()).ok_or(Trap::MemoryOutOfBounds)?;
        data[range].fill(val as u8);
        Ok(())
    }

    pub(crate) fn memory_copy(&mut self, instance: InstanceId, dst_mem: u32, src_mem: u32, dst: u64, src: u64, len: u64) -> Result<(), Trap> {
        let s = self.memory_index(instance, src_mem).ok_or(Trap::MemoryOutOfBounds)?;
        let d = self.memory_index(instance, dst_mem).ok_or(Trap::MemoryOutOfBounds)?;
        let (src_base, src_size) = (self.memories[s].mem.base(), self.memories[s].mem.size() as usize);
        let (dst_base, dst_size) = (self.memories[d].mem.base(), self.memories[d].mem.size() as usize);
        let sr = checked_range(src, len, src_size).ok_or(Trap::MemoryOutOfBounds)?;
        let dr = checked_range(dst, len, dst_size).ok_or(Trap::MemoryOutOfBounds)?;
        // SAFETY: both ranges were checked against their memories' accessible sizes; `copy`
        // allows overlap.
        unsafe { std::ptr::copy(src_base.add(sr.start), dst_base.add(dr.start), sr.len()) };
        Ok(())
    }

    pub(crate) fn memory_init(&mut self, instance: InstanceId, mem: u32, data: u32, dst: u64, src: u64, len: u64) -> Result<(), Trap> {
        let inst = self.instances.get(instance.0 as usize).ok_or(Trap::MemoryOutOfBounds)?;
        let module = inst.module.clone();
        let seg = module.compiled.info.datas.get(data as usize).ok_or(Trap::MemoryOutOfBounds)?;
        let bytes = if inst.dropped_datas[data as usize] { &[][..] } else { module.compiled.info.data(seg) };
        let s = checked_range(src, len, bytes.len()).ok_or(Trap::MemoryOutOfBounds)?;
        let m = self.memory_index(instance, mem).ok_or(Trap::MemoryOutOfBounds)?;
        let target = self.memories[m].mem.as_mut_slice();
        let d = checked_range(dst, len, target.len()).ok_or(Trap::MemoryOutOfBounds)?;
        target[d].copy_from_slice(&bytes[s]);
        Ok(())
    }

    pub(crate) fn data_drop(&mut self, instance: InstanceId, data: u32) {
        if let Some(d) = self.instances.get_mut(instance.0 as usize).and_then(|i| i.dropped_datas.get_mut(data as usize)) {
            *d = true;
        }
    }

    /// `table.grow`: -1 past the table's limit or the store-wide one. New null elements are
    /// not written where they are already zero, so growth costs host memory only for elements
    /// that hold something.
    pub(crate) fn table_grow(&mut self, instance: InstanceId, table: u32, delta: u64, init: u64) -> u64 {
        let Some(t) = self.table_index(instance, table) else { return u64::MAX };
        let (old, cap, max) = (self.tables[t].len, self.tables[t].cap, self.tables[t].max);
        let Some(new) = old.checked_add(delta).filter(|n| *n <= max) else { return u64::MAX };
        let Some(total) = self.table_elements.checked_add(delta).filter(|n| *n <= self.config.max_table_elements_total) else {
            return u64::MAX;
        };
        if new > cap {
            let new_cap = new.max(cap * 2).min(max.max(new));
            let Ok(base) = self.arena_alloc(new_cap * 8, 16) else { return u64::MAX };
            let base = base as *mut u64;
            let old_base = self.tables[t].base;
            // SAFETY: the live elements, and the new block (zero, `new_cap >= old` elements),
            // are distinct arena blocks. Null elements are not copied: the new block is zero.
            unsafe {
                for i in 0..old as usize {
                    let v = old_base.add(i).read();
                    if v != 0 {
                        base.add(i).write(v);
                    }
                }
            }
            // Not inside a guest call: map the new block now (inside one, the VM maps it before
            // resuming). The table moves only once its new block is in the guest.
            if self.vm.is_some() && self.flush_maps().is_err() {
                return u64::MAX;
            }
            let old_cap = self.tables[t].cap;
            self.tables[t].base = base;
            self.tables[t].cap = new_cap;
            self.arena.release(old_base as *mut u8, old_cap * 8);
        }
        let obj = &mut self.tables[t];
        obj.len = new;
        // Elements past the old size are zero unless a guest in the VM wrote them (it can write
        // the whole arena): make them `init`, writing only what differs.
        for e in &mut obj.elems_mut()[old as usize..] {
            if *e != init {
                *e = init;
            }
        }
        obj.sync_def();
        self.table_elements = total;
        old
    }

    pub(crate) fn table_fill(&mut self, instance: InstanceId, table: u32, dst: u64, val: u64, len: u64) -> Result<(), Trap> {
        let t = self.table_index(instance, table).ok_or(Trap::TableAccessOutOfBounds)?;
        let elems = self.tables[t].elems_mut();
        let r = checked_range(dst, len, elems.len()).ok_or(Trap::TableAccessOutOfBounds)?;
        elems[r].fill(val);
        Ok(())
    }

    pub(crate) fn table_copy(&mut self, instance: InstanceId, dst_t: u32, src_t: u32, dst: u64, src: u64, len: u64) -> Result<(), Trap> {
        let s = self.table_index(instance, src_t).ok_or(Trap::TableAccessOutOfBounds)?;
        let d = self.table_index(instance, dst_t).ok_or(Trap::TableAccessOutOfBounds)?;
        let sr = checked_range(src, len, self.tables[s].len as usize).ok_or(Trap::TableAccessOutOfBounds)?;
        let dr = checked_range(dst, len, self.tables[d].len as usize).ok_or(Trap::TableAccessOutOfBounds)?;
        // No temporary copy (it would cost the host up to a whole table per call).
        // SAFETY: both ranges were checked against their tables' sizes; `copy` allows overlap
        // (the same table).
        unsafe { std::ptr::copy(self.tables[s].base.add(sr.start), self.tables[d].base.add(dr.start), sr.len()) };
        Ok(())
    }

    pub(crate) fn table_init(&mut self, instance: InstanceId, table: u32, elem: u32, dst: u64, src: u64, len: u64) -> Result<(), Trap> {
        let t = self.table_index(instance, table).ok_or(Trap::TableAccessOutOfBounds)?;
        let inst = self.instances.get(instance.0 as usize).ok_or(Trap::TableAccessOutOfBounds)?;
        let items = inst.elems.get(elem as usize).ok_or(Trap::TableAccessOutOfBounds)?;
        let s = checked_range(src, len, items.len()).ok_or(Trap::TableAccessOutOfBounds)?;
        let elems = self.tables[t].elems_mut();
        let d = checked_range(dst, len, elems.len()).ok_or(Trap::TableAccessOutOfBounds)?;
        elems[d].copy_from_slice(&items[s]);
        Ok(())
    }

    pub(crate) fn elem_drop(&mut self, instance: InstanceId, elem: u32) {
        if let Some(e) = self.instances.get_mut(instance.0 as usize).and_then(|i| i.elems.get_mut(elem as usize)) {
            e.clear();
        }
    }
}
