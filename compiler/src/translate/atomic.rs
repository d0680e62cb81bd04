//! The threads proposal's atomic operators: `*.atomic.load/store/rmw*/cmpxchg`,
//! `atomic.fence`, `memory.atomic.notify` and `memory.atomic.wait32/64`.
//!
//! A store runs one thread of execution (there are no wasm threads), so atomics only need to
//! be atomic with respect to themselves; they are still lowered to Cranelift's sequentially
//! consistent atomic instructions, on shared and unshared memories alike.
//!
//! Every atomic access first checks that its effective address (`index + offset`, computed in
//! 64 bits so it cannot wrap) is a multiple of the access size, trapping with "unaligned
//! atomic" (`Trap::HeapMisaligned`) otherwise — before the bounds check, as wasmtime does —
//! and is then bounds-checked exactly like a plain load (`heap_addr_at`: guard pages or an
//! explicit compare).
//!
//! Waiting and notifying, in a one-thread store:
//! * `memory.atomic.notify` checks alignment and bounds and returns 0: nobody waits.
//! * `memory.atomic.wait32/64` on an unshared memory checks alignment and bounds, then traps
//!   with "expected shared memory" (whether a memory is shared is static: imports must match
//!   exactly). On a shared memory it loads the value: if it differs from the expected one the
//!   result is 1 ("not-equal"); otherwise no other thread can ever notify, so it sleeps in the
//!   host (`Builtin::MemoryAtomicWait`) for the timeout and returns 2 ("timed-out"). The sleep
//!   is cut short by the store's deadline (`--timeout`), which ends the call with the
//!   `interrupt` trap; a negative (infinite) timeout therefore sleeps until the deadline, or
//!   forever without one (as wasmtime blocks forever).

use super::memory::memory_index;
use super::Translator;
use crate::builtins::Builtin;
use crate::trap::Trap;
use crate::CompileError;
use cranelift_codegen::ir::{
    condcodes::IntCC,
    types::{I16, I32, I64, I8},
    AtomicRmwOp, InstBuilder, Type, Value,
};
use wasmparser::{MemArg, Operator};

impl Translator<'_, '_> {
    /// Pop the index of an atomic access of `size` bytes, check its alignment and bounds, and
    /// return the native address (offset included).
    fn atomic_addr(&mut self, memarg: &MemArg, size: u32) -> Value {
        let index = self.pop();
        if size > 1 {
            let wide = self.widen_to(index, I64);
            let eff = self.b.ins().iadd_imm_s(wide, memarg.offset as i64);
            let misaligned = self.b.ins().band_imm_s(eff, (size - 1) as i64);
            self.trapnz(misaligned, Trap::HeapMisaligned);
        }
        let (addr, off) = self.heap_addr_at(index, memarg, size);
        if off == 0 { addr } else { self.b.ins().iadd_imm_s(addr, off as i64) }
    }

    /// Narrow `v` (an i32 or i64 operand) to the access type `mem`.
    fn narrow(&mut self, v: Value, mem: Type) -> Value {
        if self.b.func.dfg.value_type(v) == mem { v } else { self.b.ins().ireduce(mem, v) }
    }

    /// Zero-extend a loaded `mem`-typed value to the operator's result type `ty`.
    fn widen_to(&mut self, v: Value, ty: Type) -> Value {
        if self.b.func.dfg.value_type(v) == ty { v } else { self.b.ins().uextend(ty, v) }
    }

    fn atomic_load(&mut self, memarg: &MemArg, ty: Type, mem: Type) {
        let addr = self.atomic_addr(memarg, mem.bytes());
        let flags = self.heap_flags();
        let v = self.b.ins().atomic_load(mem, flags, addr);
        let v = self.widen_to(v, ty);
        self.push(v);
    }

    fn atomic_store(&mut self, memarg: &MemArg, mem: Type) {
        let value = self.pop();
        let addr = self.atomic_addr(memarg, mem.bytes());
        let value = self.narrow(value, mem);
        let flags = self.heap_flags();
        self.b.ins().atomic_store(flags, value, addr);
    }

    fn atomic_rmw(&mut self, memarg: &MemArg, ty: Type, mem: Type, op: AtomicRmwOp) {
        let value = self.pop();
        let addr = self.atomic_addr(memarg, mem.bytes());
        let value = self.narrow(value, mem);
        let flags = self.heap_flags();
        let old = self.b.ins().atomic_rmw(mem, flags, op, addr, value);
        let old = self.widen_to(old, ty);
        self.push(old);
    }

    /// `cmpxchg`: the expected value is wrapped to the access width before the comparison.
    fn atomic_cmpxchg(&mut self, memarg: &MemArg, ty: Type, mem: Type) {
        let (expected, replacement) = self.pop2();
        let addr = self.atomic_addr(memarg, mem.bytes());
        let expected = self.narrow(expected, mem);
        let replacement = self.narrow(replacement, mem);
        let flags = self.heap_flags();
        let old = self.b.ins().atomic_cas(flags, addr, expected, replacement);
        let old = self.widen_to(old, ty);
        self.push(old);
    }

