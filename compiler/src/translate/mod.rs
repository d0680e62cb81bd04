//! Translation of one function body from WebAssembly operators to Cranelift IR.
//!
//! `Translator` keeps the WebAssembly operand stack as Cranelift SSA values and a control stack of
//! frames (function body, block, loop, if). Locals are Cranelift variables. Each operator family
//! lives in its own module: `numeric` (scalar arithmetic), `memory` (loads, stores, bulk memory),
//! `table` (tables, references, indirect calls), `simd` (the fixed-width SIMD set and relaxed
//! SIMD) and `atomic` (the threads proposal's atomic operators).
//!
//! v128 values are always carried as `I8X16`; SIMD operators bitcast to the lane type they need.
//! References (funcref, externref) are `I64` addresses/handles with 0 as null.

mod alloc;
mod atomic;
mod call;
mod exceptions;
mod gc;
mod memory;
mod numeric;
mod simd;
mod table;

use crate::builtins::Builtin;
use crate::module::{ModuleInfo, WasmType};
use crate::trap::Trap;
use crate::vmctx::{self, VmctxLayout};
use crate::{CompileError, Settings};
use cranelift_codegen::ir::{
    self, condcodes::IntCC, types, AbiParam, ArgumentPurpose, BlockArg, InstBuilder, MemFlagsData,
    Signature, Type, Value,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use std::collections::HashMap;
use wasmparser::{BlockType, FunctionBody, Operator};

/// The calling convention of every compiled wasm function (and of host-call trampolines, and
/// the VM's exit-free WASI routines, which follow its register assignment): Cranelift's `tail`,
/// the only one that supports `return_call`. On x86-64 it passes arguments in the System V
/// registers and keeps its callee-saved registers; stack arguments are popped by the callee.
pub const WASM_CALL_CONV: CallConv = CallConv::Tail;
pub use exceptions::{TableContract, ThrowAnalysis, ThrowDeps};

/// What translation needs to know about the module and target.
pub struct ModuleEnv<'a> {
    pub module: &'a ModuleInfo,
    pub layout: VmctxLayout,
    pub settings: &'a Settings,
    pub call_conv: CallConv,
    pub frontend: cranelift_codegen::isa::TargetFrontendConfig,
    /// The target has fused multiply-add (relaxed SIMD's `madd` is fused, or unsupported).
    pub has_fma: bool,
    /// Which calls may return with an exception pending (`exceptions.rs`).
    pub throws: &'a ThrowAnalysis,
}

impl ModuleEnv<'_> {
    /// The Cranelift signature of a WebAssembly function type:
    /// `(callee vmctx, caller vmctx, params...) -> results`.
    pub fn wasm_signature(&self, ty: u32) -> Signature {
        wasm_signature(&self.module.types[ty as usize], self.call_conv)
    }
}

pub fn wasm_signature(ty: &crate::module::FuncType, call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params.push(AbiParam::special(types::I64, ArgumentPurpose::VMContext));
    sig.params.push(AbiParam::new(types::I64));
    sig.params.extend(ty.params.iter().map(|t| AbiParam::new(clif_type(*t))));
    sig.returns.extend(ty.results.iter().map(|t| AbiParam::new(clif_type(*t))));
    sig
}

pub fn clif_type(ty: WasmType) -> Type {
    match ty {
        WasmType::I32 => types::I32,
        WasmType::I64 => types::I64,
        WasmType::F32 => types::F32,
        WasmType::F64 => types::F64,
        WasmType::V128 => types::I8X16,
        WasmType::FuncRef | WasmType::ExternRef | WasmType::ExnRef | WasmType::Ref(_) => types::I64,
    }
}

/// Flags for loads of vmctx fields that never change while code runs.
pub(crate) fn readonly() -> MemFlagsData {
    MemFlagsData::trusted().with_readonly().with_can_move()
}

