//! Instantiation: check imports, fill the vmctx, create defined memories, tables and globals,
//! run active segments and the start function.
//!
//! It happens in two stages. First everything that can fail for lack of resources or limits
//! (the vmctx, memories, tables, contexts) is created; if any of it fails, all of it is rolled
//! back: what was queued for the guest is forgotten, what the VM already mapped is unmapped,
//! and only then is the host memory freed, so the guest can never reach freed (or reused) host
//! memory. Then the instance exists (it is registered and its memory mapped) and the segments
//! and the start function run; a trap there leaves the instance in the store, as the spec
//! requires (its functions may already be in imported tables), so nothing of it is freed.

use super::{Extern, FuncData, FuncId, GlobalId, GlobalObj, InstanceData, InstanceId, Isolation, Module, Quarantined, Store, VMDef};
use crate::error::Error;
use crate::{builtins, types};
use wasce_compiler::module::{eval_extended, CompositeType, ConstExpr, DataMode, ElemMode, GcConstOp, ImportKind, WasmType};
use wasce_compiler::{vmctx, CompileError};

/// A module whose metadata does not hold together (only a crafted artifact could be one).
fn malformed(what: String) -> Error {
    Error::Compile(CompileError::Invalid(format!("malformed module: {what}")))
}

impl Store {
    /// Check that `ext` can satisfy import `index` of `module`; the message names the import.
    pub fn check_import(&self, module: &Module, index: usize, ext: Extern) -> Result<(), Error> {
        let info = &module.compiled.info;
        let Some(import) = info.imports.get(index) else {
            return Err(Error::Usage(format!("import {index} out of range ({} imports)", info.imports.len())));
        };
        let bad = || Error::Link(format!("incompatible import type for `{}::{}`", import.module, import.name));
        let limits_ok = |min: u64, max: Option<u64>, want_min: u64, want_max: Option<u64>| {
            min >= want_min && match want_max { None => true, Some(wm) => max.is_some_and(|m| m <= wm) }
        };
        let ok = match (&import.kind, ext) {
            (ImportKind::Func(ty), Extern::Func(f)) => types::is_subtype(self.func_type_id(f), *module.types.ids.get(*ty as usize).ok_or_else(|| malformed(format!("import type {ty} out of range")))?),
            (ImportKind::Memory(want), Extern::Memory(m)) => {
                let have = self.memory_type(m);
                have.shared == want.shared && have.memory64 == want.memory64 && limits_ok(have.min, have.max, want.min, want.max)
            }
            (ImportKind::Table(want), Extern::Table(t)) => {
                let have = self.table_type(t);
                let want = module.types.table(*want).map_err(malformed)?;
                have.elem == want.elem && have.table64 == want.table64 && limits_ok(have.min, have.max, want.min, want.max)
            }
            (ImportKind::Global(want), Extern::Global(g)) => {
                // Immutable globals are covariant; mutable ones must match exactly.
                let have = self.global_type(g);
                let want = module.types.global(*want).map_err(malformed)?;
                have.mutable == want.mutable && if want.mutable { have.ty == want.ty } else { types::val_subtype(have.ty, want.ty) }
            }
            (ImportKind::Tag(ty), Extern::Tag(t)) => *module.types.ids.get(*ty as usize).ok_or_else(|| malformed(format!("tag type {ty} out of range")))? == self.tag_type_id(t),
            _ => false,
        };
        // Compiled code makes no exception check after calls to these imports.
        if ok && import.never_throws() {
            if let Extern::Func(f) = ext {
                if matches!(self.funcs[f.0 as usize], FuncData::Wasm { .. }) {
                    return Err(Error::Link(format!(
                        "`{}::{}` must be a host function: wasce assumes that the functions of {} never throw",
                        import.module, import.name, import.module
                    )));
                }
            }
        }
        if ok { Ok(()) } else { Err(bad()) }
    }

