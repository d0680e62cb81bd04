//! Name resolution of imports: a map from (module, name) to externs of one store.

use crate::error::Error;
use crate::store::{Extern, InstanceId, Module, Store};
use std::collections::HashMap;

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
