//! The module description: everything about a module except its function bodies, decoded once by
//! wasmparser and shared by the compiler (to lay out the vmctx) and the engine (to instantiate).

use std::collections::HashMap;
use wasmparser as wp;

/// A WebAssembly value type (WebAssembly 2.0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WasmType {
    I32,
    I64,
    F32,
    F64,
    V128,
    FuncRef,
    ExternRef,
    /// `exnref`: the address of an exception object, 0 for null (exception handling).
    ExnRef,
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
        if r == wp::RefType::FUNCREF {
            Ok(WasmType::FuncRef)
        } else if r == wp::RefType::EXTERNREF {
            Ok(WasmType::ExternRef)
        } else if r == wp::RefType::EXNREF {
            Ok(WasmType::ExnRef)
        } else {
            Err(format!("unsupported reference type {r:?}"))
        }
    }

    pub fn is_ref(self) -> bool {
        matches!(self, WasmType::FuncRef | WasmType::ExternRef | WasmType::ExnRef)
    }
}

impl std::fmt::Display for WasmType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WasmType::I32 => "i32",
            WasmType::I64 => "i64",
            WasmType::F32 => "f32",
            WasmType::F64 => "f64",
            WasmType::V128 => "v128",
            WasmType::FuncRef => "funcref",
            WasmType::ExternRef => "externref",
            WasmType::ExnRef => "exnref",
        })
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryType {
    /// Minimum size in 64 KiB pages.
    pub min: u64,
    pub max: Option<u64>,
    pub shared: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalType {
    pub ty: WasmType,
    pub mutable: bool,
}

/// A constant expression (WebAssembly 2.0 allows exactly one instruction).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConstExpr {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    V128(u128),
    RefNull(WasmType),
    RefFunc(u32),
    GlobalGet(u32),
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
    let mut ops = expr.get_operators_reader();
    let op = ops.read().map_err(|e| e.to_string())?;
    let value = match op {
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
        other => return Err(format!("unsupported constant expression {other:?}")),
    };
    match ops.read().map_err(|e| e.to_string())? {
        wp::Operator::End => Ok(value),
        other => Err(format!("unsupported constant expression (extended-const) {other:?}")),
    }
}

pub(crate) fn table_type(t: &wp::TableType) -> Result<TableType, String> {
    Ok(TableType { elem: WasmType::from_ref(t.element_type)?, min: t.initial, max: t.maximum })
}

pub(crate) fn memory_type(m: &wp::MemoryType) -> Result<MemoryType, String> {
    if m.memory64 {
        return Err("memory64 is not supported".into());
    }
    if m.page_size_log2.is_some() {
        return Err("custom page sizes are not supported".into());
    }
    Ok(MemoryType { min: m.initial, max: m.maximum, shared: m.shared })
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