    /// Keep the promise of `nothrow` tables (`TableContract`): their owner's indirect calls make
    /// no exception check, so a module importing one may link only if nothing it can write into
    /// its imported tables may throw, given what it is linked with (its imported functions and
    /// tables). Refused otherwise: wasce's limit, not the specification's.
    fn check_table_contract(&self, module: &Module, imports: &[Extern]) -> Result<(), Error> {
        let info = &module.compiled.info;
        let imported = |kind: fn(&Extern) -> Option<u32>| imports.iter().filter_map(kind).collect::<Vec<u32>>();
        let tables = imported(|e| if let Extern::Table(t) = e { Some(t.0) } else { None });
        let funcs = imported(|e| if let Extern::Func(f) = e { Some(f.0) } else { None });
        let Some(sealed) = tables.iter().position(|t| self.tables[*t as usize].nothrow) else { return Ok(()) };
        let Some(deps) = &module.compiled.tables.writes else { return Ok(()) };
        let func_throws = |f: &u32| funcs.get(*f as usize).is_none_or(|id| self.func_may_throw(FuncId(*id)));
        let table_open = |t: &u32| tables.get(*t as usize).is_none_or(|id| !self.tables[*id as usize].nothrow);
        if !deps.always && !deps.funcs.iter().any(func_throws) && !deps.tables.iter().any(table_open) {
            return Ok(());
        }
        let name = info.imports.iter().filter(|i| matches!(i.kind, ImportKind::Table(_))).nth(sealed);
        let name = name.map(|i| format!("`{}::{}`", i.module, i.name)).unwrap_or_default();
        Err(Error::Link(format!(
            "table {name} belongs to a module compiled on the promise that no function that may throw enters its tables, \
             and this module could store one there (wasce links such a pair only if nothing the importer can write into its tables may throw)"
        )))
    }

    /// Whether a call to `f` may return with an exception pending, as its module was compiled
    /// (host functions never do).
    fn func_may_throw(&self, f: FuncId) -> bool {
        match &self.funcs[f.0 as usize] {
            FuncData::Wasm { instance, index, .. } => {
                self.instances[*instance as usize].module.compiled.tables.may_throw.get(*index as usize).is_none_or(|t| *t)
            }
            FuncData::Host { .. } | FuncData::Guest { .. } => false,
        }
    }

    /// Instantiate `module` with `imports` in import order. Segment and start-function traps
    /// are returned as errors; as the spec requires, what was written before the trap stays.
    pub fn instantiate(&mut self, module: &Module, imports: &[Extern]) -> Result<InstanceId, Error> {
        self.instantiate_with(module, imports, true)
    }

    /// `instantiate`; with `init` false, the instance is built and registered but its
    /// segments and start function do not run (`instantiate_image` fills it instead).
    pub(super) fn instantiate_with(&mut self, module: &Module, imports: &[Extern], init: bool) -> Result<InstanceId, Error> {
        let info = &module.compiled.info;
        if imports.len() != info.imports.len() {
            return Err(Error::Usage(format!("expected {} imports, got {}", info.imports.len(), imports.len())));
        }
        for (i, ext) in imports.iter().enumerate() {
            self.check_import(module, i, *ext)?;
        }
        self.check_table_contract(module, imports)?;
        let mut mark = Mark {
            funcs: self.funcs.len(),
            memories: self.memories.len(),
            tables: self.tables.len(),
            globals: self.globals.len(),
            tags: self.tags.len(),
            table_elements: self.table_elements,
            new_code: !self.mapped_code.contains(&module.code_base()),
            vmctx: None,
        };
        let (inst, records) = match self.build_instance(module, imports, &mut mark) {
            Ok(built) => built,
            Err(e) => {
                self.roll_back(module, &mark, false);
                return Err(e);
            }
        };
        let id = self.instances.len() as u32;
        let vm = inst.vmctx;
        self.vmctx_index.insert(vm as u64, id);
        for record in records {
            self.host_imports.insert(record.0, (id, record.1));
        }
        self.instances.push(inst);
        if let Err(e) = self.flush_maps() {
            self.roll_back(module, &mark, true);
            return Err(e);
        }
        let instance = InstanceId(id);
        if init {
            self.init_instance(instance)?;
        }
        Ok(instance)
    }

