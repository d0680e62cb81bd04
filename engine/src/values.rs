//! Values crossing the embedding boundary, and their 16-byte slot encoding used by entry and
//! host-call trampolines.

use wasce_compiler::module::WasmType;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val {
    I32(i32),
    I64(i64),
    /// Bits of an f32.
    F32(u32),
    /// Bits of an f64.
    F64(u64),
    V128(u128),
    /// Address of a `VMFuncRef`, 0 for null.
    FuncRef(u64),
    /// A host reference value, `None` for null.
    ExternRef(Option<u32>),
    /// Address of an exception object, 0 for null.
    ExnRef(u64),
    /// A reference of the any hierarchy (GC), raw: 0 null, an i31 `(v << 1) | 1`, a host
    /// value `(n + 1) << 2 | 2` (`any.convert_extern` of externref `n`), or an object address
    /// (see the compiler's `translate/gc.rs`). Embedders may pass null, i31 and host values;
    /// object addresses are only ever produced by compiled code and are refused as arguments.
    AnyRef(u64),
    /// An externref that is an any value converted with `extern.convert_any` (raw, bit 63
    /// set).
    ExternAny(u64),
}

/// The raw any-hierarchy value of host reference `n` (`any.convert_extern` of externref `n`).
pub fn host_any(n: u32) -> u64 {
    ((n as u64 + 1) << 2) | 2
}

impl Val {
    /// The type of the value, as far as the value says: references are `funcref`/`externref`
    /// (`Store::val_matches` checks a value against a typed reference type).
    pub fn ty(&self) -> WasmType {
        match self {
            Val::I32(_) => WasmType::I32,
            Val::I64(_) => WasmType::I64,
            Val::F32(_) => WasmType::F32,
            Val::F64(_) => WasmType::F64,
            Val::V128(_) => WasmType::V128,
            Val::FuncRef(_) => WasmType::FuncRef,
            Val::ExternRef(_) | Val::ExternAny(_) => WasmType::ExternRef,
            Val::AnyRef(_) => WasmType::reference(true, wasce_compiler::module::HeapType::Any),
            Val::ExnRef(_) => WasmType::ExnRef,
        }
    }

    /// The raw 128-bit slot encoding.
    pub fn to_slot(&self) -> u128 {
        match *self {
            Val::I32(v) => v as u32 as u128,
            Val::I64(v) => v as u64 as u128,
            Val::F32(v) => v as u128,
            Val::F64(v) => v as u128,
            Val::V128(v) => v,
            Val::FuncRef(v) => v as u128,
            Val::ExternRef(v) => v.map_or(0, |n| n as u128 + 1),
            Val::ExnRef(v) => v as u128,
            Val::AnyRef(v) | Val::ExternAny(v) => v as u128,
        }
    }

    pub fn from_slot(ty: WasmType, slot: u128) -> Val {
        match ty {
            WasmType::I32 => Val::I32(slot as u32 as i32),
            WasmType::I64 => Val::I64(slot as u64 as i64),
            WasmType::F32 => Val::F32(slot as u32),
            WasmType::F64 => Val::F64(slot as u64),
            WasmType::V128 => Val::V128(slot),
            WasmType::FuncRef => Val::FuncRef(slot as u64),
            WasmType::ExnRef => Val::ExnRef(slot as u64),
            WasmType::Ref(r) if crate::types::top(r.heap) == wasce_compiler::module::HeapType::Func => Val::FuncRef(slot as u64),
            WasmType::Ref(r) if crate::types::top(r.heap) == wasce_compiler::module::HeapType::Any => Val::AnyRef(slot as u64),
            WasmType::Ref(r) if crate::types::top(r.heap) == wasce_compiler::module::HeapType::Exn => Val::ExnRef(slot as u64),
            WasmType::ExternRef | WasmType::Ref(_) => {
                let raw = slot as u64;
                if raw >> 63 != 0 {
                    Val::ExternAny(raw)
                } else {
                    Val::ExternRef(if raw == 0 { None } else { Some((raw - 1) as u32) })
                }
            }
        }
    }

    /// The 8-byte table-element encoding of a reference.
    pub fn to_ref_bits(&self) -> u64 {
        self.to_slot() as u64
    }

    pub fn null(ty: WasmType) -> Val {
        Val::from_slot(ty, 0)
    }
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::I32(v) => write!(f, "{v}"),
            Val::I64(v) => write!(f, "{v}"),
            Val::F32(v) => write!(f, "{}", f32::from_bits(*v)),
            Val::F64(v) => write!(f, "{}", f64::from_bits(*v)),
            Val::V128(v) => write!(f, "{v:#034x}"),
            Val::FuncRef(0) => write!(f, "null"),
            Val::FuncRef(_) => write!(f, "<funcref>"),
            Val::ExternRef(None) => write!(f, "null"),
            Val::ExternRef(Some(n)) => write!(f, "<externref {n}>"),
            Val::ExnRef(0) => write!(f, "null"),
            Val::ExnRef(_) => write!(f, "<exnref>"),
            Val::AnyRef(0) => write!(f, "null"),
            Val::AnyRef(v) if v & 1 == 1 => write!(f, "<i31 {}>", (*v as u32 as i32) >> 1),
            Val::AnyRef(v) if v & 3 == 2 => write!(f, "<host {}>", (v >> 2).wrapping_sub(1)),
            Val::AnyRef(_) => write!(f, "<object>"),
            Val::ExternAny(_) => write!(f, "<externref (any)>"),
        }
    }
}
