//! Satisfying any module's imports trivially, for running arbitrary modules: functions that
//! return zeros and nulls, and fresh memories, tables and globals of the imported types.

use std::sync::Arc;

use wasce_compiler::module::ImportKind;
use wasce_engine::{Error, Extern, InstanceId, Linker, Module, Store, StoreConfig, Val};

/// A fresh store, and a host object for each import of `module`, in import order.
pub fn store_and_imports(module: &Module, config: StoreConfig) -> Result<(Store, Vec<Extern>), Error> {
    let mut store = Store::new(config)?;
    let info = &module.compiled.info;
    // The store names types by canonical id: imports get the canonical form of their types.
    let canonical = &module.types;
    let bad = |e: String| Error::Usage(format!("import type: {e}"));
    let mut imports = Vec::new();
    for import in &info.imports {
        imports.push(match import.kind {
            ImportKind::Func(type_index) => {
                let ty = canonical.types.get(type_index as usize).cloned().ok_or_else(|| bad(format!("type {type_index}")))?;
                let results = ty.results.clone();
                let f = store.new_host_func(
                    ty,
                    Arc::new(move |_, _, out: &mut [Val]| {
                        for (slot, ty) in out.iter_mut().zip(&results) {
                            *slot = Val::null(*ty);
                        }
                        Ok(())
                    }),
                );
                Extern::Func(f)
            }
            ImportKind::Memory(ty) => Extern::Memory(store.new_memory(ty)?),
            ImportKind::Table(ty) => {
                let ty = canonical.table(ty).map_err(bad)?;
                Extern::Table(store.new_table(ty, Val::null(ty.elem))?)
            }
            ImportKind::Global(ty) => {
                let ty = canonical.global(ty).map_err(bad)?;
                Extern::Global(store.new_global(ty, Val::null(ty.ty))?)
            }
            ImportKind::Tag(type_index) => {
                let ty = canonical.types.get(type_index as usize).cloned().ok_or_else(|| bad(format!("type {type_index}")))?;
                Extern::Tag(store.new_tag(ty)?)
            }
        });
    }
    Ok((store, imports))
}

/// Instantiate through a `Linker`; when two imports share a name (valid wasm, but beyond what a
/// map from names can hold) pass the imports to the store in order instead.
pub fn instantiate(store: &mut Store, module: &Module, imports: &[Extern]) -> Result<InstanceId, Error> {
    let mut linker = Linker::new();
    for (import, ext) in module.compiled.info.imports.iter().zip(imports) {
        if linker.get(&import.module, &import.name).is_some() {
            return store.instantiate(module, imports);
        }
        linker.define(&import.module, &import.name, *ext);
    }
    linker.instantiate(store, module)
}
