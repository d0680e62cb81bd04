//! Canonical type ids, shared by every store in the process: `call_indirect` and casts compare
//! the id in the callee's `VMFuncRef` (or an object's header) with the id of the expected type.
//!
//! A module's types may name each other (typed references `(ref $t)`, GC struct fields), by
//! module index. The store keeps types in canonical form, where `HeapType::Concrete(n)` names
//! canonical id `n` instead. Types are canonicalised by recursion group (GC, iso-recursive
//! equivalence): a group's canonical key is its types with references to earlier types
//! replaced by their canonical ids and references within the group by their position in it
//! (`REC | k`); two groups with equal keys are the same group, whichever modules they come
//! from, and type `k` of a group gets id `base + k`. A type outside any explicit group is a
//! group of one, so a WebAssembly 2.0 function type keeps the id `type_id` gives it.
//!
//! The registry also records each id's kind and declared supertype, for the subtype checks of
//! casts (`is_subtype`, the `GcSubtype` builtin), imports and embedder values.

use std::collections::HashMap;
use std::sync::Mutex;
use wasce_compiler::module::{
    CompositeType, FieldType, FuncType, GlobalType, HeapType, ModuleInfo, SubType, TableType, TypeKind, WasmType,
};

/// Marks a reference to a type of the same recursion group in a canonical key.
const REC: u32 = 1 << 31;

type GroupKey = Vec<(SubType, FuncType)>;

struct Registry {
    groups: HashMap<GroupKey, u64>,
    /// By id - 1: kind and declared supertype (an id).
    defs: Vec<(TypeKind, Option<u64>)>,
}

static TYPES: Mutex<Option<Registry>> = Mutex::new(None);

fn with_registry<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    let mut guard = TYPES.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(|| Registry { groups: HashMap::new(), defs: Vec::new() }))
}

/// The first id of the group with this key, registered if new.
fn intern(key: GroupKey, base_of: impl Fn(&SubType, u64) -> Option<u64>) -> Result<u64, String> {
    with_registry(|r| {
        if let Some(base) = r.groups.get(&key) {
            return Ok(*base);
        }
        let base = r.defs.len() as u64 + 1;
        if base + key.len() as u64 >= REC as u64 {
            return Err("too many distinct types in this process".into());
        }
        for (sub, _) in &key {
            r.defs.push((sub.kind(), base_of(sub, base)));
        }
        r.groups.insert(key, base);
        Ok(base)
    })
}

/// The canonical id of a function type in canonical form, as a final type in a group of its
/// own (never 0, so a zeroed funcref never matches).
pub fn type_id(ty: &FuncType) -> u64 {
    let key = vec![(SubType { composite: CompositeType::Func, supertype: None, is_final: true }, ty.clone())];
    intern(key, |_, _| None).unwrap_or(u64::MAX)
}

/// Whether canonical id `sub` is `sup` or one of its declared subtypes (unknown ids: no).
pub fn is_subtype(sub: u64, sup: u64) -> bool {
    if sub == sup {
        return sub != 0;
    }
    with_registry(|r| {
        let mut t = sub;
        // Validation bounds subtype chains (depth 63); the bound keeps this finite regardless.
        for _ in 0..64 {
            match t.checked_sub(1).and_then(|i| r.defs.get(i as usize)) {
                Some((_, Some(s))) if *s == sup => return true,
                Some((_, Some(s))) => t = *s,
                _ => return false,
            }
        }
        false
    })
}

/// The supertype chain of canonical id `id`, from the root down to `id` (unknown ids: `None`).
pub fn display(id: u64) -> Option<Vec<u64>> {
    with_registry(|r| {
        let mut chain = vec![id];
        let mut t = id;
        loop {
            let (_, sup) = r.defs.get(t.checked_sub(1)? as usize)?;
            match sup {
                Some(s) if chain.len() <= 64 => {
                    chain.push(*s);
                    t = *s;
                }
                Some(_) => return None,
                None => break,
            }
        }
        chain.reverse();
        Some(chain)
    })
}

/// The kind of canonical id `id` (unknown ids: `None`).
pub fn kind(id: u64) -> Option<TypeKind> {
    with_registry(|r| id.checked_sub(1).and_then(|i| r.defs.get(i as usize)).map(|d| d.0))
}

