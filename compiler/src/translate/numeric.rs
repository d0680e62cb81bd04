//! Scalar numeric operators: constants, integer and float arithmetic, comparisons, conversions.

use super::Translator;
use crate::CompileError;
use cranelift_codegen::ir::{
    condcodes::{FloatCC, IntCC},
    types::{F32, F64, I32, I64},
    InstBuilder, MemFlagsData, Type, Value,
};
use wasmparser::Operator;

impl Translator<'_, '_> {
    fn unop(&mut self, f: impl FnOnce(&mut Self, Value) -> Value) {
        let a = self.pop();
        let v = f(self, a);
        self.push(v);
    }

    fn binop(&mut self, f: impl FnOnce(&mut Self, Value, Value) -> Value) {
        let (a, b) = self.pop2();
        let v = f(self, a, b);
        self.push(v);
    }

    fn icmp_op(&mut self, cc: IntCC) {
        let (a, b) = self.pop2();
        let c = self.b.ins().icmp(cc, a, b);
        let v = self.bool_to_i32(c);
        self.push(v);
    }

    fn fcmp_op(&mut self, cc: FloatCC) {
        let (a, b) = self.pop2();
        let c = self.b.ins().fcmp(cc, a, b);
        let v = self.bool_to_i32(c);
        self.push(v);
    }

    fn eqz(&mut self) {
        let a = self.pop();
        let c = self.icmp_imm(IntCC::Equal, a, 0);
        let v = self.bool_to_i32(c);
        self.push(v);
    }

    /// Sign-extend the low `from` bits of an integer in place (`i32.extend8_s` and friends).
    fn sext_in_place(&mut self, ty: Type, from: Type) {
        self.unop(|t, a| {
            let narrow = t.b.ins().ireduce(from, a);
            t.b.ins().sextend(ty, narrow)
        });
    }

    fn bitcast_op(&mut self, ty: Type) {
        self.unop(|t, a| t.b.ins().bitcast(ty, MemFlagsData::new(), a));
    }

