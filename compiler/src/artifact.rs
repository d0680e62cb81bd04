//! AOT artifacts (`.cwasm`): a compiled module written to a file, to be loaded later without
//! compiling, with its code section mapped straight from the file.
//!
//! ```text
//! offset  size  field (all integers little-endian)
//! 0       9     magic "WASCE\0AOT"
//! 9       3     zero
//! 12      4     u32 format version (FORMAT_VERSION)
//! 16      32    MAC: keyed BLAKE3 (the user's artifact key) of bytes [0, 16) and [48, end)
//! 48      8     u64 length of the whole file
//! 56      16    u64 offset, u64 length of the metadata section
//! 72      16    u64 offset, u64 length of the data section (4096-aligned)
//! 88      16    u64 offset, u64 length of the memory-image section (4096-aligned)
//! 104     16    u64 offset, u64 length of the code section (4096-aligned, ends the file)
//! 120           str compiler version (CARGO_PKG_VERSION), str ISA description
//!               (`isa_description()`: target triple, then the enabled ISA flags),
//!               u8 settings (bit 0 explicit bounds checks, bit 1 fuel metering),
//!               u32 features the module was validated with (`Features` bits)
//! meta          ModuleInfo (types, imports, functions, tables, memories, globals and their
//!               initialisers, exports, start, element and data segments, names), the
//!               location of every function and trampoline in the code, the trap table,
//!               the table contract (`TableContract`: which functions may throw, what the
//!               module's writes into imported tables may throw through)
//! data          the contents of all data segments, contiguous (segments hold ranges of it)
//! image         the module's memory image (`image::ImagePlan`), empty if it has none: the
//!               pages a loader maps copy-on-write into each instance's memory
//! code          the position-independent code image, zero-padded to the page by the loader
//! ```
//!
//! `str` is a u32 byte length and UTF-8 bytes; a vector is a u32 count and its elements. The
//! VmctxLayout is not stored: it is recomputed from the ModuleInfo.
//!
//! **Authentication.** An artifact holds machine code that runs as it is, so a checksum is not
//! enough: anyone who can write the file (a guest whose preopen contains it, another program)
//! could recompute one. Every byte but the MAC itself is covered by a keyed BLAKE3 MAC under a
//! 32-byte [`Key`] that only the writer and the loader know (the engine keeps a per-user key
//! outside every preopen, `wasce_engine::key`). A file not written under the loader's key, or
//! changed by a single bit since, is refused before anything else in it is read.
//!
//! Reading is bounds-checked everywhere: a truncated, corrupted or crafted file is an error,
//! never a panic, even with a valid MAC. The MAC is verified first; then the compiler version
//! and the code generator (target and ISA flags) must match this build, then the metadata is
//! decoded and its indices are checked against each other and against the code section, so
//! that no loader has to trust them. The code itself cannot be verified: it is trusted because
//! the MAC proves this user's compiler wrote it (in KVM isolation it is still confined to the
//! VM).

use crate::compile::{CompiledModule, FuncLoc};
use crate::translate::{TableContract, ThrowDeps};
use crate::image::ImagePlan;
use crate::module::*;
use crate::trap::Trap;
use crate::vmctx::{self, VmctxLayout};
use crate::{BoundsChecks, Features, Settings};
use std::collections::HashMap;
use std::ops::Range;

/// The first bytes of every artifact.
pub const MAGIC: &[u8; 9] = b"WASCE\0AOT";
/// Bumped whenever the layout changes.
pub const FORMAT_VERSION: u32 = 7;
/// The version of the compiler that writes and reads artifacts.
/// The crate version and the build id (`build.rs`: a hash of the compiler's sources, the guest
/// ABI and the locked dependencies), so that artifacts of another build are refused.
pub const COMPILER_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("WASCE_COMPILER_BUILD"));
/// Sections that may be mapped from the file start at multiples of this.
pub const PAGE_SIZE: usize = 4096;

const MAC_AT: usize = 16;
const MAC_LEN: usize = 32;
const LENGTH_AT: usize = MAC_AT + MAC_LEN;
const SECTIONS_AT: usize = LENGTH_AT + 8;
const FIXED_HEADER: usize = SECTIONS_AT + 4 * 16;

/// The secret key artifacts are authenticated with (keyed BLAKE3). `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// The MAC of an artifact: every byte but the MAC field itself, under `key`.
fn mac(bytes: &[u8], key: &Key) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(&key.0);
    h.update(&bytes[..MAC_AT]);
    h.update(&bytes[LENGTH_AT..]);
    h.finalize()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    #[error("not a wasce artifact (no `WASCE\\0AOT` magic)")]
    NotAnArtifact,
    #[error("artifact format version {found}, but this wasce ({COMPILER_VERSION}) reads version {FORMAT_VERSION}; recompile it with `wasce compile`")]
    FormatVersion { found: u32 },
    #[error("artifact is truncated ({actual} of {expected} bytes); recompile it with `wasce compile`")]
    Truncated { actual: u64, expected: u64 },
    /// The MAC does not match: not written under this key, or changed since.
    #[error("artifact failed authentication (it was not written by this user's wasce, or it was changed since); recompile it with `wasce compile`")]
    Authentication,
    /// The artifact was written by another compiler version or for another code generator.
    #[error("artifact was compiled by wasce {artifact}; this is wasce {host}{detail}; recompile it with `wasce compile`")]
    Incompatible { artifact: String, host: String, detail: String },
    /// The MAC matched but the contents do not make sense (a bug, or a crafted file).
    /// A module this format cannot describe (GC type definitions and constant expressions).
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("malformed artifact: {0}")]
    Malformed(String),
    /// This host has no code generator to compare with.
    #[error("cannot describe this host's code generator: {0}")]
    Host(String),
}

/// The header of an artifact whose MAC has been verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub format_version: u32,
    pub compiler_version: String,
    pub isa: String,
    pub bounds_checks: BoundsChecks,
    pub consume_fuel: bool,
    /// The features the module was validated with.
    pub features: Features,
    pub meta: Range<usize>,
    pub data: Range<usize>,
    pub image: Range<usize>,
    pub code: Range<usize>,
}

/// A decoded artifact. `module.code` is empty: the code stays in the artifact, at
/// `header.code` (`code` borrows it), and so does the memory image (`header.image`, planned
/// by `image`), so that a loader can map them instead of copying them.
#[derive(Debug)]
pub struct Artifact<'a> {
    pub header: Header,
    pub module: CompiledModule,
    pub code: &'a [u8],
    /// The memory image's plan, if the module has one (its bytes are `header.image`).
    pub image: Option<ImagePlan>,
}

impl Artifact<'_> {
    /// The compiled module with its code copied out of the artifact.
    pub fn into_compiled(self) -> CompiledModule {
        let mut module = self.module;
        module.code = self.code.to_vec();
        module
    }
}

/// Whether `bytes` starts like an artifact (as opposed to a WebAssembly binary or text).
pub fn is_artifact(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The host's code generator description, computed once.
pub fn host_isa() -> Result<&'static str, ArtifactError> {
    static ISA: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    match ISA.get_or_init(|| crate::isa_description().map_err(|e| e.to_string())) {
        Ok(s) => Ok(s),
        Err(e) => Err(ArtifactError::Host(e.clone())),
    }
}

// ---- Writing --------------------------------------------------------------------------------

/// Write `module`, compiled with `settings` by this compiler for this host, as an artifact
/// authenticated under `key`.
pub fn serialize(module: &CompiledModule, settings: &Settings, key: &Key) -> Result<Vec<u8>, ArtifactError> {
    let isa = host_isa()?;
    serialize_for(module, settings.bounds_checks, settings.features, COMPILER_VERSION, isa, key)
        .map(|mut bytes| {
            if settings.consume_fuel || module.consume_fuel {
                set_fuel_flag(&mut bytes, key);
            }
            bytes
        })
}

/// The settings-byte bit that records fuel metering.
const SETTINGS_FUEL: u8 = 2;

/// Mark a serialized artifact as compiled with fuel metering (and renew its MAC).
fn set_fuel_flag(bytes: &mut [u8], key: &Key) {
    let mut r = Reader { bytes, pos: FIXED_HEADER };
    let (Ok(_), Ok(_)) = (r.str(), r.str()) else { return };
    let at = r.pos;
    bytes[at] |= SETTINGS_FUEL;
    update_mac(bytes, key);
}