    /// Take back everything a failed instantiation created, guest mappings first: see the
    /// module documentation. `registered`: the instance was already pushed and indexed.
    fn roll_back(&mut self, module: &Module, mark: &Mark, registered: bool) {
        if registered {
            let id = self.instances.len() as u32 - 1;
            let inst = self.instances.pop().expect("the instance being rolled back");
            self.vmctx_index.remove(&(inst.vmctx as u64));
            self.host_imports.retain(|_, (importer, _)| *importer != id);
        }
        // Memories: out of the guest, then freed (or kept if KVM would not let go of them).
        let memories: Vec<_> = self.memories.drain(mark.memories..).collect();
        for obj in memories {
            if !self.unmap_host_range(obj.mem.base() as u64) {
                self.quarantine.push(Quarantined::Memory(obj.mem));
            }
        }
        if mark.new_code {
            let code_base = module.code_base();
            self.mapped_code.remove(&code_base);
            if !self.unmap_host_range(code_base) {
                self.quarantine.push(Quarantined::Code(module.clone()));
            }
        }
        // Tables and globals live in the arena (never freed, never unmapped: it holds only
        // guest-visible data); the blocks are abandoned, their pages given back.
        for table in self.tables.drain(mark.tables..) {
            self.arena.release(table.base as *mut u8, table.cap * 8);
        }
        self.table_elements = mark.table_elements;
        self.globals.truncate(mark.globals);
        self.tags.truncate(mark.tags);
        self.funcs.truncate(mark.funcs);
        if let Some((vmctx, size)) = mark.vmctx {
            // SAFETY: the failed instance's vmctx block in the arena, which nothing uses any more;
            // cleared so that it names no code, memory or host function.
            unsafe { std::ptr::write_bytes(vmctx, 0, size) };
        }
    }