    pub(super) fn translate_numeric(&mut self, op: &Operator<'_>) -> Result<bool, CompileError> {
        use Operator as O;
        match *op {
            O::I32Const { value } => {
                let v = self.b.ins().iconst(I32, value as i64);
                self.push(v);
            }
            O::I64Const { value } => {
                let v = self.b.ins().iconst(I64, value);
                self.push(v);
            }
            O::F32Const { value } => {
                let v = self.b.ins().f32const(f32::from_bits(value.bits()));
                self.push(v);
            }
            O::F64Const { value } => {
                let v = self.b.ins().f64const(f64::from_bits(value.bits()));
                self.push(v);
            }

            // Integer comparisons.
            O::I32Eqz | O::I64Eqz => self.eqz(),
            O::I32Eq | O::I64Eq => self.icmp_op(IntCC::Equal),
            O::I32Ne | O::I64Ne => self.icmp_op(IntCC::NotEqual),
            O::I32LtS | O::I64LtS => self.icmp_op(IntCC::SignedLessThan),
            O::I32LtU | O::I64LtU => self.icmp_op(IntCC::UnsignedLessThan),
            O::I32GtS | O::I64GtS => self.icmp_op(IntCC::SignedGreaterThan),
            O::I32GtU | O::I64GtU => self.icmp_op(IntCC::UnsignedGreaterThan),
            O::I32LeS | O::I64LeS => self.icmp_op(IntCC::SignedLessThanOrEqual),
            O::I32LeU | O::I64LeU => self.icmp_op(IntCC::UnsignedLessThanOrEqual),
            O::I32GeS | O::I64GeS => self.icmp_op(IntCC::SignedGreaterThanOrEqual),
            O::I32GeU | O::I64GeU => self.icmp_op(IntCC::UnsignedGreaterThanOrEqual),

            // Float comparisons.
            O::F32Eq | O::F64Eq => self.fcmp_op(FloatCC::Equal),
            O::F32Ne | O::F64Ne => self.fcmp_op(FloatCC::NotEqual),
            O::F32Lt | O::F64Lt => self.fcmp_op(FloatCC::LessThan),
            O::F32Gt | O::F64Gt => self.fcmp_op(FloatCC::GreaterThan),
            O::F32Le | O::F64Le => self.fcmp_op(FloatCC::LessThanOrEqual),
            O::F32Ge | O::F64Ge => self.fcmp_op(FloatCC::GreaterThanOrEqual),

            // Integer arithmetic.
            O::I32Clz | O::I64Clz => self.unop(|t, a| t.b.ins().clz(a)),
            O::I32Ctz | O::I64Ctz => self.unop(|t, a| t.b.ins().ctz(a)),
            O::I32Popcnt | O::I64Popcnt => self.unop(|t, a| t.b.ins().popcnt(a)),
            O::I32Add | O::I64Add => self.binop(|t, a, b| t.b.ins().iadd(a, b)),
            O::I32Sub | O::I64Sub => self.binop(|t, a, b| t.b.ins().isub(a, b)),
            O::I32Mul | O::I64Mul => self.binop(|t, a, b| t.b.ins().imul(a, b)),
            O::I32DivS | O::I64DivS => self.binop(|t, a, b| t.b.ins().sdiv(a, b)),
            O::I32DivU | O::I64DivU => self.binop(|t, a, b| t.b.ins().udiv(a, b)),
            O::I32RemS | O::I64RemS => self.binop(|t, a, b| t.b.ins().srem(a, b)),
            O::I32RemU | O::I64RemU => self.binop(|t, a, b| t.b.ins().urem(a, b)),
            O::I32And | O::I64And => self.binop(|t, a, b| t.b.ins().band(a, b)),
            O::I32Or | O::I64Or => self.binop(|t, a, b| t.b.ins().bor(a, b)),
            O::I32Xor | O::I64Xor => self.binop(|t, a, b| t.b.ins().bxor(a, b)),
            O::I32Shl | O::I64Shl => self.binop(|t, a, b| t.b.ins().ishl(a, b)),
            O::I32ShrS | O::I64ShrS => self.binop(|t, a, b| t.b.ins().sshr(a, b)),
            O::I32ShrU | O::I64ShrU => self.binop(|t, a, b| t.b.ins().ushr(a, b)),
            O::I32Rotl | O::I64Rotl => self.binop(|t, a, b| t.b.ins().rotl(a, b)),
            O::I32Rotr | O::I64Rotr => self.binop(|t, a, b| t.b.ins().rotr(a, b)),

            // Float arithmetic.
            O::F32Abs | O::F64Abs => self.unop(|t, a| t.b.ins().fabs(a)),
            O::F32Neg | O::F64Neg => self.unop(|t, a| t.b.ins().fneg(a)),
            O::F32Ceil | O::F64Ceil => self.unop(|t, a| t.b.ins().ceil(a)),
            O::F32Floor | O::F64Floor => self.unop(|t, a| t.b.ins().floor(a)),
            O::F32Trunc | O::F64Trunc => self.unop(|t, a| t.b.ins().trunc(a)),
            O::F32Nearest | O::F64Nearest => self.unop(|t, a| t.b.ins().nearest(a)),
            O::F32Sqrt | O::F64Sqrt => self.unop(|t, a| t.b.ins().sqrt(a)),
            O::F32Add | O::F64Add => self.binop(|t, a, b| t.b.ins().fadd(a, b)),
            O::F32Sub | O::F64Sub => self.binop(|t, a, b| t.b.ins().fsub(a, b)),
            O::F32Mul | O::F64Mul => self.binop(|t, a, b| t.b.ins().fmul(a, b)),
            O::F32Div | O::F64Div => self.binop(|t, a, b| t.b.ins().fdiv(a, b)),
            O::F32Min | O::F64Min => self.binop(|t, a, b| t.b.ins().fmin(a, b)),
            O::F32Max | O::F64Max => self.binop(|t, a, b| t.b.ins().fmax(a, b)),
            O::F32Copysign | O::F64Copysign => self.binop(|t, a, b| t.b.ins().fcopysign(a, b)),

            // Conversions.
            O::I32WrapI64 => self.unop(|t, a| t.b.ins().ireduce(I32, a)),
            O::I64ExtendI32S => self.unop(|t, a| t.b.ins().sextend(I64, a)),
            O::I64ExtendI32U => self.unop(|t, a| t.b.ins().uextend(I64, a)),
            O::I32Extend8S => self.sext_in_place(I32, cranelift_codegen::ir::types::I8),
            O::I32Extend16S => self.sext_in_place(I32, cranelift_codegen::ir::types::I16),
            O::I64Extend8S => self.sext_in_place(I64, cranelift_codegen::ir::types::I8),
            O::I64Extend16S => self.sext_in_place(I64, cranelift_codegen::ir::types::I16),
            O::I64Extend32S => self.sext_in_place(I64, I32),
            O::I32TruncF32S | O::I32TruncF64S => self.unop(|t, a| t.b.ins().fcvt_to_sint(I32, a)),
            O::I32TruncF32U | O::I32TruncF64U => self.unop(|t, a| t.b.ins().fcvt_to_uint(I32, a)),
            O::I64TruncF32S | O::I64TruncF64S => self.unop(|t, a| t.b.ins().fcvt_to_sint(I64, a)),
            O::I64TruncF32U | O::I64TruncF64U => self.unop(|t, a| t.b.ins().fcvt_to_uint(I64, a)),
            O::I32TruncSatF32S | O::I32TruncSatF64S => {
                self.unop(|t, a| t.b.ins().fcvt_to_sint_sat(I32, a))
            }
            O::I32TruncSatF32U | O::I32TruncSatF64U => {
                self.unop(|t, a| t.b.ins().fcvt_to_uint_sat(I32, a))
            }
            O::I64TruncSatF32S | O::I64TruncSatF64S => {
                self.unop(|t, a| t.b.ins().fcvt_to_sint_sat(I64, a))
            }
            O::I64TruncSatF32U | O::I64TruncSatF64U => {
                self.unop(|t, a| t.b.ins().fcvt_to_uint_sat(I64, a))
            }
            O::F32ConvertI32S | O::F32ConvertI64S => {
                self.unop(|t, a| t.b.ins().fcvt_from_sint(F32, a))
            }
            O::F32ConvertI32U | O::F32ConvertI64U => {
                self.unop(|t, a| t.b.ins().fcvt_from_uint(F32, a))
            }
            O::F64ConvertI32S | O::F64ConvertI64S => {
                self.unop(|t, a| t.b.ins().fcvt_from_sint(F64, a))
            }
            O::F64ConvertI32U | O::F64ConvertI64U => {
                self.unop(|t, a| t.b.ins().fcvt_from_uint(F64, a))
            }
            O::F32DemoteF64 => self.unop(|t, a| t.b.ins().fdemote(F32, a)),
            O::F64PromoteF32 => self.unop(|t, a| t.b.ins().fpromote(F64, a)),
            O::I32ReinterpretF32 => self.bitcast_op(I32),
            O::I64ReinterpretF64 => self.bitcast_op(I64),
            O::F32ReinterpretI32 => self.bitcast_op(F32),
            O::F64ReinterpretI64 => self.bitcast_op(F64),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

