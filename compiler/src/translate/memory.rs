//! Linear memory: address computation, loads and stores, `memory.size`/`grow` and bulk memory.
//!
//! With guard pages (the default) a 32-bit memory sits in an 8 GiB reservation, so any
//! `base + u32 index + u32 offset` lands in memory or in the guard and no bounds check is emitted:
//! the access itself traps and the trap table names it. With `BoundsChecks::Explicit` each access
//! compares its end against the current length first.

use super::{readonly, trusted, Translator};
use crate::builtins::Builtin;
use crate::trap::Trap;
use crate::vmctx;
use crate::{BoundsChecks, CompileError};
use cranelift_codegen::ir::{
    condcodes::IntCC,
    types::{self, I32, I64},
    Endianness, InstBuilder, MemFlagsData, Type, Value,
};
use wasmparser::{MemArg, Operator};


pub(super) fn memory_index(memarg: &MemArg) -> u32 {
    match memarg.target {
        wasmparser::MemArgTarget::Memory(m) => m,
        // GC arrays are rejected by the validator's feature set.
        wasmparser::MemArgTarget::Array(_) => unreachable!("validated: no GC arrays in WebAssembly 2.0"),
    }
}

impl Translator<'_, '_> {
    /// Flags for an access to linear memory: may trap (out of bounds), little-endian, in the
    /// linear-memory alias region (`HEAP_REGION`): every access to any linear memory carries
    /// it, and nothing else does, so Cranelift knows that a store to linear memory leaves the
    /// vmctx, tables and host structures alone and the other way round (a store with no region
    /// is a fence to its alias analysis, which then forwards and reuses no load across it).
    pub(super) fn heap_flags(&self) -> MemFlagsData {
        MemFlagsData::new()
            .with_endianness(Endianness::Little)
            .with_trap_code(Some(Trap::MemoryOutOfBounds.to_clif()))
            .with_alias_region(Some(self.heap))
    }

    /// Address of the `VMMemoryDef` of `mem`: (base value, offset).
    fn memory_def(&mut self, mem: u32) -> (Value, i32) {
        let off = self.layout().memory(mem);
        if self.module().is_imported_memory(mem) {
            (self.vmctx_load(I64, off), 0)
        } else {
            (self.vmctx, off as i32)
        }
    }

    /// The address of `mem`'s `VMMemoryDef` (what the bulk-memory builtins take).
    fn memory_def_addr(&mut self, mem: u32) -> Value {
        let (def, off) = self.memory_def(mem);
        if off == 0 { def } else { self.b.ins().iadd_imm_s(def, off as i64) }
    }

    fn memory_base(&mut self, mem: u32) -> Value {
        let (def, off) = self.memory_def(mem);
        // The base never moves: memories are reserved at their maximum size up front.
        self.b.ins().load(I64, readonly(), def, off + vmctx::DEF_BASE as i32)
    }

    fn memory_length(&mut self, mem: u32) -> Value {
        let (def, off) = self.memory_def(mem);
        self.b.ins().load(I64, trusted(), def, off + vmctx::DEF_LENGTH as i32)
    }

    /// Whether `mem` is indexed by i64 (memory64).
    pub(super) fn is_memory64(&self, mem: u32) -> bool {
        self.module().memories[mem as usize].memory64
    }

    /// Pop an index and compute the native address of an access of `size` bytes.
    ///
    /// A 32-bit memory relies on its guard region unless explicit checks are asked for: the
    /// reservation covers any `u32 index + u32 offset + size`. A 64-bit memory is always checked
    /// explicitly (no reservation covers a 64-bit index): `index + offset + size` is computed
    /// with an overflow trap and compared with the current length.
    pub(super) fn heap_addr(&mut self, memarg: &MemArg, size: u32) -> (Value, i32) {
        let index = self.pop();
        self.heap_addr_at(index, memarg, size)
    }

    /// The native address of an access of `size` bytes at i32 `index` (bounds-checked as
    /// `heap_addr` describes).
    pub(super) fn heap_addr_at(&mut self, index: Value, memarg: &MemArg, size: u32) -> (Value, i32) {
        let mem = memory_index(memarg);
        let base = self.memory_base(mem);
        let memory64 = self.is_memory64(mem);
        let index = if memory64 { index } else { self.b.ins().uextend(I64, index) };
        if memory64 || self.env.settings.bounds_checks == BoundsChecks::Explicit {
            let len = self.memory_length(mem);
            let end = match memarg.offset.checked_add(size as u64) {
                Some(reach) if reach <= i64::MAX as u64 && !memory64 => self.b.ins().iadd_imm_s(index, reach as i64),
                Some(reach) => {
                    let reach = self.b.ins().iconst(I64, reach as i64);
                    self.b.ins().uadd_overflow_trap(index, reach, Trap::MemoryOutOfBounds.to_clif())
                }
                None => {
                    // offset + size overflows u64: no index can make the access fit.
                    self.trap(Trap::MemoryOutOfBounds);
                    let after = self.b.create_block();
                    self.b.switch_to_block(after);
                    self.b.seal_block(after);
                    self.b.ins().iconst(I64, 0)
                }
            };
            let oob = self.b.ins().icmp(IntCC::UnsignedGreaterThan, end, len);
            self.trapnz(oob, Trap::MemoryOutOfBounds);
        }
        let addr = self.b.ins().iadd(base, index);
        match i32::try_from(memarg.offset) {
            Ok(offset) => (addr, offset),
            Err(_) => (self.b.ins().iadd_imm_s(addr, memarg.offset as i64), 0),
        }
    }

