//! The module description: everything about a module except its function bodies, decoded once by
//! wasmparser and shared by the compiler (to lay out the vmctx) and the engine (to instantiate).

use std::collections::HashMap;
use wasmparser as wp;

/// A WebAssembly value type.
///
/// `FuncRef` and `ExternRef` are the nullable abstract references of WebAssembly 2.0
/// (`(ref null func)`, `(ref null extern)`); every other reference type (typed function
/// references, non-nullable references, the bottom types) is a `Ref`. A `RefType` that is one of
/// the two 2.0 types is always written as that variant (`WasmType::reference` normalises), so
/// `==` is type equality.
///
/// In a `ModuleInfo`, `HeapType::Concrete(i)` names the module's type `i`; in the engine's
/// store, types are in canonical form and `Concrete(n)` names canonical type id `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WasmType {
    I32,
    I64,
    F32,
    F64,
    V128,
    FuncRef,
    ExternRef,
    /// `exnref` (`(ref null exn)`): the address of an exception object, 0 for null.
    ExnRef,
    Ref(RefType),
}

/// A reference type other than `funcref` and `externref` (see `WasmType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RefType {
    pub nullable: bool,
    pub heap: HeapType,
}

/// A heap type. Only the function and extern hierarchies are compiled; the GC proposal's types
/// are representable (so the description can grow) but rejected by `WasmType::from_ref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeapType {
    Func,
    Extern,
    /// A function type: a module type index (or a canonical id in the store).
    Concrete(u32),
    /// The bottom of the function hierarchy (`nofunc`; `nullfuncref` when nullable).
    NoFunc,
    /// The bottom of the extern hierarchy (`noextern`; `nullexternref` when nullable).
    NoExtern,
    Any,
    Eq,
    I31,
    Struct,
    Array,
    None,
    /// Exception references (`exn`) and their bottom (`noexn`).
    Exn,
    NoExn,
}

impl HeapType {
    /// Whether this heap type is in the function hierarchy (values are `VMFuncRef` addresses).
    pub fn is_func(self) -> bool {
        matches!(self, HeapType::Func | HeapType::Concrete(_) | HeapType::NoFunc)
    }

    /// Whether the GC proposal is needed for it (not compiled).
    pub fn is_gc(self) -> bool {
        matches!(self, HeapType::Any | HeapType::Eq | HeapType::I31 | HeapType::Struct | HeapType::Array | HeapType::None)
    }

    /// Heap subtyping without declared subtypes (no GC): `concrete`/`nofunc` ≤ `func`,
    /// `nofunc` ≤ every function type, `noextern` ≤ `extern`; concrete types by equality of
    /// their indices (canonical ids in the store).
    pub fn is_subtype_of(self, other: HeapType) -> bool {
        use HeapType as H;
        self == other
            || matches!(
                (self, other),
                (H::Concrete(_) | H::NoFunc, H::Func) | (H::NoFunc, H::Concrete(_)) | (H::NoExtern, H::Extern) | (H::NoExn, H::Exn)
            )
    }
}

impl WasmType {
    pub fn from_wp(ty: wp::ValType) -> Result<WasmType, String> {
        Ok(match ty {
            wp::ValType::I32 => WasmType::I32,
            wp::ValType::I64 => WasmType::I64,
            wp::ValType::F32 => WasmType::F32,
            wp::ValType::F64 => WasmType::F64,
            wp::ValType::V128 => WasmType::V128,
            wp::ValType::Ref(r) => WasmType::from_ref(r)?,
        })
    }

    pub fn from_ref(r: wp::RefType) -> Result<WasmType, String> {
        use wp::AbstractHeapType as A;
        let heap = match r.heap_type() {
            wp::HeapType::Abstract { shared: false, ty } => match ty {
                A::Func => HeapType::Func,
                A::Extern => HeapType::Extern,
                A::NoFunc => HeapType::NoFunc,
                A::NoExtern => HeapType::NoExtern,
                A::Exn => HeapType::Exn,
                A::NoExn => HeapType::NoExn,
                _ => return Err(format!("unsupported reference type {r:?} (GC)")),
            },
            wp::HeapType::Concrete(wp::UnpackedIndex::Module(i)) => HeapType::Concrete(i),
            _ => return Err(format!("unsupported reference type {r:?}")),
        };
        Ok(WasmType::reference(r.is_nullable(), heap))
    }

