//! Name resolution of imports: a map from (module, name) to externs of one store.

use crate::error::Error;
use crate::store::{Extern, InstanceId, Module, Store};
use std::collections::HashMap;
use std::sync::Arc;
use wasce_compiler::module::ImportKind;

#[derive(Default, Clone)]
pub struct Linker {
    defs: HashMap<(String, String), Extern>,
}

impl Linker {
    pub fn new() -> Linker {
        Linker::default()
    }

    pub fn define(&mut self, module: &str, name: &str, ext: Extern) {
        self.defs.insert((module.to_string(), name.to_string()), ext);
    }

    /// Make every export of `instance` importable as `module::export`.
    pub fn define_instance(&mut self, store: &Store, module: &str, instance: InstanceId) {
        for (name, ext) in store.exports(instance) {
            self.define(module, &name, ext);
        }
    }

    pub fn get(&self, module: &str, name: &str) -> Option<Extern> {
        self.defs.get(&(module.to_string(), name.to_string())).copied()
    }

    /// Define every function import of `module` that nothing defines yet as a host function
    /// that fails when called, naming the import (wasmtime's `unknown-imports-trap`): reactors
    /// often import hooks they never call. Other kinds of imports stay unresolved.
    pub fn define_unknown_imports_as_traps(&mut self, store: &mut Store, module: &Module) {
        let info = &module.compiled.info;
        for import in &info.imports {
            let ImportKind::Func(ty) = import.kind else { continue };
            if self.get(&import.module, &import.name).is_some() {
                continue;
            }
            let Some(ty) = info.types.get(ty as usize) else { continue };
            let what = format!("`{}::{}`", import.module, import.name);
            let f = store.new_host_func(
                ty.clone(),
                Arc::new(move |_, _, _| Err(Error::Host(format!("unknown import {what} was called: nothing defines it (it was linked by unknown-imports-trap)")))),
            );
            self.define(&import.module, &import.name, Extern::Func(f));
        }
    }

    /// Resolve `module`'s imports by name and instantiate it.
    pub fn instantiate(&self, store: &mut Store, module: &Module) -> Result<InstanceId, Error> {
        let mut imports = Vec::new();
        for import in &module.compiled.info.imports {
            match self.get(&import.module, &import.name) {
                Some(ext) => imports.push(ext),
                None => return Err(Error::Link(format!("unknown import: `{}::{}` has not been defined", import.module, import.name))),
            }
        }
        store.instantiate(module, &imports)
    }
}
