//! Fixed-width SIMD (the 128-bit operator set of WebAssembly 2.0) and relaxed SIMD.
//!
//! Relaxed SIMD is given its deterministic semantics (WebAssembly 3.0's deterministic profile,
//! as wasmtime's `relaxed_simd_deterministic`), the same on every host: `relaxed_swizzle` is
//! `i8x16.swizzle`; `relaxed_trunc*` are the saturating `trunc_sat*`; `relaxed_madd`/`nmadd`
//! are fused (`fma(a, b, c)`, `fma(-a, b, c)`, one rounding; a host without FMA refuses the
//! module with an "unsupported" error rather than round differently); `relaxed_laneselect` is
//! `v128.bitselect`; `relaxed_min`/`max` are `f32x4.min`/`max` (NaN-propagating, -0 < +0);
//! `relaxed_q15mulr_s` is `q15mulr_sat_s`; the dot products treat both operands as signed
//! bytes (`i16x8` lanes wrap, then widen and add for the `i32x4` form).
//!
//! Values travel as `I8X16`; each operator bitcasts its inputs to the lane type it works on and
//! its result back. Bitcasts between vector types generate no code.

use super::Translator;
use crate::CompileError;
use cranelift_codegen::ir::{
    condcodes::{FloatCC, IntCC},
    types::{F32X4, F64X2, I16X8, I32, I32X4, I64X2, I8X16},
    ConstantData, Endianness, InstBuilder, MemFlagsData, Type, Value,
};
use wasmparser::{MemArg, Operator};

fn vec_flags() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

impl Translator<'_, '_> {
    /// Reinterpret a v128 value as vector type `ty`.
    fn as_vec(&mut self, v: Value, ty: Type) -> Value {
        if self.b.func.dfg.value_type(v) == ty {
            v
        } else {
            self.b.ins().bitcast(ty, vec_flags(), v)
        }
    }

    /// Push a vector result in the canonical `I8X16` form.
    fn push_vec(&mut self, v: Value) {
        let v = self.as_vec(v, I8X16);
        self.push(v);
    }

    fn pop_vec(&mut self, ty: Type) -> Value {
        let v = self.pop();
        self.as_vec(v, ty)
    }

    fn vunop(&mut self, ty: Type, f: impl FnOnce(&mut Self, Value) -> Value) {
        let a = self.pop_vec(ty);
        let v = f(self, a);
        self.push_vec(v);
    }

    fn vbinop(&mut self, ty: Type, f: impl FnOnce(&mut Self, Value, Value) -> Value) {
        let b = self.pop_vec(ty);
        let a = self.pop_vec(ty);
        let v = f(self, a, b);
        self.push_vec(v);
    }

    fn vicmp(&mut self, ty: Type, cc: IntCC) {
        self.vbinop(ty, |t, a, b| t.b.ins().icmp(cc, a, b));
    }

    fn vfcmp(&mut self, ty: Type, cc: FloatCC) {
        self.vbinop(ty, |t, a, b| t.b.ins().fcmp(cc, a, b));
    }

    fn vconst_bytes(&mut self, ty: Type, bytes: [u8; 16]) -> Value {
        let c = self.b.func.dfg.constants.insert(ConstantData::from(bytes.to_vec()));
        self.b.ins().vconst(ty, c)
    }

    fn vshift(&mut self, ty: Type, f: impl FnOnce(&mut Self, Value, Value) -> Value) {
        let amount = self.pop();
        let a = self.pop_vec(ty);
        let v = f(self, a, amount);
        self.push_vec(v);
    }

    fn splat_op(&mut self, ty: Type) {
        let x = self.pop();
        let lane = ty.lane_type();
        let x = if lane.bits() < 32 { self.b.ins().ireduce(lane, x) } else { x };
        let v = self.b.ins().splat(ty, x);
        self.push_vec(v);
    }

    fn extract_lane(&mut self, ty: Type, lane: u8, extend: Option<bool>) {
        let v = self.pop_vec(ty);
        let x = self.b.ins().extractlane(v, lane);
        let x = match extend {
            Some(true) => self.b.ins().sextend(I32, x),
            Some(false) => self.b.ins().uextend(I32, x),
            None => x,
        };
        self.push(x);
    }

    fn replace_lane(&mut self, ty: Type, lane: u8) {
        let x = self.pop();
        let v = self.pop_vec(ty);
        let lane_ty = ty.lane_type();
        let x = if lane_ty.is_int() && lane_ty.bits() < 32 { self.b.ins().ireduce(lane_ty, x) } else { x };
        let r = self.b.ins().insertlane(v, x, lane);
        self.push_vec(r);
    }

    fn all_true(&mut self, ty: Type) {
        let v = self.pop_vec(ty);
        let c = self.b.ins().vall_true(v);
        let r = self.bool_to_i32(c);
        self.push(r);
    }

    fn bitmask(&mut self, ty: Type) {
        let v = self.pop_vec(ty);
        let r = self.b.ins().vhigh_bits(I32, v);
        self.push(r);
    }

