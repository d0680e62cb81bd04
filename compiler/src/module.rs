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

/// A heap type: the function, extern and (GC) any hierarchies. `Concrete` names a function,
/// struct or array type; which one is known from the module's (or the store's) type table.
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
    /// A concrete type counts as a function type here: callers that may see struct or array
    /// types use `hierarchy` with the type table.
    pub fn is_func(self) -> bool {
        matches!(self, HeapType::Func | HeapType::Concrete(_) | HeapType::NoFunc)
    }

    /// The top of this heap type's hierarchy (`Func`, `Extern`, `Exn` or `Any`); `kind` says what a
    /// concrete type is.
    pub fn top(self, kind: impl Fn(u32) -> TypeKind) -> HeapType {
        match self {
            HeapType::Func | HeapType::NoFunc => HeapType::Func,
            HeapType::Extern | HeapType::NoExtern => HeapType::Extern,
            HeapType::Exn | HeapType::NoExn => HeapType::Exn,
            HeapType::Concrete(i) => match kind(i) {
                TypeKind::Func => HeapType::Func,
                _ => HeapType::Any,
            },
            _ => HeapType::Any,
        }
    }

    /// Heap subtyping with the GC proposal's hierarchy: `kind` says what a concrete type is,
    /// `concrete` whether one concrete type is a declared subtype of another (reflexive).
    pub fn is_subtype_in(self, other: HeapType, kind: &dyn Fn(u32) -> TypeKind, concrete: &dyn Fn(u32, u32) -> bool) -> bool {
        use HeapType as H;
        match (self, other) {
            (a, b) if a == b => true,
            (H::Concrete(a), H::Concrete(b)) => concrete(a, b),
            (H::NoFunc, b) => b.top(kind) == H::Func,
            (H::NoExtern, b) => b == H::Extern,
            (H::NoExn, b) => b == H::Exn,
            (H::None, b) => b.top(kind) == H::Any,
            (H::Concrete(a), b) => match kind(a) {
                TypeKind::Func => b == H::Func,
                TypeKind::Struct => matches!(b, H::Struct | H::Eq | H::Any),
                TypeKind::Array => matches!(b, H::Array | H::Eq | H::Any),
            },
            (H::I31 | H::Struct | H::Array, b) => matches!(b, H::Eq | H::Any),
            (H::Eq, b) => b == H::Any,
            _ => false,
        }
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
                A::Any => HeapType::Any,
                A::Eq => HeapType::Eq,
                A::I31 => HeapType::I31,
                A::Struct => HeapType::Struct,
                A::Array => HeapType::Array,
                A::None => HeapType::None,
                _ => return Err(format!("unsupported reference type {r:?}")),
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

/// What a defined type is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TypeKind {
    Func,
    Struct,
    Array,
}

/// How a struct field or array element is stored: packed 8/16-bit integers, or a value type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageType {
    I8,
    I16,
    Val(WasmType),
}

impl StorageType {
    /// Bytes the field takes in an object (and its alignment).
    pub fn size(self) -> u32 {
        match self {
            StorageType::I8 => 1,
            StorageType::I16 => 2,
            StorageType::Val(WasmType::I32 | WasmType::F32) => 4,
            StorageType::Val(WasmType::V128) => 16,
            StorageType::Val(_) => 8,
        }
    }

    /// The type of the field's value on the operand stack.
    pub fn unpacked(self) -> WasmType {
        match self {
            StorageType::I8 | StorageType::I16 => WasmType::I32,
            StorageType::Val(t) => t,
        }
    }

