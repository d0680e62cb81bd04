//! The vmctx: the one block of per-instance data compiled code reaches (its first argument).
//! Compiled code holds no host address; everything outside a function body is found from here.
//!
//! ```text
//! offset                       contents
//! 0   STACK_LIMIT              u64: lowest stack address a wasm frame may use
//! 8   BUILTINS                 u64: address of the builtin function table ([u64; Builtin::COUNT])
//! 16                           reserved (the host identifies a caller by its vmctx address,
//!                              never by a field the guest could overwrite)
//! 24  FUEL                     u64: address of the store's fuel cell (i64, remaining fuel)
//! 32  INTERRUPT                u64: non-zero asks running code to stop (reserved)
//! 40  EXN                      u64: address of the store's exception state (`EXN_*` below)
//! 48  GC_HEAP                  u64: address of the store's GC allocation state (`GC_*` below)
//! 56  GC_TYPES                 u64: address of the store's subtype table cell (`GC_TYPES_*`)
//! 64  memories[nmems]          16 bytes: imported = {*VMMemoryDef, 0}; defined = {base, length}
//! ..  globals[nglobals]        16 bytes: imported = {*value, 0};       defined = value
//! ..  tables[ntables]          16 bytes: imported = {*VMTableDef, 0};  defined = {base, length}
//! ..  funcrefs[nfuncs]         VMFuncRef (24 bytes): {code, vmctx, type_id}, imports first
//! ..  type_ids[ntypes]         u64 each: store-canonical id of each module type
//! ..  tags[ntags]              u64 each: the store-wide identity of each tag (imports first)
//! ```
//!
//! The hottest fields come first, as in wasmtime's `VMOffsets`: a memory's base and a global
//! (C's stack pointer) are read in most functions, and below 128 bytes from the vmctx their
//! loads take a one-byte displacement (an instruction 3 bytes shorter); then imported
//! functions (the first funcrefs), called for every WASI call.
//!
//! Exceptions (see `translate/exceptions.rs`): the store's exception state is
//! `{pending, next, end}`. `pending` is the address of the exception being thrown (0 when none);
//! `next..end` is the free part of the current allocation chunk. An exception object is
//! `{tag identity, size}` followed by one 16-byte slot per payload value; an `exnref` is its
//! address. All of it is guest data: the host never trusts it.

use crate::module::ModuleInfo;

pub const STACK_LIMIT: u32 = 0;
pub const BUILTINS: u32 = 8;
pub const FUEL: u32 = 24;
pub const INTERRUPT: u32 = 32;
pub const EXN: u32 = 40;
pub const GC_HEAP: u32 = 48;
pub const GC_TYPES: u32 = 56;
pub const HEADER_SIZE: u32 = 64;

/// The store's subtype table (what `GC_TYPES` points at): `{table, len}`, where `table` is an
/// array of `len` u64s indexed by canonical type id, each 0 or the address of that type's
/// display: `u64 depth`, then `depth + 1` u64 canonical ids, its supertypes from the root of
/// its chain down to itself. A cast to a non-final type of depth `d` succeeds for type id `t`
/// when `display(t)[d]` is the target's id. Filled by the host for every type of every
/// instance before the instance runs; guest data (the host never reads it back).
pub const GC_TYPES_TABLE: u32 = 0;
pub const GC_TYPES_LEN: u32 = 8;
pub const GC_TYPES_SIZE: u32 = 16;

/// The store's GC allocation state (what `GC_HEAP` points at): `next..end` is the free part of
/// the current chunk of the GC heap. Objects are bump-allocated from it by compiled code; the
/// `GcAlloc` builtin hands out a new chunk. Guest data: the host never trusts it.
pub const GC_NEXT: u32 = 0;
pub const GC_END: u32 = 8;
pub const GC_STATE_SIZE: u32 = 16;


/// The store's exception state (what `EXN` points at).
pub const EXN_PENDING: u32 = 0;
pub const EXN_NEXT: u32 = 8;
pub const EXN_END: u32 = 16;
pub const EXN_STATE_SIZE: u32 = 24;

/// An exception object: header, then `EXN_SLOT` bytes per payload value.
pub const EXN_TAG: u32 = 0;
/// The object's size in bytes while it may be reclaimed; 0 once an `exnref` to it exists.
pub const EXN_SIZE: u32 = 8;
pub const EXN_HEADER: u32 = 16;
pub const EXN_SLOT: u32 = 16;

/// Size of one tag slot in the vmctx.
pub const TAG_SIZE: u32 = 8;

/// Bytes of an exception object with `n` payload values.
pub fn exn_object_size(n: usize) -> u32 {
    EXN_HEADER + EXN_SLOT * n as u32
}

/// `VMFuncRef`: what a funcref value points at (tables hold these addresses).
pub const FUNCREF_CODE: u32 = 0;
pub const FUNCREF_VMCTX: u32 = 8;
pub const FUNCREF_TYPE_ID: u32 = 16;
pub const FUNCREF_SIZE: u32 = 24;

/// `VMMemoryDef` and `VMTableDef`: base address and current length (bytes / elements).
pub const DEF_BASE: u32 = 0;
pub const DEF_LENGTH: u32 = 8;
pub const DEF_SIZE: u32 = 16;

/// Size of one global slot (large enough for a v128).
pub const GLOBAL_SIZE: u32 = 16;
/// Size of one table element (a funcref address or an externref handle; null is 0).
pub const TABLE_ELEM_SIZE: u32 = 8;

const _: () = assert!(HEADER_SIZE >= INTERRUPT + 8 && HEADER_SIZE >= EXN + 8 && HEADER_SIZE >= GC_TYPES + 8);
const _: () = assert!(HEADER_SIZE.is_multiple_of(16) && FUNCREF_SIZE.is_multiple_of(8) && DEF_SIZE.is_multiple_of(16) && GLOBAL_SIZE.is_multiple_of(16));

/// The offsets of one module's vmctx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmctxLayout {
    pub type_ids: u32,
    pub funcrefs: u32,
    pub memories: u32,
    pub tables: u32,
    pub globals: u32,
    pub tags: u32,
    pub size: u32,
}

impl VmctxLayout {
    pub fn new(module: &ModuleInfo) -> VmctxLayout {
        let memories = HEADER_SIZE;
        let globals = memories + DEF_SIZE * module.memories.len() as u32;
        let tables = globals + GLOBAL_SIZE * module.globals.len() as u32;
        let funcrefs = tables + DEF_SIZE * module.tables.len() as u32;
        let type_ids = funcrefs + FUNCREF_SIZE * module.funcs.len() as u32;
        let tags = type_ids + 8 * module.types.len() as u32;
        let size = align16(tags + TAG_SIZE * module.tags.len() as u32);
        VmctxLayout { type_ids, funcrefs, memories, tables, globals, tags, size }
    }

    pub fn type_id(&self, ty: u32) -> u32 {
        self.type_ids + 8 * ty
    }

    pub fn funcref(&self, func: u32) -> u32 {
        self.funcrefs + FUNCREF_SIZE * func
    }

    pub fn memory(&self, mem: u32) -> u32 {
        self.memories + DEF_SIZE * mem
    }

    pub fn table(&self, table: u32) -> u32 {
        self.tables + DEF_SIZE * table
    }

    pub fn global(&self, global: u32) -> u32 {
        self.globals + GLOBAL_SIZE * global
    }

    pub fn tag(&self, tag: u32) -> u32 {
        self.tags + TAG_SIZE * tag
    }
}

fn align16(x: u32) -> u32 {
    (x + 15) & !15
}
