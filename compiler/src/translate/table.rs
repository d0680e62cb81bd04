//! Tables and references: `table.*`, `elem.drop`, `ref.*` and `call_indirect`.
//!
//! A table is a `VMTableDef {base, length}`; elements are 8 bytes: the address of a `VMFuncRef`
//! for funcref tables, a host handle for externref tables, 0 for null. Growing may move `base`,
//! so it is reloaded on every access.

use super::{trusted, Translator};
use crate::builtins::Builtin;
use crate::trap::Trap;
use crate::vmctx;
use crate::CompileError;
use cranelift_codegen::ir::{condcodes::IntCC, types::{I32, I64}, InstBuilder, Value};
use wasmparser::Operator;

impl Translator<'_, '_> {
    fn table_def(&mut self, table: u32) -> (Value, i32) {
        let off = self.layout().table(table);
        if self.module().is_imported_table(table) {
            (self.vmctx_load(I64, off), 0)
        } else {
            (self.vmctx, off as i32)
        }
    }

    fn is_table64(&self, table: u32) -> bool {
        self.module().tables[table as usize].table64
    }

    /// A table's size as its index type (i64 for table64, else i32).
    fn table_index_value(&mut self, table: u32, v: Value) -> Value {
        if self.is_table64(table) { v } else { self.b.ins().ireduce(I32, v) }
    }

    /// Bounds-check `index` (i32, or i64 for table64) against the table and return the
    /// element's address.
    fn table_elem_addr(&mut self, table: u32, index: Value, trap: Trap) -> Value {
        let (def, off) = self.table_def(table);
        let len = self.b.ins().load(I64, trusted(), def, off + vmctx::DEF_LENGTH as i32);
        let index = if self.b.func.dfg.value_type(index) == I64 { index } else { self.b.ins().uextend(I64, index) };
        let oob = self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, index, len);
        self.trapnz(oob, trap);
        let base = self.b.ins().load(I64, trusted(), def, off + vmctx::DEF_BASE as i32);
        let scaled = self.b.ins().ishl_imm_u(index, 3);
        self.b.ins().iadd(base, scaled)
    }

    pub(super) fn translate_call_indirect(&mut self, type_index: u32, table: u32) {
        let (code, callee_vmctx) = self.indirect_callee(type_index, table);
        self.call_code(type_index, code, callee_vmctx, false);
    }

    /// Pop the table index of a `call_indirect`, check the element (bounds, null, signature)
    /// and return the callee's code address and vmctx.
    pub(super) fn indirect_callee(&mut self, type_index: u32, table: u32) -> (Value, Value) {
        let index = self.pop();
        let addr = self.table_elem_addr(table, index, Trap::TableOutOfBounds);
        let funcref = self.b.ins().load(I64, trusted(), addr, 0);
        self.trapz(funcref, Trap::IndirectCallToNull);
        let actual = self.b.ins().load(I64, trusted(), funcref, vmctx::FUNCREF_TYPE_ID as i32);
        // Subtypes of a non-final type match too (GC).
        let matches = self.type_matches_pub(actual, type_index);
        self.trapz(matches, Trap::BadSignature);
        let code = self.b.ins().load(I64, trusted(), funcref, vmctx::FUNCREF_CODE as i32);
        let callee_vmctx = self.b.ins().load(I64, trusted(), funcref, vmctx::FUNCREF_VMCTX as i32);
        (code, callee_vmctx)
    }

    pub(super) fn translate_table(&mut self, op: &Operator<'_>) -> Result<bool, CompileError> {
        use Operator as O;
        match *op {
            O::RefNull { .. } => {
                let v = self.b.ins().iconst(I64, 0);
                self.push(v);
            }
            O::RefIsNull => {
                let r = self.pop();
                let c = self.icmp_imm(IntCC::Equal, r, 0);
                let v = self.bool_to_i32(c);
                self.push(v);
            }
            O::RefFunc { function_index } => {
                let off = self.layout().funcref(function_index);
                let v = self.b.ins().iadd_imm_s(self.vmctx, off as i64);
                self.push(v);
            }
            O::TableGet { table } => {
                let index = self.pop();
                let addr = self.table_elem_addr(table, index, Trap::TableAccessOutOfBounds);
                let v = self.b.ins().load(I64, trusted(), addr, 0);
                self.push(v);
            }
            O::TableSet { table } => {
                let (index, value) = self.pop2();
                let addr = self.table_elem_addr(table, index, Trap::TableAccessOutOfBounds);
                self.b.ins().store(trusted(), value, addr, 0);
            }
            O::TableSize { table } => {
                let (def, off) = self.table_def(table);
                let len = self.b.ins().load(I64, trusted(), def, off + vmctx::DEF_LENGTH as i32);
                let v = self.table_index_value(table, len);
                self.push(v);
            }
            O::TableGrow { table } => {
                let (init, delta) = self.pop2();
                let t = self.b.ins().iconst(I64, table as i64);
                let r = self.call_builtin(Builtin::TableGrow, &[t, delta, init]);
                let v = self.table_index_value(table, r);
                self.push(v);
            }
            O::TableFill { table } => {
                let (dst, value, len) = self.pop3();
                let t = self.b.ins().iconst(I64, table as i64);
                self.call_builtin(Builtin::TableFill, &[t, dst, value, len]);
            }
            O::TableCopy { dst_table, src_table } => {
                let (dst, src, len) = self.pop3();
                let d = self.b.ins().iconst(I64, dst_table as i64);
                let s = self.b.ins().iconst(I64, src_table as i64);
                self.call_builtin(Builtin::TableCopy, &[d, s, dst, src, len]);
            }
            O::TableInit { elem_index, table } => {
                let (dst, src, len) = self.pop3();
                let t = self.b.ins().iconst(I64, table as i64);
                let e = self.b.ins().iconst(I64, elem_index as i64);
                self.call_builtin(Builtin::TableInit, &[t, e, dst, src, len]);
            }
            O::ElemDrop { elem_index } => {
                let e = self.b.ins().iconst(I64, elem_index as i64);
                self.call_builtin(Builtin::ElemDrop, &[e]);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}