fn serialize_for(module: &CompiledModule, bounds: BoundsChecks, features: Features, version: &str, isa: &str, key: &Key) -> Result<Vec<u8>, ArtifactError> {
    let mut w = Writer::default();
    w.buf.extend_from_slice(MAGIC);
    w.buf.extend_from_slice(&[0; 3]);
    w.u32(FORMAT_VERSION);
    w.buf.resize(FIXED_HEADER, 0); // MAC, length and section table are filled in below
    w.str(version);
    w.str(isa);
    w.u8(match bounds {
        BoundsChecks::GuardPages => 0,
        BoundsChecks::Explicit => 1,
    });
    w.u32(features.bits());

    let meta_start = w.buf.len();
    write_meta(&mut w, module);
    let meta = meta_start..w.buf.len();

    w.pad_to(PAGE_SIZE);
    let data_start = w.buf.len();
    w.buf.extend_from_slice(&module.info.data_bytes);
    let data = data_start..w.buf.len();

    w.pad_to(PAGE_SIZE);
    let image_start = w.buf.len();
    if let Some(plan) = ImagePlan::of(&module.info) {
        w.buf.extend_from_slice(&plan.build(&module.info));
    }
    let image = image_start..w.buf.len();

    w.pad_to(PAGE_SIZE);
    let code_start = w.buf.len();
    w.buf.extend_from_slice(&module.code);
    let code = code_start..w.buf.len();

    let mut bytes = w.buf;
    let len = bytes.len() as u64;
    let mut put = |at: usize, v: u64| bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put(LENGTH_AT, len);
    for (i, r) in [meta, data, image, code].iter().enumerate() {
        put(SECTIONS_AT + 16 * i, r.start as u64);
        put(SECTIONS_AT + 8 + 16 * i, r.len() as u64);
    }
    update_mac(&mut bytes, key);
    Ok(bytes)
}

/// Recompute the MAC of an artifact under `key` (for tools and tests that edit one).
pub fn update_mac(bytes: &mut [u8], key: &Key) {
    if bytes.len() >= LENGTH_AT {
        let tag = mac(bytes, key);
        bytes[MAC_AT..LENGTH_AT].copy_from_slice(tag.as_bytes());
    }
}

#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("count fits in u32 (wasm limits)"));
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.u64(v);
            }
        }
    }
    fn pad_to(&mut self, align: usize) {
        self.buf.resize(self.buf.len().div_ceil(align) * align, 0);
    }
    fn ty(&mut self, t: WasmType) {
        let WasmType::Ref(r) = t else {
            self.u8(match t {
                WasmType::I32 => 0,
                WasmType::I64 => 1,
                WasmType::F32 => 2,
                WasmType::F64 => 3,
                WasmType::V128 => 4,
                WasmType::FuncRef => 5,
                WasmType::ExternRef => 6,
                WasmType::ExnRef => 8,
                WasmType::Ref(_) => unreachable!(),
            });
            return;
        };
        // 7, nullable, heap kind, [type index]
        self.u8(7);
        self.bool(r.nullable);
        let (kind, index) = match r.heap {
            HeapType::Func => (0, None),
            HeapType::Extern => (1, None),
            HeapType::Concrete(i) => (2, Some(i)),
            HeapType::NoFunc => (3, None),
            HeapType::NoExtern => (4, None),
            HeapType::Any => (5, None),
            HeapType::Eq => (6, None),
            HeapType::I31 => (7, None),
            HeapType::Struct => (8, None),
            HeapType::Array => (9, None),
            HeapType::None => (10, None),
            HeapType::Exn => (11, None),
            HeapType::NoExn => (12, None),
        };
        self.u8(kind);
        if let Some(i) = index {
            self.u32(i);
        }
    }
    fn types(&mut self, ts: &[WasmType]) {
        self.len(ts.len());
        ts.iter().for_each(|t| self.ty(*t));
    }
    fn table(&mut self, t: &TableType) {
        self.ty(t.elem);
        self.u64(t.min);
        self.opt_u64(t.max);
        self.bool(t.table64);
    }
    fn memory(&mut self, m: &MemoryType) {
        self.u64(m.min);
        self.opt_u64(m.max);
        self.bool(m.shared);
        self.bool(m.memory64);
    }
    fn global(&mut self, g: &GlobalType) {
        self.ty(g.ty);
        self.bool(g.mutable);
    }
    fn expr(&mut self, e: &ConstExpr) {
        match *e {
            ConstExpr::Gc(ref ops) => {
                self.u8(9);
                self.len(ops.len());
                for op in ops.iter() {
                    match *op {
                        GcConstOp::Const(t, v) => {
                            self.u8(0);
                            self.ty(t);
                            self.u128(v);
                        }
                        GcConstOp::RefNull => self.u8(1),
                        GcConstOp::RefFunc(f) => {
                            self.u8(2);
                            self.u32(f);
                        }
                        GcConstOp::GlobalGet(g) => {
                            self.u8(3);
                            self.u32(g);
                        }
                        GcConstOp::Arith(a) => {
                            self.u8(4);
                            self.u8(match a {
                                ConstOp::I32Add => 3,
                                ConstOp::I32Sub => 4,
                                ConstOp::I32Mul => 5,
                                ConstOp::I64Add => 6,
                                ConstOp::I64Sub => 7,
                                _ => 8,
                            });
                        }
                        GcConstOp::StructNew(t) => {
                            self.u8(5);
                            self.u32(t);
                        }
                        GcConstOp::StructNewDefault(t) => {
                            self.u8(6);
                            self.u32(t);
                        }
                        GcConstOp::ArrayNew(t) => {
                            self.u8(7);
                            self.u32(t);
                        }
                        GcConstOp::ArrayNewDefault(t) => {
                            self.u8(8);
                            self.u32(t);
                        }
                        GcConstOp::ArrayNewFixed(t, n) => {
                            self.u8(9);
                            self.u32(t);
                            self.u32(n);
                        }
                        GcConstOp::RefI31 => self.u8(10),
                        GcConstOp::AnyConvertExtern => self.u8(11),
                        GcConstOp::ExternConvertAny => self.u8(12),
                    }
                }
            }
            ConstExpr::Extended(ref ops) => {
                self.u8(8);
                self.len(ops.len());
                for op in ops.iter() {
                    match *op {
                        ConstOp::I32(v) => {
                            self.u8(0);
                            self.u32(v as u32);
                        }
                        ConstOp::I64(v) => {
                            self.u8(1);
                            self.u64(v as u64);
                        }
                        ConstOp::GlobalGet(g) => {
                            self.u8(2);
                            self.u32(g);
                        }
                        ConstOp::I32Add => self.u8(3),
                        ConstOp::I32Sub => self.u8(4),
                        ConstOp::I32Mul => self.u8(5),
                        ConstOp::I64Add => self.u8(6),
                        ConstOp::I64Sub => self.u8(7),
                        ConstOp::I64Mul => self.u8(8),
                    }
                }
            }
            ConstExpr::I32(v) => {
                self.u8(0);
                self.u32(v as u32);
            }
            ConstExpr::I64(v) => {
                self.u8(1);
                self.u64(v as u64);
            }
            ConstExpr::F32(v) => {
                self.u8(2);
                self.u32(v);
            }
            ConstExpr::F64(v) => {
                self.u8(3);
                self.u64(v);
            }
            ConstExpr::V128(v) => {
                self.u8(4);
                self.u128(v);
            }
            ConstExpr::RefNull(t) => {
                self.u8(5);
                self.ty(t);
            }
            ConstExpr::RefFunc(f) => {
                self.u8(6);
                self.u32(f);
            }
            ConstExpr::GlobalGet(g) => {
                self.u8(7);
                self.u32(g);
            }
        }
    }
    fn locs(&mut self, locs: &[FuncLoc]) {
        self.len(locs.len());
        for l in locs {
            self.u32(l.offset);
            self.u32(l.len);
        }
    }
}

