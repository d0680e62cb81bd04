//! Process-mode builtins: the `extern "C"` functions whose addresses fill the builtin table that
//! compiled code calls through `vmctx.builtins`. Each finds the running store (a thread-local
//! set while compiled code runs) and the calling instance (`vmctx.instance_id`), then defers to
//! the `Store` method of the same name. They never unwind: failures are returned as status codes
//! that compiled code turns into traps.

use crate::store::{InstanceId, Store};
use std::cell::Cell;
use std::sync::OnceLock;
use wasce_compiler::builtins::Builtin;
use wasce_compiler::vmctx;

thread_local! {
    static STORE: Cell<*mut Store> = const { Cell::new(std::ptr::null_mut()) };
}

/// Make `store` the running store of this thread; returns the previous one.
pub(crate) fn enter_store(store: &mut Store) -> *mut Store {
    STORE.replace(store)
}

pub(crate) fn leave_store(prev: *mut Store) {
    STORE.set(prev);
}

/// Run `f` on the running store and the instance owning `vmctx`.
fn with_store<R>(vmctx: *mut u8, fail: R, f: impl FnOnce(&mut Store, InstanceId) -> R) -> R {
    let store = STORE.get();
    if store.is_null() {
        return fail;
    }
    // SAFETY: compiled code only runs inside `Store::call`, which set STORE to a store that is
    // not otherwise used until the call returns; `vmctx` is the caller's live vmctx.
    let (store, id) = unsafe { (&mut *store, (vmctx.add(vmctx::INSTANCE_ID as usize) as *const u64).read()) };
    f(store, InstanceId(id as u32))
}

fn status(r: Result<(), wasce_compiler::Trap>) -> u64 {
    r.is_err() as u64
}

unsafe extern "C" fn memory_grow(vm: *mut u8, mem: u64, delta: u64) -> u64 {
    with_store(vm, u64::MAX, |s, i| s.memory_grow(i, mem as u32, delta))
}
unsafe extern "C" fn memory_fill(vm: *mut u8, mem: u64, dst: u64, val: u64, len: u64) -> u64 {
    with_store(vm, 1, |s, i| status(s.memory_fill(i, mem as u32, dst, val, len)))
}
unsafe extern "C" fn memory_copy(vm: *mut u8, dm: u64, sm: u64, dst: u64, src: u64, len: u64) -> u64 {
    with_store(vm, 1, |s, i| status(s.memory_copy(i, dm as u32, sm as u32, dst, src, len)))
}
unsafe extern "C" fn memory_init(vm: *mut u8, mem: u64, data: u64, dst: u64, src: u64, len: u64) -> u64 {
    with_store(vm, 1, |s, i| status(s.memory_init(i, mem as u32, data as u32, dst, src, len)))
}
unsafe extern "C" fn data_drop(vm: *mut u8, data: u64) -> u64 {
    with_store(vm, 0, |s, i| {
        s.data_drop(i, data as u32);
        0
    })
}
unsafe extern "C" fn table_grow(vm: *mut u8, table: u64, delta: u64, init: u64) -> u64 {
    with_store(vm, u64::MAX, |s, i| s.table_grow(i, table as u32, delta, init))
}
unsafe extern "C" fn table_fill(vm: *mut u8, table: u64, dst: u64, val: u64, len: u64) -> u64 {
    with_store(vm, 1, |s, i| status(s.table_fill(i, table as u32, dst, val, len)))
}
unsafe extern "C" fn table_copy(vm: *mut u8, dt: u64, st: u64, dst: u64, src: u64, len: u64) -> u64 {
    with_store(vm, 1, |s, i| status(s.table_copy(i, dt as u32, st as u32, dst, src, len)))
}
unsafe extern "C" fn table_init(vm: *mut u8, table: u64, elem: u64, dst: u64, src: u64, len: u64) -> u64 {
    with_store(vm, 1, |s, i| status(s.table_init(i, table as u32, elem as u32, dst, src, len)))
}
unsafe extern "C" fn elem_drop(vm: *mut u8, elem: u64) -> u64 {
    with_store(vm, 0, |s, i| {
        s.elem_drop(i, elem as u32);
        0
    })
}
unsafe extern "C" fn host_call(vm: *mut u8, func: u64, values: u64) -> u64 {
    with_store(vm, 1, |s, i| s.host_call(i.0, func, values as *mut u128))
}

/// The builtin table, in `Builtin` order.
pub(crate) fn table() -> *const u64 {
    static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            Builtin::ALL
                .iter()
                .map(|b| match b {
                    Builtin::MemoryGrow => memory_grow as *const () as u64,
                    Builtin::MemoryFill => memory_fill as *const () as u64,
                    Builtin::MemoryCopy => memory_copy as *const () as u64,
                    Builtin::MemoryInit => memory_init as *const () as u64,
                    Builtin::DataDrop => data_drop as *const () as u64,
                    Builtin::TableGrow => table_grow as *const () as u64,
                    Builtin::TableFill => table_fill as *const () as u64,
                    Builtin::TableCopy => table_copy as *const () as u64,
                    Builtin::TableInit => table_init as *const () as u64,
                    Builtin::ElemDrop => elem_drop as *const () as u64,
                    Builtin::HostCall => host_call as *const () as u64,
                })
                .collect()
        })
        .as_ptr()
}
