//! Canonical function type ids, shared by every store in the process: `call_indirect` compares
//! the id in the callee's `VMFuncRef` with the id of the expected type.
//!
//! A module's types may name each other (typed function references: `(ref $t)`), by module
//! index. The store keeps types in canonical form, where `HeapType::Concrete(n)` names canonical
//! id `n` instead; two types are then the same exactly when their canonical forms are equal,
//! whichever modules they come from. Without GC a type names only earlier types (the compiler
//! and the artifact decoder check it), so a module's types are canonicalised in order.

use std::collections::HashMap;
use std::sync::Mutex;
use wasce_compiler::module::{FuncType, GlobalType, ModuleInfo, TableType, WasmType};

static TYPES: Mutex<Option<HashMap<FuncType, u64>>> = Mutex::new(None);

/// The canonical id of a function type in canonical form (never 0, so a zeroed funcref never
/// matches).
pub fn type_id(ty: &FuncType) -> u64 {
    let mut guard = TYPES.lock().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    let next = map.len() as u64 + 1;
    *map.entry(ty.clone()).or_insert(next)
}

/// A module's types in the store's canonical form, and their canonical ids.
#[derive(Clone, Debug, Default)]
pub struct CanonicalTypes {
    pub ids: Vec<u64>,
    pub types: Vec<FuncType>,
}

impl CanonicalTypes {
    pub fn new(info: &ModuleInfo) -> Result<CanonicalTypes, String> {
        let mut c = CanonicalTypes::default();
        for (i, ty) in info.types.iter().enumerate() {
            let canon = |t: &WasmType| c.value(*t, i);
            let ty = FuncType {
                params: ty.params.iter().map(canon).collect::<Result<_, _>>()?,
                results: ty.results.iter().map(canon).collect::<Result<_, _>>()?,
            };
            c.ids.push(type_id(&ty));
            c.types.push(ty);
        }
        Ok(c)
    }

    /// `t` (a type of the module) in canonical form, where only types below `limit` may be named.
    fn value(&self, t: WasmType, limit: usize) -> Result<WasmType, String> {
        let Some(i) = t.concrete_index() else { return Ok(t) };
        let id = self.ids.get(i as usize).filter(|_| (i as usize) < limit).ok_or_else(|| format!("type {i} is not defined before its use"))?;
        let id = u32::try_from(*id).map_err(|_| "too many distinct types in this process".to_string())?;
        Ok(t.map_concrete(|_| id))
    }

    /// A value type of the module in canonical form.
    pub fn val(&self, t: WasmType) -> Result<WasmType, String> {
        self.value(t, self.ids.len())
    }

    pub fn global(&self, g: GlobalType) -> Result<GlobalType, String> {
        Ok(GlobalType { ty: self.val(g.ty)?, ..g })
    }

    pub fn table(&self, t: TableType) -> Result<TableType, String> {
        Ok(TableType { elem: self.val(t.elem)?, ..t })
    }
}