fn write_meta(w: &mut Writer, m: &CompiledModule) {
    let info = &m.info;
    w.len(info.types.len());
    for t in &info.types {
        w.types(&t.params);
        w.types(&t.results);
    }
    w.len(info.imports.len());
    for i in &info.imports {
        w.str(&i.module);
        w.str(&i.name);
        match &i.kind {
            ImportKind::Func(ty) => {
                w.u8(0);
                w.u32(*ty);
            }
            ImportKind::Table(t) => {
                w.u8(1);
                w.table(t);
            }
            ImportKind::Memory(mem) => {
                w.u8(2);
                w.memory(mem);
            }
            ImportKind::Global(g) => {
                w.u8(3);
                w.global(g);
            }
            ImportKind::Tag(ty) => {
                w.u8(4);
                w.u32(*ty);
            }
        }
    }
    w.len(info.funcs.len());
    info.funcs.iter().for_each(|f| w.u32(*f));
    w.u32(info.num_imported_funcs);
    w.len(info.tables.len());
    info.tables.iter().for_each(|t| w.table(t));
    w.u32(info.num_imported_tables);
    w.len(info.memories.len());
    info.memories.iter().for_each(|mem| w.memory(mem));
    w.u32(info.num_imported_memories);
    w.len(info.globals.len());
    info.globals.iter().for_each(|g| w.global(g));
    w.u32(info.num_imported_globals);
    w.len(info.global_inits.len());
    info.global_inits.iter().for_each(|e| w.expr(e));
    w.len(info.table_inits.len());
    info.table_inits.iter().for_each(|e| w.expr(e));
    w.len(info.exports.len());
    for e in &info.exports {
        w.str(&e.name);
        w.u8(match e.kind {
            ExportKind::Func => 0,
            ExportKind::Table => 1,
            ExportKind::Memory => 2,
            ExportKind::Global => 3,
            ExportKind::Tag => 4,
        });
        w.u32(e.index);
    }
    match info.start {
        None => w.u8(0),
        Some(s) => {
            w.u8(1);
            w.u32(s);
        }
    }
    w.len(info.elems.len());
    for e in &info.elems {
        match &e.mode {
            ElemMode::Passive => w.u8(0),
            ElemMode::Declared => w.u8(1),
            ElemMode::Active { table, offset } => {
                w.u8(2);
                w.u32(*table);
                w.expr(offset);
            }
        }
        w.ty(e.ty);
        w.len(e.items.len());
        e.items.iter().for_each(|i| w.expr(i));
    }
    w.len(info.datas.len());
    for d in &info.datas {
        match &d.mode {
            DataMode::Passive => w.u8(0),
            DataMode::Active { memory, offset } => {
                w.u8(1);
                w.u32(*memory);
                w.expr(offset);
            }
        }
        w.u64(d.range.start as u64);
        w.u64(d.range.end as u64);
    }
    // GC type definitions (empty for a module without them) and recursion groups.
    w.len(info.type_defs.len());
    for d in &info.type_defs {
        let field = |w: &mut Writer, f: &FieldType| {
            match f.storage {
                StorageType::I8 => w.u8(0),
                StorageType::I16 => w.u8(1),
                StorageType::Val(t) => {
                    w.u8(2);
                    w.ty(t);
                }
            }
            w.bool(f.mutable);
        };
        match &d.composite {
            CompositeType::Func => w.u8(0),
            CompositeType::Struct(fields) => {
                w.u8(1);
                w.len(fields.len());
                fields.iter().for_each(|f| field(w, f));
            }
            CompositeType::Array(f) => {
                w.u8(2);
                field(w, f);
            }
        }
        w.opt_u64(d.supertype.map(u64::from));
        w.bool(d.is_final);
    }
    w.len(info.rec_groups.len());
    for (start, len) in &info.rec_groups {
        w.u32(*start);
        w.u32(*len);
    }
    // Sorted, so that the same module always gives the same bytes.
    let mut names: Vec<_> = info.func_names.iter().collect();
    names.sort();
    w.len(names.len());
    for (f, name) in names {
        w.u32(*f);
        w.str(name);
    }
    match &info.name {
        None => w.u8(0),
        Some(n) => {
            w.u8(1);
            w.str(n);
        }
    }
    w.len(info.tags.len());
    info.tags.iter().for_each(|t| w.u32(*t));
    w.u32(info.num_imported_tags);
    w.locs(&m.funcs);
    w.locs(&m.entry_trampolines);
    w.locs(&m.host_trampolines);
    w.len(m.traps.len());
    for (offset, trap) in &m.traps {
        w.u32(*offset);
        w.u8(*trap as u8);
    }
    let t = &m.tables;
    w.bool(t.nothrow_tables);
    w.len(t.may_throw.len());
    t.may_throw.iter().for_each(|b| w.bool(*b));
    match &t.writes {
        None => w.u8(0),
        Some(d) => {
            w.u8(1);
            w.bool(d.always);
            w.len(d.funcs.len());
            d.funcs.iter().for_each(|f| w.u32(*f));
            w.len(d.tables.len());
            d.tables.iter().for_each(|t| w.u32(*t));
        }
    }
}

// ---- Reading --------------------------------------------------------------------------------

/// Verify an artifact's magic, format version and MAC under `key`, and decode its header.
/// Says nothing about whether this host can run it (see `deserialize`).
pub fn header(bytes: &[u8], key: &Key) -> Result<Header, ArtifactError> {
    if !is_artifact(bytes) {
        return Err(ArtifactError::NotAnArtifact);
    }
    if bytes.len() < 16 {
        return Err(ArtifactError::Truncated { actual: bytes.len() as u64, expected: FIXED_HEADER as u64 });
    }
    let version = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(ArtifactError::FormatVersion { found: version });
    }
    if bytes[9..12] != [0; 3] {
        return Err(ArtifactError::Malformed("non-zero header padding".into()));
    }
    if bytes.len() < FIXED_HEADER {
        return Err(ArtifactError::Truncated { actual: bytes.len() as u64, expected: FIXED_HEADER as u64 });
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    // `blake3::Hash` compares in constant time.
    let stored = blake3::Hash::from_bytes(bytes[MAC_AT..LENGTH_AT].try_into().unwrap());
    if stored != mac(bytes, key) {
        // The length field is not authenticated yet: used only to name a likely truncation.
        let expected = word(LENGTH_AT);
        if expected > bytes.len() as u64 {
            return Err(ArtifactError::Truncated { actual: bytes.len() as u64, expected });
        }
        return Err(ArtifactError::Authentication);
    }
    // From here on every byte is as this user's compiler wrote it; still check everything, so
    // that a crafted file with a valid MAC is an error and not a panic.
    if word(LENGTH_AT) != bytes.len() as u64 {
        return Err(ArtifactError::Malformed(format!("length field {} but {} bytes", word(LENGTH_AT), bytes.len())));
    }
    let section = |i: usize, name: &str| -> Result<Range<usize>, ArtifactError> {
        let (start, len) = (word(SECTIONS_AT + 16 * i), word(SECTIONS_AT + 8 + 16 * i));
        match start.checked_add(len) {
            Some(end) if end <= bytes.len() as u64 => Ok(start as usize..end as usize),
            _ => Err(ArtifactError::Malformed(format!("{name} section {start}+{len} is outside the file"))),
        }
    };
    let (meta, data) = (section(0, "metadata")?, section(1, "data")?);
    let (image, code) = (section(2, "image")?, section(3, "code")?);
    let mut r = Reader { bytes: &bytes[..meta.start.max(FIXED_HEADER)], pos: FIXED_HEADER };
    let compiler_version = r.str()?;
    let isa = r.str()?;
    // Settings byte: bit 0 = explicit bounds checks, bit 1 = fuel metering.
    let flags = r.u8()?;
    let bounds_checks = match flags & !SETTINGS_FUEL {
        0 => BoundsChecks::GuardPages,
        1 => BoundsChecks::Explicit,
        b => return Err(r.bad(&format!("bounds-check mode {b}"))),
    };
    let consume_fuel = flags & SETTINGS_FUEL != 0;
    let bits = r.u32()?;
    let features = Features::from_bits(bits).ok_or_else(|| r.bad(&format!("feature bits {bits:#x}")))?;
    let ordered = r.pos == meta.start
        && meta.end <= data.start
        && data.end <= image.start
        && image.end <= code.start
        && code.end == bytes.len()
        && data.start % PAGE_SIZE == 0
        && image.start % PAGE_SIZE == 0
        && code.start % PAGE_SIZE == 0;
    if !ordered {
        return Err(ArtifactError::Malformed(format!(
            "sections out of place (header ends at {}, metadata {meta:?}, data {data:?}, image {image:?}, code {code:?}, file {})",
            r.pos,
            bytes.len()
        )));
    }
    Ok(Header { format_version: version, compiler_version, isa, bounds_checks, consume_fuel, features, meta, data, image, code })
}

