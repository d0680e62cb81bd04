//! The GC heap: chunks of the store arena that struct and array objects are bump-allocated
//! from (see the compiler's `translate/gc.rs` for the object and value representation).
//!
//! Compiled code allocates inline from the guest-visible state `{next, end}` (`vmctx::GC_*`)
//! and calls the `GcAlloc` builtin for a new chunk. The host allocates (constant expressions,
//! `array.new_data`/`array.new_elem`) from a chunk of its own, so it never reads the guest's
//! state. Nothing is freed before the store: the heap grows until `max_gc_heap_bytes`, then
//! allocation traps ("GC heap out of memory").
//!
//! Objects are guest data. The host keeps its own record of the chunks, and every object it
//! reads or writes (printing results, `array.init_*`) is checked to lie inside one; what it
//! reads there is treated as untrusted bytes.

use super::{InstanceData, InstanceId, Store};
use crate::error::Error;
use std::collections::BTreeMap;
use wasce_compiler::builtins::{GC_ERR_ARRAY, GC_ERR_MEMORY, GC_ERR_OOM, GC_ERR_TABLE};
use wasce_compiler::module::{CompositeType, StorageType, OBJ_HEADER, OBJ_KIND, OBJ_KIND_ARRAY, OBJ_LENGTH, OBJ_TYPE_ID};
use wasce_compiler::vmctx;

/// Bytes of each chunk (a larger object gets a chunk of its own).
const GC_CHUNK: u64 = 256 * 1024;

/// The store's GC heap.
pub(crate) struct GcHeap {
    /// The guest-visible allocation state (`vmctx::GC_STATE_SIZE` bytes in the arena).
    pub(crate) state: *mut u64,
    /// Chunk start → end.
    chunks: BTreeMap<u64, u64>,
    bytes: u64,
    /// The host's own allocation chunk.
    host_next: u64,
    host_end: u64,
    /// The subtype table cell (`vmctx::GC_TYPES_*`, in the arena), the table's capacity in
    /// entries, and the ids whose displays it holds.
    pub(crate) types_cell: *mut u64,
    types_table: *mut u64,
    types_cap: u64,
    types_done: std::collections::HashSet<u64>,
}

impl GcHeap {
    pub(crate) fn new(state: *mut u64, types_cell: *mut u64) -> GcHeap {
        GcHeap {
            state,
            chunks: BTreeMap::new(),
            bytes: 0,
            host_next: 0,
            host_end: 0,
            types_cell,
            types_table: std::ptr::null_mut(),
            types_cap: 0,
            types_done: std::collections::HashSet::new(),
        }
    }
}

/// What a raw any-hierarchy value is, as far as the host can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnyKind {
    Null,
    I31(i32),
    Host(u32),
    /// An object in the GC heap: its header's kind (`OBJ_KIND_*`) and canonical type id.
    Object { kind: u32, type_id: u64 },
    /// Not a value this store made (an address outside the GC heap, a bad header).
    Unknown,
}

impl Store {
    /// A new chunk of at least `size` bytes: its start, or `None` past `max_gc_heap_bytes`.
    fn gc_chunk(&mut self, size: u64) -> Option<(u64, u64)> {
        let chunk = size.max(GC_CHUNK).next_multiple_of(4096);
        if self.gc.bytes.saturating_add(chunk) > self.config.max_gc_heap_bytes {
            return None;
        }
        let p = self.arena_alloc(chunk, 4096).ok()? as u64;
        // In the VM the new pages are mapped before the guest resumes (or here).
        let _ = self.flush_maps();
        self.gc.bytes += chunk;
        self.gc.chunks.insert(p, p + chunk);
        Some((p, p + chunk))
    }

    /// The `GcAlloc` builtin: a new chunk whose first `size` bytes are the new object; the
    /// guest state then describes the rest. Returns the object's address or `GC_ERR_OOM`.
    pub(crate) fn gc_alloc_builtin(&mut self, size: u64) -> u64 {
        if size < 8 || !size.is_multiple_of(8) {
            return GC_ERR_OOM;
        }
        let Some((p, end)) = self.gc_chunk(size) else { return GC_ERR_OOM };
        // SAFETY: the GC state is a live GC_STATE_SIZE arena block.
        unsafe {
            self.gc.state.add((vmctx::GC_NEXT / 8) as usize).write(p + size);
            self.gc.state.add((vmctx::GC_END / 8) as usize).write(end);
        }
        p
    }