    pub fn map_concrete(self, f: impl FnOnce(u32) -> u32) -> StorageType {
        match self {
            StorageType::Val(t) => StorageType::Val(t.map_concrete(f)),
            other => other,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldType {
    pub storage: StorageType,
    pub mutable: bool,
}

/// A struct's, array's or function's definition (GC: `CompositeType`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CompositeType {
    /// A function type: the module's `types[i]` holds it.
    Func,
    Struct(Vec<FieldType>),
    Array(FieldType),
}

/// A defined type with its place in the subtype hierarchy (GC: `sub`, `final`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubType {
    pub composite: CompositeType,
    /// The declared supertype (a module type index; a canonical id in the store).
    pub supertype: Option<u32>,
    pub is_final: bool,
}

impl SubType {
    pub fn kind(&self) -> TypeKind {
        match self.composite {
            CompositeType::Func => TypeKind::Func,
            CompositeType::Struct(_) => TypeKind::Struct,
            CompositeType::Array(_) => TypeKind::Array,
        }
    }
}

/// Object layout (GC): a struct or array object is 8-aligned and starts with a header:
/// `u32` canonical type id, `u32` kind (`OBJ_KIND_*`), `u32` array length, `u32` zero; fields or
/// elements follow at `OBJ_HEADER`.
pub const OBJ_TYPE_ID: u32 = 0;
pub const OBJ_KIND: u32 = 4;
pub const OBJ_LENGTH: u32 = 8;
pub const OBJ_HEADER: u32 = 16;
pub const OBJ_KIND_STRUCT: u32 = 1;
pub const OBJ_KIND_ARRAY: u32 = 2;

/// The offset of each field of a struct with these fields, and the object's size (a multiple
/// of 8): fields in order, each aligned to its size (at most 8).
pub fn struct_layout(fields: &[FieldType]) -> (Vec<u32>, u32) {
    let mut off = OBJ_HEADER;
    let mut offsets = Vec::with_capacity(fields.len());
    for f in fields {
        let size = f.storage.size();
        let align = size.min(8);
        off = off.div_ceil(align) * align;
        offsets.push(off);
        off += size;
    }
    (offsets, off.div_ceil(8) * 8)
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
    /// A constant expression with GC instructions (`struct.new`, `array.new*`, `ref.i31`,
    /// `any.convert_extern`, ...): its instructions in order, evaluated at instantiation.
    Gc(Box<[GcConstOp]>),
}

/// One instruction of a GC constant expression (a stack machine over raw 128-bit values).
#[derive(Clone, Debug, PartialEq)]
pub enum GcConstOp {
    Const(WasmType, u128),
    RefNull,
    RefFunc(u32),
    GlobalGet(u32),
    /// i32/i64 `add`, `sub`, `mul` (extended constant expressions).
    Arith(ConstOp),
    StructNew(u32),
    StructNewDefault(u32),
    ArrayNew(u32),
    ArrayNewDefault(u32),
    ArrayNewFixed(u32, u32),
    RefI31,
    AnyConvertExtern,
    ExternConvertAny,
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

/// A constant expression's binary operator on 64-bit values (wrapping, truncated to its type).
pub type BinaryOp = fn(u64, u64) -> u64;

impl ConstOp {
    /// The arithmetic operators: (operand type, wrapping operation on 64-bit values).
    pub fn binary(self) -> Option<(WasmType, BinaryOp)> {
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
    /// Every type; a struct or array type has an empty placeholder here (see `type_defs`).
    pub types: Vec<FuncType>,
    /// Every type's definition and subtyping (GC); empty means every type is a final function
    /// type in a recursion group of its own (the WebAssembly 2.0 case).
    pub type_defs: Vec<SubType>,
    /// The first type index of each recursion group of more than one type, and its length.
    pub rec_groups: Vec<(u32, u32)>,
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
    /// What type `i` is (a function type when the module has no GC type definitions).
    pub fn type_kind(&self, i: u32) -> TypeKind {
        self.type_defs.get(i as usize).map_or(TypeKind::Func, SubType::kind)
    }

    /// Whether type `i` is final (no other type may declare it as its supertype).
    pub fn type_is_final(&self, i: u32) -> bool {
        self.type_defs.get(i as usize).is_none_or(|t| t.is_final)
    }

    /// How many supertypes type `i` has (the length of its declared chain).
    pub fn type_depth(&self, i: u32) -> u32 {
        let mut depth = 0;
        let mut t = i;
        while let Some(s) = self.type_defs.get(t as usize).and_then(|d| d.supertype) {
            depth += 1;
            // Validated: supertypes come first; the bound keeps a crafted chain finite.
            if s >= t || depth > 64 {
                break;
            }
            t = s;
        }
        depth
    }

    /// Whether module type `a` is `b` or declares it as a (transitive) supertype.
    pub fn type_subtype(&self, a: u32, b: u32) -> bool {
        let mut t = a;
        for _ in 0..=64 {
            if t == b {
                return true;
            }
            match self.type_defs.get(t as usize).and_then(|d| d.supertype) {
                Some(s) if s < t => t = s,
                _ => return false,
            }
        }
        false
    }

    /// Value subtyping between types of this module (module type indices), with the GC
    /// hierarchy and declared subtypes.
    pub fn val_subtype(&self, a: WasmType, b: WasmType) -> bool {
        match (a.as_ref_type(), b.as_ref_type()) {
            (Some(x), Some(y)) => {
                (!x.nullable || y.nullable)
                    && x.heap.is_subtype_in(y.heap, &|i| self.type_kind(i), &|s, t| self.type_subtype(s, t))
            }
            _ => a == b,
        }
    }

    /// Whether the module uses GC type definitions (struct/array types, subtyping, recursion
    /// groups) or GC constant expressions.
    pub fn uses_gc_types(&self) -> bool {
        !self.type_defs.is_empty()
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
    if ops.iter().any(|op| matches!(op, wp::Operator::StructNew { .. } | wp::Operator::StructNewDefault { .. }
        | wp::Operator::ArrayNew { .. } | wp::Operator::ArrayNewDefault { .. } | wp::Operator::ArrayNewFixed { .. }
        | wp::Operator::RefI31 | wp::Operator::AnyConvertExtern | wp::Operator::ExternConvertAny))
    {
        return gc_const_expr(&ops);
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

fn gc_const_expr(ops: &[wp::Operator<'_>]) -> Result<ConstExpr, String> {
    use wp::Operator as O;
    let mut program = Vec::with_capacity(ops.len());
    for op in ops {
        program.push(match *op {
            O::I32Const { value } => GcConstOp::Const(WasmType::I32, value as u32 as u128),
            O::I64Const { value } => GcConstOp::Const(WasmType::I64, value as u64 as u128),
            O::F32Const { value } => GcConstOp::Const(WasmType::F32, value.bits() as u128),
            O::F64Const { value } => GcConstOp::Const(WasmType::F64, value.bits() as u128),
            O::V128Const { value } => GcConstOp::Const(WasmType::V128, value.i128() as u128),
            O::RefNull { .. } => GcConstOp::RefNull,
            O::RefFunc { function_index } => GcConstOp::RefFunc(function_index),
            O::GlobalGet { global_index } => GcConstOp::GlobalGet(global_index),
            O::I32Add => GcConstOp::Arith(ConstOp::I32Add),
            O::I32Sub => GcConstOp::Arith(ConstOp::I32Sub),
            O::I32Mul => GcConstOp::Arith(ConstOp::I32Mul),
            O::I64Add => GcConstOp::Arith(ConstOp::I64Add),
            O::I64Sub => GcConstOp::Arith(ConstOp::I64Sub),
            O::I64Mul => GcConstOp::Arith(ConstOp::I64Mul),
            O::StructNew { struct_type_index } => GcConstOp::StructNew(struct_type_index),
            O::StructNewDefault { struct_type_index } => GcConstOp::StructNewDefault(struct_type_index),
            O::ArrayNew { array_type_index } => GcConstOp::ArrayNew(array_type_index),
            O::ArrayNewDefault { array_type_index } => GcConstOp::ArrayNewDefault(array_type_index),
            O::ArrayNewFixed { array_type_index, array_size } => GcConstOp::ArrayNewFixed(array_type_index, array_size),
            O::RefI31 => GcConstOp::RefI31,
            O::AnyConvertExtern => GcConstOp::AnyConvertExtern,
            O::ExternConvertAny => GcConstOp::ExternConvertAny,
            ref other => return Err(format!("unsupported instruction in a constant expression: {other:?}")),
        });
    }
    Ok(ConstExpr::Gc(program.into()))
}

/// A GC type definition from wasmparser's (module type indices).
pub(crate) fn sub_type(t: &wp::SubType) -> Result<(SubType, Option<FuncType>), String> {
    let supertype = match t.supertype_idxs[..] {
        [] => None,
        [i] => Some(i.as_module_index().ok_or("supertype is not a module type index")?),
        _ => return Err("more than one supertype".into()),
    };
    if t.composite_type.shared || t.composite_type.describes_idx.is_some() || t.composite_type.descriptor_idx.is_some() {
        return Err("unsupported type definition (shared or custom descriptors)".into());
    }
    let field = |f: &wp::FieldType| -> Result<FieldType, String> {
        let storage = match f.element_type {
            wp::StorageType::I8 => StorageType::I8,
            wp::StorageType::I16 => StorageType::I16,
            wp::StorageType::Val(v) => StorageType::Val(WasmType::from_wp(v)?),
        };
        Ok(FieldType { storage, mutable: f.mutable })
    };
    let (composite, func) = match &t.composite_type.inner {
        wp::CompositeInnerType::Func(f) => (CompositeType::Func, Some(func_type(f)?)),
        wp::CompositeInnerType::Struct(s) => (CompositeType::Struct(s.fields.iter().map(field).collect::<Result<_, _>>()?), None),
        wp::CompositeInnerType::Array(a) => (CompositeType::Array(field(&a.0)?), None),
        other => return Err(format!("unsupported type definition {other:?}")),
    };
    Ok((SubType { composite, supertype, is_final: t.is_final }, func))
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
