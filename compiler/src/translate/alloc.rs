//! Inline bump allocation in a chunk of the store arena, for the objects compiled code creates:
//! exception objects (`vmctx::EXN_*`) and GC structs and arrays (`vmctx::GC_*`). A chunk is
//! described by `{next, end}` in a host-owned state block; compiled code takes `size` bytes at
//! `next` when they fit below `end`, and otherwise asks the host for a new chunk with a builtin.

use super::Translator;
use crate::builtins::Builtin;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types::I64, BlockArg, InstBuilder, Value};

/// Where a kind of object is allocated: the offsets of `next` and `end` in its state block, the
/// builtin that hands out a new chunk (it takes the size, returns the object or an error), and
/// how its result is checked (a trap on error).
pub(super) struct Chunked {
    pub next: u32,
    pub end: u32,
    pub builtin: Builtin,
    pub check: fn(&mut Translator<'_, '_>, Value),
}

impl Translator<'_, '_> {
    /// `size` bytes for an object of kind `kind` whose state block is at `state`.
    pub(super) fn bump_alloc(&mut self, kind: &Chunked, state: Value, size: Value) -> Value {
        let next = self.b.ins().load(I64, super::trusted(), state, kind.next as i32);
        let end = self.b.ins().load(I64, super::trusted(), state, kind.end as i32);
        let new_next = self.b.ins().iadd(next, size);
        let fits = self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, new_next, end);
        // A wrapped `new_next` is below `next`: also ask the host.
        let no_wrap = self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, new_next, next);
        let fits = self.b.ins().band(fits, no_wrap);
        let fast = self.b.create_block();
        let slow = self.b.create_block();
        let join = self.b.create_block();
        self.b.append_block_param(join, I64);
        self.b.set_cold_block(slow);
        self.b.ins().brif(fits, fast, &[], slow, &[]);
        self.b.switch_to_block(fast);
        self.b.seal_block(fast);
        self.b.ins().store(super::trusted(), new_next, state, kind.next as i32);
        self.b.ins().jump(join, &[BlockArg::Value(next)]);
        self.b.switch_to_block(slow);
        self.b.seal_block(slow);
        let p = self.call_builtin(kind.builtin, &[size]);
        (kind.check)(self, p);
        self.b.ins().jump(join, &[BlockArg::Value(p)]);
        self.b.switch_to_block(join);
        self.b.seal_block(join);
        self.b.block_params(join)[0]
    }
}
