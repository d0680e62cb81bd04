//! The store: every instance, function, memory, table and global of one isolated program, and
//! the operations compiled code asks of the runtime (builtins). Objects are addressed by ids;
//! what compiled code sees are the raw `VMFuncRef`/`VMDef`/global slots they own.

use crate::code::LoadedModule;
use crate::error::{Error, TrapError};
use crate::memory::{LinearMemory, MAX_PAGES};
use crate::values::Val;
use crate::{builtins, process, types};
use std::sync::Arc;
use wasce_compiler::module::{ConstExpr, DataMode, ElemMode, ExportKind, FuncType, GlobalType, ImportKind, MemoryType, TableType};
use wasce_compiler::vmctx::{self, VmctxLayout};
use wasce_compiler::Trap;

pub type Module = Arc<LoadedModule>;

/// Limits applied to everything a store creates.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub max_memory_pages: u64,
    pub max_table_elements: u64,
    /// Bytes of native stack compiled code may use.
    pub max_wasm_stack: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { max_memory_pages: MAX_PAGES, max_table_elements: 10_000_000, max_wasm_stack: 1 << 20 }
    }
}

macro_rules! id_type {
    ($($name:ident),*) => {$(
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub(crate) u32);
    )*};
}
id_type!(FuncId, MemoryId, TableId, GlobalId, InstanceId);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extern {
    Func(FuncId),
    Memory(MemoryId),
    Table(TableId),
    Global(GlobalId),
}

/// What a host function sees: the store and the instance that called it.
pub struct Caller<'a> {
    pub store: &'a mut Store,
    pub instance: Option<InstanceId>,
}

