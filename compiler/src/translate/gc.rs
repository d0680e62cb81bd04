//! The GC proposal: struct and array objects, i31 references, `ref.eq`, casts, and the
//! conversions between the extern and any hierarchies.
//!
//! Values (all `I64`, null is 0):
//! * i31: `(v << 1) | 1` (the low bit set);
//! * a struct or array object: its address, 8-aligned, in a chunk of the store's GC heap (in
//!   the arena); the object starts with the header of `module::OBJ_*` (canonical type id, kind,
//!   array length), fields or elements follow;
//! * an externref converted to `any` (`any.convert_extern`): `(e << 2) | 2`, where `e` is the
//!   externref's non-zero handle; so the low two bits are `10`, which neither i31 nor objects
//!   have;
//! * an `any` value converted to `extern` (`extern.convert_any`): the value with bit 63 set
//!   (handles and arena addresses never have it); converting back clears it.
//!
//! Objects are bump-allocated from the store's GC state `{next, end}` (`vmctx::GC_*`); the
//! `GcAlloc` builtin hands out a new chunk when the current one is full. Nothing is freed
//! before the store. Casts to a concrete type compare the object's (or function's) canonical
//! type id with the target's (in the vmctx's type ids); when they differ and the target is not
//! final, the store's subtype table (`vmctx::GC_TYPES_*`: a display of supertypes per canonical
//! id) decides without leaving compiled code. An object's header is guest data
//! like its fields: compiled code trusts it as WebAssembly semantics guarantee (no operator can
//! change a header), the host never does.

use super::alloc::Chunked;
use super::{block_args, Translator};
use crate::builtins::{Builtin, GC_ERR_ARRAY, GC_ERR_LIMIT, GC_ERR_MEMORY, GC_ERR_TABLE};
use crate::module::{
    self, CompositeType, FieldType, HeapType, StorageType, WasmType, OBJ_HEADER, OBJ_KIND, OBJ_KIND_ARRAY,
    OBJ_KIND_STRUCT, OBJ_LENGTH, OBJ_TYPE_ID,
};
use crate::trap::Trap;
use crate::vmctx;
use crate::CompileError;
use cranelift_codegen::ir::{
    condcodes::IntCC, types::{I16, I32, I64, I8}, BlockArg, InstBuilder, MemFlagsData, Type, Value,
};
use wasmparser::Operator;

/// Bit 63 marks an `any` value converted to `extern`.
const EXTERN_ANY_BIT: i64 = 1 << 63;

fn obj_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

impl Translator<'_, '_> {
    fn field(&self, ty: u32, field: u32) -> (FieldType, u32) {
        match &self.module().type_defs[ty as usize].composite {
            CompositeType::Struct(fields) => {
                let (offsets, _) = module::struct_layout(fields);
                (fields[field as usize], offsets[field as usize])
            }
            _ => panic!("validated: struct type"),
        }
    }

    fn struct_fields(&self, ty: u32) -> Vec<FieldType> {
        match &self.module().type_defs[ty as usize].composite {
            CompositeType::Struct(fields) => fields.clone(),
            _ => panic!("validated: struct type"),
        }
    }

    fn elem_type(&self, ty: u32) -> FieldType {
        match &self.module().type_defs[ty as usize].composite {
            CompositeType::Array(f) => *f,
            _ => panic!("validated: array type"),
        }
    }

    /// The Cranelift type a field is stored as.
    fn storage_clif(s: StorageType) -> Type {
        match s {
            StorageType::I8 => I8,
            StorageType::I16 => I16,
            StorageType::Val(t) => super::clif_type(t),
        }
    }

    fn store_field(&mut self, s: StorageType, v: Value, addr: Value, off: i32) {
        match s {
            StorageType::I8 => {
                self.b.ins().istore8(obj_flags(), v, addr, off);
            }
            StorageType::I16 => {
                self.b.ins().istore16(obj_flags(), v, addr, off);
            }
            StorageType::Val(_) => {
                self.b.ins().store(obj_flags(), v, addr, off);
            }
        }
    }