    fn load_op(&mut self, memarg: &MemArg, size: u32, f: impl FnOnce(&mut Self, Value, i32) -> Value) {
        let (addr, off) = self.heap_addr(memarg, size);
        let v = f(self, addr, off);
        self.push(v);
    }

    fn plain_load(&mut self, memarg: &MemArg, ty: Type) {
        let size = ty.bytes();
        self.load_op(memarg, size, |t, a, o| {
            let flags = t.heap_flags();
            t.b.ins().load(ty, flags, a, o)
        });
    }

    fn store_op(&mut self, memarg: &MemArg, size: u32) {
        let value = self.pop();
        let (addr, off) = self.heap_addr(memarg, size);
        let f = self.heap_flags();
        match size {
            1 => self.b.ins().istore8(f, value, addr, off),
            2 => self.b.ins().istore16(f, value, addr, off),
            4 if self.b.func.dfg.value_type(value) == I64 => self.b.ins().istore32(f, value, addr, off),
            _ => self.b.ins().store(f, value, addr, off),
        };
    }

    pub(super) fn translate_memory(&mut self, op: &Operator<'_>) -> Result<bool, CompileError> {
        use Operator as O;
        let f = self.heap_flags();
        match *op {
            O::I32Load { ref memarg } => self.plain_load(memarg, I32),
            O::I64Load { ref memarg } => self.plain_load(memarg, I64),
            O::F32Load { ref memarg } => self.plain_load(memarg, types::F32),
            O::F64Load { ref memarg } => self.plain_load(memarg, types::F64),
            O::I32Load8S { ref memarg } => self.load_op(memarg, 1, |t, a, o| t.b.ins().sload8(I32, f, a, o)),
            O::I32Load8U { ref memarg } => self.load_op(memarg, 1, |t, a, o| t.b.ins().uload8(I32, f, a, o)),
            O::I32Load16S { ref memarg } => self.load_op(memarg, 2, |t, a, o| t.b.ins().sload16(I32, f, a, o)),
            O::I32Load16U { ref memarg } => self.load_op(memarg, 2, |t, a, o| t.b.ins().uload16(I32, f, a, o)),
            O::I64Load8S { ref memarg } => self.load_op(memarg, 1, |t, a, o| t.b.ins().sload8(I64, f, a, o)),
            O::I64Load8U { ref memarg } => self.load_op(memarg, 1, |t, a, o| t.b.ins().uload8(I64, f, a, o)),
            O::I64Load16S { ref memarg } => self.load_op(memarg, 2, |t, a, o| t.b.ins().sload16(I64, f, a, o)),
            O::I64Load16U { ref memarg } => self.load_op(memarg, 2, |t, a, o| t.b.ins().uload16(I64, f, a, o)),
            O::I64Load32S { ref memarg } => self.load_op(memarg, 4, |t, a, o| t.b.ins().sload32(f, a, o)),
            O::I64Load32U { ref memarg } => self.load_op(memarg, 4, |t, a, o| t.b.ins().uload32(f, a, o)),
            O::I32Store { ref memarg } | O::F32Store { ref memarg } => self.store_op(memarg, 4),
            O::I64Store { ref memarg } | O::F64Store { ref memarg } => self.store_op(memarg, 8),
            O::I32Store8 { ref memarg } | O::I64Store8 { ref memarg } => self.store_op(memarg, 1),
            O::I32Store16 { ref memarg } | O::I64Store16 { ref memarg } => self.store_op(memarg, 2),
            O::I64Store32 { ref memarg } => self.store_op(memarg, 4),
            O::MemorySize { mem } => {
                let len = self.memory_length(mem);
                let pages = self.b.ins().ushr_imm_u(len, 16);
                let v = if self.is_memory64(mem) { pages } else { self.b.ins().ireduce(I32, pages) };
                self.push(v);
            }
            O::MemoryGrow { mem } => {
                let delta = self.pop();
                let m = self.b.ins().iconst(I64, mem as i64);
                let r = self.call_builtin(Builtin::MemoryGrow, &[m, delta]);
                let v = if self.is_memory64(mem) { r } else { self.b.ins().ireduce(I32, r) };
                self.push(v);
            }
            O::MemoryFill { mem } => {
                let (dst, val, len) = self.pop3();
                let m = self.memory_def_addr(mem);
                self.call_builtin(Builtin::MemoryFill, &[m, dst, val, len]);
            }
            O::MemoryCopy { dst_mem, src_mem } => {
                let (dst, src, len) = self.pop3();
                let d = self.memory_def_addr(dst_mem);
                let s = self.memory_def_addr(src_mem);
                self.call_builtin(Builtin::MemoryCopy, &[d, s, dst, src, len]);
            }
            O::MemoryInit { data_index, mem } => {
                let (dst, src, len) = self.pop3();
                let m = self.b.ins().iconst(I64, mem as i64);
                let d = self.b.ins().iconst(I64, data_index as i64);
                self.call_builtin(Builtin::MemoryInit, &[m, d, dst, src, len]);
            }
            O::DataDrop { data_index } => {
                let d = self.b.ins().iconst(I64, data_index as i64);
                self.call_builtin(Builtin::DataDrop, &[d]);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}