    /// Allocate `size` zeroed bytes for the host, from its own chunk.
    fn gc_alloc_host(&mut self, size: u64) -> Option<u64> {
        let size = size.checked_next_multiple_of(8)?;
        if self.gc.host_end - self.gc.host_next < size {
            let (p, end) = self.gc_chunk(size)?;
            self.gc.host_next = p;
            self.gc.host_end = end;
        }
        let p = self.gc.host_next;
        self.gc.host_next += size;
        Some(p)
    }

    /// The chunk range holding `[addr, addr + len)`, if one does.
    fn gc_range_ok(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else { return false };
        self.gc.chunks.range(..=addr).next_back().is_some_and(|(_, chunk_end)| end <= *chunk_end)
    }

    fn read_u32(&self, addr: u64) -> Option<u32> {
        if !self.gc_range_ok(addr, 4) || !addr.is_multiple_of(4) {
            return None;
        }
        // SAFETY: inside a live chunk of the GC heap (checked above), aligned.
        Some(unsafe { (addr as *const u32).read_volatile() })
    }

    /// Classify a raw any-hierarchy value (results, embedder checks).
    pub fn any_kind(&self, raw: u64) -> AnyKind {
        if raw == 0 {
            return AnyKind::Null;
        }
        if raw & 1 == 1 {
            return AnyKind::I31((raw as u32 as i32) >> 1);
        }
        if raw & 3 == 2 {
            return match u32::try_from((raw >> 2).wrapping_sub(1)) {
                Ok(n) => AnyKind::Host(n),
                Err(_) => AnyKind::Unknown,
            };
        }
        match (self.read_u32(raw + OBJ_TYPE_ID as u64), self.read_u32(raw + OBJ_KIND as u64), self.gc_range_ok(raw, OBJ_HEADER as u64)) {
            (Some(id), Some(kind), true) => AnyKind::Object { kind, type_id: id as u64 },
            _ => AnyKind::Unknown,
        }
    }

    /// Enter these canonical ids (a module's types) in the subtype table compiled code reads for
    /// casts to non-final types. Nothing here is read back from guest-writable memory: the
    /// host's record is `types_done`, `types_cap` and the registry.
    pub(crate) fn gc_register_types(&mut self, ids: &[u64]) -> Result<(), Error> {
        for &id in ids {
            if self.gc.types_done.contains(&id) {
                continue;
            }
            let Some(display) = crate::types::display(id) else { continue };
            if id >= self.gc.types_cap {
                // Grow the table (the old one stays in the arena, unused).
                let cap = (id + 1).next_power_of_two().max(64);
                let table = self.arena_alloc(cap * 8, 8)? as *mut u64;
                // SAFETY: the cell is a live GC_TYPES_SIZE arena block; the old table (if any)
                // is the host's live block of `types_cap` entries, the new one has `cap` >= that.
                unsafe {
                    let old = self.gc.types_table;
                    if !old.is_null() {
                        std::ptr::copy_nonoverlapping(old, table, self.gc.types_cap as usize);
                    }
                    self.gc.types_cell.add((vmctx::GC_TYPES_TABLE / 8) as usize).write(table as u64);
                    self.gc.types_cell.add((vmctx::GC_TYPES_LEN / 8) as usize).write(cap);
                }
                self.gc.types_cap = cap;
                self.gc.types_table = table;
            }
            let rec = self.arena_alloc(8 * (display.len() as u64 + 1), 8)? as *mut u64;
            // SAFETY: a fresh arena block of display.len() + 1 u64s; the host's table has
            // `types_cap` > id entries (grown above).
            unsafe {
                rec.write(display.len() as u64 - 1);
                for (k, s) in display.iter().enumerate() {
                    rec.add(k + 1).write(*s);
                }
                self.gc.types_table.add(id as usize).write(rec as u64);
            }
            self.gc.types_done.insert(id);
        }
        let _ = self.flush_maps();
        Ok(())
    }

    /// Element size and canonical id of array type `ty` of the instance's module.
    fn array_type(inst: &InstanceData, ty: u32) -> Option<(StorageType, u64)> {
        let module = &inst.module;
        match module.compiled.info.type_defs.get(ty as usize)?.composite {
            CompositeType::Array(f) => Some((f.storage, *module.types.ids.get(ty as usize)?)),
            _ => None,
        }
    }