/// Value subtyping between types in canonical form.
pub fn val_subtype(a: WasmType, b: WasmType) -> bool {
    match (a.as_ref_type(), b.as_ref_type()) {
        (Some(x), Some(y)) => {
            (!x.nullable || y.nullable)
                && x.heap.is_subtype_in(y.heap, &|i| kind(i as u64).unwrap_or(TypeKind::Func), &|s, t| is_subtype(s as u64, t as u64))
        }
        _ => a == b,
    }
}

/// The top of the hierarchy of a heap type in canonical form.
pub fn top(h: HeapType) -> HeapType {
    h.top(|i| kind(i as u64).unwrap_or(TypeKind::Func))
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
        let n = info.types.len();
        let mut i = 0;
        while i < n {
            let len = info.rec_groups.iter().find(|g| g.0 as usize == i).map_or(1, |g| g.1 as usize).max(1);
            let end = (i + len).min(n);
            let start = i;
            // The key: earlier types by id, types of this group by position.
            let map = |j: u32, c: &CanonicalTypes| -> Result<u32, String> {
                let j = j as usize;
                if j < start {
                    let id = c.ids.get(j).ok_or("bad type index")?;
                    u32::try_from(*id).map_err(|_| "too many distinct types in this process".to_string())
                } else if j < end {
                    Ok(REC | (j - start) as u32)
                } else {
                    Err(format!("type {j} is not defined before its use"))
                }
            };
            let mut key = Vec::with_capacity(end - start);
            for k in start..end {
                let def = info.type_defs.get(k).cloned().unwrap_or(SubType { composite: CompositeType::Func, supertype: None, is_final: true });
                let ft = &info.types[k];
                let val = |t: WasmType| -> Result<WasmType, String> {
                    match t.concrete_index() {
                        Some(j) => {
                            let m = map(j, &c)?;
                            Ok(t.map_concrete(|_| m))
                        }
                        None => Ok(t),
                    }
                };
                let field = |f: FieldType| -> Result<FieldType, String> {
                    Ok(FieldType { storage: match f.storage { wasce_compiler::module::StorageType::Val(t) => wasce_compiler::module::StorageType::Val(val(t)?), s => s }, mutable: f.mutable })
                };
                let composite = match def.composite {
                    CompositeType::Func => CompositeType::Func,
                    CompositeType::Struct(fs) => CompositeType::Struct(fs.into_iter().map(field).collect::<Result<_, _>>()?),
                    CompositeType::Array(f) => CompositeType::Array(field(f)?),
                };
                let supertype = match def.supertype {
                    Some(s) => Some(map(s, &c)?),
                    None => None,
                };
                let ft = FuncType {
                    params: ft.params.iter().map(|t| val(*t)).collect::<Result<_, _>>()?,
                    results: ft.results.iter().map(|t| val(*t)).collect::<Result<_, _>>()?,
                };
                key.push((SubType { composite, supertype, is_final: def.is_final }, ft));
            }
            let base = intern(key.clone(), |sub, base| {
                sub.supertype.map(|s| if s & REC != 0 { base + (s & !REC) as u64 } else { s as u64 })
            })?;
            // The group's types with every reference absolute.
            let abs = |t: WasmType| t.map_concrete(|j| if j & REC != 0 { (base + (j & !REC) as u64) as u32 } else { j });
            for (k, (_, ft)) in key.iter().enumerate() {
                c.ids.push(base + k as u64);
                c.types.push(FuncType { params: ft.params.iter().map(|t| abs(*t)).collect(), results: ft.results.iter().map(|t| abs(*t)).collect() });
            }
            i = end;
        }
        Ok(c)
    }

    /// A value type of the module in canonical form.
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

    /// A module of function types; `starts[i]`: the first type of type i's recursion group.
    fn module(types: Vec<FuncType>, starts: Vec<u32>) -> ModuleInfo {
        let mut rec_groups: Vec<(u32, u32)> = Vec::new();
        for (i, &s) in starts.iter().enumerate() {
            match rec_groups.last_mut() {
                Some(g) if g.0 == s => g.1 += 1,
                _ => rec_groups.push((s, 1)),
            }
            debug_assert!(s as usize <= i);
        }
        rec_groups.retain(|g| g.1 > 1);
        ModuleInfo { types, rec_groups, ..ModuleInfo::default() }
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