    /// The reference type `(ref null? heap)`, normalised (see `WasmType`).
    pub fn reference(nullable: bool, heap: HeapType) -> WasmType {
        match (nullable, heap) {
            (true, HeapType::Func) => WasmType::FuncRef,
            (true, HeapType::Extern) => WasmType::ExternRef,
            (true, HeapType::Exn) => WasmType::ExnRef,
            _ => WasmType::Ref(RefType { nullable, heap }),
        }
    }

    /// The uniform view of a reference type; `None` for numeric and vector types.
    pub fn as_ref_type(self) -> Option<RefType> {
        match self {
            WasmType::FuncRef => Some(RefType { nullable: true, heap: HeapType::Func }),
            WasmType::ExternRef => Some(RefType { nullable: true, heap: HeapType::Extern }),
            WasmType::ExnRef => Some(RefType { nullable: true, heap: HeapType::Exn }),
            WasmType::Ref(r) => Some(r),
            _ => None,
        }
    }

    pub fn is_ref(self) -> bool {
        self.as_ref_type().is_some()
    }

    /// Whether values of this type are function references (else extern references).
    pub fn is_func_ref(self) -> bool {
        self.as_ref_type().is_some_and(|r| r.heap.is_func())
    }

    /// Whether null is a value of this type (numeric and vector types: no).
    pub fn is_nullable(self) -> bool {
        self.as_ref_type().is_some_and(|r| r.nullable)
    }

    /// Value subtyping (see `HeapType::is_subtype_of`); both types in the same index space.
    pub fn is_subtype_of(self, other: WasmType) -> bool {
        match (self.as_ref_type(), other.as_ref_type()) {
            (Some(a), Some(b)) => (!a.nullable || b.nullable) && a.heap.is_subtype_of(b.heap),
            _ => self == other,
        }
    }

    /// This type with every concrete heap type's index mapped by `f` (module index to
    /// canonical id, say).
    pub fn map_concrete(self, f: impl FnOnce(u32) -> u32) -> WasmType {
        match self {
            WasmType::Ref(RefType { nullable, heap: HeapType::Concrete(i) }) => {
                WasmType::Ref(RefType { nullable, heap: HeapType::Concrete(f(i)) })
            }
            other => other,
        }
    }

    /// The module type a concrete reference type names.
    pub fn concrete_index(self) -> Option<u32> {
        match self {
            WasmType::Ref(RefType { heap: HeapType::Concrete(i), .. }) => Some(i),
            _ => None,
        }
    }
}

impl std::fmt::Display for HeapType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeapType::Concrete(i) => write!(f, "{i}"),
            other => f.write_str(match other {
                HeapType::Func => "func",
                HeapType::Extern => "extern",
                HeapType::NoFunc => "nofunc",
                HeapType::NoExtern => "noextern",
                HeapType::Any => "any",
                HeapType::Eq => "eq",
                HeapType::I31 => "i31",
                HeapType::Struct => "struct",
                HeapType::Array => "array",
                HeapType::None => "none",
                HeapType::Exn => "exn",
                HeapType::NoExn => "noexn",
                HeapType::Concrete(_) => unreachable!(),
            }),
        }
    }
}

impl std::fmt::Display for WasmType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WasmType::Ref(r) => write!(f, "(ref {}{})", if r.nullable { "null " } else { "" }, r.heap),
            other => f.write_str(match other {
                WasmType::I32 => "i32",
                WasmType::I64 => "i64",
                WasmType::F32 => "f32",
                WasmType::F64 => "f64",
                WasmType::V128 => "v128",
                WasmType::FuncRef => "funcref",
                WasmType::ExternRef => "externref",
                WasmType::ExnRef => "exnref",
                WasmType::Ref(_) => unreachable!(),
            }),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct FuncType {
    pub params: Vec<WasmType>,
    pub results: Vec<WasmType>,
}

