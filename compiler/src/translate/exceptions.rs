//! Exception handling: tags, `throw`, `throw_ref`, `try_table` (and the legacy `try`/`catch`/
//! `catch_all`/`rethrow`/`delegate`), by propagation through a pending-exception cell; nothing
//! ever unwinds natively.
//!
//! * `throw` allocates an exception object (`vmctx::EXN_*`: `{tag identity, size}` and a 16-byte
//!   slot per payload value) by bumping the store's `next` pointer (the `ExnAlloc` builtin only
//!   when the chunk is full), stores its address in the store's `pending` cell and jumps to the
//!   innermost handler of the function.
//! * After a call that may throw, compiled code tests the `pending` cell and, if it is set,
//!   jumps to the same handler.
//! * A handler (the dispatch block of a `try_table`) compares the object's tag with each catch
//!   clause's tag (the vmctx's tag slots hold per-instance identities, an import the exporter's);
//!   on a match it clears the cell and branches to the clause's label with the payload and/or
//!   the `exnref` (the object's address). Without a match it goes to the next enclosing handler
//!   or, outermost, returns zero results with the cell still set: the caller's check takes over,
//!   and the host's entry reports an uncaught exception and clears the cell.
//! * Objects are never freed, except that one caught by `catch`/`catch_all` (so never seen as
//!   an `exnref`) that is the last allocated gives its bytes back (so a throw/catch loop uses no
//!   memory). An object handed out as an `exnref` has its size field cleared, which keeps it.
//!
//! A module-wide analysis (`ThrowAnalysis`) decides which calls need the check: a direct call
//! to a function that can neither throw nor call anything that may needs none; imports from
//! the WASI namespaces never throw (the engine refuses to bind them to WebAssembly functions);
//! indirect calls need a check unless the module is closed (no function reference can enter it
//! from outside) and none of its address-taken functions may throw. An exported function table
//! does not open the module: the engine lets another module import it only if that module cannot
//! store a function that may throw there (`TableContract`), so a C program's exported
//! `__indirect_function_table` costs nothing.

use super::alloc::Chunked;
use super::{clif_type, trusted, zero_value, FrameKind, Translator};
use crate::builtins::Builtin;
use crate::module::{ExportKind, ImportKind, ModuleInfo, WasmType};
use crate::trap::Trap;
use crate::vmctx;
use crate::CompileError;
use cranelift_codegen::ir::{self, condcodes::IntCC, types::I64, BlockArg, InstBuilder, Value};
use wasmparser::{Catch, FunctionBody, Operator};

/// Which calls may end with an exception pending.
#[derive(Clone, Debug, Default)]
pub struct ThrowAnalysis {
    /// Per function index (imports first): a call to it may return with an exception pending.
    pub funcs: Vec<bool>,
    /// An indirect call (`call_indirect`, `call_ref`) may return with an exception pending.
    pub indirect: bool,
    /// Per function index: its body has a `rethrow` (so a legacy catch keeps its exception
    /// object until the arm ends).
    pub rethrows: Vec<bool>,
    /// What the compiled code assumes of the tables it shares with other modules.
    pub tables: TableContract,
}

/// What a module's compiled code assumes about the function references in tables shared with
/// other modules, and what it guarantees about those it writes; the engine enforces both when
/// a module imports a table (`Store::instantiate`).
///
/// A module with no route for a function reference to enter it from outside but an exported
/// table compiles its indirect calls without an exception check (most C and Rust programs
/// export `__indirect_function_table`). That holds only while its tables contain no function
/// that may leave an exception pending, so another module may import such a table only if
/// nothing it can write there may throw, which often depends on what it is linked with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableContract {
    /// Indirect calls make no exception check: every function in this module's own tables must
    /// be one that cannot leave an exception pending.
    pub nothrow_tables: bool,
    /// Per function index (imports first): a call to it may return with an exception pending,
    /// as compiled (what a module that links to it may assume).
    pub may_throw: Vec<bool>,
    /// `None` if the module writes into no imported table; else what must hold of its imports
    /// for no function it may write there to be able to throw.
    pub writes: Option<ThrowDeps>,
}

/// The imports a set of functions may throw through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThrowDeps {
    /// They may throw whatever they are linked with.
    pub always: bool,
    /// Imported functions (as function indices) that they call or are.
    pub funcs: Vec<u32>,
    /// Imported tables (as table indices) whose elements they call or are.
    pub tables: Vec<u32>,
}

