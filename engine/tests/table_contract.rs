//! The exception check after indirect calls, and the table contract that lets most modules do
//! without it (`wasce_compiler::TableContract`): which modules compile without the check, what
//! an artifact records, and the link error that keeps a function that may throw out of a table
//! whose owner relies on it. The behaviour across modules is in
//! `spec-tests/wast/exceptions/table_contract.wast`.

use wasce_engine::{Error, Extern, Isolation, Linker, Settings, Store, StoreConfig};

fn load(wat: &str) -> wasce_engine::Module {
    wasce_engine::load(&wat::parse_str(wat).unwrap(), &Settings::default()).unwrap()
}

/// What a C program looks like: WASI imports, an exported table filled by a segment.
const C_PROGRAM: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (type $v (func (result i32)))
  (memory (export "memory") 1)
  (table (export "__indirect_function_table") 2 funcref)
  (func $f (result i32) (call $w (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
  (elem (i32.const 1) $f)
  (func (export "_start") (drop (call_indirect (type $v) (i32.const 1)))))"#;

#[test]
fn exported_table_does_not_cost_a_check() {
    let m = load(C_PROGRAM);
    let t = &m.compiled.tables;
    assert!(t.nothrow_tables, "a closed module with an exported table needs no check: {t:?}");
    assert_eq!(t.writes, None);
    assert!(t.may_throw.iter().all(|b| !b), "{t:?}");
}

#[test]
fn routes_in_cost_the_check() {
    // A function that throws in the table; a funcref parameter of an export; an imported
    // table; a struct parameter (which may carry a function reference).
    for (what, wat) in [
        ("a thrower in the table", r#"(module (tag $e) (table (export "t") 1 funcref) (func $b (throw $e)) (elem (i32.const 0) $b))"#),
        ("a funcref parameter", r#"(module (table (export "t") 1 funcref) (func (export "put") (param funcref) (table.set 0 (i32.const 0) (local.get 0))))"#),
        ("an imported table", r#"(module (import "m" "t" (table 1 funcref)))"#),
        ("a struct parameter", r#"(module (type $s (struct (field funcref))) (func (export "f") (param (ref null $s))))"#),
        ("an anyref table", r#"(module (table (export "t") 1 anyref))"#),
    ] {
        assert!(!load(wat).compiled.tables.nothrow_tables, "{what}");
    }
}

#[test]
fn the_contract_survives_an_artifact() {
    let dir = std::env::temp_dir().join(format!("wasce-table-contract-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.cwasm");
    let bytes = wasce_engine::compile_to_artifact(&wat::parse_str(C_PROGRAM).unwrap(), &Settings::default()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let loaded = wasce_engine::load_artifact(&path).unwrap();
    assert_eq!(loaded.compiled.tables, load(C_PROGRAM).compiled.tables);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_thrower_cannot_join_a_nothrow_table() {
    let mut store = Store::new(StoreConfig { isolation: Isolation::Process, ..StoreConfig::default() }).unwrap();
    let owner = load(r#"(module (table (export "t") 2 funcref))"#);
    let owner = Linker::new().instantiate(&mut store, &owner).unwrap();
    let Some(Extern::Table(t)) = store.export(owner, "t") else { panic!("no table") };
    let mut linker = Linker::new();
    linker.define("c", "t", Extern::Table(t));
    let thrower = load(r#"(module (import "c" "t" (table 2 funcref)) (tag $e) (func $b (throw $e)) (elem (i32.const 0) $b))"#);
    match linker.instantiate(&mut store, &thrower) {
        Err(Error::Link(msg)) => assert!(msg.contains("`c::t`") && msg.contains("no function that may throw"), "{msg}"),
        other => panic!("expected a link error, got {:?}", other.map(|_| ())),
    }
    // The table is untouched, and a module that cannot throw still links.
    assert_eq!(store.table_get(t, 0), Some(wasce_engine::Val::FuncRef(0)));
    let fine = load(r#"(module (import "c" "t" (table 2 funcref)) (func $f) (elem (i32.const 0) $f))"#);
    linker.instantiate(&mut store, &fine).unwrap();
}
