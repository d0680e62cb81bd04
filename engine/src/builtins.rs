//! Process-mode builtins: the `extern "C"` functions whose addresses fill the builtin table that
//! compiled code calls through `vmctx.builtins`. Each finds the running store (a thread-local
//! set while compiled code runs) and hands its arguments to `dispatch_builtin`, the same entry
//! the VM's hypercalls use. They never unwind: failures are returned as status codes that
//! compiled code turns into traps.

use crate::store::Store;
use std::cell::Cell;
use std::sync::OnceLock;
use wasce_compiler::builtins::Builtin;

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

/// Dispatch builtin `number` to the running store.
fn dispatch(number: Builtin, vmctx: *mut u8, args: [u64; 5]) -> u64 {
    let store = STORE.get();
    if store.is_null() {
        return u64::MAX;
    }
    // SAFETY: compiled code only runs inside `Store::call`, which set STORE to a store that is
    // not otherwise used until the call returns.
    let store = unsafe { &mut *store };
    // From here until the builtin returns, this thread runs host code: a fault is not a trap.
    let _host = crate::process::HostSection::enter();
    crate::store::dispatch_builtin(store, number as u64, vmctx as u64, args)
}

unsafe extern "C" fn memory_grow(vm: *mut u8, a: u64, b: u64) -> u64 {
    dispatch(Builtin::MemoryGrow, vm, [a, b, 0, 0, 0])
}
unsafe extern "C" fn memory_init(vm: *mut u8, a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
    dispatch(Builtin::MemoryInit, vm, [a, b, c, d, e])
}
unsafe extern "C" fn data_drop(vm: *mut u8, a: u64) -> u64 {
    dispatch(Builtin::DataDrop, vm, [a, 0, 0, 0, 0])
}
unsafe extern "C" fn table_grow(vm: *mut u8, a: u64, b: u64, c: u64) -> u64 {
    dispatch(Builtin::TableGrow, vm, [a, b, c, 0, 0])
}
unsafe extern "C" fn table_fill(vm: *mut u8, a: u64, b: u64, c: u64, d: u64) -> u64 {
    dispatch(Builtin::TableFill, vm, [a, b, c, d, 0])
}
unsafe extern "C" fn table_copy(vm: *mut u8, a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
    dispatch(Builtin::TableCopy, vm, [a, b, c, d, e])
}
unsafe extern "C" fn table_init(vm: *mut u8, a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
    dispatch(Builtin::TableInit, vm, [a, b, c, d, e])
}
unsafe extern "C" fn elem_drop(vm: *mut u8, a: u64) -> u64 {
    dispatch(Builtin::ElemDrop, vm, [a, 0, 0, 0, 0])
}
unsafe extern "C" fn host_call(vm: *mut u8, a: u64, b: u64) -> u64 {
    dispatch(Builtin::HostCall, vm, [a, b, 0, 0, 0])
}
unsafe extern "C" fn exn_alloc(vm: *mut u8, a: u64) -> u64 {
    dispatch(Builtin::ExnAlloc, vm, [a, 0, 0, 0, 0])
}

unsafe extern "C" fn memory_atomic_wait(vm: *mut u8, a: u64) -> u64 {
    dispatch(Builtin::MemoryAtomicWait, vm, [a, 0, 0, 0, 0])
}

unsafe extern "C" fn gc_alloc(vm: *mut u8, a: u64) -> u64 {
    dispatch(Builtin::GcAlloc, vm, [a, 0, 0, 0, 0])
}
unsafe extern "C" fn array_new_data(vm: *mut u8, a: u64, b: u64, c: u64, d: u64) -> u64 {
    dispatch(Builtin::ArrayNewData, vm, [a, b, c, d, 0])
}
unsafe extern "C" fn array_new_elem(vm: *mut u8, a: u64, b: u64, c: u64, d: u64) -> u64 {
    dispatch(Builtin::ArrayNewElem, vm, [a, b, c, d, 0])
}
unsafe extern "C" fn array_init_data(vm: *mut u8, a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
    dispatch(Builtin::ArrayInitData, vm, [a, b, c, d, e])
}
unsafe extern "C" fn array_init_elem(vm: *mut u8, a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
    dispatch(Builtin::ArrayInitElem, vm, [a, b, c, d, e])
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
                    // Bounds-checked vector moves on the definitions compiled code passes (its
                    // own base and length, which it reads for every access anyway), as the VM
                    // runs them: no lookup of the store, the instance or the memory.
                    Builtin::MemoryFill => wasce_vmguest::wasi::bulk_memory_routines(host_avx2()).0 as u64,
                    Builtin::MemoryCopy => wasce_vmguest::wasi::bulk_memory_routines(host_avx2()).1 as u64,
                    Builtin::MemoryInit => memory_init as *const () as u64,
                    Builtin::DataDrop => data_drop as *const () as u64,
                    Builtin::TableGrow => table_grow as *const () as u64,
                    Builtin::TableFill => table_fill as *const () as u64,
                    Builtin::TableCopy => table_copy as *const () as u64,
                    Builtin::TableInit => table_init as *const () as u64,
                    Builtin::ElemDrop => elem_drop as *const () as u64,
                    Builtin::HostCall => host_call as *const () as u64,
                    Builtin::MemoryAtomicWait => memory_atomic_wait as *const () as u64,
                    Builtin::ExnAlloc => exn_alloc as *const () as u64,
                    Builtin::GcAlloc => gc_alloc as *const () as u64,
                    Builtin::ArrayNewData => array_new_data as *const () as u64,
                    Builtin::ArrayNewElem => array_new_elem as *const () as u64,
                    Builtin::ArrayInitData => array_init_data as *const () as u64,
                    Builtin::ArrayInitElem => array_init_elem as *const () as u64,
                })
                .collect()
        })
        .as_ptr()
}

/// Whether this CPU has AVX2 and the kernel saves the YMM state: the bulk-memory routines then
/// move 32 bytes at a time (`wasce_vmguest::wasi::bulk_memory_routines`).
pub(crate) fn host_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}
