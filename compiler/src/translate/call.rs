//! Tail calls (`return_call`, `return_call_indirect`, `return_call_ref`) and the typed function
//! reference operators (`call_ref`, `ref.as_non_null`, `br_on_null`, `br_on_non_null`).
//!
//! A tail call is Cranelift's `return_call`: the callee replaces the caller's frame, so a chain
//! of tail calls runs in constant stack. Every wasm function uses the `tail` convention
//! (`WASM_CALL_CONV`), as `return_call` requires of both sides. The fuel is written back before
//! the call, as for a return.

use super::{block_args, trusted, Translator};
use crate::trap::Trap;
use crate::vmctx;
use crate::CompileError;
use cranelift_codegen::ir::{self, types::I64, InstBuilder, Value};
use wasmparser::Operator;

impl Translator<'_, '_> {
    /// Call (or, with `tail`, tail-call) `code` of type `type_index` with the operands on the
    /// stack; the results replace them.
    pub(super) fn call_code(&mut self, type_index: u32, code: Value, callee_vmctx: Value, tail: bool) {
        let nparams = self.module().types[type_index as usize].params.len();
        let args_start = self.stack.len() - nparams;
        let mut args = vec![callee_vmctx, self.vmctx];
        args.extend_from_slice(&self.stack[args_start..]);
        let sig = self.signature(type_index);
        self.stack.truncate(args_start);
        if tail {
            self.b.ins().return_call_indirect(sig, code, &args);
            self.reachable = false;
        } else {
            let call = self.b.ins().call_indirect(sig, code, &args);
            let results = self.b.inst_results(call).to_vec();
            self.stack.extend(results);
        }
    }

    /// `return_call`: direct to a defined function, through the `VMFuncRef` to an import.
    fn translate_return_call(&mut self, func: u32) {
        let ty = self.module().funcs[func as usize];
        if self.module().is_imported_func(func) {
            let off = self.layout().funcref(func);
            let code = self.vmctx_load(I64, off + vmctx::FUNCREF_CODE);
            let callee_vmctx = self.vmctx_load(I64, off + vmctx::FUNCREF_VMCTX);
            self.call_code(ty, code, callee_vmctx, true);
            return;
        }
        let fref = self.direct_func(func);
        let nparams = self.module().types[ty as usize].params.len();
        let args_start = self.stack.len() - nparams;
        let mut args = vec![self.vmctx, self.vmctx];
        args.extend_from_slice(&self.stack[args_start..]);
        self.stack.truncate(args_start);
        self.b.ins().return_call(fref, &args);
        self.reachable = false;
    }

    /// The code address and vmctx of the non-null funcref `r` (its type is known statically).
    fn funcref_callee(&mut self, r: Value) -> (Value, Value) {
        let code = self.b.ins().load(I64, trusted(), r, vmctx::FUNCREF_CODE as i32);
        let callee_vmctx = self.b.ins().load(I64, trusted(), r, vmctx::FUNCREF_VMCTX as i32);
        (code, callee_vmctx)
    }

    pub(super) fn translate_call_op(&mut self, op: &Operator<'_>) -> Result<bool, CompileError> {
        use Operator as O;
        match *op {
            O::ReturnCall { function_index } => {
                self.fuel_save();
                self.translate_return_call(function_index);
            }
            O::ReturnCallIndirect { type_index, table_index } => {
                self.fuel_save();
                let (code, callee_vmctx) = self.indirect_callee(type_index, table_index);
                self.call_code(type_index, code, callee_vmctx, true);
            }
            O::CallRef { type_index } | O::ReturnCallRef { type_index } => {
                let tail = matches!(op, O::ReturnCallRef { .. });
                let r = self.pop();
                self.trapz(r, Trap::NullFunctionReference);
                let (code, callee_vmctx) = self.funcref_callee(r);
                self.fuel_save();
                self.call_code(type_index, code, callee_vmctx, tail);
                if !tail {
                    self.fuel_reload();
                    self.exn_check_call(None);
                }
            }
            O::RefAsNonNull => {
                let r = *self.stack.last().expect("validated: ref.as_non_null operand");
                self.trapz(r, Trap::NullReference);
            }
            O::BrOnNull { relative_depth } => {
                // Branch (without the reference) if null; else continue with it.
                self.fuel_charge();
                let r = self.pop();
                let idx = self.control.len() - 1 - relative_depth as usize;
                let (target, n) = self.control[idx].branch_target();
                self.mark_exit(idx);
                let next = self.b.create_block();
                let args = block_args(self.peekn(n));
                self.b.ins().brif(r, next, &[], target, &args);
                self.b.switch_to_block(next);
                self.b.seal_block(next);
                self.push(r);
            }
            O::BrOnNonNull { relative_depth } => {
                // Branch with the reference if non-null; else drop it and continue.
                self.fuel_charge();
                let r = *self.stack.last().expect("validated: br_on_non_null operand");
                let idx = self.control.len() - 1 - relative_depth as usize;
                let (target, n) = self.control[idx].branch_target();
                self.mark_exit(idx);
                let next = self.b.create_block();
                let args = block_args(self.peekn(n));
                self.b.ins().brif(r, target, &args, next, &[]);
                self.b.switch_to_block(next);
                self.b.seal_block(next);
                self.pop();
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn mark_exit(&mut self, idx: usize) {
        if self.control[idx].kind != super::FrameKind::Loop {
            self.control[idx].exit_reached = true;
        }
    }

    /// The `FuncRef` of defined function `func`, for direct calls.
    pub(super) fn direct_func(&mut self, func: u32) -> ir::FuncRef {
        if let Some(f) = self.direct_funcs.get(&func) {
            return *f;
        }
        let ty = self.module().funcs[func as usize];
        let sig = self.signature(ty);
        let name = self.b.func.declare_imported_user_function(ir::UserExternalName::new(0, func));
        let f = self.b.import_function(ir::ExtFuncData {
            name: ir::ExternalName::user(name),
            signature: sig,
            colocated: true,
            patchable: false,
        });
        self.direct_funcs.insert(func, f);
        f
    }
}