/// A node's `ThrowDeps` while they are propagated.
#[derive(Clone, Default)]
struct Deps {
    always: bool,
    funcs: std::collections::BTreeSet<u32>,
    tables: std::collections::BTreeSet<u32>,
}

impl Deps {
    /// Add `other`; whether that changed anything.
    fn join(&mut self, other: &Deps) -> bool {
        let before = (self.always, self.funcs.len(), self.tables.len());
        self.always |= other.always;
        self.funcs.extend(&other.funcs);
        self.tables.extend(&other.tables);
        before != (self.always, self.funcs.len(), self.tables.len())
    }

    fn any(&self) -> bool {
        self.always || !self.funcs.is_empty() || !self.tables.is_empty()
    }
}

impl ThrowAnalysis {
    /// Analyse the module: `bodies` are the defined functions' bodies in order.
    ///
    /// A graph of functions plus two nodes: `W`, every function reference the module can write
    /// (its address-taken functions, what it reads from imported tables, anything from outside
    /// if it is not closed), and `I`, every target of an indirect call (`W` and the elements of
    /// imported tables). Edges run from callee to caller; each node's `Deps` (what makes it
    /// throw) flow along them to a fixed point. As compiled, an import may throw (except a
    /// WASI one) and so may an imported table's element.
    pub fn new<'a>(info: &ModuleInfo, bodies: impl Iterator<Item = &'a FunctionBody<'a>>) -> ThrowAnalysis {
        let nfuncs = info.funcs.len();
        let (w, i) = (nfuncs, nfuncs + 1);
        let mut deps = vec![Deps::default(); nfuncs + 2];
        let mut callers: Vec<Vec<u32>> = vec![Vec::new(); nfuncs + 2];
        let mut rethrows = vec![false; nfuncs];
        let imported_table = |t: u32| t < info.num_imported_tables;
        let mut writes_imported_table = false;
        let mut fi = 0usize;
        for import in &info.imports {
            if let ImportKind::Func(_) = import.kind {
                if !import.never_throws() {
                    deps[fi].funcs.insert(fi as u32);
                }
                fi += 1;
            }
        }
        let mut address_taken = vec![false; nfuncs];
        let mut take = |f: u32| {
            if let Some(t) = address_taken.get_mut(f as usize) {
                *t = true;
            }
        };
        for (n, body) in bodies.enumerate() {
            let f = info.num_imported_funcs as usize + n;
            if f >= nfuncs {
                break;
            }
            let mut reads = Vec::new();
            let mut scan = || -> Result<(), wasmparser::BinaryReaderError> {
                let mut ops = body.get_operators_reader()?;
                while !ops.eof() {
                    match ops.read()? {
                        Operator::Throw { .. } | Operator::ThrowRef => deps[f].always = true,
                        Operator::Rethrow { .. } => {
                            deps[f].always = true;
                            rethrows[f] = true;
                        }
                        Operator::Call { function_index } | Operator::ReturnCall { function_index } => {
                            match callers.get_mut(function_index as usize) {
                                Some(c) if (function_index as usize) < nfuncs => c.push(f as u32),
                                _ => deps[f].always = true,
                            }
                        }
                        Operator::CallIndirect { .. }
                        | Operator::ReturnCallIndirect { .. }
                        | Operator::CallRef { .. }
                        | Operator::ReturnCallRef { .. } => callers[i].push(f as u32),
                        Operator::RefFunc { function_index } => take(function_index),
                        Operator::TableSet { table } | Operator::TableGrow { table } | Operator::TableFill { table } | Operator::TableInit { table, .. } => {
                            writes_imported_table |= imported_table(table)
                        }
                        Operator::TableCopy { dst_table, src_table } => {
                            writes_imported_table |= imported_table(dst_table);
                            reads.push(src_table);
                        }
                        Operator::TableGet { table } => reads.push(table),
                        _ => {}
                    }
                }
                Ok(())
            };
            if scan().is_err() {
                // It will fail validation anyway.
                deps[f].always = true;
                rethrows[f] = true;
                writes_imported_table = true;
            }
            deps[w].tables.extend(reads.into_iter().filter(|t| imported_table(*t)));
        }
        for seg in &info.elems {
            if let crate::module::ElemMode::Active { table, .. } = seg.mode {
                writes_imported_table |= imported_table(table);
            }
        }
        for e in info.elems.iter().flat_map(|s| &s.items).chain(&info.global_inits).chain(&info.table_inits) {
            if let crate::module::ConstExpr::RefFunc(f) = *e {
                take(f);
            }
        }
        for (g, taken) in address_taken.iter().enumerate() {
            if *taken {
                callers[g].push(w as u32);
            }
        }
        callers[w].push(i as u32);
        deps[w].always |= !is_closed_but_tables(info);
        deps[i].tables.extend(0..info.num_imported_tables);