    /// Everything of a new instance that can fail for lack of resources or limits, with no
    /// effect visible outside the store's own records: the vmctx, functions, memories, tables,
    /// globals, element values, and the host-function import records to register.
    fn build_instance(&mut self, module: &Module, imports: &[Extern], mark: &mut Mark) -> Result<(InstanceData, Vec<(u64, FuncId)>), Error> {
        let info = &module.compiled.info;
        let layout = module.compiled.layout;
        let id = self.instances.len() as u32;
        let vm = self.arena_alloc(layout.size as u64, 16)?;
        mark.vmctx = Some((vm, layout.size as usize));
        let code_base = module.code_base();
        if mark.new_code {
            self.request_map_code(&module.compiled.code)?;
            self.mapped_code.insert(code_base);
        }
        let mut records = Vec::new();
        let mut inst = InstanceData {
            module: module.clone(),
            vmctx: vm,
            funcs: Vec::new(),
            memories: Vec::new(),
            tables: Vec::new(),
            globals: Vec::new(),
            tags: Vec::new(),
            elems: Vec::new(),
            dropped_datas: vec![false; info.datas.len()],
        };
        inst.write_u64(vmctx::STACK_LIMIT, self.stack_limit);
        let builtins = match self.config.isolation {
            Isolation::Process => builtins::table() as u64,
            Isolation::Kvm => self.vm.as_ref().map_or(wasce_vmguest::BUILTIN_TABLE_GVA, |vm| vm.builtin_table()),
        };
        inst.write_u64(vmctx::BUILTINS, builtins);
        inst.write_u64(vmctx::FUEL, self.fuel as u64);
        inst.write_u64(vmctx::EXN, self.exn_state as u64);
        inst.write_u64(vmctx::GC_HEAP, self.gc.state as u64);
        inst.write_u64(vmctx::GC_TYPES, self.gc.types_cell as u64);
        if info.uses_gc_types() {
            self.gc_register_types(&module.types.ids)?;
        }
        for (i, id) in module.types.ids.iter().enumerate() {
            inst.write_u64(layout.type_id(i as u32), *id);
        }

        // Imports.
        let (mut fi, mut mi, mut ti, mut gi, mut xi) = (0u32, 0u32, 0u32, 0u32, 0u32);
        let mut guest_imports = Vec::new();
        for (import, ext) in info.imports.iter().zip(imports) {
            match (&import.kind, *ext) {
                (ImportKind::Func(ty), Extern::Func(f)) => {
                    let off = layout.funcref(fi);
                    match &self.funcs[f.0 as usize] {
                        FuncData::Wasm { instance, index, .. } => {
                            let src = &self.instances[*instance as usize];
                            let src_off = src.layout().funcref(*index);
                            for k in 0..3 {
                                inst.write_u64(off + 8 * k, src.read_u64(src_off + 8 * k));
                            }
                        }
                        FuncData::Host { ty: hty, .. } => {
                            // The callee "vmctx" of a host import is its import record: the
                            // address of this very VMFuncRef, the host's key for (this
                            // instance, this function); see `ops::host_call`.
                            let record = vm as u64 + off as u64;
                            let tramp = module.compiled.host_trampolines.get(*ty as usize).ok_or_else(|| malformed(format!("no host trampoline for type {ty}")))?;
                            inst.write_u64(off + vmctx::FUNCREF_CODE, code_base + tramp.offset as u64);
                            inst.write_u64(off + vmctx::FUNCREF_VMCTX, record);
                            inst.write_u64(off + vmctx::FUNCREF_TYPE_ID, types::type_id(hty));
                            records.push((record, f));
                        }
                        FuncData::Guest { ty: hty, routine, data, .. } => {
                            // The context is per importing instance (it names this instance's
                            // memory); it is filled once the memories exist, below. Its
                            // fallback names the import record, as above.
                            guest_imports.push((fi, f, *routine, *data, *ty));
                            inst.write_u64(off + vmctx::FUNCREF_TYPE_ID, types::type_id(hty));
                            records.push((vm as u64 + off as u64, f));
                        }
                    }
                    inst.funcs.push(f);
                    fi += 1;
                }
                (ImportKind::Memory(_), Extern::Memory(m)) => {
                    inst.write_u64(layout.memory(mi), self.memories[m.0 as usize].def as u64);
                    inst.memories.push(m);
                    mi += 1;
                }
                (ImportKind::Table(_), Extern::Table(t)) => {
                    inst.write_u64(layout.table(ti), self.tables[t.0 as usize].def as u64);
                    inst.tables.push(t);
                    ti += 1;
                }
                (ImportKind::Global(_), Extern::Global(g)) => {
                    inst.write_u64(layout.global(gi), self.globals[g.0 as usize].ptr as u64);
                    inst.globals.push(g);
                    gi += 1;
                }
                (ImportKind::Tag(_), Extern::Tag(t)) => {
                    inst.write_u64(layout.tag(xi), t.identity());
                    inst.tags.push(t);
                    xi += 1;
                }
                _ => unreachable!("checked by check_import"),
            }
        }

        // Defined functions.
        for (i, loc) in module.compiled.funcs.iter().enumerate() {
            let index = info.num_imported_funcs + i as u32;
            let type_index = info.funcs[index as usize] as usize;
            let (Some(ty), Some(type_id)) = (module.types.types.get(type_index), module.types.ids.get(type_index)) else {
                return Err(malformed(format!("function {index} has type {type_index}, out of range")));
            };
            let ty = ty.clone();
            let off = layout.funcref(index);
            inst.write_u64(off + vmctx::FUNCREF_CODE, code_base + loc.offset as u64);
            inst.write_u64(off + vmctx::FUNCREF_VMCTX, vm as u64);
            inst.write_u64(off + vmctx::FUNCREF_TYPE_ID, *type_id);
            self.funcs.push(FuncData::Wasm { instance: id, index, ty, type_id: *type_id });
            inst.funcs.push(FuncId(self.funcs.len() as u32 - 1));
        }

        // Defined tags: a new identity per instance.
        for x in info.num_imported_tags..info.tags.len() as u32 {
            let ty = info.types.get(info.tags[x as usize] as usize).ok_or_else(|| malformed(format!("tag {x} has no type")))?;
            let type_id = *module.types.ids.get(info.tags[x as usize] as usize).ok_or_else(|| malformed(format!("tag {x} has no type")))?;
            let t = self.add_tag(ty.clone(), type_id)?;
            inst.write_u64(layout.tag(x), t.identity());
            inst.tags.push(t);
        }

        // Defined memories and tables: their VMDefs live inline in the vmctx.
        for m in info.num_imported_memories..info.memories.len() as u32 {
            // SAFETY: the slot is inside the vmctx.
            let def = unsafe { vm.add(layout.memory(m) as usize) } as *mut VMDef;
            inst.memories.push(self.add_memory(info.memories[m as usize], def)?);
        }
        for t in info.num_imported_tables..info.tables.len() as u32 {
            // SAFETY: the slot is inside the vmctx.
            let def = unsafe { vm.add(layout.table(t) as usize) } as *mut VMDef;
            let ty = module.types.table(info.tables[t as usize]).map_err(malformed)?;
            let id = self.add_table(ty, 0, def)?;
            self.tables[id.0 as usize].nothrow = module.compiled.tables.nothrow_tables;
            inst.tables.push(id);
        }

        // Exit-free guest functions: a context naming this instance's memory 0.
        for (index, _, routine, data, ty) in guest_imports {
            use wasce_hypercall::*;
            let ctx = self.arena_alloc(WCTX_SIZE, 16)?;
            let memory = inst.memories.first().map_or(0, |m| self.memories[m.0 as usize].def as u64);
            let tramp = module.compiled.host_trampolines.get(ty as usize).ok_or_else(|| malformed(format!("no host trampoline for type {ty}")))?;
            let fallback = code_base + tramp.offset as u64;
            let record = vm as u64 + layout.funcref(index) as u64;
            for (field, value) in [(WCTX_MEMORY, memory), (WCTX_DATA, data), (WCTX_FALLBACK_CODE, fallback), (WCTX_FALLBACK_VMCTX, record)] {
                // SAFETY: a fresh WCTX_SIZE arena block.
                unsafe { (ctx.add(field as usize) as *mut u64).write(value) };
            }
            let off = layout.funcref(index);
            inst.write_u64(off + vmctx::FUNCREF_CODE, routine);
            inst.write_u64(off + vmctx::FUNCREF_VMCTX, ctx as u64);
        }

        // Defined globals, evaluated in order (they may read imported globals).
        for (i, init) in info.global_inits.iter().enumerate() {
            let index = info.num_imported_globals + i as u32;
            let value = self.eval_const_gc(&inst, init)?;
            // SAFETY: the slot is inside the vmctx and 16-byte aligned.
            let ptr = unsafe { vm.add(layout.global(index) as usize) } as *mut u128;
            // SAFETY: as above.
            unsafe { ptr.write(value) };
            let ty = module.types.global(info.globals[index as usize]).map_err(malformed)?;
            self.globals.push(GlobalObj { ptr, ty });
            inst.globals.push(GlobalId(self.globals.len() as u32 - 1));
        }
        for (i, init) in info.table_inits.iter().enumerate() {
            let value = self.eval_const_gc(&inst, init)? as u64;
            if value != 0 {
                let t = inst.tables[info.num_imported_tables as usize + i];
                self.tables[t.0 as usize].elems_mut().fill(value);
            }
        }
        let mut elems = Vec::with_capacity(info.elems.len());
        for seg in &info.elems {
            let mut items = Vec::with_capacity(seg.items.len());
            for e in &seg.items {
                items.push(self.eval_const_gc(&inst, e)? as u64);
            }
            elems.push(items);
        }
        inst.elems = elems;
        debug_assert_eq!(id as usize, self.instances.len());
        Ok((inst, records))
    }