/// Decode an artifact written by this compiler for this host under `key`.
pub fn deserialize<'a>(bytes: &'a [u8], key: &Key) -> Result<Artifact<'a>, ArtifactError> {
    let header = header(bytes, key)?;
    check_compatible(&header, COMPILER_VERSION, host_isa()?)?;
    let mut r = Reader { bytes: &bytes[..header.meta.end], pos: header.meta.start };
    let mut module = read_meta(&mut r)?;
    module.consume_fuel = header.consume_fuel;
    if r.pos != header.meta.end {
        return Err(r.bad("trailing bytes"));
    }
    module.info.data_bytes = bytes[header.data.clone()].to_vec();
    let code = &bytes[header.code.clone()];
    validate(&module, code.len())?;
    module.layout = VmctxLayout::new(&module.info);
    let image = ImagePlan::of(&module.info);
    if image.map_or(0, |p| p.len as usize) != header.image.len() {
        return Err(ArtifactError::Malformed(format!(
            "memory image of {} bytes, but the module's data segments make {image:?}",
            header.image.len()
        )));
    }
    Ok(Artifact { header, module, code, image })
}

fn check_compatible(header: &Header, version: &str, isa: &str) -> Result<(), ArtifactError> {
    let describe = |v: &str, isa: &str| match isa.split_once(' ') {
        Some((target, flags)) => format!("{v} for {target} [{flags}]"),
        None => format!("{v} for {isa} []"),
    };
    let split = |isa: &'_ str| -> (String, Vec<String>) {
        let mut words = isa.split_whitespace().map(str::to_string);
        (words.next().unwrap_or_default(), words.collect())
    };
    let (target, flags) = split(&header.isa);
    let (host_target, host_flags) = split(isa);
    // Code compiled for a subset of this host's ISA extensions runs here.
    let missing: Vec<&str> = flags.iter().filter(|f| !host_flags.contains(f)).map(|s| s.as_str()).collect();
    let mut detail = String::new();
    if header.compiler_version == version && target == host_target && missing.is_empty() {
        return Ok(());
    }
    if header.compiler_version == version && target == host_target {
        detail = format!(" (this host lacks {})", missing.join(" "));
    }
    Err(ArtifactError::Incompatible {
        artifact: describe(&header.compiler_version, &header.isa),
        host: describe(version, isa),
        detail,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bad(&self, what: &str) -> ArtifactError {
        ArtifactError::Malformed(format!("{what} at byte {}", self.pos))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ArtifactError> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.bytes.len() => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => Err(self.bad("unexpected end of section")),
        }
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ArtifactError> {
        Ok(self.take(N)?.try_into().unwrap())
    }
    fn u8(&mut self) -> Result<u8, ArtifactError> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, ArtifactError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.bad("bad boolean")),
        }
    }
    fn u32(&mut self) -> Result<u32, ArtifactError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, ArtifactError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn u128(&mut self) -> Result<u128, ArtifactError> {
        Ok(u128::from_le_bytes(self.array()?))
    }
    fn str(&mut self) -> Result<String, ArtifactError> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.bad("invalid UTF-8"))
    }
    fn opt_u64(&mut self) -> Result<Option<u64>, ArtifactError> {
        Ok(if self.bool()? { Some(self.u64()?) } else { None })
    }
    /// A vector: a count, then elements. Nothing is reserved up front (the count is not
    /// trusted); every element consumes at least one byte, so a bad count runs out of input.
    fn vec<T>(&mut self, mut elem: impl FnMut(&mut Self) -> Result<T, ArtifactError>) -> Result<Vec<T>, ArtifactError> {
        let n = self.u32()? as usize;
        let mut v = Vec::with_capacity(n.min(self.bytes.len() - self.pos));
        for _ in 0..n {
            v.push(elem(self)?);
        }
        Ok(v)
    }
    fn ty(&mut self) -> Result<WasmType, ArtifactError> {
        Ok(match self.u8()? {
            0 => WasmType::I32,
            1 => WasmType::I64,
            2 => WasmType::F32,
            3 => WasmType::F64,
            4 => WasmType::V128,
            5 => WasmType::FuncRef,
            6 => WasmType::ExternRef,
            7 => {
                let nullable = self.bool()?;
                let heap = match self.u8()? {
                    0 => HeapType::Func,
                    1 => HeapType::Extern,
                    2 => HeapType::Concrete(self.u32()?),
                    3 => HeapType::NoFunc,
                    4 => HeapType::NoExtern,
                    5 => HeapType::Any,
                    6 => HeapType::Eq,
                    7 => HeapType::I31,
                    8 => HeapType::Struct,
                    9 => HeapType::Array,
                    10 => HeapType::None,
                    11 => HeapType::Exn,
                    12 => HeapType::NoExn,
                    _ => return Err(self.bad("bad heap type")),
                };
                // Normalised, so that equal types compare equal (`WasmType`).
                WasmType::reference(nullable, heap)
            }
            8 => WasmType::ExnRef,
            _ => return Err(self.bad("bad value type")),
        })
    }
    fn ref_ty(&mut self) -> Result<WasmType, ArtifactError> {
        let t = self.ty()?;
        if t.is_ref() { Ok(t) } else { Err(self.bad("bad reference type")) }
    }
    fn table(&mut self) -> Result<TableType, ArtifactError> {
        Ok(TableType { elem: self.ref_ty()?, min: self.u64()?, max: self.opt_u64()?, table64: self.bool()? })
    }
    fn memory(&mut self) -> Result<MemoryType, ArtifactError> {
        Ok(MemoryType { min: self.u64()?, max: self.opt_u64()?, shared: self.bool()?, memory64: self.bool()? })
    }
    fn global(&mut self) -> Result<GlobalType, ArtifactError> {
        Ok(GlobalType { ty: self.ty()?, mutable: self.bool()? })
    }
    fn expr(&mut self) -> Result<ConstExpr, ArtifactError> {
        Ok(match self.u8()? {
            0 => ConstExpr::I32(self.u32()? as i32),
            1 => ConstExpr::I64(self.u64()? as i64),
            2 => ConstExpr::F32(self.u32()?),
            3 => ConstExpr::F64(self.u64()?),
            4 => ConstExpr::V128(self.u128()?),
            5 => ConstExpr::RefNull(self.ref_ty()?),
            6 => ConstExpr::RefFunc(self.u32()?),
            7 => ConstExpr::GlobalGet(self.u32()?),
            8 => {
                let ops = self.vec(|r| {
                    Ok(match r.u8()? {
                        0 => ConstOp::I32(r.u32()? as i32),
                        1 => ConstOp::I64(r.u64()? as i64),
                        2 => ConstOp::GlobalGet(r.u32()?),
                        3 => ConstOp::I32Add,
                        4 => ConstOp::I32Sub,
                        5 => ConstOp::I32Mul,
                        6 => ConstOp::I64Add,
                        7 => ConstOp::I64Sub,
                        8 => ConstOp::I64Mul,
                        _ => return Err(r.bad("bad constant instruction")),
                    })
                })?;
                ConstExpr::Extended(ops.into())
            }
            9 => {
                let ops = self.vec(|r| {
                    Ok(match r.u8()? {
                        0 => GcConstOp::Const(r.ty()?, r.u128()?),
                        1 => GcConstOp::RefNull,
                        2 => GcConstOp::RefFunc(r.u32()?),
                        3 => GcConstOp::GlobalGet(r.u32()?),
                        4 => GcConstOp::Arith(match r.u8()? {
                            3 => ConstOp::I32Add,
                            4 => ConstOp::I32Sub,
                            5 => ConstOp::I32Mul,
                            6 => ConstOp::I64Add,
                            7 => ConstOp::I64Sub,
                            8 => ConstOp::I64Mul,
                            _ => return Err(r.bad("bad constant instruction")),
                        }),
                        5 => GcConstOp::StructNew(r.u32()?),
                        6 => GcConstOp::StructNewDefault(r.u32()?),
                        7 => GcConstOp::ArrayNew(r.u32()?),
                        8 => GcConstOp::ArrayNewDefault(r.u32()?),
                        9 => GcConstOp::ArrayNewFixed(r.u32()?, r.u32()?),
                        10 => GcConstOp::RefI31,
                        11 => GcConstOp::AnyConvertExtern,
                        12 => GcConstOp::ExternConvertAny,
                        _ => return Err(r.bad("bad constant instruction")),
                    })
                })?;
                ConstExpr::Gc(ops.into())
            }
            _ => return Err(self.bad("bad constant expression")),
        })
    }
    fn field(&mut self) -> Result<FieldType, ArtifactError> {
        let storage = match self.u8()? {
            0 => StorageType::I8,
            1 => StorageType::I16,
            2 => StorageType::Val(self.ty()?),
            _ => return Err(self.bad("bad storage type")),
        };
        Ok(FieldType { storage, mutable: self.bool()? })
    }
    fn locs(&mut self) -> Result<Vec<FuncLoc>, ArtifactError> {
        self.vec(|r| Ok(FuncLoc { offset: r.u32()?, len: r.u32()? }))
    }
}