impl std::fmt::Display for FuncType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[WasmType]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" ");
        write!(f, "(func (param {}) (result {}))", list(&self.params), list(&self.results))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableType {
    pub elem: WasmType,
    pub min: u64,
    pub max: Option<u64>,
    /// Indexed by i64 (memory64's table64), else by i32.
    pub table64: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryType {
    /// Minimum size in 64 KiB pages.
    pub min: u64,
    pub max: Option<u64>,
    pub shared: bool,
    /// Indexed by i64 (memory64), else by i32.
    pub memory64: bool,
}

impl MemoryType {
    /// The largest size the index type allows, in pages (2^16 for 32-bit memories, 2^48 for
    /// 64-bit ones).
    pub fn max_pages_by_index(&self) -> u64 {
        if self.memory64 { 1 << 48 } else { 1 << 16 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalType {
    pub ty: WasmType,
    pub mutable: bool,
}

/// A constant expression. WebAssembly 2.0 allows exactly one instruction, and so do most
/// expressions; extended constant expressions (`i32/i64.add/sub/mul`) are folded to one
/// constant when they read no global, and are kept as `Extended` otherwise.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstExpr {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    V128(u128),
    RefNull(WasmType),
    RefFunc(u32),
    GlobalGet(u32),
    /// An extended constant expression that reads a global: its instructions in order (a
    /// stack machine over i32/i64 values), evaluated at instantiation.
    Extended(Box<[ConstOp]>),
}

/// One instruction of an extended constant expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstOp {
    I32(i32),
    I64(i64),
    GlobalGet(u32),
    I32Add,
    I32Sub,
    I32Mul,
    I64Add,
    I64Sub,
    I64Mul,
}

impl ConstOp {
    /// The arithmetic operators: (operand type, wrapping operation on 64-bit values).
    pub fn binary(self) -> Option<(WasmType, fn(u64, u64) -> u64)> {
        Some(match self {
            ConstOp::I32Add => (WasmType::I32, |a, b| (a as u32).wrapping_add(b as u32) as u64),
            ConstOp::I32Sub => (WasmType::I32, |a, b| (a as u32).wrapping_sub(b as u32) as u64),
            ConstOp::I32Mul => (WasmType::I32, |a, b| (a as u32).wrapping_mul(b as u32) as u64),
            ConstOp::I64Add => (WasmType::I64, u64::wrapping_add),
            ConstOp::I64Sub => (WasmType::I64, u64::wrapping_sub),
            ConstOp::I64Mul => (WasmType::I64, u64::wrapping_mul),
            ConstOp::I32(_) | ConstOp::I64(_) | ConstOp::GlobalGet(_) => return None,
        })
    }
}

/// Evaluate an extended constant expression: `global` reads a global's value (i32 values are
/// zero-extended). Errors (never panics) on a malformed expression: a stack that underflows,
/// operands of the wrong type, or not exactly one value left. Returns the value and its type.
pub fn eval_extended(
    ops: &[ConstOp],
    mut global: impl FnMut(u32) -> Result<(WasmType, u64), String>,
) -> Result<(WasmType, u64), String> {
    let mut stack: Vec<(WasmType, u64)> = Vec::new();
    for op in ops {
        let v = match *op {
            ConstOp::I32(v) => (WasmType::I32, v as u32 as u64),
            ConstOp::I64(v) => (WasmType::I64, v as u64),
            ConstOp::GlobalGet(g) => global(g)?,
            op => {
                let (ty, f) = op.binary().ok_or("bad constant instruction")?;
                let (b, a) = (stack.pop(), stack.pop());
                match (a, b) {
                    (Some((ta, a)), Some((tb, b))) if ta == ty && tb == ty => (ty, f(a, b)),
                    _ => return Err(format!("{op:?} without two {ty} operands")),
                }
            }
        };
        if !matches!(v.0, WasmType::I32 | WasmType::I64) {
            return Err(format!("a {} value in an extended constant expression", v.0));
        }
        stack.push(v);
    }
    match stack[..] {
        [v] => Ok(v),
        _ => Err(format!("extended constant expression leaves {} values", stack.len())),
    }
}

#[derive(Clone, Debug)]
pub enum ImportKind {
    Func(u32),
    Table(TableType),
    Memory(MemoryType),
    Global(GlobalType),
    /// An exception tag of this function type (exception handling).
    Tag(u32),
}

#[derive(Clone, Debug)]
pub struct Import {
    pub module: String,
    pub name: String,
    pub kind: ImportKind,
}

impl Import {
    /// Module names whose functions compiled code assumes never throw (host functions: the
    /// engine refuses to bind such an import to a WebAssembly function), so calls to them need
    /// no exception check.
    pub const NEVER_THROWING_MODULES: &'static [&'static str] = &["wasi_snapshot_preview1", "wasi_unstable"];

    /// Whether compiled code assumes this import never throws.
    pub fn never_throws(&self) -> bool {
        matches!(self.kind, ImportKind::Func(_)) && Self::NEVER_THROWING_MODULES.contains(&self.module.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Func,
    Table,
    Memory,
    Global,
    Tag,
}

#[derive(Clone, Debug)]
pub struct Export {
    pub name: String,
    pub kind: ExportKind,
    pub index: u32,
}

#[derive(Clone, Debug)]
pub enum ElemMode {
    Passive,
    Declared,
    Active { table: u32, offset: ConstExpr },
}

#[derive(Clone, Debug)]
pub struct ElemSegment {
    pub mode: ElemMode,
    pub ty: WasmType,
    pub items: Vec<ConstExpr>,
}

#[derive(Clone, Debug)]
pub enum DataMode {
    Passive,
    Active { memory: u32, offset: ConstExpr },
}

#[derive(Clone, Debug)]
pub struct DataSegment {
    pub mode: DataMode,
    /// Byte range of the contents in `ModuleInfo::data_bytes`.
    pub range: std::ops::Range<usize>,
}

/// Everything about a module but its code.
#[derive(Clone, Debug, Default)]
pub struct ModuleInfo {
    pub types: Vec<FuncType>,
    /// The first type of each type's recursion group (`rec`), per type; empty when every type
    /// is its own group. A type names only types before the end of its group.
    pub rec_group_starts: Vec<u32>,
    pub imports: Vec<Import>,
    /// Type index of every function, imported ones first.
    pub funcs: Vec<u32>,
    pub num_imported_funcs: u32,
    pub tables: Vec<TableType>,
    pub num_imported_tables: u32,
    pub memories: Vec<MemoryType>,
    pub num_imported_memories: u32,
    pub globals: Vec<GlobalType>,
    pub num_imported_globals: u32,
    /// Function type of every exception tag, imported ones first.
    pub tags: Vec<u32>,
    pub num_imported_tags: u32,
    /// Initialiser of each defined global (index minus `num_imported_globals`).
    pub global_inits: Vec<ConstExpr>,
    /// Initialiser of each defined table (defaults to null).
    pub table_inits: Vec<ConstExpr>,
    pub exports: Vec<Export>,
    pub start: Option<u32>,
    pub elems: Vec<ElemSegment>,
    pub datas: Vec<DataSegment>,
    pub data_bytes: Vec<u8>,
    /// Function names from the name section, for backtraces.
    pub func_names: HashMap<u32, String>,
    /// The module's own name from the name section.
    pub name: Option<String>,
}

impl ModuleInfo {
    /// The recursion groups, in order, as ranges of type indices (each type its own group when
    /// `rec_group_starts` is empty).
    pub fn rec_groups(&self) -> Vec<std::ops::Range<u32>> {
        let n = self.types.len() as u32;
        let mut groups: Vec<std::ops::Range<u32>> = Vec::new();
        for i in 0..n {
            let start = self.rec_group_starts.get(i as usize).copied().unwrap_or(i);
            match groups.last_mut() {
                Some(g) if g.start == start => g.end = i + 1,
                _ => groups.push(i..i + 1),
            }
        }
        groups
    }

    pub fn func_type(&self, func: u32) -> &FuncType {
        &self.types[self.funcs[func as usize] as usize]
    }

    pub fn num_defined_funcs(&self) -> u32 {
        self.funcs.len() as u32 - self.num_imported_funcs
    }

    pub fn is_imported_func(&self, func: u32) -> bool {
        func < self.num_imported_funcs
    }

    pub fn is_imported_memory(&self, mem: u32) -> bool {
        mem < self.num_imported_memories
    }

    pub fn is_imported_table(&self, table: u32) -> bool {
        table < self.num_imported_tables
    }

    pub fn is_imported_global(&self, global: u32) -> bool {
        global < self.num_imported_globals
    }

    pub fn is_imported_tag(&self, tag: u32) -> bool {
        tag < self.num_imported_tags
    }

    /// The function type of tag `tag` (its parameters are the exception's payload).
    pub fn tag_type(&self, tag: u32) -> &FuncType {
        &self.types[self.tags[tag as usize] as usize]
    }

    pub fn export(&self, name: &str) -> Option<&Export> {
        self.exports.iter().find(|e| e.name == name)
    }

    pub fn data(&self, segment: &DataSegment) -> &[u8] {
        &self.data_bytes[segment.range.clone()]
    }

    /// A printable name for a function: the name section's, else `<wasm function N>`.
    pub fn func_name(&self, func: u32) -> String {
        match self.func_names.get(&func) {
            Some(name) => name.clone(),
            None => format!("<wasm function {func}>"),
        }
    }
}

pub(crate) fn const_expr(expr: &wp::ConstExpr<'_>) -> Result<ConstExpr, String> {
    let mut reader = expr.get_operators_reader();
    let mut ops = Vec::new();
    loop {
        match reader.read().map_err(|e| e.to_string())? {
            wp::Operator::End => break,
            op => ops.push(op),
        }
    }
    if let [op] = &ops[..] {
        return Ok(match *op {
            wp::Operator::I32Const { value } => ConstExpr::I32(value),
            wp::Operator::I64Const { value } => ConstExpr::I64(value),
            wp::Operator::F32Const { value } => ConstExpr::F32(value.bits()),
            wp::Operator::F64Const { value } => ConstExpr::F64(value.bits()),
            wp::Operator::V128Const { value } => ConstExpr::V128(value.i128() as u128),
            wp::Operator::RefNull { hty } => ConstExpr::RefNull(WasmType::from_ref(
                wp::RefType::new(true, hty).ok_or("bad heap type")?,
            )?),
            wp::Operator::RefFunc { function_index } => ConstExpr::RefFunc(function_index),
            wp::Operator::GlobalGet { global_index } => ConstExpr::GlobalGet(global_index),
            ref other => return Err(format!("unsupported constant expression {other:?}")),
        });
    }
    // Extended constant expressions (validated: integer constants, global.get and arithmetic).
    let mut program = Vec::with_capacity(ops.len());
    for op in &ops {
        program.push(match *op {
            wp::Operator::I32Const { value } => ConstOp::I32(value),
            wp::Operator::I64Const { value } => ConstOp::I64(value),
            wp::Operator::GlobalGet { global_index } => ConstOp::GlobalGet(global_index),
            wp::Operator::I32Add => ConstOp::I32Add,
            wp::Operator::I32Sub => ConstOp::I32Sub,
            wp::Operator::I32Mul => ConstOp::I32Mul,
            wp::Operator::I64Add => ConstOp::I64Add,
            wp::Operator::I64Sub => ConstOp::I64Sub,
            wp::Operator::I64Mul => ConstOp::I64Mul,
            ref other => return Err(format!("unsupported instruction in a constant expression: {other:?}")),
        });
    }
    if program.iter().any(|op| matches!(op, ConstOp::GlobalGet(_))) {
        return Ok(ConstExpr::Extended(program.into()));
    }
    // No global: fold it to the constant it is.
    match eval_extended(&program, |g| Err(format!("global {g}")))? {
        (WasmType::I32, v) => Ok(ConstExpr::I32(v as u32 as i32)),
        (_, v) => Ok(ConstExpr::I64(v as i64)),
    }
}

pub(crate) fn table_type(t: &wp::TableType) -> Result<TableType, String> {
    Ok(TableType { elem: WasmType::from_ref(t.element_type)?, min: t.initial, max: t.maximum, table64: t.table64 })
}

pub(crate) fn memory_type(m: &wp::MemoryType) -> Result<MemoryType, String> {
    if m.page_size_log2.is_some() {
        return Err("custom page sizes are not supported".into());
    }
    Ok(MemoryType { min: m.initial, max: m.maximum, shared: m.shared, memory64: m.memory64 })
}

pub(crate) fn global_type(g: &wp::GlobalType) -> Result<GlobalType, String> {
    Ok(GlobalType { ty: WasmType::from_wp(g.content_type)?, mutable: g.mutable })
}

pub(crate) fn func_type(ty: &wp::FuncType) -> Result<FuncType, String> {
    Ok(FuncType {
        params: ty.params().iter().map(|t| WasmType::from_wp(*t)).collect::<Result<_, _>>()?,
        results: ty.results().iter().map(|t| WasmType::from_wp(*t)).collect::<Result<_, _>>()?,
    })
}