    fn load_splat(&mut self, memarg: &MemArg, ty: Type) {
        let lane = ty.lane_type();
        let (addr, off) = self.heap_addr(memarg, lane.bytes());
        let flags = self.heap_flags();
        let x = self.b.ins().load(lane, flags, addr, off);
        let v = self.b.ins().splat(ty, x);
        self.push_vec(v);
    }

    fn load_zero(&mut self, memarg: &MemArg, ty: Type) {
        let lane = ty.lane_type();
        let (addr, off) = self.heap_addr(memarg, lane.bytes());
        let flags = self.heap_flags();
        let x = self.b.ins().load(lane, flags, addr, off);
        let v = self.b.ins().scalar_to_vector(ty, x);
        self.push_vec(v);
    }

    fn load_lane(&mut self, memarg: &MemArg, ty: Type, lane: u8) {
        let v = self.pop_vec(ty);
        let lane_ty = ty.lane_type();
        let (addr, off) = self.heap_addr(memarg, lane_ty.bytes());
        let flags = self.heap_flags();
        let x = self.b.ins().load(lane_ty, flags, addr, off);
        let r = self.b.ins().insertlane(v, x, lane);
        self.push_vec(r);
    }

    fn store_lane(&mut self, memarg: &MemArg, ty: Type, lane: u8) {
        let v = self.pop_vec(ty);
        let lane_ty = ty.lane_type();
        let (addr, off) = self.heap_addr(memarg, lane_ty.bytes());
        let x = self.b.ins().extractlane(v, lane);
        let flags = self.heap_flags();
        self.b.ins().store(flags, x, addr, off);
    }

    fn extending_load(
        &mut self,
        memarg: &MemArg,
        f: impl FnOnce(&mut Self, MemFlagsData, Value, i32) -> Value,
    ) {
        let (addr, off) = self.heap_addr(memarg, 8);
        let v = f(self, self.heap_flags(), addr, off);
        self.push_vec(v);
    }

    /// `extmul`: widen both operands' low or high halves, then multiply.
    fn ext_mul(&mut self, from: Type, high: bool, signed: bool) {
        let b = self.pop_vec(from);
        let a = self.pop_vec(from);
        let a = self.widen(a, high, signed);
        let b = self.widen(b, high, signed);
        let r = self.b.ins().imul(a, b);
        self.push_vec(r);
    }

    fn widen(&mut self, v: Value, high: bool, signed: bool) -> Value {
        match (high, signed) {
            (false, true) => self.b.ins().swiden_low(v),
            (true, true) => self.b.ins().swiden_high(v),
            (false, false) => self.b.ins().uwiden_low(v),
            (true, false) => self.b.ins().uwiden_high(v),
        }
    }

    fn extend_op(&mut self, from: Type, high: bool, signed: bool) {
        let v = self.pop_vec(from);
        let r = self.widen(v, high, signed);
        self.push_vec(r);
    }

    fn ext_add_pairwise(&mut self, from: Type, signed: bool) {
        let v = self.pop_vec(from);
        let lo = self.widen(v, false, signed);
        let hi = self.widen(v, true, signed);
        let r = self.b.ins().iadd_pairwise(lo, hi);
        self.push_vec(r);
    }

    /// `pmin`/`pmax`: `b < a ? b : a` / `a < b ? b : a`, lane-wise, without NaN rules.
    fn pseudo_minmax(&mut self, ty: Type, is_min: bool) {
        let b = self.pop_vec(ty);
        let a = self.pop_vec(ty);
        let mask = if is_min {
            self.b.ins().fcmp(FloatCC::LessThan, b, a)
        } else {
            self.b.ins().fcmp(FloatCC::LessThan, a, b)
        };
        let mask = self.as_vec(mask, ty);
        let r = self.b.ins().bitselect(mask, b, a);
        self.push_vec(r);
    }