fn read_meta(r: &mut Reader<'_>) -> Result<CompiledModule, ArtifactError> {
    let mut info = ModuleInfo {
        types: r.vec(|r| Ok(FuncType { params: r.vec(Reader::ty)?, results: r.vec(Reader::ty)? }))?,
        imports: r.vec(|r| {
            let (module, name) = (r.str()?, r.str()?);
            let kind = match r.u8()? {
                0 => ImportKind::Func(r.u32()?),
                1 => ImportKind::Table(r.table()?),
                2 => ImportKind::Memory(r.memory()?),
                3 => ImportKind::Global(r.global()?),
                4 => ImportKind::Tag(r.u32()?),
                _ => return Err(r.bad("bad import kind")),
            };
            Ok(Import { module, name, kind })
        })?,
        funcs: r.vec(Reader::u32)?,
        num_imported_funcs: r.u32()?,
        tables: r.vec(Reader::table)?,
        num_imported_tables: r.u32()?,
        memories: r.vec(Reader::memory)?,
        num_imported_memories: r.u32()?,
        globals: r.vec(Reader::global)?,
        num_imported_globals: r.u32()?,
        global_inits: r.vec(Reader::expr)?,
        table_inits: r.vec(Reader::expr)?,
        exports: r.vec(|r| {
            let name = r.str()?;
            let kind = match r.u8()? {
                0 => ExportKind::Func,
                1 => ExportKind::Table,
                2 => ExportKind::Memory,
                3 => ExportKind::Global,
                4 => ExportKind::Tag,
                _ => return Err(r.bad("bad export kind")),
            };
            Ok(Export { name, kind, index: r.u32()? })
        })?,
        start: if r.bool()? { Some(r.u32()?) } else { None },
        elems: r.vec(|r| {
            let mode = match r.u8()? {
                0 => ElemMode::Passive,
                1 => ElemMode::Declared,
                2 => ElemMode::Active { table: r.u32()?, offset: r.expr()? },
                _ => return Err(r.bad("bad element segment mode")),
            };
            Ok(ElemSegment { mode, ty: r.ref_ty()?, items: r.vec(Reader::expr)? })
        })?,
        datas: r.vec(|r| {
            let mode = match r.u8()? {
                0 => DataMode::Passive,
                1 => DataMode::Active { memory: r.u32()?, offset: r.expr()? },
                _ => return Err(r.bad("bad data segment mode")),
            };
            let (start, end) = (r.u64()?, r.u64()?);
            let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
                return Err(r.bad("bad data range"));
            };
            Ok(DataSegment { mode, range: start..end })
        })?,
        ..ModuleInfo::default()
    };
    info.type_defs = r.vec(|r| {
        let composite = match r.u8()? {
            0 => CompositeType::Func,
            1 => CompositeType::Struct(r.vec(Reader::field)?),
            2 => CompositeType::Array(r.field()?),
            _ => return Err(r.bad("bad type definition")),
        };
        let supertype = match r.opt_u64()? {
            None => None,
            Some(s) => Some(u32::try_from(s).map_err(|_| r.bad("bad supertype"))?),
        };
        Ok(SubType { composite, supertype, is_final: r.bool()? })
    })?;
    info.rec_groups = r.vec(|r| Ok((r.u32()?, r.u32()?)))?;
    let names = r.vec(|r| Ok((r.u32()?, r.str()?)))?;
    info.func_names = HashMap::with_capacity(names.len());
    for (f, name) in names {
        if info.func_names.insert(f, name).is_some() {
            return Err(r.bad("duplicate function name"));
        }
    }
    info.name = if r.bool()? { Some(r.str()?) } else { None };
    info.tags = r.vec(Reader::u32)?;
    info.num_imported_tags = r.u32()?;
    let funcs = r.locs()?;
    let entry_trampolines = r.locs()?;
    let host_trampolines = r.locs()?;
    let traps = r.vec(|r| {
        let offset = r.u32()?;
        let trap = Trap::from_u8(r.u8()?).ok_or_else(|| r.bad("unknown trap code"))?;
        Ok((offset, trap))
    })?;
    let nothrow_tables = r.bool()?;
    let may_throw = r.vec(Reader::bool)?;
    if may_throw.len() != info.funcs.len() {
        return Err(r.bad("exception summary of the wrong length"));
    }
    let writes = match r.bool()? {
        false => None,
        true => {
            let always = r.bool()?;
            let funcs = r.vec(Reader::u32)?;
            let tables = r.vec(Reader::u32)?;
            if funcs.iter().any(|f| *f >= info.num_imported_funcs) || tables.iter().any(|t| *t >= info.num_imported_tables) {
                return Err(r.bad("exception dependency on something not imported"));
            }
            Some(ThrowDeps { always, funcs, tables })
        }
    };
    let tables = TableContract { nothrow_tables, may_throw, writes };
    let layout = VmctxLayout { type_ids: 0, funcrefs: 0, memories: 0, tables: 0, globals: 0, tags: 0, size: 0 };
    Ok(CompiledModule { info, layout, code: Vec::new(), funcs, entry_trampolines, host_trampolines, traps, consume_fuel: false, tables })
}