/// Flags for accesses of vmctx fields and host structures that may change.
pub(crate) fn trusted() -> MemFlagsData {
    MemFlagsData::trusted()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FrameKind {
    Function,
    Block,
    Loop,
    /// `else_block` is `None` once the `else` has been seen.
    If { else_block: Option<ir::Block> },
}

struct Frame {
    kind: FrameKind,
    /// Where `end` (and branches to a non-loop frame) continue.
    dest: ir::Block,
    /// The loop header (branch target of a loop frame).
    header: Option<ir::Block>,
    params: Vec<Type>,
    results: Vec<Type>,
    /// Operand stack height below this frame's parameters.
    height: usize,
    /// Parameter values of an `if`, for its else arm.
    if_params: Vec<Value>,
    /// Whether anything reaches `dest`.
    exit_reached: bool,
}

impl Frame {
    fn branch_target(&self) -> (ir::Block, usize) {
        match self.kind {
            FrameKind::Loop => (self.header.unwrap(), self.params.len()),
            _ => (self.dest, self.results.len()),
        }
    }
}

pub(crate) struct Translator<'a, 'b> {
    env: &'a ModuleEnv<'a>,
    b: FunctionBuilder<'b>,
    vmctx: Value,
    stack: Vec<Value>,
    control: Vec<Frame>,
    reachable: bool,
    /// Nesting depth of blocks opened in unreachable code.
    unreachable_depth: u32,
    locals: Vec<Variable>,
    /// Fuel metering: the remaining fuel, and operators translated since it was last charged.
    fuel: Option<Variable>,
    fuel_pending: i64,
    sigs: HashMap<u32, ir::SigRef>,
    direct_funcs: HashMap<u32, ir::FuncRef>,
    builtin_sigs: HashMap<usize, ir::SigRef>,
    /// Open exception handler scopes (`try_table`, legacy `try`), outermost first, and the
    /// indices of those whose body is being translated (where exceptions go).
    try_scopes: Vec<exceptions::TryScope>,
    active_scopes: Vec<usize>,
    /// The block that returns with an exception pending, once needed.
    propagate: Option<ir::Block>,
    /// The function has a `rethrow` (`ThrowAnalysis::rethrows`).
    rethrows: bool,
    /// The alias region of linear memory (`heap_flags`).
    heap: ir::AliasRegion,
}

/// `AliasRegionData::user_id` of the linear-memory region (one per function; no inlining).
const HEAP_REGION: u32 = 1;

fn block_args(values: &[Value]) -> Vec<BlockArg> {
    values.iter().map(|v| BlockArg::Value(*v)).collect()
}

/// Translate the body of defined function `func` into `func_ir`.
pub fn translate_function(
    env: &ModuleEnv<'_>,
    func: u32,
    body: &FunctionBody<'_>,
    func_ir: &mut ir::Function,
    fctx: &mut FunctionBuilderContext,
) -> Result<(), CompileError> {
    let ty = env.module.funcs[func as usize];
    func_ir.signature = env.wasm_signature(ty);
    func_ir.name = ir::UserFuncName::user(0, func);

    // Stack limit checked in the prologue: `vmctx.stack_limit`.
    let vmctx_gv = func_ir.create_global_value(ir::GlobalValueData::VMContext);
    let flags = func_ir.dfg.mem_flags.insert_unchecked(trusted());
    let limit = func_ir.create_global_value(ir::GlobalValueData::Load {
        base: vmctx_gv,
        offset: (vmctx::STACK_LIMIT as i32).into(),
        global_type: types::I64,
        flags,
    });
    func_ir.stack_limit = Some(limit);
    let heap = func_ir.dfg.alias_regions.insert(ir::AliasRegionData { user_id: HEAP_REGION, description: "linear memory".into() });

    let mut b = FunctionBuilder::new(func_ir, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let params = b.block_params(entry).to_vec();
    let vmctx = params[0];

    let mut locals = Vec::new();
    for (i, p) in env.module.types[ty as usize].params.iter().enumerate() {
        let var = b.declare_var(clif_type(*p));
        b.def_var(var, params[2 + i]);
        locals.push(var);
    }
    let mut reader = body.get_locals_reader().map_err(wp_err)?;
    for _ in 0..reader.get_count() {
        let (count, ty) = reader.read().map_err(wp_err)?;
        let ty = WasmType::from_wp(ty).map_err(CompileError::Unsupported)?;
        for _ in 0..count {
            let var = b.declare_var(clif_type(ty));
            let zero = zero_value(&mut b, ty);
            b.def_var(var, zero);
            locals.push(var);
        }
    }

    let results: Vec<Type> =
        env.module.types[ty as usize].results.iter().map(|t| clif_type(*t)).collect();
    let ret_block = b.create_block();
    for t in &results {
        b.append_block_param(ret_block, *t);
    }

    let mut t = Translator {
        env,
        b,
        vmctx,
        stack: Vec::new(),
        control: vec![Frame {
            kind: FrameKind::Function,
            dest: ret_block,
            header: None,
            params: Vec::new(),
            results,
            height: 0,
            if_params: Vec::new(),
            exit_reached: false,
        }],
        reachable: true,
        unreachable_depth: 0,
        locals,
        fuel: None,
        fuel_pending: 0,
        sigs: HashMap::new(),
        direct_funcs: HashMap::new(),
        builtin_sigs: HashMap::new(),
        try_scopes: Vec::new(),
        active_scopes: Vec::new(),
        propagate: None,
        rethrows: env.throws.rethrows.get(func as usize).copied().unwrap_or(true),
        heap,
    };

    if env.settings.consume_fuel {
        let var = t.b.declare_var(types::I64);
        let cell = t.vmctx_load(types::I64, vmctx::FUEL);
        let fuel = t.b.ins().load(types::I64, trusted(), cell, 0);
        t.b.def_var(var, fuel);
        t.fuel = Some(var);
        t.fuel_check();
    }
    let mut ops = body.get_operators_reader().map_err(wp_err)?;
    while !ops.eof() {
        let (op, offset) = ops.read_with_offset().map_err(wp_err)?;
        t.b.set_srcloc(ir::SourceLoc::new(offset as u32));
        if t.reachable {
            t.translate(&op)?;
        } else {
            t.translate_unreachable(&op)?;
        }
    }
    // The function frame's `end` has switched to `ret_block` (or left nothing reachable).
    if t.reachable {
        t.fuel_save();
        let rets = std::mem::take(&mut t.stack);
        t.b.ins().return_(&rets);
    }
    t.exn_finish(&env.module.types[ty as usize].results);
    t.b.finalize(env.frontend);
    Ok(())
}

pub(crate) fn wp_err(e: wasmparser::BinaryReaderError) -> CompileError {
    CompileError::Invalid(e.to_string())
}

fn zero_value(b: &mut FunctionBuilder<'_>, ty: WasmType) -> Value {
    match ty {
        WasmType::I32 => b.ins().iconst(types::I32, 0),
        // Non-nullable locals are validated to be set before they are read.
        WasmType::I64 | WasmType::FuncRef | WasmType::ExternRef | WasmType::ExnRef | WasmType::Ref(_) => b.ins().iconst(types::I64, 0),
        WasmType::F32 => b.ins().f32const(0.0),
        WasmType::F64 => b.ins().f64const(0.0),
        WasmType::V128 => {
            let c = b.func.dfg.constants.insert(vec![0u8; 16].into());
            b.ins().vconst(types::I8X16, c)
        }
    }
}

impl<'a, 'b> Translator<'a, 'b> {
    fn module(&self) -> &'a ModuleInfo {
        self.env.module
    }

    fn layout(&self) -> VmctxLayout {
        self.env.layout
    }

    fn pop(&mut self) -> Value {
        self.stack.pop().expect("validated: operand stack underflow")
    }

    fn pop2(&mut self) -> (Value, Value) {
        let b = self.pop();
        let a = self.pop();
        (a, b)
    }

    fn pop3(&mut self) -> (Value, Value, Value) {
        let c = self.pop();
        let (a, b) = self.pop2();
        (a, b, c)
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn peekn(&self, n: usize) -> &[Value] {
        &self.stack[self.stack.len() - n..]
    }

    /// Enter a `block` (also the frame of a `try_table` or legacy `try`): its label is the end.
    fn open_block(&mut self, ty: BlockType) -> Result<(), CompileError> {
        let (params, results) = self.block_type(ty)?;
        let dest = self.new_block_with(&results);
        let height = self.stack.len() - params.len();
        self.control.push(Frame {
            kind: FrameKind::Block,
            dest,
            header: None,
            params,
            results,
            height,
            if_params: Vec::new(),
            exit_reached: false,
        });
        Ok(())
    }

    /// A block type's parameter and result types; a value type wasce does not compile is an
    /// "unsupported" error (the validator may accept more than the translator).
    fn block_type(&self, ty: BlockType) -> Result<(Vec<Type>, Vec<Type>), CompileError> {
        Ok(match ty {
            BlockType::Empty => (vec![], vec![]),
            BlockType::Type(t) => (vec![], vec![clif_type(WasmType::from_wp(t).map_err(CompileError::Unsupported)?)]),
            BlockType::FuncType(idx) => {
                let ft = &self.module().types[idx as usize];
                (
                    ft.params.iter().map(|t| clif_type(*t)).collect(),
                    ft.results.iter().map(|t| clif_type(*t)).collect(),
                )
            }
        })
    }

    fn new_block_with(&mut self, tys: &[Type]) -> ir::Block {
        let block = self.b.create_block();
        for t in tys {
            self.b.append_block_param(block, *t);
        }
        block
    }

    fn trap(&mut self, trap: Trap) {
        self.b.ins().trap(trap.to_clif());
    }

    fn trapnz(&mut self, cond: Value, trap: Trap) {
        self.b.ins().trapnz(cond, trap.to_clif());
    }

    fn trapz(&mut self, cond: Value, trap: Trap) {
        self.b.ins().trapz(cond, trap.to_clif());
    }

    fn bool_to_i32(&mut self, cond: Value) -> Value {
        self.b.ins().uextend(types::I32, cond)
    }

    /// Load a vmctx field that never changes while code runs.
    fn vmctx_load(&mut self, ty: Type, offset: u32) -> Value {
        self.b.ins().load(ty, readonly(), self.vmctx, offset as i32)
    }

    /// Call a builtin through the vmctx's builtin table; traps if it reports failure.
    fn call_builtin(&mut self, builtin: Builtin, args: &[Value]) -> Value {
        let sig = match self.builtin_sigs.get(&(builtin as usize)) {
            Some(sig) => *sig,
            None => {
                let mut sig = Signature::new(crate::builtins::BUILTIN_CALL_CONV);
                sig.params.push(AbiParam::new(types::I64));
                for _ in 0..builtin.args() {
                    sig.params.push(AbiParam::new(types::I64));
                }
                sig.returns.push(AbiParam::new(types::I64));
                let sig = self.b.import_signature(sig);
                self.builtin_sigs.insert(builtin as usize, sig);
                sig
            }
        };
        let table = self.vmctx_load(types::I64, vmctx::BUILTINS);
        let callee = self.b.ins().load(types::I64, readonly(), table, builtin.offset());
        let mut call_args = vec![self.vmctx];
        for &a in args {
            let a = match self.b.func.dfg.value_type(a) {
                types::I64 => a,
                types::I32 => self.b.ins().uextend(types::I64, a),
                other => panic!("builtin argument of type {other}"),
            };
            call_args.push(a);
        }
        debug_assert_eq!(call_args.len(), builtin.args() + 1);
        let call = self.b.ins().call_indirect(sig, callee, &call_args);
        let result = self.b.inst_results(call)[0];
        if let Some(trap) = builtin.trap() {
            self.trapnz(result, trap);
        }
        result
    }

    fn signature(&mut self, ty: u32) -> ir::SigRef {
        if let Some(sig) = self.sigs.get(&ty) {
            return *sig;
        }
        let sig = self.b.import_signature(self.env.wasm_signature(ty));
        self.sigs.insert(ty, sig);
        sig
    }

    fn translate_unreachable(&mut self, op: &Operator<'_>) -> Result<(), CompileError> {
        match op {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::TryTable { .. }
            | Operator::Try { .. } => {
                self.unreachable_depth += 1;
            }
            Operator::Else if self.unreachable_depth == 0 => self.translate_else(),
            Operator::End if self.unreachable_depth == 0 => self.translate_end(),
            Operator::End => self.unreachable_depth -= 1,
            Operator::Catch { .. } | Operator::CatchAll | Operator::Delegate { .. } if self.unreachable_depth == 0 => {
                self.translate_exceptions(op)?;
            }
            Operator::Delegate { .. } => self.unreachable_depth -= 1,
            _ => {}
        }
        Ok(())
    }

    fn translate_else(&mut self) {
        let frame = self.control.last_mut().expect("validated: else outside if");
        let FrameKind::If { else_block: Some(else_block) } = frame.kind else {
            panic!("validated: else without if");
        };
        frame.kind = FrameKind::If { else_block: None };
        let dest = frame.dest;
        let (height, nres) = (frame.height, frame.results.len());
        let params = frame.if_params.clone();
        if self.reachable {
            let args = block_args(self.peekn(nres));
            self.b.ins().jump(dest, &args);
            self.control.last_mut().unwrap().exit_reached = true;
        }
        self.stack.truncate(height);
        self.stack.extend(params);
        self.b.switch_to_block(else_block);
        self.b.seal_block(else_block);
        // Frames are only opened in reachable code, so the else arm is reachable.
        self.reachable = true;
    }

    fn translate_end(&mut self) {
        self.exn_before_end();
        let mut frame = self.control.pop().expect("validated: unbalanced end");
        if self.reachable {
            let args = block_args(self.peekn(frame.results.len()));
            self.b.ins().jump(frame.dest, &args);
            frame.exit_reached = true;
        }
        self.exn_end_frame(self.control.len());
        if let FrameKind::If { else_block: Some(else_block) } = frame.kind {
            // An `if` without `else`: its parameters flow straight to the end.
            self.b.switch_to_block(else_block);
            self.b.seal_block(else_block);
            let args = block_args(&frame.if_params);
            self.b.ins().jump(frame.dest, &args);
            frame.exit_reached = true;
        }
        if let Some(header) = frame.header {
            self.b.seal_block(header);
        }
        self.stack.truncate(frame.height);
        if frame.exit_reached {
            self.b.switch_to_block(frame.dest);
            self.b.seal_block(frame.dest);
            let params = self.b.block_params(frame.dest).to_vec();
            self.stack.extend(params);
            self.reachable = true;
        } else {
            self.reachable = false;
        }
        if frame.kind == FrameKind::Function && frame.exit_reached {
            self.fuel_save();
            let rets = std::mem::take(&mut self.stack);
            self.b.ins().return_(&rets);
            self.reachable = false;
        }
    }

    fn branch(&mut self, depth: u32) {
        let idx = self.control.len() - 1 - depth as usize;
        let (target, n) = self.control[idx].branch_target();
        if self.control[idx].kind != FrameKind::Loop {
            self.control[idx].exit_reached = true;
        }
        let args = block_args(self.peekn(n));
        self.b.ins().jump(target, &args);
    }

    // ---- Fuel ----------------------------------------------------------------------------------

    /// Charge the operators translated since the last charge (before any control transfer).
    fn fuel_charge(&mut self) {
        if let Some(var) = self.fuel {
            if self.fuel_pending > 0 {
                let fuel = self.b.use_var(var);
                let fuel = self.b.ins().iadd_imm_s(fuel, -self.fuel_pending);
                self.b.def_var(var, fuel);
            }
        }
        self.fuel_pending = 0;
    }

    /// Trap if the fuel is exhausted (function entry and loop headers).
    fn fuel_check(&mut self) {
        if let Some(var) = self.fuel {
            let fuel = self.b.use_var(var);
            let out = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, fuel, 0);
            self.trapnz(out, Trap::OutOfFuel);
        }
    }

    /// Write the fuel back to the store (before calls and returns).
    fn fuel_save(&mut self) {
        if let Some(var) = self.fuel {
            self.fuel_charge();
            let fuel = self.b.use_var(var);
            let cell = self.vmctx_load(types::I64, vmctx::FUEL);
            self.b.ins().store(trusted(), fuel, cell, 0);
        }
    }

    /// Reload the fuel after a call (the callee consumed some).
    fn fuel_reload(&mut self) {
        if let Some(var) = self.fuel {
            let cell = self.vmctx_load(types::I64, vmctx::FUEL);
            let fuel = self.b.ins().load(types::I64, trusted(), cell, 0);
            self.b.def_var(var, fuel);
        }
    }

    fn translate(&mut self, op: &Operator<'_>) -> Result<(), CompileError> {
        use Operator as O;
        if self.fuel.is_some() {
            self.fuel_pending += 1;
            if matches!(
                op,
                O::Block { .. } | O::Loop { .. } | O::If { .. } | O::Else | O::End | O::Br { .. } | O::BrIf { .. }
                    | O::BrTable { .. } | O::Return | O::Unreachable
            ) {
                self.fuel_charge();
            }
        }
        match *op {
            O::Nop => {}
            O::Unreachable => {
                self.trap(Trap::UnreachableCodeReached);
                self.reachable = false;
            }
            O::Block { blockty } => self.open_block(blockty)?,
            O::Loop { blockty } => {
                let (params, results) = self.block_type(blockty)?;
                let header = self.new_block_with(&params);
                let dest = self.new_block_with(&results);
                let args = block_args(self.peekn(params.len()));
                self.b.ins().jump(header, &args);
                let height = self.stack.len() - params.len();
                self.stack.truncate(height);
                self.b.switch_to_block(header);
                let hp = self.b.block_params(header).to_vec();
                self.stack.extend(hp);
                self.fuel_check();
                self.control.push(Frame {
                    kind: FrameKind::Loop,
                    dest,
                    header: Some(header),
                    params,
                    results,
                    height,
                    if_params: Vec::new(),
                    exit_reached: false,
                });
            }
            O::If { blockty } => {
                let cond = self.pop();
                let (params, results) = self.block_type(blockty)?;
                let then_block = self.b.create_block();
                let else_block = self.b.create_block();
                let dest = self.new_block_with(&results);
                self.b.ins().brif(cond, then_block, &[], else_block, &[]);
                self.b.switch_to_block(then_block);
                self.b.seal_block(then_block);
                let height = self.stack.len() - params.len();
                let if_params = self.peekn(params.len()).to_vec();
                self.control.push(Frame {
                    kind: FrameKind::If { else_block: Some(else_block) },
                    dest,
                    header: None,
                    params,
                    results,
                    height,
                    if_params,
                    exit_reached: false,
                });
            }
            O::Else => self.translate_else(),
            O::End => self.translate_end(),
            O::Br { relative_depth } => {
                self.branch(relative_depth);
                self.reachable = false;
            }
            O::BrIf { relative_depth } => {
                let cond = self.pop();
                let idx = self.control.len() - 1 - relative_depth as usize;
                let (target, n) = self.control[idx].branch_target();
                if self.control[idx].kind != FrameKind::Loop {
                    self.control[idx].exit_reached = true;
                }
                let next = self.b.create_block();
                let args = block_args(self.peekn(n));
                self.b.ins().brif(cond, target, &args, next, &[]);
                self.b.switch_to_block(next);
                self.b.seal_block(next);
            }
            O::BrTable { ref targets } => {
                let index = self.pop();
                let mut depths = Vec::with_capacity(targets.len() as usize);
                for t in targets.targets() {
                    depths.push(t.map_err(wp_err)?);
                }
                let default = targets.default();
                let mut calls = Vec::with_capacity(depths.len());
                let mut default_call = None;
                for (i, depth) in depths.iter().copied().chain([default]).enumerate() {
                    let idx = self.control.len() - 1 - depth as usize;
                    let (target, n) = self.control[idx].branch_target();
                    if self.control[idx].kind != FrameKind::Loop {
                        self.control[idx].exit_reached = true;
                    }
                    let args = block_args(self.peekn(n));
                    let call = self.b.func.dfg.block_call(target, &args);
                    if i == depths.len() {
                        default_call = Some(call);
                    } else {
                        calls.push(call);
                    }
                }
                let jt = ir::JumpTableData::new(default_call.unwrap(), &calls);
                let jt = self.b.create_jump_table(jt);
                self.b.ins().br_table(index, jt);
                self.reachable = false;
            }
            O::Return => {
                self.branch(self.control.len() as u32 - 1);
                self.reachable = false;
            }
            O::Call { function_index } => {
                self.fuel_save();
                self.translate_call(function_index);
                self.fuel_reload();
                self.exn_check_call(Some(function_index));
            }
            O::CallIndirect { type_index, table_index } => {
                self.fuel_save();
                self.translate_call_indirect(type_index, table_index);
                self.fuel_reload();
                self.exn_check_call(None);
            }
            O::Drop => {
                self.pop();
            }
            O::Select | O::TypedSelect { .. } => {
                let (a, b, c) = self.pop3();
                let v = self.b.ins().select(c, a, b);
                self.push(v);
            }
            O::LocalGet { local_index } => {
                let v = self.b.use_var(self.locals[local_index as usize]);
                self.push(v);
            }
            O::LocalSet { local_index } => {
                let v = self.pop();
                self.b.def_var(self.locals[local_index as usize], v);
            }
            O::LocalTee { local_index } => {
                let v = *self.stack.last().unwrap();
                self.b.def_var(self.locals[local_index as usize], v);
            }
            O::GlobalGet { global_index } => {
                let ty = clif_type(self.module().globals[global_index as usize].ty);
                let (base, offset) = self.global_addr(global_index);
                let v = self.b.ins().load(ty, trusted(), base, offset);
                self.push(v);
            }
            O::GlobalSet { global_index } => {
                let v = self.pop();
                let (base, offset) = self.global_addr(global_index);
                self.b.ins().store(trusted(), v, base, offset);
            }
            _ => {
                if !(self.translate_numeric(op)?
                    || self.translate_memory(op)?
                    || self.translate_table(op)?
                    || self.translate_simd(op)?
                    || self.translate_atomic(op)?
                    || self.translate_call_op(op)?
                    || self.translate_exceptions(op)?
                    || self.translate_gc(op)?)
                {
                    return Err(CompileError::Unsupported(format!("operator {op:?}")));
                }
            }
        }
        Ok(())
    }

    /// The address of a global's storage: in this vmctx, or behind the import's pointer.
    fn global_addr(&mut self, global: u32) -> (Value, i32) {
        let off = self.layout().global(global);
        if self.module().is_imported_global(global) {
            let ptr = self.vmctx_load(types::I64, off);
            (ptr, 0)
        } else {
            (self.vmctx, off as i32)
        }
    }

    fn translate_call(&mut self, func: u32) {
        let ty = self.module().funcs[func as usize];
        let nparams = self.module().types[ty as usize].params.len();
        let args_start = self.stack.len() - nparams;
        let call = if self.module().is_imported_func(func) {
            let off = self.layout().funcref(func);
            let code = self.vmctx_load(types::I64, off + vmctx::FUNCREF_CODE);
            let callee_vmctx = self.vmctx_load(types::I64, off + vmctx::FUNCREF_VMCTX);
            let mut args = vec![callee_vmctx, self.vmctx];
            args.extend_from_slice(&self.stack[args_start..]);
            let sig = self.signature(ty);
            self.b.ins().call_indirect(sig, code, &args)
        } else {
            let fref = self.direct_func(func);
            let mut args = vec![self.vmctx, self.vmctx];
            args.extend_from_slice(&self.stack[args_start..]);
            self.b.ins().call(fref, &args)
        };
        self.stack.truncate(args_start);
        let results = self.b.inst_results(call).to_vec();
        self.stack.extend(results);
    }

    /// Compare two values for `if (x == y)`-style guards, returning an `i8` condition.
    fn icmp_imm(&mut self, cc: IntCC, x: Value, imm: i64) -> Value {
        self.b.ins().icmp_imm_s(cc, x, imm)
    }
}