        // Propagate to a fixed point (each node's set only grows, and is bounded).
        let mut work: Vec<usize> = (0..nfuncs + 2).filter(|n| deps[*n].any()).collect();
        while let Some(n) = work.pop() {
            let d = deps[n].clone();
            for &c in &callers[n] {
                if deps[c as usize].join(&d) {
                    work.push(c as usize);
                }
            }
        }
        let indirect = deps[i].any();
        let funcs: Vec<bool> = deps[..nfuncs].iter().map(Deps::any).collect();
        let writes = writes_imported_table.then(|| ThrowDeps {
            always: deps[w].always,
            funcs: deps[w].funcs.iter().copied().collect(),
            tables: deps[w].tables.iter().copied().collect(),
        });
        let tables = TableContract { nothrow_tables: !indirect, may_throw: funcs.clone(), writes };
        ThrowAnalysis { funcs, indirect, rethrows, tables }
    }
}

/// Whether a value of this type may be or hold a function reference: any reference (a struct,
/// an array or an exception may have a funcref field; an externref may be a converted anyref).
fn may_carry_funcref(t: WasmType) -> bool {
    t.is_ref()
}

/// Whether no function reference can enter the module from outside but through imported
/// function tables, so that every indirect call target is one of its own address-taken
/// functions, null, or an element of such a table. Exported function tables are not routes in:
/// the engine keeps foreign references that may throw out of them (`TableContract`).
fn is_closed_but_tables(info: &ModuleInfo) -> bool {
    let func_table = |t: &crate::module::TableType| {
        t.elem.as_ref_type().is_some_and(|r| r.heap.top(|i| info.type_kind(i)) == crate::module::HeapType::Func)
    };
    let imports_ok = info.imports.iter().all(|i| match &i.kind {
        ImportKind::Table(t) => func_table(t),
        ImportKind::Global(g) => !may_carry_funcref(g.ty),
        ImportKind::Func(ty) => {
            info.types.get(*ty as usize).is_some_and(|t| !t.results.iter().any(|r| may_carry_funcref(*r)))
        }
        ImportKind::Memory(_) | ImportKind::Tag(_) => true,
    });
    let exports_ok = info.exports.iter().all(|e| match e.kind {
        ExportKind::Table => info.tables.get(e.index as usize).is_some_and(func_table),
        ExportKind::Global => info.globals.get(e.index as usize).is_some_and(|g| !(g.mutable && may_carry_funcref(g.ty))),
        ExportKind::Func => info
            .funcs
            .get(e.index as usize)
            .and_then(|ty| info.types.get(*ty as usize))
            .is_some_and(|t| !t.params.iter().any(|p| may_carry_funcref(*p))),
        ExportKind::Memory | ExportKind::Tag => true,
    });
    let tags_ok =
        info.tags.iter().all(|ty| info.types.get(*ty as usize).is_some_and(|t| !t.params.iter().any(|p| may_carry_funcref(*p))));
    imports_ok && exports_ok && tags_ok
}

#[derive(Clone, Copy, Debug)]
enum Clause {
    /// `catch $tag L` (`with_ref`: `catch_ref`); `label` is a control-stack index.
    Tag { tag: u32, label: usize, with_ref: bool },
    /// `catch_all L` / `catch_all_ref L`.
    All { label: usize, with_ref: bool },
}

/// A handler scope: a `try_table`, or a legacy `try`.
pub(super) struct TryScope {
    /// Index of the scope's frame in the control stack.
    frame: usize,
    /// Where a pending exception raised inside the scope goes.
    dispatch: ir::Block,
    used: bool,
    clauses: Vec<Clause>,
    legacy: Option<Legacy>,
}