    /// Load a field; packed fields are extended (`signed`) to i32.
    fn load_field(&mut self, s: StorageType, signed: bool, addr: Value, off: i32) -> Value {
        match (s, signed) {
            (StorageType::I8, true) => self.b.ins().sload8(I32, obj_flags(), addr, off),
            (StorageType::I8, false) => self.b.ins().uload8(I32, obj_flags(), addr, off),
            (StorageType::I16, true) => self.b.ins().sload16(I32, obj_flags(), addr, off),
            (StorageType::I16, false) => self.b.ins().uload16(I32, obj_flags(), addr, off),
            (StorageType::Val(t), _) => self.b.ins().load(super::clif_type(t), obj_flags(), addr, off),
        }
    }

    /// Allocate `size` bytes (a multiple of 8) of zeroed GC memory in the store's GC chunk.
    fn gc_alloc(&mut self, size: Value) -> Value {
        const GC_OBJECTS: Chunked =
            Chunked { next: vmctx::GC_NEXT, end: vmctx::GC_END, builtin: Builtin::GcAlloc, check: |t, p| t.gc_result_check(p) };
        let state = self.vmctx_load(I64, vmctx::GC_HEAP);
        self.bump_alloc(&GC_OBJECTS, state, size)
    }

    /// Trap if a GC builtin's result is an error code.
    fn gc_result_check(&mut self, r: Value) {
        let is_err = self.b.ins().icmp_imm_s(IntCC::UnsignedLessThan, r, GC_ERR_LIMIT as i64);
        let err = self.b.create_block();
        let ok = self.b.create_block();
        self.b.set_cold_block(err);
        self.b.ins().brif(is_err, err, &[], ok, &[]);
        self.b.switch_to_block(err);
        self.b.seal_block(err);
        for (code, trap) in [
            (GC_ERR_MEMORY, Trap::MemoryOutOfBounds),
            (GC_ERR_TABLE, Trap::TableAccessOutOfBounds),
            (GC_ERR_ARRAY, Trap::ArrayOutOfBounds),
        ] {
            let c = self.b.ins().icmp_imm_s(IntCC::Equal, r, code as i64);
            self.trapnz(c, trap);
        }
        self.trap(Trap::GcHeapOutOfMemory);
        self.b.switch_to_block(ok);
        self.b.seal_block(ok);
    }

    fn write_header(&mut self, obj: Value, ty: u32, kind: u32, len: Option<Value>) {
        let id = self.vmctx_load(I64, self.layout().type_id(ty));
        let id = self.b.ins().ireduce(I32, id);
        self.b.ins().store(obj_flags(), id, obj, OBJ_TYPE_ID as i32);
        let k = self.b.ins().iconst(I32, kind as i64);
        self.b.ins().store(obj_flags(), k, obj, OBJ_KIND as i32);
        if let Some(len) = len {
            self.b.ins().store(obj_flags(), len, obj, OBJ_LENGTH as i32);
        }
    }

    /// A new array of `len` (i32) elements of type `ty`, zeroed.
    fn array_alloc(&mut self, ty: u32, len: Value) -> Value {
        let es = self.elem_type(ty).storage.size() as i64;
        let n = self.b.ins().uextend(I64, len);
        let bytes = self.b.ins().imul_imm_s(n, es);
        let size = self.b.ins().iadd_imm_s(bytes, OBJ_HEADER as i64 + 7);
        let size = self.b.ins().band_imm_s(size, !7);
        let obj = self.gc_alloc(size);
        self.write_header(obj, ty, OBJ_KIND_ARRAY, Some(len));
        obj
    }