pub type HostFn = Arc<dyn Fn(&mut Caller<'_>, &[Val], &mut [Val]) -> Result<(), Error> + Send + Sync>;

enum FuncData {
    Wasm { instance: u32, index: u32, ty: FuncType },
    Host { ty: FuncType, f: HostFn },
}

/// `VMMemoryDef` / `VMTableDef` as compiled code reads them.
#[repr(C)]
pub(crate) struct VMDef {
    pub base: u64,
    pub length: u64,
}

const _: () = assert!(std::mem::size_of::<VMDef>() == vmctx::DEF_SIZE as usize);

struct MemoryObj {
    mem: LinearMemory,
    ty: MemoryType,
    def: *mut VMDef,
    _owned_def: Option<Box<VMDef>>,
}

struct TableObj {
    elems: Vec<u64>,
    ty: TableType,
    max: u64,
    def: *mut VMDef,
    _owned_def: Option<Box<VMDef>>,
}

impl TableObj {
    fn sync_def(&mut self) {
        // SAFETY: `def` points at this table's VMDef, in a live vmctx or in `_owned_def`.
        unsafe {
            (*self.def).base = self.elems.as_mut_ptr() as u64;
            (*self.def).length = self.elems.len() as u64;
        }
    }
}

struct GlobalObj {
    ptr: *mut u128,
    ty: GlobalType,
    _owned: Option<Box<u128>>,
}

struct InstanceData {
    module: Module,
    vmctx: Box<[u128]>,
    funcs: Vec<FuncId>,
    memories: Vec<MemoryId>,
    tables: Vec<TableId>,
    globals: Vec<GlobalId>,
    /// Resolved reference values of each element segment; emptied by `elem.drop`.
    elems: Vec<Vec<u64>>,
    dropped_datas: Vec<bool>,
}

impl InstanceData {
    fn vmctx_ptr(&self) -> *mut u8 {
        self.vmctx.as_ptr() as *mut u8
    }

    fn layout(&self) -> VmctxLayout {
        self.module.compiled.layout
    }
}

pub struct Store {
    config: StoreConfig,
    funcs: Vec<FuncData>,
    memories: Vec<MemoryObj>,
    tables: Vec<TableObj>,
    globals: Vec<GlobalObj>,
    instances: Vec<InstanceData>,
    stack_limit: u64,
    /// Nesting depth of host → wasm calls on the current thread.
    depth: u32,
    /// The error a host function reported, surfaced when its `HostError` trap unwinds.
    pending_error: Option<Error>,
}

// SAFETY: raw pointers in the store point into memory the store owns; it is used by one
// thread at a time (`&mut self` for every operation that runs code).
unsafe impl Send for Store {}

fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

impl Store {
    pub fn new(config: StoreConfig) -> Store {
        Store {
            config,
            funcs: Vec::new(),
            memories: Vec::new(),
            tables: Vec::new(),
            globals: Vec::new(),
            instances: Vec::new(),
            stack_limit: 0,
            depth: 0,
            pending_error: None,
        }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    // ---- Host-created objects -------------------------------------------------------------

    pub fn new_host_func(&mut self, ty: FuncType, f: HostFn) -> FuncId {
        self.funcs.push(FuncData::Host { ty, f });
        FuncId(self.funcs.len() as u32 - 1)
    }

    pub fn new_memory(&mut self, ty: MemoryType) -> Result<MemoryId, Error> {
        let mut def = Box::new(VMDef { base: 0, length: 0 });
        let def_ptr: *mut VMDef = &mut *def;
        self.add_memory(ty, def_ptr, Some(def))
    }

    pub fn new_table(&mut self, ty: TableType, init: Val) -> Result<TableId, Error> {
        let mut def = Box::new(VMDef { base: 0, length: 0 });
        let def_ptr: *mut VMDef = &mut *def;
        self.add_table(ty, init.to_ref_bits(), def_ptr, Some(def))
    }

    pub fn new_global(&mut self, ty: GlobalType, value: Val) -> GlobalId {
        let mut slot = Box::new(value.to_slot());
        let ptr: *mut u128 = &mut *slot;
        self.globals.push(GlobalObj { ptr, ty, _owned: Some(slot) });
        GlobalId(self.globals.len() as u32 - 1)
    }

    fn add_memory(&mut self, ty: MemoryType, def: *mut VMDef, owned: Option<Box<VMDef>>) -> Result<MemoryId, Error> {
        let max = ty.max.unwrap_or(MAX_PAGES).min(self.config.max_memory_pages);
        let mem = LinearMemory::new(ty.min, max)?;
        // SAFETY: `def` is a live VMDef slot owned by the new object's instance or box.
        unsafe {
            (*def).base = mem.base() as u64;
            (*def).length = mem.size();
        }
        self.memories.push(MemoryObj { mem, ty, def, _owned_def: owned });
        Ok(MemoryId(self.memories.len() as u32 - 1))
    }

    fn add_table(&mut self, ty: TableType, init: u64, def: *mut VMDef, owned: Option<Box<VMDef>>) -> Result<TableId, Error> {
        let max = ty.max.unwrap_or(u32::MAX as u64).min(self.config.max_table_elements);
        if ty.min > max {
            return Err(Error::Limit(format!("table minimum of {} elements exceeds the limit of {max}", ty.min)));
        }
        let mut table = TableObj { elems: vec![init; ty.min as usize], ty, max, def, _owned_def: owned };
        table.sync_def();
        self.tables.push(table);
        Ok(TableId(self.tables.len() as u32 - 1))
    }

    // ---- Types of externs -----------------------------------------------------------------

    pub fn func_type(&self, f: FuncId) -> &FuncType {
        match &self.funcs[f.0 as usize] {
            FuncData::Wasm { ty, .. } | FuncData::Host { ty, .. } => ty,
        }
    }

    pub fn memory_type(&self, m: MemoryId) -> MemoryType {
        let obj = &self.memories[m.0 as usize];
        MemoryType { min: obj.mem.pages(), ..obj.ty }
    }

    pub fn table_type(&self, t: TableId) -> TableType {
        let obj = &self.tables[t.0 as usize];
        TableType { min: obj.elems.len() as u64, ..obj.ty }
    }

    pub fn global_type(&self, g: GlobalId) -> GlobalType {
        self.globals[g.0 as usize].ty
    }

    // ---- Instantiation --------------------------------------------------------------------

    /// Check that `ext` can satisfy import `index` of `module`; the message names the import.
    pub fn check_import(&self, module: &Module, index: usize, ext: Extern) -> Result<(), Error> {
        let import = &module.compiled.info.imports[index];
        let bad = || Error::Link(format!("incompatible import type for `{}::{}`", import.module, import.name));
        let limits_ok = |min: u64, max: Option<u64>, want_min: u64, want_max: Option<u64>| {
            min >= want_min && match want_max { None => true, Some(wm) => max.is_some_and(|m| m <= wm) }
        };
        match (&import.kind, ext) {
            (ImportKind::Func(ty), Extern::Func(f)) => {
                if self.func_type(f) != &module.compiled.info.types[*ty as usize] {
                    return Err(bad());
                }
            }
            (ImportKind::Memory(want), Extern::Memory(m)) => {
                let have = self.memory_type(m);
                if have.shared != want.shared || !limits_ok(have.min, have.max, want.min, want.max) {
                    return Err(bad());
                }
            }
            (ImportKind::Table(want), Extern::Table(t)) => {
                let have = self.table_type(t);
                if have.elem != want.elem || !limits_ok(have.min, have.max, want.min, want.max) {
                    return Err(bad());
                }
            }
            (ImportKind::Global(want), Extern::Global(g)) => {
                if self.global_type(g) != *want {
                    return Err(bad());
                }
            }
            _ => return Err(bad()),
        }
        Ok(())
    }

    /// Instantiate `module` with `imports` in import order. Segment and start-function traps
    /// are returned as errors; as the spec requires, what was written before the trap stays.
    pub fn instantiate(&mut self, module: &Module, imports: &[Extern]) -> Result<InstanceId, Error> {
        let info = &module.compiled.info;
        if imports.len() != info.imports.len() {
            return Err(usage(format!("expected {} imports, got {}", info.imports.len(), imports.len())));
        }
        for (i, ext) in imports.iter().enumerate() {
            self.check_import(module, i, *ext)?;
        }
        let layout = module.compiled.layout;
        let id = self.instances.len() as u32;
        let vmctx: Box<[u128]> = vec![0u128; (layout.size as usize).div_ceil(16)].into_boxed_slice();
        let vm = vmctx.as_ptr() as *mut u8;
        let code_base = module.code_base();
        // SAFETY (for the writes below): every offset comes from `layout`, which sized `vmctx`.
        let write = |off: u32, v: u64| unsafe { (vm.add(off as usize) as *mut u64).write(v) };
        write(vmctx::STACK_LIMIT, self.stack_limit);
        write(vmctx::BUILTINS, builtins::table() as u64);
        write(vmctx::INSTANCE_ID, id as u64);
        for (i, ty) in info.types.iter().enumerate() {
            write(layout.type_id(i as u32), types::type_id(ty));
        }

        let mut inst = InstanceData {
            module: module.clone(),
            vmctx,
            funcs: Vec::new(),
            memories: Vec::new(),
            tables: Vec::new(),
            globals: Vec::new(),
            elems: Vec::new(),
            dropped_datas: vec![false; info.datas.len()],
        };

        // Imports.
        let (mut fi, mut mi, mut ti, mut gi) = (0u32, 0u32, 0u32, 0u32);
        for (import, ext) in info.imports.iter().zip(imports) {
            match (&import.kind, *ext) {
                (ImportKind::Func(ty), Extern::Func(f)) => {
                    let off = layout.funcref(fi);
                    match &self.funcs[f.0 as usize] {
                        FuncData::Wasm { instance, index, .. } => {
                            let src = &self.instances[*instance as usize];
                            let src_off = src.layout().funcref(*index) as usize;
                            for k in 0..3 {
                                // SAFETY: reading the exporter's VMFuncRef within its vmctx.
                                let v = unsafe { (src.vmctx_ptr().add(src_off + 8 * k) as *const u64).read() };
                                write(off + 8 * k as u32, v);
                            }
                        }
                        FuncData::Host { ty: hty, .. } => {
                            write(off + vmctx::FUNCREF_CODE, code_base + module.compiled.host_trampolines[*ty as usize].offset as u64);
                            write(off + vmctx::FUNCREF_VMCTX, f.0 as u64);
                            write(off + vmctx::FUNCREF_TYPE_ID, types::type_id(hty));
                        }
                    }
                    inst.funcs.push(f);
                    fi += 1;
                }
                (ImportKind::Memory(_), Extern::Memory(m)) => {
                    write(layout.memory(mi), self.memories[m.0 as usize].def as u64);
                    inst.memories.push(m);
                    mi += 1;
                }
                (ImportKind::Table(_), Extern::Table(t)) => {
                    write(layout.table(ti), self.tables[t.0 as usize].def as u64);
                    inst.tables.push(t);
                    ti += 1;
                }
                (ImportKind::Global(_), Extern::Global(g)) => {
                    write(layout.global(gi), self.globals[g.0 as usize].ptr as u64);
                    inst.globals.push(g);
                    gi += 1;
                }
                _ => unreachable!("checked by check_import"),
            }
        }

        // Defined functions.
        for (i, loc) in module.compiled.funcs.iter().enumerate() {
            let index = info.num_imported_funcs + i as u32;
            let ty = info.func_type(index).clone();
            let off = layout.funcref(index);
            write(off + vmctx::FUNCREF_CODE, code_base + loc.offset as u64);
            write(off + vmctx::FUNCREF_VMCTX, vm as u64);
            write(off + vmctx::FUNCREF_TYPE_ID, types::type_id(&ty));
            self.funcs.push(FuncData::Wasm { instance: id, index, ty });
            inst.funcs.push(FuncId(self.funcs.len() as u32 - 1));
        }

        // Defined memories and tables (their VMDefs live inline in the vmctx).
        for m in info.num_imported_memories as usize..info.memories.len() {
            // SAFETY: the slot is inside the vmctx.
            let def = unsafe { vm.add(layout.memory(m as u32) as usize) } as *mut VMDef;
            inst.memories.push(self.add_memory(info.memories[m], def, None)?);
        }
        for t in info.num_imported_tables as usize..info.tables.len() {
            // SAFETY: the slot is inside the vmctx.
            let def = unsafe { vm.add(layout.table(t as u32) as usize) } as *mut VMDef;
            inst.tables.push(self.add_table(info.tables[t], 0, def, None)?);
        }

        // Defined globals, evaluated in order (they may read imported globals).
        for (i, init) in info.global_inits.iter().enumerate() {
            let index = info.num_imported_globals + i as u32;
            let value = self.eval_const(&inst, init);
            // SAFETY: the slot is inside the vmctx and 16-byte aligned.
            let ptr = unsafe { vm.add(layout.global(index) as usize) } as *mut u128;
            // SAFETY: as above.
            unsafe { ptr.write(value) };
            self.globals.push(GlobalObj { ptr, ty: info.globals[index as usize], _owned: None });
            inst.globals.push(GlobalId(self.globals.len() as u32 - 1));
        }
        for (i, init) in info.table_inits.iter().enumerate() {
            let value = self.eval_const(&inst, init) as u64;
            if value != 0 {
                let t = inst.tables[info.num_imported_tables as usize + i];
                self.tables[t.0 as usize].elems.fill(value);
            }
        }
        inst.elems = info.elems.iter().map(|seg| seg.items.iter().map(|e| self.eval_const(&inst, e) as u64).collect()).collect();

        let module = inst.module.clone();
        self.instances.push(inst);
        let instance = InstanceId(id);

        // Active element segments, then data segments; declared segments are dropped.
        for (i, seg) in module.compiled.info.elems.iter().enumerate() {
            match &seg.mode {
                ElemMode::Active { table, offset } => {
                    let offset = self.eval_const(&self.instances[id as usize], offset) as u32 as u64;
                    let len = seg.items.len() as u64;
                    self.table_init(instance, *table, i as u32, offset, 0, len).map_err(|t| self.trap_error(t, &[]))?;
                    self.instances[id as usize].elems[i].clear();
                }
                ElemMode::Declared => self.instances[id as usize].elems[i].clear(),
                ElemMode::Passive => {}
            }
        }
        for (i, seg) in module.compiled.info.datas.iter().enumerate() {
            if let DataMode::Active { memory, offset } = &seg.mode {
                let offset = self.eval_const(&self.instances[id as usize], offset) as u32 as u64;
                let len = seg.range.len() as u64;
                self.memory_init(instance, *memory, i as u32, offset, 0, len).map_err(|t| self.trap_error(t, &[]))?;
                self.instances[id as usize].dropped_datas[i] = true;
            }
        }
        if let Some(start) = module.compiled.info.start {
            let f = self.instances[id as usize].funcs[start as usize];
            self.call(f, &[])?;
        }
        Ok(instance)
    }

    fn eval_const(&self, inst: &InstanceData, expr: &ConstExpr) -> u128 {
        match *expr {
            ConstExpr::I32(v) => v as u32 as u128,
            ConstExpr::I64(v) => v as u64 as u128,
            ConstExpr::F32(v) => v as u128,
            ConstExpr::F64(v) => v as u128,
            ConstExpr::V128(v) => v,
            ConstExpr::RefNull(_) => 0,
            ConstExpr::RefFunc(f) => inst.vmctx_ptr() as u128 + inst.layout().funcref(f) as u128,
            // SAFETY: global pointers point at live 16-byte slots.
            ConstExpr::GlobalGet(g) => unsafe { *self.globals[inst.globals[g as usize].0 as usize].ptr },
        }
    }

    // ---- Exports ----------------------------------------------------------------------------

    pub fn export(&self, instance: InstanceId, name: &str) -> Option<Extern> {
        let inst = &self.instances[instance.0 as usize];
        let e = inst.module.compiled.info.export(name)?;
        let i = e.index as usize;
        Some(match e.kind {
            ExportKind::Func => Extern::Func(inst.funcs[i]),
            ExportKind::Memory => Extern::Memory(inst.memories[i]),
            ExportKind::Table => Extern::Table(inst.tables[i]),
            ExportKind::Global => Extern::Global(inst.globals[i]),
        })
    }

    pub fn exports(&self, instance: InstanceId) -> Vec<(String, Extern)> {
        let inst = &self.instances[instance.0 as usize];
        inst.module.compiled.info.exports.iter().filter_map(|e| Some((e.name.clone(), self.export(instance, &e.name)?))).collect()
    }

    pub fn module(&self, instance: InstanceId) -> &Module {
        &self.instances[instance.0 as usize].module
    }

    pub fn global_get(&self, g: GlobalId) -> Val {
        let obj = &self.globals[g.0 as usize];
        // SAFETY: global pointers point at live 16-byte slots.
        Val::from_slot(obj.ty.ty, unsafe { *obj.ptr })
    }

    pub fn global_set(&mut self, g: GlobalId, v: Val) -> Result<(), Error> {
        let obj = &self.globals[g.0 as usize];
        if !obj.ty.mutable || obj.ty.ty != v.ty() {
            return Err(usage("global is immutable or of another type"));
        }
        // SAFETY: as in global_get.
        unsafe { *obj.ptr = v.to_slot() };
        Ok(())
    }

    pub fn memory_data(&self, m: MemoryId) -> &[u8] {
        self.memories[m.0 as usize].mem.as_slice()
    }

    pub fn memory_data_mut(&mut self, m: MemoryId) -> &mut [u8] {
        self.memories[m.0 as usize].mem.as_mut_slice()
    }

    /// The memory a host function should use for the calling instance: its memory 0.
    pub fn instance_memory(&self, instance: InstanceId) -> Option<MemoryId> {
        self.instances[instance.0 as usize].memories.first().copied()
    }

    // ---- Calls ------------------------------------------------------------------------------

    pub fn call(&mut self, func: FuncId, args: &[Val]) -> Result<Vec<Val>, Error> {
        let ty = self.func_type(func).clone();
        if args.len() != ty.params.len() || args.iter().zip(&ty.params).any(|(a, t)| a.ty() != *t) {
            return Err(usage(format!("arguments do not match the function type {ty}")));
        }
        match &self.funcs[func.0 as usize] {
            FuncData::Host { f, .. } => {
                let f = f.clone();
                let mut results: Vec<Val> = ty.results.iter().map(|t| Val::null(*t)).collect();
                f(&mut Caller { store: self, instance: None }, args, &mut results)?;
                Ok(results)
            }
            FuncData::Wasm { instance, index, .. } => {
                let (instance, index) = (*instance, *index);
                self.call_wasm(instance, index, &ty, args)
            }
        }
    }

    fn call_wasm(&mut self, instance: u32, index: u32, ty: &FuncType, args: &[Val]) -> Result<Vec<Val>, Error> {
        let inst = &self.instances[instance as usize];
        let compiled = &inst.module.compiled;
        let type_index = compiled.info.funcs[index as usize];
        let tramp = inst.module.code_base() + compiled.entry_trampolines[type_index as usize].offset as u64;
        let vm = inst.vmctx_ptr();
        let off = inst.layout().funcref(index) as usize;
        // SAFETY: reading this instance's own VMFuncRef.
        let (code, callee) = unsafe { ((vm.add(off) as *const u64).read(), (vm.add(off + 8) as *const u64).read()) };
        let mut values = vec![0u128; ty.params.len().max(ty.results.len()).max(1)];
        for (slot, a) in values.iter_mut().zip(args) {
            *slot = a.to_slot();
        }
        if self.depth == 0 {
            self.update_stack_limit();
        }
        let prev = builtins::enter_store(self);
        self.depth += 1;
        // SAFETY: trampoline, code and vmctx belong to a live instance of this store; `values`
        // has a slot per parameter and result.
        let r = unsafe { process::call_entry(tramp, code, callee, vm as u64, values.as_mut_ptr()) };
        self.depth -= 1;
        builtins::leave_store(prev);
        match r {
            Ok(()) => Ok(ty.results.iter().zip(&values).map(|(t, s)| Val::from_slot(*t, *s)).collect()),
            Err(record) => {
                if record.trap == Trap::HostError {
                    if let Some(e) = self.pending_error.take() {
                        return Err(e);
                    }
                }
                let mut pcs = vec![record.pc];
                pcs.extend_from_slice(&record.frames[..record.nframes]);
                Err(self.trap_error(record.trap, &pcs))
            }
        }
    }

    fn trap_error(&self, trap: Trap, pcs: &[usize]) -> Error {
        let backtrace = pcs
            .iter()
            .filter_map(|pc| crate::code::lookup_func(*pc))
            .map(|(m, f)| m.compiled.info.func_name(f))
            .collect();
        Error::Trap(TrapError { trap, backtrace })
    }

    /// Set the lowest stack address compiled code may reach, from this thread's stack.
    fn update_stack_limit(&mut self) {
        let here = &self as *const _ as u64;
        let mut limit = here.saturating_sub(self.config.max_wasm_stack as u64);
        if let Some(low) = thread_stack_low() {
            // Leave room below the limit for host functions and the signal path.
            limit = limit.max(low + 256 * 1024);
        }
        if limit != self.stack_limit {
            self.stack_limit = limit;
            for inst in &self.instances {
                // SAFETY: the header field of a live vmctx.
                unsafe { (inst.vmctx_ptr().add(vmctx::STACK_LIMIT as usize) as *mut u64).write(limit) };
            }
        }
    }

    // ---- Builtins: what compiled code asks of the runtime ------------------------------------
    // Arguments are guest-controlled; each is checked here and never trusted.

    pub(crate) fn host_call(&mut self, caller: u32, func: u64, values: *mut u128) -> u64 {
        let Some(FuncData::Host { ty, f }) = self.funcs.get(func as usize) else { return 1 };
        let (ty, f) = (ty.clone(), f.clone());
        // SAFETY: the host-call trampoline passes an array with a slot per param and result.
        let slots = unsafe { std::slice::from_raw_parts_mut(values, ty.params.len().max(ty.results.len()).max(1)) };
        let args: Vec<Val> = ty.params.iter().zip(slots.iter()).map(|(t, s)| Val::from_slot(*t, *s)).collect();
        let mut results: Vec<Val> = ty.results.iter().map(|t| Val::null(*t)).collect();
        let instance = Some(InstanceId(caller));
        match f(&mut Caller { store: self, instance }, &args, &mut results) {
            Ok(()) => {
                for (slot, r) in slots.iter_mut().zip(&results) {
                    *slot = r.to_slot();
                }
                0
            }
            Err(e) => {
                self.pending_error = Some(e);
                1
            }
        }
    }

    fn memory_obj(&mut self, instance: InstanceId, mem: u32) -> Option<&mut MemoryObj> {
        let id = *self.instances.get(instance.0 as usize)?.memories.get(mem as usize)?;
        self.memories.get_mut(id.0 as usize)
    }

    fn table_obj(&mut self, instance: InstanceId, table: u32) -> Option<&mut TableObj> {
        let id = *self.instances.get(instance.0 as usize)?.tables.get(table as usize)?;
        self.tables.get_mut(id.0 as usize)
    }

    pub(crate) fn memory_grow(&mut self, instance: InstanceId, mem: u32, delta: u64) -> u64 {
        let Some(obj) = self.memory_obj(instance, mem) else { return u64::MAX };
        match obj.mem.grow(delta) {
            Some(old) => {
                // SAFETY: the memory's VMDef is live.
                unsafe { (*obj.def).length = obj.mem.size() };
                old
            }
            None => u64::MAX,
        }
    }

    pub(crate) fn memory_fill(&mut self, instance: InstanceId, mem: u32, dst: u64, val: u64, len: u64) -> Result<(), Trap> {
        let obj = self.memory_obj(instance, mem).ok_or(Trap::MemoryOutOfBounds)?;
        let data = obj.mem.as_mut_slice();
        let range = checked_range(dst, len, data.len()).ok_or(Trap::MemoryOutOfBounds)?;
        data[range].fill(val as u8);
        Ok(())
    }

    pub(crate) fn memory_copy(&mut self, instance: InstanceId, dst_mem: u32, src_mem: u32, dst: u64, src: u64, len: u64) -> Result<(), Trap> {
        let src_obj = self.memory_obj(instance, src_mem).ok_or(Trap::MemoryOutOfBounds)?;
        let (src_base, src_size) = (src_obj.mem.base(), src_obj.mem.size() as usize);
        let dst_obj = self.memory_obj(instance, dst_mem).ok_or(Trap::MemoryOutOfBounds)?;
        let (dst_base, dst_size) = (dst_obj.mem.base(), dst_obj.mem.size() as usize);
        let s = checked_range(src, len, src_size).ok_or(Trap::MemoryOutOfBounds)?;
        let d = checked_range(dst, len, dst_size).ok_or(Trap::MemoryOutOfBounds)?;
        // SAFETY: both ranges were checked against their memories' accessible sizes;
        // `copy` handles overlap.
        unsafe { std::ptr::copy(src_base.add(s.start), dst_base.add(d.start), s.len()) };
        Ok(())
    }

    pub(crate) fn memory_init(&mut self, instance: InstanceId, mem: u32, data: u32, dst: u64, src: u64, len: u64) -> Result<(), Trap> {
        let inst = self.instances.get(instance.0 as usize).ok_or(Trap::MemoryOutOfBounds)?;
        let module = inst.module.clone();
        let seg = module.compiled.info.datas.get(data as usize).ok_or(Trap::MemoryOutOfBounds)?;
        let bytes = if inst.dropped_datas[data as usize] { &[][..] } else { module.compiled.info.data(seg) };
        let s = checked_range(src, len, bytes.len()).ok_or(Trap::MemoryOutOfBounds)?;
        let obj = self.memory_obj(instance, mem).ok_or(Trap::MemoryOutOfBounds)?;
        let target = obj.mem.as_mut_slice();
        let d = checked_range(dst, len, target.len()).ok_or(Trap::MemoryOutOfBounds)?;
        target[d].copy_from_slice(&bytes[s]);
        Ok(())
    }

    pub(crate) fn data_drop(&mut self, instance: InstanceId, data: u32) {
        if let Some(d) = self.instances.get_mut(instance.0 as usize).and_then(|i| i.dropped_datas.get_mut(data as usize)) {
            *d = true;
        }
    }

    pub(crate) fn table_grow(&mut self, instance: InstanceId, table: u32, delta: u64, init: u64) -> u64 {
        let Some(obj) = self.table_obj(instance, table) else { return u64::MAX };
        let old = obj.elems.len() as u64;
        match old.checked_add(delta) {
            Some(new) if new <= obj.max => {
                obj.elems.resize(new as usize, init);
                obj.sync_def();
                old
            }
            _ => u64::MAX,
        }
    }

    pub(crate) fn table_fill(&mut self, instance: InstanceId, table: u32, dst: u64, val: u64, len: u64) -> Result<(), Trap> {
        let obj = self.table_obj(instance, table).ok_or(Trap::TableAccessOutOfBounds)?;
        let r = checked_range(dst, len, obj.elems.len()).ok_or(Trap::TableAccessOutOfBounds)?;
        obj.elems[r].fill(val);
        Ok(())
    }

    pub(crate) fn table_copy(&mut self, instance: InstanceId, dst_t: u32, src_t: u32, dst: u64, src: u64, len: u64) -> Result<(), Trap> {
        let src_obj = self.table_obj(instance, src_t).ok_or(Trap::TableAccessOutOfBounds)?;
        let s = checked_range(src, len, src_obj.elems.len()).ok_or(Trap::TableAccessOutOfBounds)?;
        let items: Vec<u64> = src_obj.elems[s].to_vec();
        let dst_obj = self.table_obj(instance, dst_t).ok_or(Trap::TableAccessOutOfBounds)?;
        let d = checked_range(dst, len, dst_obj.elems.len()).ok_or(Trap::TableAccessOutOfBounds)?;
        dst_obj.elems[d].copy_from_slice(&items);
        Ok(())
    }

    pub(crate) fn table_init(&mut self, instance: InstanceId, table: u32, elem: u32, dst: u64, src: u64, len: u64) -> Result<(), Trap> {
        let inst = self.instances.get(instance.0 as usize).ok_or(Trap::TableAccessOutOfBounds)?;
        let items = inst.elems.get(elem as usize).ok_or(Trap::TableAccessOutOfBounds)?;
        let s = checked_range(src, len, items.len()).ok_or(Trap::TableAccessOutOfBounds)?;
        let items: Vec<u64> = items[s].to_vec();
        let obj = self.table_obj(instance, table).ok_or(Trap::TableAccessOutOfBounds)?;
        let d = checked_range(dst, len, obj.elems.len()).ok_or(Trap::TableAccessOutOfBounds)?;
        obj.elems[d].copy_from_slice(&items);
        Ok(())
    }

    pub(crate) fn elem_drop(&mut self, instance: InstanceId, elem: u32) {
        if let Some(e) = self.instances.get_mut(instance.0 as usize).and_then(|i| i.elems.get_mut(elem as usize)) {
            e.clear();
        }
    }

    // ---- Tables from the host ----------------------------------------------------------------

    pub fn table_get(&self, t: TableId, index: u64) -> Option<Val> {
        let obj = &self.tables[t.0 as usize];
        let raw = *obj.elems.get(index as usize)?;
        Some(Val::from_slot(obj.ty.elem, raw as u128))
    }

    pub fn table_size(&self, t: TableId) -> u64 {
        self.tables[t.0 as usize].elems.len() as u64
    }
}

/// `start..start+len` if it lies within `size`.
fn checked_range(start: u64, len: u64, size: usize) -> Option<std::ops::Range<usize>> {
    let end = start.checked_add(len)?;
    (end <= size as u64).then(|| start as usize..end as usize)
}

fn thread_stack_low() -> Option<u64> {
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread; it is destroyed after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let r = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (r == 0).then_some(addr as u64)
    }
}