/// Check every index and range the engine will use, so that a crafted artifact is rejected
/// here rather than making the loader index out of bounds.
fn validate(m: &CompiledModule, code_len: usize) -> Result<(), ArtifactError> {
    let bad = |what: String| Err(ArtifactError::Malformed(what));
    let info = &m.info;
    let (ntypes, nfuncs, ntables, nmems, nglobals) =
        (info.types.len(), info.funcs.len(), info.tables.len(), info.memories.len(), info.globals.len());

    // The vmctx layout is computed in u32: it must fit.
    let vmctx_size = vmctx::HEADER_SIZE as u64
        + 8 * ntypes as u64
        + vmctx::FUNCREF_SIZE as u64 * nfuncs as u64
        + 16
        + vmctx::DEF_SIZE as u64 * (nmems + ntables) as u64
        + vmctx::GLOBAL_SIZE as u64 * nglobals as u64
        + vmctx::TAG_SIZE as u64 * info.tags.len() as u64;
    if vmctx_size > u32::MAX as u64 / 2 {
        return bad(format!("module too large ({vmctx_size}-byte vmctx)"));
    }

    // Imports come first in each index space, in import order.
    let mut counts = [0u32; 5];
    for import in &info.imports {
        let ok = match &import.kind {
            ImportKind::Func(ty) => info.funcs.get(counts[0] as usize) == Some(ty) && (*ty as usize) < ntypes,
            ImportKind::Table(t) => info.tables.get(counts[1] as usize) == Some(t),
            ImportKind::Memory(mem) => info.memories.get(counts[2] as usize) == Some(mem),
            ImportKind::Global(g) => info.globals.get(counts[3] as usize) == Some(g),
            ImportKind::Tag(ty) => info.tags.get(counts[4] as usize) == Some(ty),
        };
        if !ok {
            return bad(format!("import {}.{} does not match its index space", import.module, import.name));
        }
        let k = match import.kind {
            ImportKind::Func(_) => 0,
            ImportKind::Table(_) => 1,
            ImportKind::Memory(_) => 2,
            ImportKind::Global(_) => 3,
            ImportKind::Tag(_) => 4,
        };
        counts[k] += 1;
    }
    if counts != [info.num_imported_funcs, info.num_imported_tables, info.num_imported_memories, info.num_imported_globals, info.num_imported_tags] {
        return bad("imported counts do not match the imports".into());
    }
    if let Some(ty) = info.funcs.iter().find(|t| **t as usize >= ntypes) {
        return bad(format!("function type {ty} out of range"));
    }
    // GC type definitions: one per type (or none), kinds that agree with the function types,
    // supertypes earlier and of the same kind; recursion groups in range and disjoint.
    if !info.type_defs.is_empty() && info.type_defs.len() != ntypes {
        return bad("type definition count does not match the types".into());
    }
    for (i, d) in info.type_defs.iter().enumerate() {
        let func_ok = match d.composite {
            CompositeType::Func => true,
            _ => info.types[i] == FuncType::default(),
        };
        let super_ok = d.supertype.is_none_or(|s| (s as usize) < i && info.type_defs[s as usize].kind() == d.kind() && !info.type_defs[s as usize].is_final);
        if !func_ok || !super_ok {
            return bad(format!("type definition {i} is inconsistent"));
        }
    }
    let mut group_end: Vec<usize> = (1..=ntypes).collect();
    let mut prev_end = 0u64;
    for &(start, len) in &info.rec_groups {
        let end = start as u64 + len as u64;
        if len < 2 || (start as u64) < prev_end || end > ntypes as u64 || info.type_defs.is_empty() {
            return bad("recursion groups out of range or overlapping".into());
        }
        for e in &mut group_end[start as usize..end as usize] {
            *e = end as usize;
        }
        prev_end = end;
    }
    // Concrete reference types name a type: one defined before the end of the referring
    // type's recursion group within the type section (the engine canonicalises groups in
    // order), any one elsewhere.
    let type_ok = |t: &WasmType, limit: usize| t.concrete_index().is_none_or(|i| (i as usize) < limit);
    for (i, ty) in info.types.iter().enumerate() {
        let limit = if info.type_defs.is_empty() { i } else { group_end[i] };
        let fields: Vec<WasmType> = match info.type_defs.get(i).map(|d| &d.composite) {
            Some(CompositeType::Struct(fs)) => fs.iter().map(|f| f.storage.unpacked()).collect(),
            Some(CompositeType::Array(f)) => vec![f.storage.unpacked()],
            _ => Vec::new(),
        };
        if !ty.params.iter().chain(&ty.results).chain(&fields).all(|t| type_ok(t, limit)) {
            return bad(format!("type {i} refers to a later type"));
        }
    }
    let all_types_ok = info.tables.iter().map(|t| &t.elem)
        .chain(info.globals.iter().map(|g| &g.ty))
        .chain(info.elems.iter().map(|e| &e.ty))
        .all(|t| type_ok(t, ntypes));
    let exprs_ok = info.global_inits.iter().chain(&info.table_inits).chain(info.elems.iter().flat_map(|e| &e.items))
        .all(|e| !matches!(e, ConstExpr::RefNull(t) if !type_ok(t, ntypes)));
    if !all_types_ok || !exprs_ok {
        return bad("reference type names a type out of range".into());
    }
    if let Some(ty) = info.tags.iter().find(|t| **t as usize >= ntypes || !info.types[**t as usize].results.is_empty()) {
        return bad(format!("tag type {ty} out of range or with results"));
    }
    if info.global_inits.len() != nglobals - counts[3] as usize || info.table_inits.len() != ntables - counts[1] as usize {
        return bad("initialiser counts do not match".into());
    }
    // Limits the engine relies on (wasmparser checks them when compiling).
    for (i, mem) in info.memories.iter().enumerate() {
        if mem.min > MAX_MEMORY_PAGES || mem.max.is_some_and(|max| max < mem.min || max > MAX_MEMORY_PAGES) || (mem.shared && mem.max.is_none()) {
            return bad(format!("memory {i} has bad limits {mem:?}"));
        }
    }
    for (i, t) in info.tables.iter().enumerate() {
        if t.min > u32::MAX as u64 || t.max.is_some_and(|max| max < t.min || max > u32::MAX as u64) {
            return bad(format!("table {i} has bad limits {t:?}"));
        }
    }

    // Constant expressions, with the type each must have, evaluated in this order by the
    // engine: a global's initialiser sees only the imported and earlier globals (a later one
    // does not exist yet), everything else sees all globals; `global.get` reads only immutable
    // globals, `ref.func` names a function of the module.
    let imported_globals = counts[3] as usize;
    for (i, init) in info.global_inits.iter().enumerate() {
        let index = imported_globals + i;
        const_expr(info, init, index, info.globals[index].ty).map_err(|e| ArtifactError::Malformed(format!("initialiser of global {index}: {e}")))?;
    }
    for (i, init) in info.table_inits.iter().enumerate() {
        let index = counts[1] as usize + i;
        const_expr(info, init, nglobals, info.tables[index].elem).map_err(|e| ArtifactError::Malformed(format!("initialiser of table {index}: {e}")))?;
    }
    for (i, seg) in info.elems.iter().enumerate() {
        let err = |e: String| ArtifactError::Malformed(format!("element segment {i}: {e}"));
        if !seg.ty.is_ref() {
            return Err(err(format!("element type {}", seg.ty)));
        }
        if let ElemMode::Active { table, offset } = &seg.mode {
            let Some(t) = info.tables.get(*table as usize) else { return Err(err(format!("table {table} out of range"))) };
            if !info.val_subtype(seg.ty, t.elem) {
                return Err(err(format!("{} elements for a table of {}", seg.ty, t.elem)));
            }
            const_expr(info, offset, nglobals, WasmType::I32).map_err(err)?;
        }
        for item in &seg.items {
            const_expr(info, item, nglobals, seg.ty).map_err(err)?;
        }
    }
    for (i, d) in info.datas.iter().enumerate() {
        let err = |e: String| ArtifactError::Malformed(format!("data segment {i}: {e}"));
        if let DataMode::Active { memory, offset } = &d.mode {
            if *memory as usize >= nmems {
                return Err(err(format!("memory {memory} out of range")));
            }
            const_expr(info, offset, nglobals, WasmType::I32).map_err(err)?;
        }
        if d.range.start > d.range.end || d.range.end > info.data_bytes.len() {
            return Err(err(format!("{:?} is outside the data section", d.range)));
        }
    }
    for e in &info.exports {
        let n = match e.kind {
            ExportKind::Func => nfuncs,
            ExportKind::Table => ntables,
            ExportKind::Memory => nmems,
            ExportKind::Global => nglobals,
            ExportKind::Tag => info.tags.len(),
        };
        if e.index as usize >= n {
            return bad(format!("export {} out of range", e.name));
        }
    }
    if let Some(s) = info.start {
        match info.funcs.get(s as usize) {
            None => return bad("start function out of range".into()),
            Some(ty) if *ty as usize >= ntypes || !info.types[*ty as usize].params.is_empty() || !info.types[*ty as usize].results.is_empty() => {
                return bad(format!("start function {s} does not have type [] -> []"));
            }
            Some(_) => {}
        }
    }

    // Code locations: functions ascending and disjoint (lookups bisect them), all in the code.
    if code_len > u32::MAX as usize {
        return bad("code section larger than 4 GiB".into());
    }
    if m.funcs.len() != nfuncs - counts[0] as usize
        || m.entry_trampolines.len() != ntypes
        || m.host_trampolines.len() != ntypes
    {
        return bad("function or trampoline count does not match the module".into());
    }
    let in_code = |l: &FuncLoc| l.offset as u64 + l.len as u64 <= code_len as u64;
    if !m.funcs.iter().chain(&m.entry_trampolines).chain(&m.host_trampolines).all(in_code) {
        return bad("function outside the code section".into());
    }
    if m.funcs.windows(2).any(|w| w[0].offset as u64 + w[0].len as u64 > w[1].offset as u64) {
        return bad("functions out of order".into());
    }
    if m.traps.windows(2).any(|w| w[0].0 > w[1].0) || m.traps.last().is_some_and(|t| t.0 as usize >= code_len) {
        return bad("trap table out of order or outside the code".into());
    }
    Ok(())
}

/// The largest 32-bit memory, in 64 KiB pages.
const MAX_MEMORY_PAGES: u64 = 1 << 16;

/// Check constant expression `e`: it must have type `want`, read only immutable globals below
/// `visible_globals`, and name only functions of the module.
fn const_expr(info: &ModuleInfo, e: &ConstExpr, visible_globals: usize, want: WasmType) -> Result<(), String> {
    let global = |g: u32| match info.globals.get(g as usize) {
        Some(global) if (g as usize) < visible_globals && !global.mutable => Ok(global.ty),
        Some(global) if global.mutable => Err(format!("global.get {g} of a mutable global")),
        _ => Err(format!("global.get {g} of a global not initialised yet ({visible_globals} are)")),
    };
    let ty = match *e {
        ConstExpr::Gc(ref ops) => gc_const_type(info, ops, global)?,
        // Type-checked by running it over types (values are irrelevant here).
        ConstExpr::Extended(ref ops) => eval_extended(ops, |g| global(g).map(|t| (t, 0)))?.0,
        ConstExpr::I32(_) => WasmType::I32,
        ConstExpr::I64(_) => WasmType::I64,
        ConstExpr::F32(_) => WasmType::F32,
        ConstExpr::F64(_) => WasmType::F64,
        ConstExpr::V128(_) => WasmType::V128,
        ConstExpr::RefNull(t) if t.is_ref() => t,
        ConstExpr::RefNull(t) => return Err(format!("ref.null of non-reference type {t}")),
        ConstExpr::RefFunc(f) if (f as usize) < info.funcs.len() => WasmType::reference(false, HeapType::Concrete(info.funcs[f as usize])),
        ConstExpr::RefFunc(f) => return Err(format!("ref.func {f} out of range")),
        ConstExpr::GlobalGet(g) => global(g)?,
    };
    if !info.val_subtype(ty, want) {
        return Err(format!("constant of type {ty} where {want} is expected"));
    }
    Ok(())
}