    /// The address of element `i` (i32) of array `arr` of type `ty`, after the null and
    /// bounds checks.
    fn array_elem_addr(&mut self, ty: u32, arr: Value, i: Value) -> Value {
        self.trapz(arr, Trap::NullArrayReference);
        let len = self.b.ins().load(I32, obj_flags(), arr, OBJ_LENGTH as i32);
        let oob = self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, i, len);
        self.trapnz(oob, Trap::ArrayOutOfBounds);
        self.elem_addr_unchecked(ty, arr, i)
    }

    fn elem_addr_unchecked(&mut self, ty: u32, arr: Value, i: Value) -> Value {
        let es = self.elem_type(ty).storage.size() as i64;
        let i = self.b.ins().uextend(I64, i);
        let off = self.b.ins().imul_imm_s(i, es);
        let addr = self.b.ins().iadd(arr, off);
        self.b.ins().iadd_imm_s(addr, OBJ_HEADER as i64)
    }

    /// Null check, then trap unless `start + n <= len` (i32 values, computed in i64).
    fn array_range_check(&mut self, arr: Value, start: Value, n: Value) {
        self.trapz(arr, Trap::NullArrayReference);
        let len = self.b.ins().load(I32, obj_flags(), arr, OBJ_LENGTH as i32);
        let len = self.b.ins().uextend(I64, len);
        let s = self.b.ins().uextend(I64, start);
        let n = self.b.ins().uextend(I64, n);
        let end = self.b.ins().iadd(s, n);
        let oob = self.b.ins().icmp(IntCC::UnsignedGreaterThan, end, len);
        self.trapnz(oob, Trap::ArrayOutOfBounds);
    }

    /// `for i in 0..n { body(i) }` with `n` an i64 count, or backwards when `backwards` (an i8
    /// condition) is set.
    fn counted_loop(&mut self, n: Value, backwards: Option<Value>, mut body: impl FnMut(&mut Self, Value)) {
        let header = self.b.create_block();
        self.b.append_block_param(header, I64);
        let exit = self.b.create_block();
        let zero = self.b.ins().iconst(I64, 0);
        self.b.ins().jump(header, &[BlockArg::Value(zero)]);
        self.b.switch_to_block(header);
        let k = self.b.block_params(header)[0];
        let done = self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, k, n);
        let body_block = self.b.create_block();
        self.b.ins().brif(done, exit, &[], body_block, &[]);
        self.b.switch_to_block(body_block);
        self.b.seal_block(body_block);
        let i = match backwards {
            None => k,
            Some(back) => {
                let last = self.b.ins().isub(n, k);
                let last = self.b.ins().iadd_imm_s(last, -1);
                self.b.ins().select(back, last, k)
            }
        };
        body(self, i);
        let k1 = self.b.ins().iadd_imm_s(k, 1);
        self.b.ins().jump(header, &[BlockArg::Value(k1)]);
        self.b.seal_block(header);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
    }

    pub(super) fn type_matches_pub(&mut self, id: Value, ty: u32) -> Value {
        self.type_matches(id, ty)
    }

    /// An i8 condition: canonical type id `id` (i64) is type `ty` of the module or a subtype.
    fn type_matches(&mut self, id: Value, ty: u32) -> Value {
        let expected = self.vmctx_load(I64, self.layout().type_id(ty));
        let eq = self.b.ins().icmp(IntCC::Equal, id, expected);
        if self.module().type_is_final(ty) {
            return eq;
        }
        // Else the subtype table: display(id)[depth(ty)] == expected.
        let depth = self.module().type_depth(ty) as i64;
        let join = self.b.create_block();
        self.b.append_block_param(join, I8);
        let no = self.b.ins().iconst(I8, 0);
        let in_table = self.b.create_block();
        let has_display = self.b.create_block();
        let deep_enough = self.b.create_block();
        let lookup = self.b.create_block();
        self.b.ins().brif(eq, join, &[BlockArg::Value(eq)], lookup, &[]);
        self.b.switch_to_block(lookup);
        self.b.seal_block(lookup);
        let cell = self.vmctx_load(I64, vmctx::GC_TYPES);
        let len = self.b.ins().load(I64, super::trusted(), cell, vmctx::GC_TYPES_LEN as i32);
        let inside = self.b.ins().icmp(IntCC::UnsignedLessThan, id, len);
        self.b.ins().brif(inside, in_table, &[], join, &[BlockArg::Value(no)]);
        self.b.switch_to_block(in_table);
        self.b.seal_block(in_table);
        let table = self.b.ins().load(I64, super::trusted(), cell, vmctx::GC_TYPES_TABLE as i32);
        let off = self.b.ins().ishl_imm_s(id, 3);
        let slot = self.b.ins().iadd(table, off);
        let display = self.b.ins().load(I64, obj_flags(), slot, 0);
        self.b.ins().brif(display, has_display, &[], join, &[BlockArg::Value(no)]);
        self.b.switch_to_block(has_display);
        self.b.seal_block(has_display);
        let d = self.b.ins().load(I64, obj_flags(), display, 0);
        let deep = self.b.ins().icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, d, depth);
        self.b.ins().brif(deep, deep_enough, &[], join, &[BlockArg::Value(no)]);
        self.b.switch_to_block(deep_enough);
        self.b.seal_block(deep_enough);
        let sup = self.b.ins().load(I64, obj_flags(), display, 8 + 8 * depth as i32);
        let c = self.b.ins().icmp(IntCC::Equal, sup, expected);
        self.b.ins().jump(join, &[BlockArg::Value(c)]);
        self.b.switch_to_block(join);
        self.b.seal_block(join);
        self.b.block_params(join)[0]
    }

    /// An i8 condition: reference `v` is a value of `(ref null? heap)`.
    pub(super) fn ref_test(&mut self, v: Value, nullable: bool, heap: HeapType) -> Value {
        let module = self.module();
        let top = heap.top(|i| module.type_kind(i));
        let null_ok = nullable as i64;
        match heap {
            HeapType::Any | HeapType::Func | HeapType::Extern | HeapType::Exn => {
                if nullable {
                    self.b.ins().iconst(I8, 1)
                } else {
                    self.b.ins().icmp_imm_s(IntCC::NotEqual, v, 0)
                }
            }
            HeapType::None | HeapType::NoFunc | HeapType::NoExtern | HeapType::NoExn => {
                if nullable {
                    self.b.ins().icmp_imm_s(IntCC::Equal, v, 0)
                } else {
                    self.b.ins().iconst(I8, 0)
                }
            }
            HeapType::Eq | HeapType::I31 => {
                let is_null = self.b.ins().icmp_imm_s(IntCC::Equal, v, 0);
                let ok = if heap == HeapType::Eq {
                    let low = self.b.ins().band_imm_s(v, 3);
                    self.b.ins().icmp_imm_s(IntCC::NotEqual, low, 2)
                } else {
                    let low = self.b.ins().band_imm_s(v, 1);
                    self.b.ins().icmp_imm_s(IntCC::NotEqual, low, 0)
                };
                let n = self.b.ins().iconst(I8, null_ok);
                self.b.ins().select(is_null, n, ok)
            }
            HeapType::Struct | HeapType::Array | HeapType::Concrete(_) => {
                let join = self.b.create_block();
                self.b.append_block_param(join, I8);
                let check = self.b.create_block();
                let n = self.b.ins().iconst(I8, null_ok);
                self.b.ins().brif(v, check, &[], join, &[BlockArg::Value(n)]);
                self.b.switch_to_block(check);
                self.b.seal_block(check);
                let c = if top == HeapType::Func {
                    let HeapType::Concrete(t) = heap else { unreachable!() };
                    let id = self.b.ins().load(I64, super::trusted(), v, vmctx::FUNCREF_TYPE_ID as i32);
                    self.type_matches(id, t)
                } else {
                    let obj = self.b.create_block();
                    let low = self.b.ins().band_imm_s(v, 7);
                    let zero = self.b.ins().iconst(I8, 0);
                    self.b.ins().brif(low, join, &[BlockArg::Value(zero)], obj, &[]);
                    self.b.switch_to_block(obj);
                    self.b.seal_block(obj);
                    match heap {
                        HeapType::Concrete(t) => {
                            let id = self.b.ins().load(I32, obj_flags(), v, OBJ_TYPE_ID as i32);
                            let id = self.b.ins().uextend(I64, id);
                            self.type_matches(id, t)
                        }
                        _ => {
                            let kind = self.b.ins().load(I32, obj_flags(), v, OBJ_KIND as i32);
                            let want = if heap == HeapType::Struct { OBJ_KIND_STRUCT } else { OBJ_KIND_ARRAY };
                            self.b.ins().icmp_imm_s(IntCC::Equal, kind, want as i64)
                        }
                    }
                };
                self.b.ins().jump(join, &[BlockArg::Value(c)]);
                self.b.switch_to_block(join);
                self.b.seal_block(join);
                self.b.block_params(join)[0]
            }
        }
    }

    fn heap_of(hty: wasmparser::HeapType) -> Result<HeapType, CompileError> {
        let r = wasmparser::RefType::new(true, hty).ok_or_else(|| CompileError::Unsupported(format!("heap type {hty:?}")))?;
        match WasmType::from_ref(r).map_err(CompileError::Unsupported)? {
            WasmType::FuncRef => Ok(HeapType::Func),
            WasmType::ExternRef => Ok(HeapType::Extern),
            WasmType::ExnRef => Ok(HeapType::Exn),
            WasmType::Ref(r) => Ok(r.heap),
            other => Err(CompileError::Unsupported(format!("heap type of {other}"))),
        }
    }

    fn ref_type_of(r: wasmparser::RefType) -> Result<(bool, HeapType), CompileError> {
        Ok((r.is_nullable(), Self::heap_of(r.heap_type())?))
    }

    pub(super) fn translate_gc(&mut self, op: &Operator<'_>) -> Result<bool, CompileError> {
        use Operator as O;
        match *op {
            O::RefI31 => {
                let v = self.pop();
                let s = self.b.ins().ishl_imm_s(v, 1);
                let s = self.b.ins().bor_imm_s(s, 1);
                let v = self.b.ins().uextend(I64, s);
                self.push(v);
            }
            O::I31GetS | O::I31GetU => {
                let r = self.pop();
                self.trapz(r, Trap::NullI31Reference);
                let v = self.b.ins().ireduce(I32, r);
                let v = if matches!(op, O::I31GetS) { self.b.ins().sshr_imm_s(v, 1) } else { self.b.ins().ushr_imm_s(v, 1) };
                self.push(v);
            }
            O::RefEq => {
                let (a, b) = self.pop2();
                let c = self.b.ins().icmp(IntCC::Equal, a, b);
                let v = self.bool_to_i32(c);
                self.push(v);
            }
            O::AnyConvertExtern => {
                // null -> null; an externalised any value -> that value; a host handle e ->
                // (e << 2) | 2.
                let e = self.pop();
                let is_any = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, e, 0);
                let unmarked = self.b.ins().band_imm_s(e, !EXTERN_ANY_BIT);
                let host = self.b.ins().ishl_imm_s(e, 2);
                let host = self.b.ins().bor_imm_s(host, 2);
                let zero = self.b.ins().iconst(I64, 0);
                let host = self.b.ins().select(e, host, zero);
                let v = self.b.ins().select(is_any, unmarked, host);
                self.push(v);
            }
            O::ExternConvertAny => {
                let a = self.pop();
                let low = self.b.ins().band_imm_s(a, 3);
                let is_host = self.b.ins().icmp_imm_s(IntCC::Equal, low, 2);
                let handle = self.b.ins().ushr_imm_s(a, 2);
                let marked = self.b.ins().bor_imm_s(a, EXTERN_ANY_BIT);
                let zero = self.b.ins().iconst(I64, 0);
                let marked = self.b.ins().select(a, marked, zero);
                let v = self.b.ins().select(is_host, handle, marked);
                self.push(v);
            }
            O::RefTestNonNull { hty } | O::RefTestNullable { hty } => {
                let heap = Self::heap_of(hty)?;
                let v = self.pop();
                let c = self.ref_test(v, matches!(op, O::RefTestNullable { .. }), heap);
                let c = self.bool_to_i32(c);
                self.push(c);
            }
            O::RefCastNonNull { hty } | O::RefCastNullable { hty } => {
                let heap = Self::heap_of(hty)?;
                let v = *self.stack.last().expect("validated: ref.cast operand");
                let c = self.ref_test(v, matches!(op, O::RefCastNullable { .. }), heap);
                self.trapz(c, Trap::CastFailure);
            }
            O::BrOnCast { relative_depth, to_ref_type, .. } | O::BrOnCastFail { relative_depth, to_ref_type, .. } => {
                self.fuel_charge();
                let (nullable, heap) = Self::ref_type_of(to_ref_type)?;
                let v = *self.stack.last().expect("validated: br_on_cast operand");
                let c = self.ref_test(v, nullable, heap);
                let idx = self.control.len() - 1 - relative_depth as usize;
                let (target, n) = self.control[idx].branch_target();
                if self.control[idx].kind != super::FrameKind::Loop {
                    self.control[idx].exit_reached = true;
                }
                let next = self.b.create_block();
                let args = block_args(self.peekn(n));
                if matches!(op, O::BrOnCast { .. }) {
                    self.b.ins().brif(c, target, &args, next, &[]);
                } else {
                    self.b.ins().brif(c, next, &[], target, &args);
                }
                self.b.switch_to_block(next);
                self.b.seal_block(next);
            }
            O::StructNew { struct_type_index: ty } | O::StructNewDefault { struct_type_index: ty } => {
                let fields = self.struct_fields(ty);
                let (offsets, size) = module::struct_layout(&fields);
                let values = if matches!(op, O::StructNew { .. }) {
                    let start = self.stack.len() - fields.len();
                    self.stack.split_off(start)
                } else {
                    Vec::new()
                };
                let size_v = self.b.ins().iconst(I64, size as i64);
                let obj = self.gc_alloc(size_v);
                self.write_header(obj, ty, OBJ_KIND_STRUCT, None);
                // The memory is zeroed: only given values are written.
                for (i, v) in values.into_iter().enumerate() {
                    self.store_field(fields[i].storage, v, obj, offsets[i] as i32);
                }
                self.push(obj);
            }
            O::StructGet { struct_type_index: ty, field_index }
            | O::StructGetS { struct_type_index: ty, field_index }
            | O::StructGetU { struct_type_index: ty, field_index } => {
                let (f, off) = self.field(ty, field_index);
                let obj = self.pop();
                self.trapz(obj, Trap::NullStructReference);
                let v = self.load_field(f.storage, matches!(op, O::StructGetS { .. }), obj, off as i32);
                self.push(v);
            }
            O::StructSet { struct_type_index: ty, field_index } => {
                let (f, off) = self.field(ty, field_index);
                let (obj, v) = self.pop2();
                self.trapz(obj, Trap::NullStructReference);
                self.store_field(f.storage, v, obj, off as i32);
            }
            O::ArrayNew { array_type_index: ty } => {
                let (v, len) = self.pop2();
                let obj = self.array_alloc(ty, len);
                let s = self.elem_type(ty).storage;
                let n = self.b.ins().uextend(I64, len);
                self.counted_loop(n, None, |t, i| {
                    let i32v = t.b.ins().ireduce(I32, i);
                    let addr = t.elem_addr_unchecked(ty, obj, i32v);
                    t.store_field(s, v, addr, 0);
                });
                self.push(obj);
            }
            O::ArrayNewDefault { array_type_index: ty } => {
                let len = self.pop();
                let obj = self.array_alloc(ty, len);
                self.push(obj);
            }
            O::ArrayNewFixed { array_type_index: ty, array_size } => {
                let start = self.stack.len() - array_size as usize;
                let values = self.stack.split_off(start);
                let len = self.b.ins().iconst(I32, array_size as i64);
                let obj = self.array_alloc(ty, len);
                let s = self.elem_type(ty).storage;
                for (i, v) in values.into_iter().enumerate() {
                    let off = OBJ_HEADER as i64 + i as i64 * s.size() as i64;
                    let off = i32::try_from(off).map_err(|_| CompileError::Unsupported("array.new_fixed too large".into()))?;
                    self.store_field(s, v, obj, off);
                }
                self.push(obj);
            }
            O::ArrayNewData { array_type_index: ty, array_data_index: seg }
            | O::ArrayNewElem { array_type_index: ty, array_elem_index: seg } => {
                let (offset, len) = self.pop2();
                let t = self.b.ins().iconst(I64, ty as i64);
                let s = self.b.ins().iconst(I64, seg as i64);
                let builtin = if matches!(op, O::ArrayNewData { .. }) { Builtin::ArrayNewData } else { Builtin::ArrayNewElem };
                let r = self.call_builtin(builtin, &[t, s, offset, len]);
                self.gc_result_check(r);
                self.push(r);
            }
            O::ArrayInitData { array_type_index: ty, array_data_index: seg }
            | O::ArrayInitElem { array_type_index: ty, array_elem_index: seg } => {
                let len = self.pop();
                let (arr, dst, src) = self.pop3();
                self.trapz(arr, Trap::NullArrayReference);
                let s = self.b.ins().iconst(I64, ((ty as u64) << 32 | seg as u64) as i64);
                let builtin = if matches!(op, O::ArrayInitData { .. }) { Builtin::ArrayInitData } else { Builtin::ArrayInitElem };
                let r = self.call_builtin(builtin, &[arr, dst, s, src, len]);
                // 0 on success, else an error code.
                let ok = self.b.ins().icmp_imm_s(IntCC::Equal, r, 0);
                let one = self.b.ins().iconst(I64, GC_ERR_LIMIT as i64);
                let r = self.b.ins().select(ok, one, r);
                self.gc_result_check(r);
            }
            O::ArrayGet { array_type_index: ty } | O::ArrayGetS { array_type_index: ty } | O::ArrayGetU { array_type_index: ty } => {
                let (arr, i) = self.pop2();
                let addr = self.array_elem_addr(ty, arr, i);
                let s = self.elem_type(ty).storage;
                let v = self.load_field(s, matches!(op, O::ArrayGetS { .. }), addr, 0);
                self.push(v);
            }
            O::ArraySet { array_type_index: ty } => {
                let (arr, i, v) = self.pop3();
                let addr = self.array_elem_addr(ty, arr, i);
                let s = self.elem_type(ty).storage;
                self.store_field(s, v, addr, 0);
            }
            O::ArrayLen => {
                let arr = self.pop();
                self.trapz(arr, Trap::NullArrayReference);
                let len = self.b.ins().load(I32, obj_flags(), arr, OBJ_LENGTH as i32);
                self.push(len);
            }
            O::ArrayFill { array_type_index: ty } => {
                let n = self.pop();
                let (arr, start, v) = self.pop3();
                self.array_range_check(arr, start, n);
                let s = self.elem_type(ty).storage;
                let base = self.elem_addr_unchecked(ty, arr, start);
                let n64 = self.b.ins().uextend(I64, n);
                let es = s.size() as i64;
                self.counted_loop(n64, None, |t, i| {
                    let off = t.b.ins().imul_imm_s(i, es);
                    let addr = t.b.ins().iadd(base, off);
                    t.store_field(s, v, addr, 0);
                });
            }
            O::ArrayCopy { array_type_index_dst: dty, array_type_index_src: sty } => {
                let n = self.pop();
                let (src_arr, src) = self.pop2();
                let (dst_arr, dst) = self.pop2();
                self.array_range_check(dst_arr, dst, n);
                self.array_range_check(src_arr, src, n);
                let s = self.elem_type(sty).storage;
                let d = self.elem_addr_unchecked(dty, dst_arr, dst);
                let sa = self.elem_addr_unchecked(sty, src_arr, src);
                let n64 = self.b.ins().uextend(I64, n);
                let es = s.size() as i64;
                let ty = Self::storage_clif(s);
                // Overlapping ranges of one array: copy backwards when the destination is
                // above the source.
                let back = self.b.ins().icmp(IntCC::UnsignedGreaterThan, d, sa);
                self.counted_loop(n64, Some(back), |t, i| {
                    let off = t.b.ins().imul_imm_s(i, es);
                    let from = t.b.ins().iadd(sa, off);
                    let to = t.b.ins().iadd(d, off);
                    let v = t.b.ins().load(ty, obj_flags(), from, 0);
                    t.b.ins().store(obj_flags(), v, to, 0);
                });
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