    /// Run a registered instance's active segments and start function.
    fn init_instance(&mut self, instance: InstanceId) -> Result<(), Error> {
        let id = instance.0;
        let module = self.instances[id as usize].module.clone();

        // Active element segments, then data segments; declared segments are dropped.
        for (i, seg) in module.compiled.info.elems.iter().enumerate() {
            match &seg.mode {
                ElemMode::Active { table, offset } => {
                    let offset = self.eval_const(&self.instances[id as usize], offset)? as u32 as u64;
                    let len = seg.items.len() as u64;
                    self.table_init(instance, *table, i as u32, offset, 0, len).map_err(|t| self.trap_error(t, &[]))?;
                    self.instances[id as usize].elems[i].clear();
                }
                ElemMode::Declared => self.instances[id as usize].elems[i].clear(),
                ElemMode::Passive => {}
            }
        }
        // A memory image (checked to cover every active segment, none of which can trap) is
        // mapped copy-on-write instead, unless copying suits the memory better
        // (`LinearMemory::prefers_copy`); segments are copied if that mapping fails.
        if let Some(image) = &module.compiled.image {
            let m = self.instances[id as usize].memories[0];
            let mem = &mut self.memories[m.0 as usize].mem;
            if !mem.prefers_copy(image.plan.len) && mem.map_image(image).is_ok() {
                for (i, seg) in module.compiled.info.datas.iter().enumerate() {
                    if matches!(seg.mode, DataMode::Active { .. }) {
                        self.instances[id as usize].dropped_datas[i] = true;
                    }
                }
            }
        }
        for (i, seg) in module.compiled.info.datas.iter().enumerate() {
            if self.instances[id as usize].dropped_datas[i] {
                continue;
            }
            if let DataMode::Active { memory, offset } = &seg.mode {
                let offset = self.eval_const(&self.instances[id as usize], offset)? as u32 as u64;
                let len = seg.range.len() as u64;
                self.memory_init(instance, *memory, i as u32, offset, 0, len).map_err(|t| self.trap_error(t, &[]))?;
                self.instances[id as usize].dropped_datas[i] = true;
            }
        }
        if let Some(start) = module.compiled.info.start {
            let f = *self.instances[id as usize].funcs.get(start as usize).ok_or_else(|| malformed(format!("start function {start} out of range")))?;
            self.call(f, &[])?;
        }
        Ok(())
    }