    fn atomic_notify(&mut self, memarg: &MemArg) {
        let _count = self.pop();
        let addr = self.atomic_addr(memarg, 4);
        // The access itself is the bounds check with guard pages (and is harmless otherwise).
        let flags = self.heap_flags();
        self.b.ins().atomic_load(I32, flags, addr);
        let zero = self.b.ins().iconst(I32, 0);
        self.push(zero);
    }

    fn atomic_wait(&mut self, memarg: &MemArg, mem: Type) {
        let timeout = self.pop();
        let expected = self.pop();
        let addr = self.atomic_addr(memarg, mem.bytes());
        let flags = self.heap_flags();
        let current = self.b.ins().atomic_load(mem, flags, addr);
        if !self.module().memories[memory_index(memarg) as usize].shared {
            self.trap(Trap::AtomicWaitNonShared);
            self.reachable = false;
            return;
        }
        let differs = self.b.ins().icmp(IntCC::NotEqual, current, expected);
        let not_equal = self.b.create_block();
        let wait = self.b.create_block();
        let done = self.b.create_block();
        self.b.append_block_param(done, I32);
        self.b.ins().brif(differs, not_equal, &[], wait, &[]);

        self.b.switch_to_block(not_equal);
        self.b.seal_block(not_equal);
        let one = self.b.ins().iconst(I32, 1);
        self.b.ins().jump(done, &[one.into()]);

        self.b.switch_to_block(wait);
        self.b.seal_block(wait);
        self.call_builtin(Builtin::MemoryAtomicWait, &[timeout]);
        let two = self.b.ins().iconst(I32, 2);
        self.b.ins().jump(done, &[two.into()]);

        self.b.switch_to_block(done);
        self.b.seal_block(done);
        let r = self.b.block_params(done)[0];
        self.push(r);
    }

