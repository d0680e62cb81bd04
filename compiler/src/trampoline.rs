//! Trampolines, compiled once per function type into the code image:
//!
//! * entry: `(code, callee vmctx, caller vmctx, values) -> ()` — how the host (or the guest
//!   runtime) calls a wasm function: arguments are read from, and results written to, an array
//!   of 16-byte slots.
//! * host: a wasm-signature function that stores its arguments in such an array and calls the
//!   `HostCall` builtin; the "callee vmctx" of a host function is its import record (the
//!   address of the import's `VMFuncRef` in the importer's vmctx), which the host looks up in
//!   its own index and never dereferences.

use crate::builtins::Builtin;
use crate::module::FuncType;
use crate::translate::{clif_type, wasm_signature};
use crate::trap::Trap;
use crate::vmctx;
use cranelift_codegen::ir::{
    self, types::I64, AbiParam, InstBuilder, MemFlagsData, Signature, StackSlotData, StackSlotKind,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

/// The convention entry trampolines are called with (`wasce_enter`, the VM's entry stub).
pub const ENTRY_CALL_CONV: CallConv = CallConv::SystemV;

/// Size of one slot of the value array.
pub const VALUE_SLOT: u32 = 16;

fn slot_flags() -> MemFlagsData {
    MemFlagsData::trusted()
}

pub fn entry_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    for _ in 0..4 {
        sig.params.push(AbiParam::new(I64));
    }
    sig
}

/// `host_conv` is the convention the host (or the guest runtime) calls the trampoline with;
/// `wasm_conv` the one of compiled wasm functions.
pub fn build_entry(ty: &FuncType, host_conv: CallConv, wasm_conv: CallConv, frontend: TargetFrontendConfig, fctx: &mut FunctionBuilderContext) -> ir::Function {
    let mut func = ir::Function::with_name_signature(ir::UserFuncName::default(), entry_signature(host_conv));
    let mut b = FunctionBuilder::new(&mut func, fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let p = b.block_params(block).to_vec();
    let (code, callee_vmctx, caller_vmctx, values) = (p[0], p[1], p[2], p[3]);
    let mut args = vec![callee_vmctx, caller_vmctx];
    for (i, t) in ty.params.iter().enumerate() {
        let v = b.ins().load(clif_type(*t), slot_flags(), values, (i as u32 * VALUE_SLOT) as i32);
        args.push(v);
    }
    let sig = b.import_signature(wasm_signature(ty, wasm_conv));
    let call = b.ins().call_indirect(sig, code, &args);
    let results = b.inst_results(call).to_vec();
    for (i, r) in results.into_iter().enumerate() {
        b.ins().store(slot_flags(), r, values, (i as u32 * VALUE_SLOT) as i32);
    }
    b.ins().return_(&[]);
    b.finalize(frontend);
    func
}

/// A wasm function (`wasm_conv`) that calls the `HostCall` builtin (`builtin_conv`).
pub fn build_host_call(ty: &FuncType, wasm_conv: CallConv, builtin_conv: CallConv, frontend: TargetFrontendConfig, fctx: &mut FunctionBuilderContext) -> ir::Function {
    let mut func = ir::Function::with_name_signature(ir::UserFuncName::default(), wasm_signature(ty, wasm_conv));
    let mut b = FunctionBuilder::new(&mut func, fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let p = b.block_params(block).to_vec();
    let (func_id, caller_vmctx) = (p[0], p[1]);
    let slots = ty.params.len().max(ty.results.len()).max(1) as u32;
    let slot = b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, slots * VALUE_SLOT, 4));
    for (i, v) in p[2..].iter().enumerate() {
        b.ins().stack_store(I64, *v, slot, (i as u32 * VALUE_SLOT) as i32);
    }
    let values = b.ins().stack_addr(I64, slot, 0);

    let mut sig = Signature::new(builtin_conv);
    for _ in 0..=Builtin::HostCall.args() {
        sig.params.push(AbiParam::new(I64));
    }
    sig.returns.push(AbiParam::new(I64));
    let sig = b.import_signature(sig);
    let table = b.ins().load(I64, MemFlagsData::trusted().with_readonly(), caller_vmctx, vmctx::BUILTINS as i32);
    let callee = b.ins().load(I64, MemFlagsData::trusted().with_readonly(), table, Builtin::HostCall.offset());
    let call = b.ins().call_indirect(sig, callee, &[caller_vmctx, func_id, values]);
    let status = b.inst_results(call)[0];
    b.ins().trapnz(status, Trap::HostError.to_clif());
    let mut results = Vec::new();
    for (i, t) in ty.results.iter().enumerate() {
        results.push(b.ins().stack_load(I64, clif_type(*t), slot, (i as u32 * VALUE_SLOT) as i32));
    }
    b.ins().return_(&results);
    b.finalize(frontend);
    func
}