    /// A new array object of `n` elements of `storage` with canonical id `id`: its address,
    /// and the address of its first element.
    fn host_array(&mut self, id: u64, storage: StorageType, n: u64) -> Result<(u64, u64), u64> {
        let len = u32::try_from(n).map_err(|_| GC_ERR_OOM)?;
        let size = (storage.size() as u64).checked_mul(n).and_then(|b| b.checked_add(OBJ_HEADER as u64)).ok_or(GC_ERR_OOM)?;
        let p = self.gc_alloc_host(size).ok_or(GC_ERR_OOM)?;
        // SAFETY: a fresh block of `size` (>= OBJ_HEADER) bytes in the GC heap, 8-aligned.
        unsafe {
            ((p + OBJ_TYPE_ID as u64) as *mut u32).write(id as u32);
            ((p + OBJ_KIND as u64) as *mut u32).write(OBJ_KIND_ARRAY);
            ((p + OBJ_LENGTH as u64) as *mut u32).write(len);
        }
        Ok((p, p + OBJ_HEADER as u64))
    }

    /// `array.new_data`: `n` elements from data segment `seg` at byte `offset`.
    pub(crate) fn array_new_data(&mut self, i: InstanceId, ty: u32, seg: u32, offset: u64, n: u64) -> u64 {
        let inst = &self.instances[i.0 as usize];
        let Some((storage, id)) = Self::array_type(inst, ty) else { return GC_ERR_OOM };
        let bytes = match inst.module.compiled.info.datas.get(seg as usize) {
            Some(_) if inst.dropped_datas.get(seg as usize).copied().unwrap_or(true) => &[][..],
            Some(d) => inst.module.compiled.info.data(d),
            None => return GC_ERR_MEMORY,
        };
        let Some(range) = (storage.size() as u64).checked_mul(n).and_then(|len| super::checked_range(offset, len, bytes.len())) else { return GC_ERR_MEMORY };
        let src = bytes[range].to_vec();
        match self.host_array(id, storage, n) {
            Ok((p, elems)) => {
                // SAFETY: the new array's elements: exactly `src.len()` bytes.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), elems as *mut u8, src.len()) };
                p
            }
            Err(e) => e,
        }
    }

    /// `array.new_elem`: `n` references from element segment `seg` at `offset`.
    pub(crate) fn array_new_elem(&mut self, i: InstanceId, ty: u32, seg: u32, offset: u64, n: u64) -> u64 {
        let inst = &self.instances[i.0 as usize];
        let Some((storage, id)) = Self::array_type(inst, ty) else { return GC_ERR_OOM };
        let Some(items) = inst.elems.get(seg as usize) else { return GC_ERR_TABLE };
        let Some(range) = super::checked_range(offset, n, items.len()) else { return GC_ERR_TABLE };
        let src = items[range].to_vec();
        match self.host_array(id, storage, n) {
            Ok((p, elems)) => {
                for (k, v) in src.iter().enumerate() {
                    // SAFETY: element k of the new array of 8-byte references.
                    unsafe { ((elems + 8 * k as u64) as *mut u64).write(*v) };
                }
                p
            }
            Err(e) => e,
        }
    }

    /// The element storage of array `arr` (`ty`: the static array type) from index `dst` for
    /// `n` elements: the address, after the bounds checks against the header's length, and a
    /// check that the whole array lies in the GC heap.
    fn array_slot(&self, i: InstanceId, ty: u32, arr: u64, dst: u64, n: u64) -> Result<(StorageType, u64), u64> {
        let inst = &self.instances[i.0 as usize];
        let (storage, _) = Self::array_type(inst, ty).ok_or(GC_ERR_ARRAY)?;
        let len = self.read_u32(arr + OBJ_LENGTH as u64).ok_or(GC_ERR_ARRAY)? as u64;
        let es = storage.size() as u64;
        if !self.gc_range_ok(arr, OBJ_HEADER as u64 + len * es) {
            return Err(GC_ERR_ARRAY);
        }
        if dst.checked_add(n).is_none_or(|end| end > len) {
            return Err(GC_ERR_ARRAY);
        }
        Ok((storage, arr + OBJ_HEADER as u64 + dst * es))
    }