    pub(super) fn translate_atomic(&mut self, op: &Operator<'_>) -> Result<bool, CompileError> {
        use AtomicRmwOp as R;
        use Operator as O;
        match *op {
            O::AtomicFence { .. } => {
                self.b.ins().fence();
            }
            O::MemoryAtomicNotify { ref memarg } => self.atomic_notify(memarg),
            O::MemoryAtomicWait32 { ref memarg } => self.atomic_wait(memarg, I32),
            O::MemoryAtomicWait64 { ref memarg } => self.atomic_wait(memarg, I64),

            O::I32AtomicLoad { ref memarg } => self.atomic_load(memarg, I32, I32),
            O::I64AtomicLoad { ref memarg } => self.atomic_load(memarg, I64, I64),
            O::I32AtomicLoad8U { ref memarg } => self.atomic_load(memarg, I32, I8),
            O::I32AtomicLoad16U { ref memarg } => self.atomic_load(memarg, I32, I16),
            O::I64AtomicLoad8U { ref memarg } => self.atomic_load(memarg, I64, I8),
            O::I64AtomicLoad16U { ref memarg } => self.atomic_load(memarg, I64, I16),
            O::I64AtomicLoad32U { ref memarg } => self.atomic_load(memarg, I64, I32),

            O::I32AtomicStore { ref memarg } => self.atomic_store(memarg, I32),
            O::I64AtomicStore { ref memarg } => self.atomic_store(memarg, I64),
            O::I32AtomicStore8 { ref memarg } | O::I64AtomicStore8 { ref memarg } => self.atomic_store(memarg, I8),
            O::I32AtomicStore16 { ref memarg } | O::I64AtomicStore16 { ref memarg } => self.atomic_store(memarg, I16),
            O::I64AtomicStore32 { ref memarg } => self.atomic_store(memarg, I32),

            O::I32AtomicRmwAdd { ref memarg } => self.atomic_rmw(memarg, I32, I32, R::Add),
            O::I64AtomicRmwAdd { ref memarg } => self.atomic_rmw(memarg, I64, I64, R::Add),
            O::I32AtomicRmw8AddU { ref memarg } => self.atomic_rmw(memarg, I32, I8, R::Add),
            O::I32AtomicRmw16AddU { ref memarg } => self.atomic_rmw(memarg, I32, I16, R::Add),
            O::I64AtomicRmw8AddU { ref memarg } => self.atomic_rmw(memarg, I64, I8, R::Add),
            O::I64AtomicRmw16AddU { ref memarg } => self.atomic_rmw(memarg, I64, I16, R::Add),
            O::I64AtomicRmw32AddU { ref memarg } => self.atomic_rmw(memarg, I64, I32, R::Add),

            O::I32AtomicRmwSub { ref memarg } => self.atomic_rmw(memarg, I32, I32, R::Sub),
            O::I64AtomicRmwSub { ref memarg } => self.atomic_rmw(memarg, I64, I64, R::Sub),
            O::I32AtomicRmw8SubU { ref memarg } => self.atomic_rmw(memarg, I32, I8, R::Sub),
            O::I32AtomicRmw16SubU { ref memarg } => self.atomic_rmw(memarg, I32, I16, R::Sub),
            O::I64AtomicRmw8SubU { ref memarg } => self.atomic_rmw(memarg, I64, I8, R::Sub),
            O::I64AtomicRmw16SubU { ref memarg } => self.atomic_rmw(memarg, I64, I16, R::Sub),
            O::I64AtomicRmw32SubU { ref memarg } => self.atomic_rmw(memarg, I64, I32, R::Sub),

            O::I32AtomicRmwAnd { ref memarg } => self.atomic_rmw(memarg, I32, I32, R::And),
            O::I64AtomicRmwAnd { ref memarg } => self.atomic_rmw(memarg, I64, I64, R::And),
            O::I32AtomicRmw8AndU { ref memarg } => self.atomic_rmw(memarg, I32, I8, R::And),
            O::I32AtomicRmw16AndU { ref memarg } => self.atomic_rmw(memarg, I32, I16, R::And),
            O::I64AtomicRmw8AndU { ref memarg } => self.atomic_rmw(memarg, I64, I8, R::And),
            O::I64AtomicRmw16AndU { ref memarg } => self.atomic_rmw(memarg, I64, I16, R::And),
            O::I64AtomicRmw32AndU { ref memarg } => self.atomic_rmw(memarg, I64, I32, R::And),

            O::I32AtomicRmwOr { ref memarg } => self.atomic_rmw(memarg, I32, I32, R::Or),
            O::I64AtomicRmwOr { ref memarg } => self.atomic_rmw(memarg, I64, I64, R::Or),
            O::I32AtomicRmw8OrU { ref memarg } => self.atomic_rmw(memarg, I32, I8, R::Or),
            O::I32AtomicRmw16OrU { ref memarg } => self.atomic_rmw(memarg, I32, I16, R::Or),
            O::I64AtomicRmw8OrU { ref memarg } => self.atomic_rmw(memarg, I64, I8, R::Or),
            O::I64AtomicRmw16OrU { ref memarg } => self.atomic_rmw(memarg, I64, I16, R::Or),
            O::I64AtomicRmw32OrU { ref memarg } => self.atomic_rmw(memarg, I64, I32, R::Or),

            O::I32AtomicRmwXor { ref memarg } => self.atomic_rmw(memarg, I32, I32, R::Xor),
            O::I64AtomicRmwXor { ref memarg } => self.atomic_rmw(memarg, I64, I64, R::Xor),
            O::I32AtomicRmw8XorU { ref memarg } => self.atomic_rmw(memarg, I32, I8, R::Xor),
            O::I32AtomicRmw16XorU { ref memarg } => self.atomic_rmw(memarg, I32, I16, R::Xor),
            O::I64AtomicRmw8XorU { ref memarg } => self.atomic_rmw(memarg, I64, I8, R::Xor),
            O::I64AtomicRmw16XorU { ref memarg } => self.atomic_rmw(memarg, I64, I16, R::Xor),
            O::I64AtomicRmw32XorU { ref memarg } => self.atomic_rmw(memarg, I64, I32, R::Xor),

            O::I32AtomicRmwXchg { ref memarg } => self.atomic_rmw(memarg, I32, I32, R::Xchg),
            O::I64AtomicRmwXchg { ref memarg } => self.atomic_rmw(memarg, I64, I64, R::Xchg),
            O::I32AtomicRmw8XchgU { ref memarg } => self.atomic_rmw(memarg, I32, I8, R::Xchg),
            O::I32AtomicRmw16XchgU { ref memarg } => self.atomic_rmw(memarg, I32, I16, R::Xchg),
            O::I64AtomicRmw8XchgU { ref memarg } => self.atomic_rmw(memarg, I64, I8, R::Xchg),
            O::I64AtomicRmw16XchgU { ref memarg } => self.atomic_rmw(memarg, I64, I16, R::Xchg),
            O::I64AtomicRmw32XchgU { ref memarg } => self.atomic_rmw(memarg, I64, I32, R::Xchg),

            O::I32AtomicRmwCmpxchg { ref memarg } => self.atomic_cmpxchg(memarg, I32, I32),
            O::I64AtomicRmwCmpxchg { ref memarg } => self.atomic_cmpxchg(memarg, I64, I64),
            O::I32AtomicRmw8CmpxchgU { ref memarg } => self.atomic_cmpxchg(memarg, I32, I8),
            O::I32AtomicRmw16CmpxchgU { ref memarg } => self.atomic_cmpxchg(memarg, I32, I16),
            O::I64AtomicRmw8CmpxchgU { ref memarg } => self.atomic_cmpxchg(memarg, I64, I8),
            O::I64AtomicRmw16CmpxchgU { ref memarg } => self.atomic_cmpxchg(memarg, I64, I16),
            O::I64AtomicRmw32CmpxchgU { ref memarg } => self.atomic_cmpxchg(memarg, I64, I32),
            _ => return Ok(false),
        }
        Ok(true)
    }
}
