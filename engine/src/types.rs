//! Canonical function type ids, shared by every store in the process: `call_indirect` compares
//! the id in the callee's `VMFuncRef` with the id of the expected type.
//!
//! A module's types may name each other (typed function references: `(ref $t)`), by module
//! index, within recursion groups (`rec`). Types are equivalent iso-recursively: two groups are
//! the same when they have the same shape, references inside a group compared by position in
//! it and references out of it by canonical id. Each distinct group is interned once and its
//! types get consecutive ids. The store keeps types in canonical form, where
//! `HeapType::Concrete(n)` names canonical id `n`; two types are the same exactly when their
//! ids are equal, whichever modules they come from. A type names only types before the end of
//! its group (the compiler and the artifact decoder check it), so groups are canonicalised in
//! order. Function types have no declared subtypes (GC's `sub` is not compiled), so type
//! equality is all `call_indirect` and linking need.

use std::collections::HashMap;
use std::sync::Mutex;
use wasce_compiler::module::{FuncType, GlobalType, ModuleInfo, TableType, WasmType};

/// A value type in a group's key: a type reference is to a group member or to a canonical id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum KeyType {
    Plain(WasmType),
    Canonical { nullable: bool, id: u64 },
    InGroup { nullable: bool, index: u32 },
}

type GroupKey = Vec<(Vec<KeyType>, Vec<KeyType>)>;

struct Registry {
    groups: HashMap<GroupKey, u64>,
    next: u64,
}

static TYPES: Mutex<Option<Registry>> = Mutex::new(None);

/// The first id of the group `key` (its types have consecutive ids), interning it if new.
fn intern(key: GroupKey) -> u64 {
    let mut guard = TYPES.lock().unwrap_or_else(|e| e.into_inner());
    // Ids start at 1, so a zeroed funcref never matches.
    let reg = guard.get_or_insert_with(|| Registry { groups: HashMap::new(), next: 1 });
    let len = key.len() as u64;
    let next = reg.next;
    let first = *reg.groups.entry(key).or_insert(next);
    if first == next {
        reg.next += len;
    }
    first
}

fn key_type(t: WasmType, ref_of: impl Fn(u32) -> Result<KeyType, String>) -> Result<KeyType, String> {
    match (t.concrete_index(), t.as_ref_type()) {
        (Some(i), Some(r)) => Ok(match ref_of(i)? {
            KeyType::Canonical { id, .. } => KeyType::Canonical { nullable: r.nullable, id },
            KeyType::InGroup { index, .. } => KeyType::InGroup { nullable: r.nullable, index },
            plain => plain,
        }),
        _ => Ok(KeyType::Plain(t)),
    }
}

