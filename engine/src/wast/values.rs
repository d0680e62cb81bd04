//! Converting script values to wasce values and matching results against expectations
//! (NaN patterns, v128 lanes, references).

use crate::store::AnyKind;
use crate::Val;
use wasce_compiler::module::{OBJ_KIND_ARRAY, OBJ_KIND_STRUCT};
use wast::core::{AbstractHeapType, HeapType, NanPattern, V128Pattern, WastArgCore, WastRetCore};

pub fn arg(a: &WastArgCore<'_>) -> Result<Val, String> {
    Ok(match a {
        WastArgCore::I32(v) => Val::I32(*v),
        WastArgCore::I64(v) => Val::I64(*v),
        WastArgCore::F32(v) => Val::F32(v.bits),
        WastArgCore::F64(v) => Val::F64(v.bits),
        WastArgCore::V128(v) => Val::V128(u128::from_le_bytes(v.to_le_bytes())),
        WastArgCore::RefNull(HeapType::Abstract { ty: AbstractHeapType::Func | AbstractHeapType::NoFunc, .. } | HeapType::Concrete(_)) => Val::FuncRef(0),
        WastArgCore::RefNull(HeapType::Abstract { ty: AbstractHeapType::Extern | AbstractHeapType::NoExtern, .. }) => Val::ExternRef(None),
        WastArgCore::RefExtern(n) => Val::ExternRef(Some(*n)),
        WastArgCore::RefNull(HeapType::Abstract { ty: AbstractHeapType::Exn | AbstractHeapType::NoExn, .. }) => Val::ExnRef(0),
        WastArgCore::RefHost(n) => Val::AnyRef(crate::values::host_any(*n)),
        WastArgCore::RefNull(_) => Val::AnyRef(0),
    })
}

fn f32_matches(bits: u32, p: &NanPattern<wast::token::F32>) -> bool {
    match p {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff == 0x7fc0_0000,
        NanPattern::ArithmeticNan => bits & 0x7fc0_0000 == 0x7fc0_0000,
        NanPattern::Value(v) => v.bits == bits,
    }
}

fn f64_matches(bits: u64, p: &NanPattern<wast::token::F64>) -> bool {
    match p {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff_ffff_ffff == 0x7ff8_0000_0000_0000,
        NanPattern::ArithmeticNan => bits & 0x7ff8_0000_0000_0000 == 0x7ff8_0000_0000_0000,
        NanPattern::Value(v) => v.bits == bits,
    }
}

fn v128_matches(v: u128, p: &V128Pattern) -> bool {
    let b = v.to_le_bytes();
    match p {
        V128Pattern::I8x16(l) => l.iter().enumerate().all(|(i, x)| b[i] as i8 == *x),
        V128Pattern::I16x8(l) => l.iter().enumerate().all(|(i, x)| i16::from_le_bytes([b[2 * i], b[2 * i + 1]]) == *x),
        V128Pattern::I32x4(l) => l.iter().enumerate().all(|(i, x)| i32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap()) == *x),
        V128Pattern::I64x2(l) => l.iter().enumerate().all(|(i, x)| i64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap()) == *x),
        V128Pattern::F32x4(l) => l.iter().enumerate().all(|(i, p)| f32_matches(u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap()), p)),
        V128Pattern::F64x2(l) => l.iter().enumerate().all(|(i, p)| f64_matches(u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap()), p)),
    }
}

/// Whether `actual` matches `expected`; `kind` classifies any-hierarchy values (the store's
/// bounds-checked view of the GC heap).
pub fn matches(actual: &Val, expected: &WastRetCore<'_>, kind: &dyn Fn(u64) -> AnyKind) -> bool {
    match (actual, expected) {
        (Val::AnyRef(a), WastRetCore::RefNull(ty)) => {
            *a == 0
                && matches!(ty, None | Some(HeapType::Abstract { ty: AbstractHeapType::Any | AbstractHeapType::Eq | AbstractHeapType::I31 | AbstractHeapType::Struct | AbstractHeapType::Array | AbstractHeapType::None, .. } | HeapType::Concrete(_)))
        }
        (Val::AnyRef(a), WastRetCore::RefHost(n)) => kind(*a) == AnyKind::Host(*n),
        (Val::AnyRef(a), WastRetCore::RefAny) => !matches!(kind(*a), AnyKind::Null | AnyKind::Unknown),
        (Val::AnyRef(a), WastRetCore::RefEq) => matches!(kind(*a), AnyKind::I31(_) | AnyKind::Object { .. }),
        (Val::AnyRef(a), WastRetCore::RefI31) => matches!(kind(*a), AnyKind::I31(_)),
        (Val::AnyRef(a), WastRetCore::RefStruct) => matches!(kind(*a), AnyKind::Object { kind: OBJ_KIND_STRUCT, .. }),
        (Val::AnyRef(a), WastRetCore::RefArray) => matches!(kind(*a), AnyKind::Object { kind: OBJ_KIND_ARRAY, .. }),
        (Val::ExternAny(_), WastRetCore::RefExtern(None)) => true,
        (Val::FuncRef(a), WastRetCore::RefNull(Some(HeapType::Concrete(_)))) => *a == 0,
        (Val::I32(a), WastRetCore::I32(e)) => a == e,
        (Val::I64(a), WastRetCore::I64(e)) => a == e,
        (Val::F32(a), WastRetCore::F32(p)) => f32_matches(*a, p),
        (Val::F64(a), WastRetCore::F64(p)) => f64_matches(*a, p),
        (Val::V128(a), WastRetCore::V128(p)) => v128_matches(*a, p),
        (Val::FuncRef(a), WastRetCore::RefNull(ty)) => {
            *a == 0
                && matches!(ty, None | Some(HeapType::Abstract { ty: AbstractHeapType::Func | AbstractHeapType::NoFunc, .. } | HeapType::Concrete(_)))
        }
        (Val::ExternRef(a), WastRetCore::RefNull(ty)) => {
            a.is_none() && matches!(ty, None | Some(HeapType::Abstract { ty: AbstractHeapType::Extern | AbstractHeapType::NoExtern, .. }))
        }
        (Val::ExnRef(a), WastRetCore::RefNull(ty)) => {
            *a == 0 && matches!(ty, None | Some(HeapType::Abstract { ty: AbstractHeapType::Exn | AbstractHeapType::NoExn, .. }))
        }
        (Val::FuncRef(a), WastRetCore::RefFunc(_)) => *a != 0,
        (Val::ExternRef(a), WastRetCore::RefExtern(e)) => match e {
            Some(n) => *a == Some(*n),
            None => a.is_some(),
        },
        (a, WastRetCore::Either(options)) => options.iter().any(|e| matches(a, e, kind)),
        _ => false,
    }
}
