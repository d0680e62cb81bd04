//! The `spectest` host module every spec script may import.

use std::sync::Arc;
use wasce_compiler::module::{FuncType, GlobalType, MemoryType, TableType, WasmType};
use crate::{Error, Extern, Linker, Store, Val};

pub fn define(store: &mut Store, linker: &mut Linker) -> Result<(), Error> {
    let funcs: [(&str, &[WasmType]); 7] = [
        ("print", &[]),
        ("print_i32", &[WasmType::I32]),
        ("print_i64", &[WasmType::I64]),
        ("print_f32", &[WasmType::F32]),
        ("print_f64", &[WasmType::F64]),
        ("print_i32_f32", &[WasmType::I32, WasmType::F32]),
        ("print_f64_f64", &[WasmType::F64, WasmType::F64]),
    ];
    for (name, params) in funcs {
        let ty = FuncType { params: params.to_vec(), results: vec![] };
        let f = store.new_host_func(ty, Arc::new(|_, _, _| Ok(())));
        linker.define("spectest", name, Extern::Func(f));
    }
    let globals = [
        ("global_i32", WasmType::I32, Val::I32(666)),
        ("global_i64", WasmType::I64, Val::I64(666)),
        ("global_f32", WasmType::F32, Val::F32(666.6f32.to_bits())),
        ("global_f64", WasmType::F64, Val::F64(666.6f64.to_bits())),
    ];
    for (name, ty, v) in globals {
        let g = store.new_global(GlobalType { ty, mutable: false }, v)?;
        linker.define("spectest", name, Extern::Global(g));
    }
    let table = store.new_table(TableType { elem: WasmType::FuncRef, min: 10, max: Some(20), table64: false }, Val::FuncRef(0))?;
    linker.define("spectest", "table", Extern::Table(table));
    let table64 = store.new_table(TableType { elem: WasmType::FuncRef, min: 10, max: Some(20), table64: true }, Val::FuncRef(0))?;
    linker.define("spectest", "table64", Extern::Table(table64));
    let memory = store.new_memory(MemoryType { min: 1, max: Some(2), shared: false, memory64: false })?;
    linker.define("spectest", "memory", Extern::Memory(memory));
    // The threads proposal's scripts import a shared memory.
    let shared = store.new_memory(MemoryType { min: 1, max: Some(2), shared: true, memory64: false })?;
    linker.define("spectest", "shared_memory", Extern::Memory(shared));
    Ok(())
}