    pub(super) fn translate_simd(&mut self, op: &Operator<'_>) -> Result<bool, CompileError> {
        use Operator as O;
        match *op {
            // Memory.
            O::V128Load { ref memarg } => {
                let (addr, off) = self.heap_addr(memarg, 16);
                let flags = self.heap_flags();
                let v = self.b.ins().load(I8X16, flags, addr, off);
                self.push(v);
            }
            O::V128Store { ref memarg } => {
                let v = self.pop_vec(I8X16);
                let (addr, off) = self.heap_addr(memarg, 16);
                let flags = self.heap_flags();
                self.b.ins().store(flags, v, addr, off);
            }
            O::V128Load8x8S { ref memarg } => self.extending_load(memarg, |t, f, a, o| t.b.ins().sload8x8(f, a, o)),
            O::V128Load8x8U { ref memarg } => self.extending_load(memarg, |t, f, a, o| t.b.ins().uload8x8(f, a, o)),
            O::V128Load16x4S { ref memarg } => self.extending_load(memarg, |t, f, a, o| t.b.ins().sload16x4(f, a, o)),
            O::V128Load16x4U { ref memarg } => self.extending_load(memarg, |t, f, a, o| t.b.ins().uload16x4(f, a, o)),
            O::V128Load32x2S { ref memarg } => self.extending_load(memarg, |t, f, a, o| t.b.ins().sload32x2(f, a, o)),
            O::V128Load32x2U { ref memarg } => self.extending_load(memarg, |t, f, a, o| t.b.ins().uload32x2(f, a, o)),
            O::V128Load8Splat { ref memarg } => self.load_splat(memarg, I8X16),
            O::V128Load16Splat { ref memarg } => self.load_splat(memarg, I16X8),
            O::V128Load32Splat { ref memarg } => self.load_splat(memarg, I32X4),
            O::V128Load64Splat { ref memarg } => self.load_splat(memarg, I64X2),
            O::V128Load32Zero { ref memarg } => self.load_zero(memarg, I32X4),
            O::V128Load64Zero { ref memarg } => self.load_zero(memarg, I64X2),
            O::V128Load8Lane { ref memarg, lane } => self.load_lane(memarg, I8X16, lane),
            O::V128Load16Lane { ref memarg, lane } => self.load_lane(memarg, I16X8, lane),
            O::V128Load32Lane { ref memarg, lane } => self.load_lane(memarg, I32X4, lane),
            O::V128Load64Lane { ref memarg, lane } => self.load_lane(memarg, I64X2, lane),
            O::V128Store8Lane { ref memarg, lane } => self.store_lane(memarg, I8X16, lane),
            O::V128Store16Lane { ref memarg, lane } => self.store_lane(memarg, I16X8, lane),
            O::V128Store32Lane { ref memarg, lane } => self.store_lane(memarg, I32X4, lane),
            O::V128Store64Lane { ref memarg, lane } => self.store_lane(memarg, I64X2, lane),

            // Constants, shuffles, lanes.
            O::V128Const { value } => {
                let v = self.vconst_bytes(I8X16, *value.bytes());
                self.push(v);
            }
            O::I8x16Shuffle { lanes } => {
                let b = self.pop_vec(I8X16);
                let a = self.pop_vec(I8X16);
                let mask = self.b.func.dfg.immediates.push(ConstantData::from(lanes.to_vec()));
                let v = self.b.ins().shuffle(a, b, mask);
                self.push(v);
            }
            O::I8x16Swizzle => self.vbinop(I8X16, |t, a, b| t.b.ins().swizzle(a, b)),
            O::I8x16Splat => self.splat_op(I8X16),
            O::I16x8Splat => self.splat_op(I16X8),
            O::I32x4Splat => self.splat_op(I32X4),
            O::I64x2Splat => self.splat_op(I64X2),
            O::F32x4Splat => self.splat_op(F32X4),
            O::F64x2Splat => self.splat_op(F64X2),
            O::I8x16ExtractLaneS { lane } => self.extract_lane(I8X16, lane, Some(true)),
            O::I8x16ExtractLaneU { lane } => self.extract_lane(I8X16, lane, Some(false)),
            O::I16x8ExtractLaneS { lane } => self.extract_lane(I16X8, lane, Some(true)),
            O::I16x8ExtractLaneU { lane } => self.extract_lane(I16X8, lane, Some(false)),
            O::I32x4ExtractLane { lane } => self.extract_lane(I32X4, lane, None),
            O::I64x2ExtractLane { lane } => self.extract_lane(I64X2, lane, None),
            O::F32x4ExtractLane { lane } => self.extract_lane(F32X4, lane, None),
            O::F64x2ExtractLane { lane } => self.extract_lane(F64X2, lane, None),
            O::I8x16ReplaceLane { lane } => self.replace_lane(I8X16, lane),
            O::I16x8ReplaceLane { lane } => self.replace_lane(I16X8, lane),
            O::I32x4ReplaceLane { lane } => self.replace_lane(I32X4, lane),
            O::I64x2ReplaceLane { lane } => self.replace_lane(I64X2, lane),
            O::F32x4ReplaceLane { lane } => self.replace_lane(F32X4, lane),
            O::F64x2ReplaceLane { lane } => self.replace_lane(F64X2, lane),

            // Integer comparisons.
            O::I8x16Eq => self.vicmp(I8X16, IntCC::Equal),
            O::I8x16Ne => self.vicmp(I8X16, IntCC::NotEqual),
            O::I8x16LtS => self.vicmp(I8X16, IntCC::SignedLessThan),
            O::I8x16LtU => self.vicmp(I8X16, IntCC::UnsignedLessThan),
            O::I8x16GtS => self.vicmp(I8X16, IntCC::SignedGreaterThan),
            O::I8x16GtU => self.vicmp(I8X16, IntCC::UnsignedGreaterThan),
            O::I8x16LeS => self.vicmp(I8X16, IntCC::SignedLessThanOrEqual),
            O::I8x16LeU => self.vicmp(I8X16, IntCC::UnsignedLessThanOrEqual),
            O::I8x16GeS => self.vicmp(I8X16, IntCC::SignedGreaterThanOrEqual),
            O::I8x16GeU => self.vicmp(I8X16, IntCC::UnsignedGreaterThanOrEqual),
            O::I16x8Eq => self.vicmp(I16X8, IntCC::Equal),
            O::I16x8Ne => self.vicmp(I16X8, IntCC::NotEqual),
            O::I16x8LtS => self.vicmp(I16X8, IntCC::SignedLessThan),
            O::I16x8LtU => self.vicmp(I16X8, IntCC::UnsignedLessThan),
            O::I16x8GtS => self.vicmp(I16X8, IntCC::SignedGreaterThan),
            O::I16x8GtU => self.vicmp(I16X8, IntCC::UnsignedGreaterThan),
            O::I16x8LeS => self.vicmp(I16X8, IntCC::SignedLessThanOrEqual),
            O::I16x8LeU => self.vicmp(I16X8, IntCC::UnsignedLessThanOrEqual),
            O::I16x8GeS => self.vicmp(I16X8, IntCC::SignedGreaterThanOrEqual),
            O::I16x8GeU => self.vicmp(I16X8, IntCC::UnsignedGreaterThanOrEqual),
            O::I32x4Eq => self.vicmp(I32X4, IntCC::Equal),
            O::I32x4Ne => self.vicmp(I32X4, IntCC::NotEqual),
            O::I32x4LtS => self.vicmp(I32X4, IntCC::SignedLessThan),
            O::I32x4LtU => self.vicmp(I32X4, IntCC::UnsignedLessThan),
            O::I32x4GtS => self.vicmp(I32X4, IntCC::SignedGreaterThan),
            O::I32x4GtU => self.vicmp(I32X4, IntCC::UnsignedGreaterThan),
            O::I32x4LeS => self.vicmp(I32X4, IntCC::SignedLessThanOrEqual),
            O::I32x4LeU => self.vicmp(I32X4, IntCC::UnsignedLessThanOrEqual),
            O::I32x4GeS => self.vicmp(I32X4, IntCC::SignedGreaterThanOrEqual),
            O::I32x4GeU => self.vicmp(I32X4, IntCC::UnsignedGreaterThanOrEqual),
            O::I64x2Eq => self.vicmp(I64X2, IntCC::Equal),
            O::I64x2Ne => self.vicmp(I64X2, IntCC::NotEqual),
            O::I64x2LtS => self.vicmp(I64X2, IntCC::SignedLessThan),
            O::I64x2GtS => self.vicmp(I64X2, IntCC::SignedGreaterThan),
            O::I64x2LeS => self.vicmp(I64X2, IntCC::SignedLessThanOrEqual),
            O::I64x2GeS => self.vicmp(I64X2, IntCC::SignedGreaterThanOrEqual),

            // Float comparisons.
            O::F32x4Eq => self.vfcmp(F32X4, FloatCC::Equal),
            O::F32x4Ne => self.vfcmp(F32X4, FloatCC::NotEqual),
            O::F32x4Lt => self.vfcmp(F32X4, FloatCC::LessThan),
            O::F32x4Gt => self.vfcmp(F32X4, FloatCC::GreaterThan),
            O::F32x4Le => self.vfcmp(F32X4, FloatCC::LessThanOrEqual),
            O::F32x4Ge => self.vfcmp(F32X4, FloatCC::GreaterThanOrEqual),
            O::F64x2Eq => self.vfcmp(F64X2, FloatCC::Equal),
            O::F64x2Ne => self.vfcmp(F64X2, FloatCC::NotEqual),
            O::F64x2Lt => self.vfcmp(F64X2, FloatCC::LessThan),
            O::F64x2Gt => self.vfcmp(F64X2, FloatCC::GreaterThan),
            O::F64x2Le => self.vfcmp(F64X2, FloatCC::LessThanOrEqual),
            O::F64x2Ge => self.vfcmp(F64X2, FloatCC::GreaterThanOrEqual),

            // Bitwise.
            O::V128Not => self.vunop(I8X16, |t, a| t.b.ins().bnot(a)),
            O::V128And => self.vbinop(I8X16, |t, a, b| t.b.ins().band(a, b)),
            O::V128AndNot => self.vbinop(I8X16, |t, a, b| t.b.ins().band_not(a, b)),
            O::V128Or => self.vbinop(I8X16, |t, a, b| t.b.ins().bor(a, b)),
            O::V128Xor => self.vbinop(I8X16, |t, a, b| t.b.ins().bxor(a, b)),
            O::V128Bitselect => {
                let c = self.pop_vec(I8X16);
                let b = self.pop_vec(I8X16);
                let a = self.pop_vec(I8X16);
                let r = self.b.ins().bitselect(c, a, b);
                self.push(r);
            }
            O::V128AnyTrue => {
                let v = self.pop_vec(I8X16);
                let c = self.b.ins().vany_true(v);
                let r = self.bool_to_i32(c);
                self.push(r);
            }

            // i8x16.
            O::I8x16Abs => self.vunop(I8X16, |t, a| t.b.ins().iabs(a)),
            O::I8x16Neg => self.vunop(I8X16, |t, a| t.b.ins().ineg(a)),
            O::I8x16Popcnt => self.vunop(I8X16, |t, a| t.b.ins().popcnt(a)),
            O::I8x16AllTrue => self.all_true(I8X16),
            O::I8x16Bitmask => self.bitmask(I8X16),
            O::I8x16NarrowI16x8S => self.vbinop(I16X8, |t, a, b| t.b.ins().snarrow(a, b)),
            O::I8x16NarrowI16x8U => self.vbinop(I16X8, |t, a, b| t.b.ins().unarrow(a, b)),
            O::I8x16Shl => self.vshift(I8X16, |t, a, b| t.b.ins().ishl(a, b)),
            O::I8x16ShrS => self.vshift(I8X16, |t, a, b| t.b.ins().sshr(a, b)),
            O::I8x16ShrU => self.vshift(I8X16, |t, a, b| t.b.ins().ushr(a, b)),
            O::I8x16Add => self.vbinop(I8X16, |t, a, b| t.b.ins().iadd(a, b)),
            O::I8x16AddSatS => self.vbinop(I8X16, |t, a, b| t.b.ins().sadd_sat(a, b)),
            O::I8x16AddSatU => self.vbinop(I8X16, |t, a, b| t.b.ins().uadd_sat(a, b)),
            O::I8x16Sub => self.vbinop(I8X16, |t, a, b| t.b.ins().isub(a, b)),
            O::I8x16SubSatS => self.vbinop(I8X16, |t, a, b| t.b.ins().ssub_sat(a, b)),
            O::I8x16SubSatU => self.vbinop(I8X16, |t, a, b| t.b.ins().usub_sat(a, b)),
            O::I8x16MinS => self.vbinop(I8X16, |t, a, b| t.b.ins().smin(a, b)),
            O::I8x16MinU => self.vbinop(I8X16, |t, a, b| t.b.ins().umin(a, b)),
            O::I8x16MaxS => self.vbinop(I8X16, |t, a, b| t.b.ins().smax(a, b)),
            O::I8x16MaxU => self.vbinop(I8X16, |t, a, b| t.b.ins().umax(a, b)),
            O::I8x16AvgrU => self.vbinop(I8X16, |t, a, b| t.b.ins().avg_round(a, b)),

            // i16x8.
            O::I16x8ExtAddPairwiseI8x16S => self.ext_add_pairwise(I8X16, true),
            O::I16x8ExtAddPairwiseI8x16U => self.ext_add_pairwise(I8X16, false),
            O::I16x8Abs => self.vunop(I16X8, |t, a| t.b.ins().iabs(a)),
            O::I16x8Neg => self.vunop(I16X8, |t, a| t.b.ins().ineg(a)),
            O::I16x8Q15MulrSatS => self.vbinop(I16X8, |t, a, b| t.b.ins().sqmul_round_sat(a, b)),
            O::I16x8AllTrue => self.all_true(I16X8),
            O::I16x8Bitmask => self.bitmask(I16X8),
            O::I16x8NarrowI32x4S => self.vbinop(I32X4, |t, a, b| t.b.ins().snarrow(a, b)),
            O::I16x8NarrowI32x4U => self.vbinop(I32X4, |t, a, b| t.b.ins().unarrow(a, b)),
            O::I16x8ExtendLowI8x16S => self.extend_op(I8X16, false, true),
            O::I16x8ExtendHighI8x16S => self.extend_op(I8X16, true, true),
            O::I16x8ExtendLowI8x16U => self.extend_op(I8X16, false, false),
            O::I16x8ExtendHighI8x16U => self.extend_op(I8X16, true, false),
            O::I16x8Shl => self.vshift(I16X8, |t, a, b| t.b.ins().ishl(a, b)),
            O::I16x8ShrS => self.vshift(I16X8, |t, a, b| t.b.ins().sshr(a, b)),
            O::I16x8ShrU => self.vshift(I16X8, |t, a, b| t.b.ins().ushr(a, b)),
            O::I16x8Add => self.vbinop(I16X8, |t, a, b| t.b.ins().iadd(a, b)),
            O::I16x8AddSatS => self.vbinop(I16X8, |t, a, b| t.b.ins().sadd_sat(a, b)),
            O::I16x8AddSatU => self.vbinop(I16X8, |t, a, b| t.b.ins().uadd_sat(a, b)),
            O::I16x8Sub => self.vbinop(I16X8, |t, a, b| t.b.ins().isub(a, b)),
            O::I16x8SubSatS => self.vbinop(I16X8, |t, a, b| t.b.ins().ssub_sat(a, b)),
            O::I16x8SubSatU => self.vbinop(I16X8, |t, a, b| t.b.ins().usub_sat(a, b)),
            O::I16x8Mul => self.vbinop(I16X8, |t, a, b| t.b.ins().imul(a, b)),
            O::I16x8MinS => self.vbinop(I16X8, |t, a, b| t.b.ins().smin(a, b)),
            O::I16x8MinU => self.vbinop(I16X8, |t, a, b| t.b.ins().umin(a, b)),
            O::I16x8MaxS => self.vbinop(I16X8, |t, a, b| t.b.ins().smax(a, b)),
            O::I16x8MaxU => self.vbinop(I16X8, |t, a, b| t.b.ins().umax(a, b)),
            O::I16x8AvgrU => self.vbinop(I16X8, |t, a, b| t.b.ins().avg_round(a, b)),
            O::I16x8ExtMulLowI8x16S => self.ext_mul(I8X16, false, true),
            O::I16x8ExtMulHighI8x16S => self.ext_mul(I8X16, true, true),
            O::I16x8ExtMulLowI8x16U => self.ext_mul(I8X16, false, false),
            O::I16x8ExtMulHighI8x16U => self.ext_mul(I8X16, true, false),

            // i32x4.
            O::I32x4ExtAddPairwiseI16x8S => self.ext_add_pairwise(I16X8, true),
            O::I32x4ExtAddPairwiseI16x8U => self.ext_add_pairwise(I16X8, false),
            O::I32x4Abs => self.vunop(I32X4, |t, a| t.b.ins().iabs(a)),
            O::I32x4Neg => self.vunop(I32X4, |t, a| t.b.ins().ineg(a)),
            O::I32x4AllTrue => self.all_true(I32X4),
            O::I32x4Bitmask => self.bitmask(I32X4),
            O::I32x4ExtendLowI16x8S => self.extend_op(I16X8, false, true),
            O::I32x4ExtendHighI16x8S => self.extend_op(I16X8, true, true),
            O::I32x4ExtendLowI16x8U => self.extend_op(I16X8, false, false),
            O::I32x4ExtendHighI16x8U => self.extend_op(I16X8, true, false),
            O::I32x4Shl => self.vshift(I32X4, |t, a, b| t.b.ins().ishl(a, b)),
            O::I32x4ShrS => self.vshift(I32X4, |t, a, b| t.b.ins().sshr(a, b)),
            O::I32x4ShrU => self.vshift(I32X4, |t, a, b| t.b.ins().ushr(a, b)),
            O::I32x4Add => self.vbinop(I32X4, |t, a, b| t.b.ins().iadd(a, b)),
            O::I32x4Sub => self.vbinop(I32X4, |t, a, b| t.b.ins().isub(a, b)),
            O::I32x4Mul => self.vbinop(I32X4, |t, a, b| t.b.ins().imul(a, b)),
            O::I32x4MinS => self.vbinop(I32X4, |t, a, b| t.b.ins().smin(a, b)),
            O::I32x4MinU => self.vbinop(I32X4, |t, a, b| t.b.ins().umin(a, b)),
            O::I32x4MaxS => self.vbinop(I32X4, |t, a, b| t.b.ins().smax(a, b)),
            O::I32x4MaxU => self.vbinop(I32X4, |t, a, b| t.b.ins().umax(a, b)),
            O::I32x4DotI16x8S => {
                let b = self.pop_vec(I16X8);
                let a = self.pop_vec(I16X8);
                let alo = self.b.ins().swiden_low(a);
                let blo = self.b.ins().swiden_low(b);
                let lo = self.b.ins().imul(alo, blo);
                let ahi = self.b.ins().swiden_high(a);
                let bhi = self.b.ins().swiden_high(b);
                let hi = self.b.ins().imul(ahi, bhi);
                let r = self.b.ins().iadd_pairwise(lo, hi);
                self.push_vec(r);
            }
            O::I32x4ExtMulLowI16x8S => self.ext_mul(I16X8, false, true),
            O::I32x4ExtMulHighI16x8S => self.ext_mul(I16X8, true, true),
            O::I32x4ExtMulLowI16x8U => self.ext_mul(I16X8, false, false),
            O::I32x4ExtMulHighI16x8U => self.ext_mul(I16X8, true, false),

            // i64x2.
            O::I64x2Abs => self.vunop(I64X2, |t, a| t.b.ins().iabs(a)),
            O::I64x2Neg => self.vunop(I64X2, |t, a| t.b.ins().ineg(a)),
            O::I64x2AllTrue => self.all_true(I64X2),
            O::I64x2Bitmask => self.bitmask(I64X2),
            O::I64x2ExtendLowI32x4S => self.extend_op(I32X4, false, true),
            O::I64x2ExtendHighI32x4S => self.extend_op(I32X4, true, true),
            O::I64x2ExtendLowI32x4U => self.extend_op(I32X4, false, false),
            O::I64x2ExtendHighI32x4U => self.extend_op(I32X4, true, false),
            O::I64x2Shl => self.vshift(I64X2, |t, a, b| t.b.ins().ishl(a, b)),
            O::I64x2ShrS => self.vshift(I64X2, |t, a, b| t.b.ins().sshr(a, b)),
            O::I64x2ShrU => self.vshift(I64X2, |t, a, b| t.b.ins().ushr(a, b)),
            O::I64x2Add => self.vbinop(I64X2, |t, a, b| t.b.ins().iadd(a, b)),
            O::I64x2Sub => self.vbinop(I64X2, |t, a, b| t.b.ins().isub(a, b)),
            O::I64x2Mul => self.vbinop(I64X2, |t, a, b| t.b.ins().imul(a, b)),
            O::I64x2ExtMulLowI32x4S => self.ext_mul(I32X4, false, true),
            O::I64x2ExtMulHighI32x4S => self.ext_mul(I32X4, true, true),
            O::I64x2ExtMulLowI32x4U => self.ext_mul(I32X4, false, false),
            O::I64x2ExtMulHighI32x4U => self.ext_mul(I32X4, true, false),

            // f32x4 and f64x2.
            O::F32x4Ceil => self.vunop(F32X4, |t, a| t.b.ins().ceil(a)),
            O::F32x4Floor => self.vunop(F32X4, |t, a| t.b.ins().floor(a)),
            O::F32x4Trunc => self.vunop(F32X4, |t, a| t.b.ins().trunc(a)),
            O::F32x4Nearest => self.vunop(F32X4, |t, a| t.b.ins().nearest(a)),
            O::F32x4Abs => self.vunop(F32X4, |t, a| t.b.ins().fabs(a)),
            O::F32x4Neg => self.vunop(F32X4, |t, a| t.b.ins().fneg(a)),
            O::F32x4Sqrt => self.vunop(F32X4, |t, a| t.b.ins().sqrt(a)),
            O::F32x4Add => self.vbinop(F32X4, |t, a, b| t.b.ins().fadd(a, b)),
            O::F32x4Sub => self.vbinop(F32X4, |t, a, b| t.b.ins().fsub(a, b)),
            O::F32x4Mul => self.vbinop(F32X4, |t, a, b| t.b.ins().fmul(a, b)),
            O::F32x4Div => self.vbinop(F32X4, |t, a, b| t.b.ins().fdiv(a, b)),
            O::F32x4Min => self.vbinop(F32X4, |t, a, b| t.b.ins().fmin(a, b)),
            O::F32x4Max => self.vbinop(F32X4, |t, a, b| t.b.ins().fmax(a, b)),
            O::F32x4PMin => self.pseudo_minmax(F32X4, true),
            O::F32x4PMax => self.pseudo_minmax(F32X4, false),
            O::F64x2Ceil => self.vunop(F64X2, |t, a| t.b.ins().ceil(a)),
            O::F64x2Floor => self.vunop(F64X2, |t, a| t.b.ins().floor(a)),
            O::F64x2Trunc => self.vunop(F64X2, |t, a| t.b.ins().trunc(a)),
            O::F64x2Nearest => self.vunop(F64X2, |t, a| t.b.ins().nearest(a)),
            O::F64x2Abs => self.vunop(F64X2, |t, a| t.b.ins().fabs(a)),
            O::F64x2Neg => self.vunop(F64X2, |t, a| t.b.ins().fneg(a)),
            O::F64x2Sqrt => self.vunop(F64X2, |t, a| t.b.ins().sqrt(a)),
            O::F64x2Add => self.vbinop(F64X2, |t, a, b| t.b.ins().fadd(a, b)),
            O::F64x2Sub => self.vbinop(F64X2, |t, a, b| t.b.ins().fsub(a, b)),
            O::F64x2Mul => self.vbinop(F64X2, |t, a, b| t.b.ins().fmul(a, b)),
            O::F64x2Div => self.vbinop(F64X2, |t, a, b| t.b.ins().fdiv(a, b)),
            O::F64x2Min => self.vbinop(F64X2, |t, a, b| t.b.ins().fmin(a, b)),
            O::F64x2Max => self.vbinop(F64X2, |t, a, b| t.b.ins().fmax(a, b)),
            O::F64x2PMin => self.pseudo_minmax(F64X2, true),
            O::F64x2PMax => self.pseudo_minmax(F64X2, false),

            // Conversions.
            O::I32x4TruncSatF32x4S => self.vunop(F32X4, |t, a| t.b.ins().fcvt_to_sint_sat(I32X4, a)),
            O::I32x4TruncSatF32x4U => self.vunop(F32X4, |t, a| t.b.ins().fcvt_to_uint_sat(I32X4, a)),
            O::F32x4ConvertI32x4S => self.vunop(I32X4, |t, a| t.b.ins().fcvt_from_sint(F32X4, a)),
            O::F32x4ConvertI32x4U => self.vunop(I32X4, |t, a| t.b.ins().fcvt_from_uint(F32X4, a)),
            O::I32x4TruncSatF64x2SZero => self.vunop(F64X2, |t, a| {
                let wide = t.b.ins().fcvt_to_sint_sat(I64X2, a);
                let zero = t.vconst_bytes(I64X2, [0; 16]);
                t.b.ins().snarrow(wide, zero)
            }),
            O::I32x4TruncSatF64x2UZero => self.vunop(F64X2, |t, a| {
                let wide = t.b.ins().fcvt_to_uint_sat(I64X2, a);
                let zero = t.vconst_bytes(I64X2, [0; 16]);
                t.b.ins().uunarrow(wide, zero)
            }),
            O::F64x2ConvertLowI32x4S => self.vunop(I32X4, |t, a| {
                let wide = t.b.ins().swiden_low(a);
                t.b.ins().fcvt_from_sint(F64X2, wide)
            }),
            O::F64x2ConvertLowI32x4U => self.vunop(I32X4, |t, a| {
                let wide = t.b.ins().uwiden_low(a);
                t.b.ins().fcvt_from_uint(F64X2, wide)
            }),
            O::F32x4DemoteF64x2Zero => self.vunop(F64X2, |t, a| t.b.ins().fvdemote(a)),
            O::F64x2PromoteLowF32x4 => self.vunop(F32X4, |t, a| t.b.ins().fvpromote_low(a)),

            // Relaxed SIMD, deterministic (see the module documentation).
            O::I8x16RelaxedSwizzle => self.vbinop(I8X16, |t, a, b| t.b.ins().swizzle(a, b)),
            O::I32x4RelaxedTruncF32x4S => return self.translate_simd(&O::I32x4TruncSatF32x4S),
            O::I32x4RelaxedTruncF32x4U => return self.translate_simd(&O::I32x4TruncSatF32x4U),
            O::I32x4RelaxedTruncF64x2SZero => return self.translate_simd(&O::I32x4TruncSatF64x2SZero),
            O::I32x4RelaxedTruncF64x2UZero => return self.translate_simd(&O::I32x4TruncSatF64x2UZero),
            O::F32x4RelaxedMadd => self.relaxed_madd(F32X4, false)?,
            O::F32x4RelaxedNmadd => self.relaxed_madd(F32X4, true)?,
            O::F64x2RelaxedMadd => self.relaxed_madd(F64X2, false)?,
            O::F64x2RelaxedNmadd => self.relaxed_madd(F64X2, true)?,
            O::I8x16RelaxedLaneselect | O::I16x8RelaxedLaneselect | O::I32x4RelaxedLaneselect | O::I64x2RelaxedLaneselect => {
                return self.translate_simd(&O::V128Bitselect);
            }
            O::F32x4RelaxedMin => return self.translate_simd(&O::F32x4Min),
            O::F32x4RelaxedMax => return self.translate_simd(&O::F32x4Max),
            O::F64x2RelaxedMin => return self.translate_simd(&O::F64x2Min),
            O::F64x2RelaxedMax => return self.translate_simd(&O::F64x2Max),
            O::I16x8RelaxedQ15mulrS => return self.translate_simd(&O::I16x8Q15MulrSatS),
            O::I16x8RelaxedDotI8x16I7x16S => {
                let b = self.pop_vec(I8X16);
                let a = self.pop_vec(I8X16);
                let r = self.dot_i8x16_signed(a, b);
                self.push_vec(r);
            }
            O::I32x4RelaxedDotI8x16I7x16AddS => {
                let c = self.pop_vec(I32X4);
                let b = self.pop_vec(I8X16);
                let a = self.pop_vec(I8X16);
                let dot = self.dot_i8x16_signed(a, b);
                let lo = self.b.ins().swiden_low(dot);
                let hi = self.b.ins().swiden_high(dot);
                let dot32 = self.b.ins().iadd_pairwise(lo, hi);
                let r = self.b.ins().iadd(dot32, c);
                self.push_vec(r);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `relaxed_madd` (`a * b + c`) or `relaxed_nmadd` (`-(a * b) + c`), fused.
    fn relaxed_madd(&mut self, ty: Type, negate: bool) -> Result<(), CompileError> {
        if !self.env.has_fma {
            return Err(CompileError::Unsupported(
                "relaxed_madd/relaxed_nmadd need a host with FMA (their deterministic result is fused)".into(),
            ));
        }
        let c = self.pop_vec(ty);
        let b = self.pop_vec(ty);
        let a = self.pop_vec(ty);
        let a = if negate { self.b.ins().fneg(a) } else { a };
        let r = self.b.ins().fma(a, b, c);
        self.push_vec(r);
        Ok(())
    }

    /// The deterministic relaxed dot product: signed bytes times signed bytes, adjacent
    /// products added in wrapping `i16` lanes.
    fn dot_i8x16_signed(&mut self, a: Value, b: Value) -> Value {
        let alo = self.b.ins().swiden_low(a);
        let blo = self.b.ins().swiden_low(b);
        let lo = self.b.ins().imul(alo, blo);
        let ahi = self.b.ins().swiden_high(a);
        let bhi = self.b.ins().swiden_high(b);
        let hi = self.b.ins().imul(ahi, bhi);
        self.b.ins().iadd_pairwise(lo, hi)
    }
}