    /// Evaluate a constant expression. Compiled modules and decoded artifacts are validated
    /// (`wasce_compiler::artifact` checks every index and type); this checks again, so that an
    /// expression naming a function or a global that does not exist (yet) is an error, never
    /// an out-of-bounds index.
    fn eval_const(&self, inst: &InstanceData, expr: &ConstExpr) -> Result<u128, Error> {
        let global = |g: u32| -> Result<u128, Error> {
            let Some(global) = inst.globals.get(g as usize).and_then(|id| self.globals.get(id.0 as usize)) else {
                return Err(malformed(format!("constant expression reads global {g}, which is not initialised yet")));
            };
            // SAFETY: global pointers point at live 16-byte arena slots.
            Ok(unsafe { *global.ptr })
        };
        Ok(match *expr {
            // Extended constant expressions: wrapping i32/i64 arithmetic over constants and
            // globals (an i32 global's slot holds the value zero-extended).
            ConstExpr::Extended(ref ops) => {
                let read = |g: u32| {
                    let ty = inst.globals.get(g as usize).and_then(|id| self.globals.get(id.0 as usize)).map(|o| o.ty.ty);
                    let value = global(g).map_err(|e| e.to_string())?;
                    match ty {
                        Some(WasmType::I32) => Ok((WasmType::I32, value as u32 as u64)),
                        Some(t) => Ok((t, value as u64)),
                        None => Err(format!("global {g} does not exist")),
                    }
                };
                let (_, v) = eval_extended(ops, read).map_err(|e| malformed(format!("constant expression: {e}")))?;
                v as u128
            }
            ConstExpr::I32(v) => v as u32 as u128,
            ConstExpr::I64(v) => v as u64 as u128,
            ConstExpr::F32(v) => v as u128,
            ConstExpr::F64(v) => v as u128,
            ConstExpr::V128(v) => v,
            ConstExpr::RefNull(_) => 0,
            ConstExpr::RefFunc(f) if (f as usize) < inst.funcs.len() => inst.vmctx as u128 + inst.layout().funcref(f) as u128,
            ConstExpr::RefFunc(f) => return Err(malformed(format!("constant expression refers to function {f}, which does not exist"))),
            ConstExpr::GlobalGet(g) => global(g)?,
            ConstExpr::Gc(_) => return Err(malformed("GC constant expression out of place".into())),
        })
    }