/// The state of a legacy `try`, whose handlers are arms of code inside its frame.
#[derive(Default)]
struct Legacy {
    /// Once the dispatch is open (at the first clause): the exception object and its tag.
    exn: Option<(Value, Value)>,
    /// The exception object the current arm caught (for `rethrow`).
    caught: Option<Value>,
    /// Where the dispatch goes on once the clauses seen so far did not match.
    next: Option<ir::Block>,
    /// `delegate`: the handler the body's exceptions go to.
    delegate: Option<ir::Block>,
    /// The current arm gives its object's bytes back when it ends (else it did when caught).
    reclaim_at_end: bool,
}

/// What catching does with the object's memory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// An `exnref` to it will exist: clear its size, so that it is never given back.
    Always,
    /// It is dead once the payload is loaded: give its bytes back if it is the last allocated.
    Reclaim,
    /// Leave it as it is (a legacy catch arm in a function with `rethrow`, which reclaims it
    /// when it falls through to its end; an arm left by a branch keeps it).
    Leave,
}

fn block_args(values: &[Value]) -> Vec<BlockArg> {
    values.iter().map(|v| BlockArg::Value(*v)).collect()
}

impl Translator<'_, '_> {
    pub(super) fn translate_exceptions(&mut self, op: &Operator<'_>) -> Result<bool, CompileError> {
        use Operator as O;
        match op {
            O::TryTable { try_table } => {
                let mut clauses = Vec::with_capacity(try_table.catches.len());
                let depth = self.control.len() - 1;
                for c in &try_table.catches {
                    clauses.push(match *c {
                        Catch::One { tag, label } => Clause::Tag { tag, label: depth - label as usize, with_ref: false },
                        Catch::OneRef { tag, label } => Clause::Tag { tag, label: depth - label as usize, with_ref: true },
                        Catch::All { label } => Clause::All { label: depth - label as usize, with_ref: false },
                        Catch::AllRef { label } => Clause::All { label: depth - label as usize, with_ref: true },
                    });
                }
                self.open_scope(try_table.ty, clauses, None)?;
            }
            O::Throw { tag_index } => self.translate_throw(*tag_index),
            O::ThrowRef => {
                let exn = self.pop();
                self.trapz(exn, Trap::NullExnReference);
                self.raise(exn);
            }
            O::Try { blockty } => self.open_scope(*blockty, Vec::new(), Some(Legacy::default()))?,
            O::Catch { tag_index } => self.legacy_clause(Some(*tag_index)),
            O::CatchAll => self.legacy_clause(None),
            O::Rethrow { relative_depth } => {
                let idx = self.control.len() - 1 - *relative_depth as usize;
                let exn = self
                    .try_scopes
                    .iter()
                    .find(|s| s.frame == idx)
                    .and_then(|s| s.legacy.as_ref())
                    .and_then(|l| l.caught)
                    .expect("validated: rethrow inside a catch");
                // It may be caught and rethrown again: never give its bytes back.
                let zero = self.b.ins().iconst(I64, 0);
                self.b.ins().store(trusted(), zero, exn, vmctx::EXN_SIZE as i32);
                self.raise(exn);
            }
            O::Delegate { relative_depth } => self.translate_delegate(*relative_depth),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn open_scope(&mut self, ty: wasmparser::BlockType, clauses: Vec<Clause>, legacy: Option<Legacy>) -> Result<(), CompileError> {
        self.open_block(ty)?;
        let dispatch = self.b.create_block();
        let frame = self.control.len() - 1;
        self.try_scopes.push(TryScope { frame, dispatch, used: false, clauses, legacy });
        self.active_scopes.push(self.try_scopes.len() - 1);
        Ok(())
    }

    /// Where an exception raised here goes: the innermost active handler, else the block that
    /// returns from the function with the exception still pending.
    fn handler(&mut self) -> ir::Block {
        match self.active_scopes.last() {
            Some(&i) => self.use_scope(i),
            None => self.propagate_block(),
        }
    }

    fn use_scope(&mut self, i: usize) -> ir::Block {
        let scope = &mut self.try_scopes[i];
        scope.used = true;
        scope.dispatch
    }

    fn propagate_block(&mut self) -> ir::Block {
        match self.propagate {
            Some(b) => b,
            None => {
                let b = self.b.create_block();
                self.b.set_cold_block(b);
                self.propagate = Some(b);
                b
            }
        }
    }

    fn exn_state(&mut self) -> Value {
        self.vmctx_load(I64, vmctx::EXN)
    }

    /// Make `exn` the pending exception and go to the handler.
    fn raise(&mut self, exn: Value) {
        let state = self.exn_state();
        self.b.ins().store(trusted(), exn, state, vmctx::EXN_PENDING as i32);
        self.fuel_save();
        let target = self.handler();
        self.b.ins().jump(target, &[]);
        self.reachable = false;
    }

    fn translate_throw(&mut self, tag: u32) {
        let tys = self.module().tag_type(tag).params.clone();
        let start = self.stack.len() - tys.len();
        let values = self.stack.split_off(start);
        let size = vmctx::exn_object_size(tys.len());
        let obj = self.exn_alloc(size);
        let id = self.vmctx_load(I64, self.layout().tag(tag));
        self.b.ins().store(trusted(), id, obj, vmctx::EXN_TAG as i32);
        let size_v = self.b.ins().iconst(I64, size as i64);
        self.b.ins().store(trusted(), size_v, obj, vmctx::EXN_SIZE as i32);
        for (i, v) in values.into_iter().enumerate() {
            let off = vmctx::EXN_HEADER + vmctx::EXN_SLOT * i as u32;
            self.b.ins().store(trusted(), v, obj, off as i32);
        }
        self.raise(obj);
    }

    /// Allocate `size` bytes for an exception object in the store's exception chunk.
    fn exn_alloc(&mut self, size: u32) -> Value {
        const EXCEPTIONS: Chunked =
            Chunked { next: vmctx::EXN_NEXT, end: vmctx::EXN_END, builtin: Builtin::ExnAlloc, check: |t, p| t.trapz(p, Trap::HostError) };
        let state = self.exn_state();
        let size = self.b.ins().iconst(I64, size as i64);
        self.bump_alloc(&EXCEPTIONS, state, size)
    }

    /// After a call: if the callee may have left an exception pending, go to the handler.
    /// `callee`: the function of a direct call; `None` for an indirect one.
    pub(super) fn exn_check_call(&mut self, callee: Option<u32>) {
        let may = match callee {
            Some(f) => self.env.throws.funcs.get(f as usize).copied().unwrap_or(true),
            None => self.env.throws.indirect,
        };
        if !may {
            return;
        }
        // A plain load (not `readonly`, which Cranelift may hoist and keep live across the
        // whole function, costing a register): the vmctx is live anyway.
        let state = self.b.ins().load(I64, trusted(), self.vmctx, vmctx::EXN as i32);
        let pending = self.b.ins().load(I64, trusted(), state, vmctx::EXN_PENDING as i32);
        let target = self.handler();
        let cont = self.b.create_block();
        self.b.ins().brif(pending, target, &[], cont, &[]);
        self.b.switch_to_block(cont);
        self.b.seal_block(cont);
    }

    /// Before the `end` of the innermost frame: a legacy catch arm that falls through is done
    /// with its exception.
    pub(super) fn exn_before_end(&mut self) {
        let frame = self.control.len() - 1;
        if self.reachable {
            let legacy = self.try_scopes.last().filter(|s| s.frame == frame).and_then(|s| s.legacy.as_ref());
            if let Some(exn) = legacy.filter(|l| l.reclaim_at_end).and_then(|l| l.caught) {
                self.reclaim(exn);
            }
        }
    }

    /// At the `end` of control frame `frame` (already popped, its exit jump made): close the
    /// handler scope it opened, if any, and finish its dispatch.
    pub(super) fn exn_end_frame(&mut self, frame: usize) {
        if self.try_scopes.last().is_none_or(|s| s.frame != frame) {
            return;
        }
        let i = self.try_scopes.len() - 1;
        if self.active_scopes.last() == Some(&i) {
            self.active_scopes.pop();
        }
        let scope = self.try_scopes.pop().expect("the scope just found");
        match scope.legacy {
            None if scope.used => {
                self.b.switch_to_block(scope.dispatch);
                self.b.seal_block(scope.dispatch);
                self.emit_dispatch(&scope.clauses);
            }
            None => {}
            Some(legacy) => {
                // Whatever no clause caught goes on to the next handler (or the delegate's).
                let open = if legacy.exn.is_some() {
                    legacy.next
                } else if scope.used {
                    Some(scope.dispatch)
                } else {
                    None
                };
                if let Some(block) = open {
                    self.b.switch_to_block(block);
                    self.b.seal_block(block);
                    let target = match legacy.delegate {
                        Some(t) => t,
                        None => self.handler(),
                    };
                    self.b.ins().jump(target, &[]);
                }
            }
        }
    }

    /// The dispatch of a `try_table`: the current block is its (empty) dispatch block.
    fn emit_dispatch(&mut self, clauses: &[Clause]) {
        let state = self.exn_state();
        let exn = self.b.ins().load(I64, trusted(), state, vmctx::EXN_PENDING as i32);
        let tag = self.b.ins().load(I64, trusted(), exn, vmctx::EXN_TAG as i32);
        for clause in clauses {
            match *clause {
                Clause::Tag { tag: t, label, with_ref } => {
                    let want = self.vmctx_load(I64, self.layout().tag(t));
                    let eq = self.b.ins().icmp(IntCC::Equal, tag, want);
                    let hit = self.b.create_block();
                    let next = self.b.create_block();
                    self.b.ins().brif(eq, hit, &[], next, &[]);
                    self.b.switch_to_block(hit);
                    self.b.seal_block(hit);
                    let keep = if with_ref { Keep::Always } else { Keep::Reclaim };
                    let mut args = self.take_exception(exn, Some(t), keep);
                    if with_ref {
                        args.push(exn);
                    }
                    self.jump_to_label(label, &args);
                    self.b.switch_to_block(next);
                    self.b.seal_block(next);
                }
                Clause::All { label, with_ref } => {
                    let keep = if with_ref { Keep::Always } else { Keep::Reclaim };
                    let mut args = self.take_exception(exn, None, keep);
                    if with_ref {
                        args.push(exn);
                    }
                    self.jump_to_label(label, &args);
                    return;
                }
            }
        }
        let target = self.handler();
        self.b.ins().jump(target, &[]);
    }

    /// Catch the pending exception `exn`: clear the cell and load the payload of `tag`.
    fn take_exception(&mut self, exn: Value, tag: Option<u32>, keep: Keep) -> Vec<Value> {
        let state = self.exn_state();
        let zero = self.b.ins().iconst(I64, 0);
        self.b.ins().store(trusted(), zero, state, vmctx::EXN_PENDING as i32);
        let mut values = Vec::new();
        if let Some(t) = tag {
            let tys = self.module().tag_type(t).params.clone();
            for (i, ty) in tys.iter().enumerate() {
                let off = vmctx::EXN_HEADER + vmctx::EXN_SLOT * i as u32;
                values.push(self.b.ins().load(clif_type(*ty), trusted(), exn, off as i32));
            }
        }
        match keep {
            Keep::Always => {
                self.b.ins().store(trusted(), zero, exn, vmctx::EXN_SIZE as i32);
            }
            Keep::Reclaim => self.reclaim(exn),
            Keep::Leave => {}
        }
        values
    }

    /// Give the object's bytes back if it is the last allocated (and not kept).
    fn reclaim(&mut self, exn: Value) {
        let state = self.exn_state();
        let size = self.b.ins().load(I64, trusted(), exn, vmctx::EXN_SIZE as i32);
        let end = self.b.ins().iadd(exn, size);
        let next = self.b.ins().load(I64, trusted(), state, vmctx::EXN_NEXT as i32);
        let top = self.b.ins().icmp(IntCC::Equal, end, next);
        let new_next = self.b.ins().select(top, exn, next);
        self.b.ins().store(trusted(), new_next, state, vmctx::EXN_NEXT as i32);
    }

    /// Branch to control frame `label` (an index) with `args`.
    fn jump_to_label(&mut self, label: usize, args: &[Value]) {
        let (target, _) = self.control[label].branch_target();
        if self.control[label].kind != FrameKind::Loop {
            self.control[label].exit_reached = true;
        }
        self.b.ins().jump(target, &block_args(args));
    }

    /// The function's exit for a pending exception: zero results (the caller checks the cell).
    pub(super) fn exn_finish(&mut self, results: &[WasmType]) {
        let Some(block) = self.propagate else { return };
        self.b.switch_to_block(block);
        self.b.seal_block(block);
        let zeros: Vec<Value> = results.iter().map(|t| zero_value(&mut self.b, *t)).collect();
        self.b.ins().return_(&zeros);
    }

    // ---- Legacy exceptions (`try`, `catch`, `catch_all`, `rethrow`, `delegate`) -----------------

    /// `catch $tag` / `catch_all` of the legacy `try` on top of the control stack (also in
    /// unreachable code at the `try`'s own level).
    fn legacy_clause(&mut self, tag: Option<u32>) {
        let frame = self.control.len() - 1;
        let si = self.try_scopes.len() - 1;
        debug_assert_eq!(self.try_scopes[si].frame, frame);
        // End the previous arm (the body or a previous catch) like an `else`.
        self.exn_before_end();
        let (dest, height, nres) = {
            let f = &self.control[frame];
            (f.dest, f.height, f.results.len())
        };
        if self.reachable {
            let args = block_args(self.peekn(nres));
            self.b.ins().jump(dest, &args);
            self.control[frame].exit_reached = true;
        }
        self.stack.truncate(height);
        // Exceptions of the arms go to the enclosing handlers.
        if self.active_scopes.last() == Some(&si) {
            self.active_scopes.pop();
        }
        if !self.try_scopes[si].used {
            // Nothing in the body raises: the arm is dead code.
            self.reachable = false;
            self.unreachable_depth = 0;
            return;
        }
        let legacy = self.try_scopes[si].legacy.as_ref().expect("validated: catch in a try");
        let (exn, tag_v, next) = match legacy.exn {
            Some((exn, tag_v)) => match legacy.next {
                Some(next) => (exn, tag_v, next),
                None => {
                    // After a catch_all: dead.
                    self.reachable = false;
                    self.unreachable_depth = 0;
                    return;
                }
            },
            None => {
                let dispatch = self.try_scopes[si].dispatch;
                self.b.switch_to_block(dispatch);
                self.b.seal_block(dispatch);
                let state = self.exn_state();
                let exn = self.b.ins().load(I64, trusted(), state, vmctx::EXN_PENDING as i32);
                let tag_v = self.b.ins().load(I64, trusted(), exn, vmctx::EXN_TAG as i32);
                let next = self.b.create_block();
                self.b.ins().jump(next, &[]);
                (exn, tag_v, next)
            }
        };
        self.b.switch_to_block(next);
        self.b.seal_block(next);
        let more = match tag {
            Some(t) => {
                let want = self.vmctx_load(I64, self.layout().tag(t));
                let eq = self.b.ins().icmp(IntCC::Equal, tag_v, want);
                let hit = self.b.create_block();
                let more = self.b.create_block();
                self.b.ins().brif(eq, hit, &[], more, &[]);
                self.b.switch_to_block(hit);
                self.b.seal_block(hit);
                Some(more)
            }
            None => None,
        };
        // Without a `rethrow` in the function, nothing can use the object once the payload
        // is loaded.
        let keep = if self.rethrows { Keep::Leave } else { Keep::Reclaim };
        let values = self.take_exception(exn, tag, keep);
        let legacy = self.try_scopes[si].legacy.as_mut().unwrap();
        legacy.reclaim_at_end = keep == Keep::Leave;
        legacy.exn = Some((exn, tag_v));
        legacy.next = more;
        legacy.caught = Some(exn);
        self.stack.extend(values);
        self.reachable = true;
        self.unreachable_depth = 0;
    }

    /// `delegate L`: end the `try` (which has no clauses); exceptions of its body go on as if
    /// raised in frame `L` (counted outside the `try`), or out of the function.
    fn translate_delegate(&mut self, depth: u32) {
        let frame = self.control.len() - 1;
        let label = frame - 1 - depth as usize;
        let si = self.try_scopes.len() - 1;
        if self.active_scopes.last() == Some(&si) {
            self.active_scopes.pop();
        }
        if self.try_scopes[si].used {
            let target = match self.active_scopes.iter().rev().find(|&&i| self.try_scopes[i].frame <= label) {
                Some(&i) => self.use_scope(i),
                None => self.propagate_block(),
            };
            if let Some(l) = self.try_scopes[si].legacy.as_mut() {
                l.delegate = Some(target);
            }
        }
        self.translate_end();
    }
}