/// The type of a GC constant expression, checked instruction by instruction.
fn gc_const_type(info: &ModuleInfo, ops: &[GcConstOp], global: impl Fn(u32) -> Result<WasmType, String>) -> Result<WasmType, String> {
    let mut stack: Vec<WasmType> = Vec::new();
    // `ref.null` (its heap type is not recorded) stands for a null of any hierarchy.
    let null = WasmType::reference(true, HeapType::None);
    let pop = |stack: &mut Vec<WasmType>, want: WasmType| match stack.pop() {
        Some(t) if info.val_subtype(t, want) || (t == null && want.is_nullable()) => Ok(()),
        Some(t) => Err(format!("{t} where {want} is expected")),
        None => Err("operand stack underflow".to_string()),
    };
    let fields = |ty: u32| -> Result<&[FieldType], String> {
        match info.type_defs.get(ty as usize).map(|d| &d.composite) {
            Some(CompositeType::Struct(f)) => Ok(f),
            Some(CompositeType::Array(f)) => Ok(std::slice::from_ref(f)),
            _ => Err(format!("type {ty} is not a struct or array type")),
        }
    };
    let is_array = |ty: u32| matches!(info.type_defs.get(ty as usize).map(|d| &d.composite), Some(CompositeType::Array(_)));
    for op in ops {
        let t = match *op {
            GcConstOp::Const(t, _) if !t.is_ref() => t,
            GcConstOp::Const(t, _) => return Err(format!("constant of reference type {t}")),
            GcConstOp::RefNull => WasmType::reference(true, HeapType::None),
            GcConstOp::RefFunc(f) if (f as usize) < info.funcs.len() => WasmType::reference(false, HeapType::Concrete(info.funcs[f as usize])),
            GcConstOp::RefFunc(f) => return Err(format!("ref.func {f} out of range")),
            GcConstOp::GlobalGet(g) => global(g)?,
            GcConstOp::Arith(a) => {
                let (t, _) = a.binary().ok_or("bad arithmetic")?;
                pop(&mut stack, t)?;
                pop(&mut stack, t)?;
                t
            }
            GcConstOp::StructNew(ty) | GcConstOp::StructNewDefault(ty) if !is_array(ty) => {
                let fs = fields(ty)?;
                if matches!(op, GcConstOp::StructNew(_)) {
                    for f in fs.iter().rev() {
                        pop(&mut stack, f.storage.unpacked())?;
                    }
                }
                WasmType::reference(false, HeapType::Concrete(ty))
            }
            GcConstOp::ArrayNew(ty) | GcConstOp::ArrayNewDefault(ty) | GcConstOp::ArrayNewFixed(ty, _) if is_array(ty) => {
                let elem = fields(ty)?[0].storage.unpacked();
                match *op {
                    GcConstOp::ArrayNew(_) => {
                        pop(&mut stack, WasmType::I32)?;
                        pop(&mut stack, elem)?;
                    }
                    GcConstOp::ArrayNewDefault(_) => pop(&mut stack, WasmType::I32)?,
                    GcConstOp::ArrayNewFixed(_, n) => {
                        if n as usize > stack.len() {
                            return Err("operand stack underflow".into());
                        }
                        for _ in 0..n {
                            pop(&mut stack, elem)?;
                        }
                    }
                    _ => unreachable!(),
                }
                WasmType::reference(false, HeapType::Concrete(ty))
            }
            GcConstOp::StructNew(ty) | GcConstOp::StructNewDefault(ty) | GcConstOp::ArrayNew(ty) | GcConstOp::ArrayNewDefault(ty) | GcConstOp::ArrayNewFixed(ty, _) => {
                return Err(format!("type {ty} of the wrong kind"));
            }
            GcConstOp::RefI31 => {
                pop(&mut stack, WasmType::I32)?;
                WasmType::reference(false, HeapType::I31)
            }
            GcConstOp::AnyConvertExtern => {
                pop(&mut stack, WasmType::ExternRef)?;
                WasmType::reference(true, HeapType::Any)
            }
            GcConstOp::ExternConvertAny => {
                pop(&mut stack, WasmType::reference(true, HeapType::Any))?;
                WasmType::ExternRef
            }
        };
        stack.push(t);
    }
    match stack[..] {
        [t] => Ok(t),
        _ => Err(format!("constant expression leaves {} values", stack.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: Key = Key([7; 32]);

    fn sample() -> Vec<u8> {
        // (module (memory 1) (data (i32.const 8) "hi") (func (export "f") (result i32) i32.const 7))
        let wasm = [
            0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 5, 3, 1, 0, 1, 7, 5, 1,
            1, 102, 0, 0, 10, 6, 1, 4, 0, 65, 7, 11, 11, 8, 1, 0, 65, 8, 11, 2, 104, 105,
        ];
        let module = crate::compile(&wasm, &Settings::default()).unwrap();
        serialize(&module, &Settings::default(), &KEY).unwrap()
    }

    #[test]
    fn round_trip_and_layout() {
        let wasm_module = {
            let bytes = sample();
            let a = deserialize(&bytes, &KEY).unwrap();
            assert_eq!(a.header.code.start % PAGE_SIZE, 0);
            assert_eq!(a.header.code.end, bytes.len());
            assert_eq!(a.module.info.data(&a.module.info.datas[0]), b"hi");
            assert_eq!(a.module.info.export("f").unwrap().index, 0);
            a.into_compiled()
        };
        assert!(!wasm_module.code.is_empty());
        // Serializing the decoded module gives the same bytes.
        assert_eq!(serialize(&wasm_module, &Settings::default(), &KEY).unwrap(), sample());
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(deserialize(&bytes[..len], &KEY).is_err(), "truncated to {len}");
        }
        let mut copy = bytes.clone();
        for i in 0..bytes.len() {
            copy[i] ^= 0x20;
            assert!(deserialize(&copy, &KEY).is_err(), "byte {i} flipped");
            copy[i] = bytes[i];
        }
    }

    #[test]
    fn another_key_or_a_recomputed_tag_without_the_key_is_refused() {
        let bytes = sample();
        assert_eq!(deserialize(&bytes, &Key([8; 32])).unwrap_err(), ArtifactError::Authentication);
        // An attacker who edits the file and renews the tag under any other key gets nowhere.
        let mut edited = bytes.clone();
        let last = edited.len() - 1;
        edited[last] ^= 0xcc;
        update_mac(&mut edited, &Key([0; 32]));
        assert_eq!(deserialize(&edited, &KEY).unwrap_err(), ArtifactError::Authentication);
        // Under the right key the edit is authentic (the key is the whole defence).
        update_mac(&mut edited, &KEY);
        assert!(header(&edited, &KEY).is_ok());
    }

    /// A module with an extended constant expression (it reads an imported global).
    fn extended_sample() -> (CompiledModule, Vec<u8>) {
        // (module (global $g (import "m" "g") i32) (memory 1)
        //   (global i32 (i32.mul (i32.add (global.get $g) (i32.const 1)) (i32.const 2)))
        //   (data (i32.add (global.get $g) (i32.const 4)) "x"))
        let wasm = [
            0, 97, 115, 109, 1, 0, 0, 0, 2, 8, 1, 1, 109, 1, 103, 3, 127, 0, 5, 3, 1, 0, 1, 6, 12, 1, 127, 0, 35, 0,
            65, 1, 106, 65, 2, 108, 11, 11, 10, 1, 0, 35, 0, 65, 4, 106, 11, 1, 120,
        ];
        let module = crate::compile(&wasm, &Settings::default()).unwrap();
        let bytes = serialize(&module, &Settings::default(), &KEY).unwrap();
        (module, bytes)
    }

    #[test]
    fn extended_constant_expressions_round_trip() {
        let (module, bytes) = extended_sample();
        use ConstOp::*;
        let want = ConstExpr::Extended(vec![GlobalGet(0), I32(1), I32Add, I32(2), I32Mul].into());
        assert_eq!(module.info.global_inits, vec![want]);
        let a = deserialize(&bytes, &KEY).unwrap();
        assert_eq!(a.module.info.global_inits, module.info.global_inits);
        assert!(matches!(&a.module.info.datas[0].mode, DataMode::Active { offset: ConstExpr::Extended(_), .. }));
        // Without a global, it is folded to the constant it is.
        let folded = crate::compile(
            &[0, 97, 115, 109, 1, 0, 0, 0, 6, 12, 1, 127, 0, 65, 127, 65, 3, 108, 65, 1, 107, 11],
            &Settings::default(),
        )
        .unwrap();
        assert_eq!(folded.info.global_inits, vec![ConstExpr::I32(-4)]);
    }

    #[test]
    fn crafted_extended_expressions_are_refused() {
        let (module, _) = extended_sample();
        use ConstOp::*;
        let bad: [&[ConstOp]; 6] = [
            &[],
            &[I32Add],
            &[I32(1), I64(2), I32Add],
            &[I32(1), I32(2)],
            &[I64(1)],
            &[GlobalGet(1)],
        ];
        for ops in bad {
            let mut m = module.clone();
            m.info.global_inits[0] = ConstExpr::Extended(ops.into());
            let bytes = serialize(&m, &Settings::default(), &KEY).unwrap();
            assert!(matches!(deserialize(&bytes, &KEY), Err(ArtifactError::Malformed(_))), "{ops:?}");
        }
    }

    #[test]
    fn every_changed_metadata_byte_under_a_valid_mac_is_an_error_or_decodes() {
        // A crafted file with a valid MAC: decoding must never panic.
        let (_, bytes) = extended_sample();
        let meta = header(&bytes, &KEY).unwrap().meta;
        let mut copy = bytes.clone();
        for i in meta {
            for new in [0x00, 0x08, 0xff, bytes[i] ^ 0x01] {
                copy[i] = new;
                update_mac(&mut copy, &KEY);
                let _ = deserialize(&copy, &KEY);
            }
            copy[i] = bytes[i];
        }
    }

    #[test]
    fn incompatible_builds_are_named() {
        let module = crate::compile(b"\0asm\x01\0\0\0", &Settings::default()).unwrap();
        let host = host_isa().unwrap();
        let other = serialize_for(&module, BoundsChecks::GuardPages, Features::all(), "0.0.1", host, &KEY).unwrap();
        let e = deserialize(&other, &KEY).unwrap_err().to_string();
        assert!(e.contains("compiled by wasce 0.0.1 for") && e.contains(&format!("this is wasce {COMPILER_VERSION} for")), "{e}");
        let isa = format!("{host} has_teleport");
        let other = serialize_for(&module, BoundsChecks::GuardPages, Features::all(), COMPILER_VERSION, &isa, &KEY).unwrap();
        let e = deserialize(&other, &KEY).unwrap_err().to_string();
        assert!(e.contains("this host lacks has_teleport") && e.contains("recompile"), "{e}");
        // Fewer ISA extensions than the host has: runs.
        let (target, _) = host.split_once(' ').unwrap_or((host, ""));
        let other = serialize_for(&module, BoundsChecks::Explicit, Features::all(), COMPILER_VERSION, target, &KEY).unwrap();
        assert_eq!(deserialize(&other, &KEY).unwrap().header.bounds_checks, BoundsChecks::Explicit);
    }

    /// type 0 = [] -> [i32]; type 1 = [(ref 0)] -> [i32]; global (ref null 0) = ref.func 0;
    /// func 0 (type 0) returns 7; func 1 (type 1) call_refs its argument.
    const TYPED: &[u8] = &[
        0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 11, 2, 0x60, 0, 1, 0x7f, 0x60, 1, 0x64, 0, 1, 0x7f, 3, 3, 2, 0, 1, 6, 7, 1,
        0x63, 0, 0, 0xd2, 0, 0x0b, 10, 13, 2, 4, 0, 0x41, 7, 0x0b, 6, 0, 0x20, 0, 0x14, 0, 0x0b,
    ];

    #[test]
    fn typed_references_round_trip() {
        let module = crate::compile(TYPED, &Settings::default()).unwrap();
        let bytes = serialize(&module, &Settings::default(), &KEY).unwrap();
        let decoded = deserialize(&bytes, &KEY).unwrap().into_compiled();
        let info = &decoded.info;
        assert_eq!(info.types[1].params, vec![WasmType::Ref(RefType { nullable: false, heap: HeapType::Concrete(0) })]);
        assert_eq!(info.globals[0].ty, WasmType::reference(true, HeapType::Concrete(0)));
        assert_eq!(serialize(&decoded, &Settings::default(), &KEY).unwrap(), bytes);
    }

    #[test]
    fn typed_references_to_missing_or_later_types_are_refused() {
        let module = crate::compile(TYPED, &Settings::default()).unwrap();
        let refusal = |edit: &dyn Fn(&mut ModuleInfo)| {
            let mut m = module.clone();
            edit(&mut m.info);
            let bytes = serialize(&m, &Settings::default(), &KEY).unwrap();
            match deserialize(&bytes, &KEY) {
                Err(ArtifactError::Malformed(what)) => what,
                other => panic!("accepted: {:?}", other.map(|_| ())),
            }
        };
        let later = WasmType::reference(true, HeapType::Concrete(1));
        assert!(refusal(&|i| i.types[0].results = vec![later]).contains("later type"));
        assert!(refusal(&|i| i.types[0].params = vec![WasmType::reference(false, HeapType::Concrete(1))]).contains("later type"));
        let missing = WasmType::reference(true, HeapType::Concrete(9));
        assert!(refusal(&|i| i.globals[0].ty = missing).contains("out of range"));
        // ref.func 0 has type (ref 0): not a (ref 1).
        assert!(refusal(&|i| i.globals[0].ty = later).contains("where"));
        // GC heap types are decoded (and checked like the others): a function is no anyref.
        let gc = WasmType::Ref(RefType { nullable: true, heap: HeapType::Any });
        assert!(refusal(&|i| i.globals[0].ty = gc).contains("where"));
    }

    #[test]
    fn gc_type_definitions_round_trip_and_are_checked() {
        // (module (type (struct (field i32))) (func (result anyref) (struct.new_default 0)))
        let wasm = b"\0asm\x01\0\0\0\x01\x09\x02\x5f\x01\x7f\x00\x60\x00\x01\x6e\x03\x02\x01\x01\x0a\x07\x01\x05\x00\xfb\x01\x00\x0b";
        let module = crate::compile(wasm, &Settings::default()).unwrap();
        assert_eq!(module.info.type_defs.len(), 2);
        let bytes = serialize(&module, &Settings::default(), &KEY).unwrap();
        let decoded = deserialize(&bytes, &KEY).unwrap().into_compiled();
        assert_eq!(decoded.info.type_defs, module.info.type_defs);
        assert_eq!(serialize(&decoded, &Settings::default(), &KEY).unwrap(), bytes);
        let refusal = |edit: &dyn Fn(&mut ModuleInfo)| {
            let mut m = module.clone();
            edit(&mut m.info);
            let bytes = serialize(&m, &Settings::default(), &KEY).unwrap();
            match deserialize(&bytes, &KEY) {
                Err(ArtifactError::Malformed(what)) => what,
                other => panic!("accepted: {:?}", other.map(|_| ())),
            }
        };
        // A struct type that claims a function signature, a later or final supertype, a
        // definition count that does not match, a recursion group out of range.
        assert!(refusal(&|i| i.types[0].results = vec![WasmType::I32]).contains("inconsistent"));
        assert!(refusal(&|i| i.type_defs[0].supertype = Some(1)).contains("inconsistent"));
        assert!(refusal(&|i| i.type_defs[1].supertype = Some(0)).contains("inconsistent"));
        assert!(refusal(&|i| { i.type_defs.pop(); }).contains("count"));
        assert!(refusal(&|i| i.rec_groups = vec![(1, 2)]).contains("recursion groups"));
        // A struct field naming a later type outside its group.
        let later = StorageType::Val(WasmType::reference(true, HeapType::Concrete(1)));
        assert!(refusal(&|i| i.type_defs[0].composite = CompositeType::Struct(vec![FieldType { storage: later, mutable: false }])).contains("later type"));
        // A GC constant expression of the wrong type.
        assert!(refusal(&|i| {
            i.globals.push(GlobalType { ty: WasmType::reference(false, HeapType::Concrete(0)), mutable: false });
            i.global_inits.push(ConstExpr::Gc(vec![GcConstOp::Const(WasmType::I32, 1), GcConstOp::RefI31].into()));
        }).contains("where"));
    }
}