    /// Evaluate a constant expression that may allocate (GC instructions).
    fn eval_const_gc(&mut self, inst: &InstanceData, expr: &ConstExpr) -> Result<u128, Error> {
        let ConstExpr::Gc(ops) = expr else { return self.eval_const(inst, expr) };
        let bad = |what: &str| malformed(format!("GC constant expression: {what}"));
        let mut stack: Vec<u128> = Vec::new();
        for op in ops.iter() {
            let v = match *op {
                GcConstOp::Const(_, v) => v,
                GcConstOp::RefNull => 0,
                GcConstOp::RefFunc(f) => self.eval_const(inst, &ConstExpr::RefFunc(f))?,
                GcConstOp::GlobalGet(g) => self.eval_const(inst, &ConstExpr::GlobalGet(g))?,
                GcConstOp::Arith(a) => {
                    let (ty, f) = a.binary().ok_or_else(|| bad("operator"))?;
                    let (b, a) = (stack.pop().ok_or_else(|| bad("stack"))?, stack.pop().ok_or_else(|| bad("stack"))?);
                    let r = f(a as u64, b as u64);
                    if ty == WasmType::I32 { r as u32 as u128 } else { r as u128 }
                }
                GcConstOp::RefI31 => {
                    let v = stack.pop().ok_or_else(|| bad("stack"))? as u32;
                    (((v << 1) | 1) as u64) as u128
                }
                GcConstOp::AnyConvertExtern => {
                    let e = stack.pop().ok_or_else(|| bad("stack"))? as u64;
                    (if e >> 63 != 0 { e & !(1 << 63) } else if e == 0 { 0 } else { (e << 2) | 2 }) as u128
                }
                GcConstOp::ExternConvertAny => {
                    let a = stack.pop().ok_or_else(|| bad("stack"))? as u64;
                    (if a & 3 == 2 { a >> 2 } else if a == 0 { 0 } else { a | 1 << 63 }) as u128
                }
                GcConstOp::StructNew(ty) | GcConstOp::StructNewDefault(ty) => {
                    let n = match inst.module.compiled.info.type_defs.get(ty as usize).map(|d| &d.composite) {
                        Some(CompositeType::Struct(f)) => f.len(),
                        _ => return Err(bad("struct.new of a type that is not a struct")),
                    };
                    let values = if matches!(op, GcConstOp::StructNew(_)) {
                        let at = stack.len().checked_sub(n).ok_or_else(|| bad("stack"))?;
                        stack.split_off(at)
                    } else {
                        Vec::new()
                    };
                    self.gc_new_const(inst, ty, &values, None)? as u128
                }
                GcConstOp::ArrayNew(ty) | GcConstOp::ArrayNewDefault(ty) => {
                    let n = stack.pop().ok_or_else(|| bad("stack"))? as u32 as u64;
                    let v = if matches!(op, GcConstOp::ArrayNew(_)) { stack.pop().ok_or_else(|| bad("stack"))? } else { 0 };
                    self.gc_new_const(inst, ty, &[], Some((v, n)))? as u128
                }
                GcConstOp::ArrayNewFixed(ty, n) => {
                    let at = stack.len().checked_sub(n as usize).ok_or_else(|| bad("stack"))?;
                    let values = stack.split_off(at);
                    self.gc_new_const(inst, ty, &values, None)? as u128
                }
            };
            stack.push(v);
        }
        match stack[..] {
            [v] => Ok(v),
            _ => Err(bad("not exactly one value")),
        }
    }
}


/// What the store held before an instantiation, to roll back to.
struct Mark {
    funcs: usize,
    memories: usize,
    tables: usize,
    globals: usize,
    tags: usize,
    table_elements: u64,
    /// The module's code was not yet mapped into this store's VM.
    new_code: bool,
    /// The new instance's vmctx block and its size, once allocated.
    vmctx: Option<(*mut u8, usize)>,
}
