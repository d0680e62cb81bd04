//! Canonical function type ids, shared by every store in the process: `call_indirect` compares
//! the id in the callee's `VMFuncRef` with the id of the expected type.

use std::collections::HashMap;
use std::sync::Mutex;
use wasce_compiler::module::FuncType;

static TYPES: Mutex<Option<HashMap<FuncType, u64>>> = Mutex::new(None);

/// The canonical id of a function type (never 0, so a zeroed funcref never matches).
pub fn type_id(ty: &FuncType) -> u64 {
    let mut guard = TYPES.lock().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    let next = map.len() as u64 + 1;
    *map.entry(ty.clone()).or_insert(next)
}