/// The canonical id of a function type in canonical form, as a group of its own (host
/// functions' types; wasm functions have their ids in their `VMFuncRef`s).
pub fn type_id(ty: &FuncType) -> u64 {
    let canonical = |t: &WasmType| {
        key_type(*t, |id| Ok(KeyType::Canonical { nullable: false, id: id as u64 })).expect("canonical ids need no lookup")
    };
    intern(vec![(ty.params.iter().map(canonical).collect(), ty.results.iter().map(canonical).collect())])
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
        for group in info.rec_groups() {
            let (start, end) = (group.start as usize, group.end as usize);
            let ref_of = |i: u32| match i as usize {
                i if i < start => Ok(KeyType::Canonical { nullable: false, id: c.ids[i] }),
                i if i < end => Ok(KeyType::InGroup { nullable: false, index: (i - start) as u32 }),
                _ => Err(format!("type {i} is named before its recursion group")),
            };
            let mut key = Vec::with_capacity(end - start);
            for ty in &info.types[start..end] {
                let list = |ts: &[WasmType]| ts.iter().map(|t| key_type(*t, ref_of)).collect::<Result<Vec<_>, _>>();
                key.push((list(&ty.params)?, list(&ty.results)?));
            }
            let first = intern(key);
            c.ids.extend((0..(end - start) as u64).map(|k| first + k));
            for ty in &info.types[start..end] {
                let ty = FuncType {
                    params: ty.params.iter().map(|t| c.val(*t)).collect::<Result<_, _>>()?,
                    results: ty.results.iter().map(|t| c.val(*t)).collect::<Result<_, _>>()?,
                };
                c.types.push(ty);
            }
        }
        Ok(c)
    }

    /// A value type of the module in canonical form (its types canonicalised so far).
    pub fn val(&self, t: WasmType) -> Result<WasmType, String> {
        let Some(i) = t.concrete_index() else { return Ok(t) };
        let id = self.ids.get(i as usize).ok_or_else(|| format!("type {i} is not defined"))?;
        let id = u32::try_from(*id).map_err(|_| "too many distinct types in this process".to_string())?;
        Ok(t.map_concrete(|_| id))
    }

    pub fn global(&self, g: GlobalType) -> Result<GlobalType, String> {
        Ok(GlobalType { ty: self.val(g.ty)?, ..g })
    }

    pub fn table(&self, t: TableType) -> Result<TableType, String> {
        Ok(TableType { elem: self.val(t.elem)?, ..t })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasce_compiler::module::HeapType;

    fn r(i: u32) -> WasmType {
        WasmType::reference(false, HeapType::Concrete(i))
    }

    fn func(params: Vec<WasmType>) -> FuncType {
        FuncType { params, results: vec![] }
    }

    fn module(types: Vec<FuncType>, starts: Vec<u32>) -> ModuleInfo {
        ModuleInfo { types, rec_group_starts: starts, ..ModuleInfo::default() }
    }

    #[test]
    fn isomorphic_recursion_groups_are_one_type() {
        use WasmType::I32;
        // (rec (type $a (func (param i32 (ref $b)))) (type $b (func (param i32 (ref $a))))), twice,
        // after different prefixes.
        let a = CanonicalTypes::new(&module(vec![func(vec![I32, r(1)]), func(vec![I32, r(0)])], vec![0, 0])).unwrap();
        let b = CanonicalTypes::new(&module(vec![func(vec![]), func(vec![I32, r(2)]), func(vec![I32, r(1)])], vec![0, 1, 1])).unwrap();
        assert_eq!(a.ids, b.ids[1..]);
        assert_ne!(a.ids[0], a.ids[1]);
        // The canonical forms name canonical ids.
        assert_eq!(a.types[0].params[1], r(a.ids[1] as u32));
        // A group of one type naming itself, implicit or explicit, is the same type.
        let own = CanonicalTypes::new(&module(vec![func(vec![I32, r(0)])], vec![0])).unwrap();
        let own2 = CanonicalTypes::new(&module(vec![func(vec![I32, r(0)])], vec![])).unwrap();
        assert_eq!(own.ids, own2.ids);
        // Not the same as a member of the two-type group (iso-recursive, not equi-recursive).
        assert!(!a.ids.contains(&own.ids[0]));
        // A group's shape matters: the same types in another order are another group.
        let swapped = CanonicalTypes::new(&module(vec![func(vec![I32, r(1)]), func(vec![I32, r(0)]), func(vec![])], vec![0, 0, 2])).unwrap();
        assert_eq!(swapped.ids[..2], a.ids[..]);
        let other = CanonicalTypes::new(&module(vec![func(vec![I32, r(0)]), func(vec![I32, r(0)])], vec![0, 0])).unwrap();
        assert_ne!(other.ids, a.ids);
    }

    #[test]
    fn plain_and_host_types_agree() {
        let t = FuncType { params: vec![WasmType::I64], results: vec![WasmType::F32] };
        let m = CanonicalTypes::new(&module(vec![func(vec![]), t.clone()], vec![])).unwrap();
        assert_eq!(m.ids[1], type_id(&t));
        // A type naming an earlier type: by its canonical id, across modules.
        let m2 = CanonicalTypes::new(&module(vec![t.clone(), func(vec![r(0)])], vec![])).unwrap();
        let m3 = CanonicalTypes::new(&module(vec![func(vec![]), t, func(vec![r(1)])], vec![0, 1, 2])).unwrap();
        assert_eq!(m2.ids[1], m3.ids[2]);
        assert_eq!(m2.types[1], m3.types[2]);
        assert_eq!(type_id(&m2.types[1]), m2.ids[1]);
    }

    #[test]
    fn a_reference_past_its_group_is_an_error() {
        assert!(CanonicalTypes::new(&module(vec![func(vec![r(1)]), func(vec![])], vec![])).is_err());
    }
}