    /// `array.init_data` (`ty_seg`: the array type index << 32 | the segment).
    pub(crate) fn array_init_data(&mut self, i: InstanceId, arr: u64, dst: u64, ty_seg: u64, src: u64, n: u64) -> u64 {
        let (ty, seg) = ((ty_seg >> 32) as u32, ty_seg as u32);
        let (storage, at) = match self.array_slot(i, ty, arr, dst, n) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let inst = &self.instances[i.0 as usize];
        let bytes = match inst.module.compiled.info.datas.get(seg as usize) {
            Some(_) if inst.dropped_datas.get(seg as usize).copied().unwrap_or(true) => &[][..],
            Some(d) => inst.module.compiled.info.data(d),
            None => return GC_ERR_MEMORY,
        };
        let Some(range) = (storage.size() as u64).checked_mul(n).and_then(|len| super::checked_range(src, len, bytes.len())) else { return GC_ERR_MEMORY };
        let src = &bytes[range];
        // SAFETY: `at..at + src.len()` is inside the array, inside a GC chunk (array_slot).
        unsafe { std::ptr::copy(src.as_ptr(), at as *mut u8, src.len()) };
        0
    }

    /// `array.init_elem` (`ty_seg`: the array type index << 32 | the segment).
    pub(crate) fn array_init_elem(&mut self, i: InstanceId, arr: u64, dst: u64, ty_seg: u64, src: u64, n: u64) -> u64 {
        let (ty, seg) = ((ty_seg >> 32) as u32, ty_seg as u32);
        let (_, at) = match self.array_slot(i, ty, arr, dst, n) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let inst = &self.instances[i.0 as usize];
        let Some(items) = inst.elems.get(seg as usize) else { return GC_ERR_TABLE };
        let Some(range) = super::checked_range(src, n, items.len()) else { return GC_ERR_TABLE };
        for (k, v) in items[range].iter().enumerate() {
            // SAFETY: element dst + k of the array, inside a GC chunk (array_slot).
            unsafe { ((at + 8 * k as u64) as *mut u64).write_unaligned(*v) };
        }
        0
    }

    /// Allocate a struct or array for a constant expression: `values` raw values in order; an
    /// array of `fill.1` copies of `fill.0` when `fill` is given.
    pub(super) fn gc_new_const(&mut self, inst: &InstanceData, ty: u32, values: &[u128], fill: Option<(u128, u64)>) -> Result<u64, Error> {
        let module = &inst.module;
        let def = module.compiled.info.type_defs.get(ty as usize).ok_or_else(|| Error::Limit(format!("type {ty} is not a GC type")))?;
        let id = *module.types.ids.get(ty as usize).ok_or_else(|| Error::Limit(format!("type {ty} out of range")))?;
        let oom = || Error::Limit("GC heap out of memory (max_gc_heap_bytes)".into());
        let write = |addr: u64, s: StorageType, v: u128| {
            // SAFETY: `addr` is a field of a fresh object in the GC heap, sized for `s`.
            unsafe {
                match s.size() {
                    1 => (addr as *mut u8).write(v as u8),
                    2 => (addr as *mut u16).write_unaligned(v as u16),
                    4 => (addr as *mut u32).write_unaligned(v as u32),
                    8 => (addr as *mut u64).write_unaligned(v as u64),
                    _ => (addr as *mut u128).write_unaligned(v),
                }
            }
        };
        match &def.composite {
            CompositeType::Struct(fields) => {
                let (offsets, size) = wasce_compiler::module::struct_layout(fields);
                let fields = fields.clone();
                let p = self.gc_alloc_host(size as u64).ok_or_else(oom)?;
                // SAFETY: a fresh object of `size` >= OBJ_HEADER bytes.
                unsafe {
                    ((p + OBJ_TYPE_ID as u64) as *mut u32).write(id as u32);
                    ((p + OBJ_KIND as u64) as *mut u32).write(wasce_compiler::module::OBJ_KIND_STRUCT);
                }
                for (k, v) in values.iter().enumerate().take(fields.len()) {
                    write(p + offsets[k] as u64, fields[k].storage, *v);
                }
                Ok(p)
            }
            CompositeType::Array(f) => {
                let f = *f;
                let (v, n) = fill.unwrap_or((0, values.len() as u64));
                let (p, elems) = self.host_array(id, f.storage, n).map_err(|_| oom())?;
                let es = f.storage.size() as u64;
                if fill.is_some() {
                    if v != 0 {
                        for k in 0..n {
                            write(elems + k * es, f.storage, v);
                        }
                    }
                } else {
                    for (k, v) in values.iter().enumerate() {
                        write(elems + k as u64 * es, f.storage, *v);
                    }
                }
                Ok(p)
            }
            CompositeType::Func => Err(Error::Limit(format!("type {ty} is a function type"))),
        }
    }
}
