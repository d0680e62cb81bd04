//! Rejected modules carry the validator's message and byte offset; the explicit-bounds-check
//! setting (for hosts without guard pages) traps exactly like guard pages do.

use wasce_engine::{BoundsChecks, Error, Extern, Isolation, Linker, Settings, Store, StoreConfig, Trap, Val};

fn compile_err(bytes: &[u8]) -> String {
    match wasce_engine::load(bytes, &Settings::default()) {
        Err(Error::Compile(e)) => e.to_string(),
        Err(other) => panic!("expected a compile error, got {other}"),
        Ok(_) => panic!("the module should have been rejected"),
    }
}

#[test]
fn invalid_module_reports_message_and_offset() {
    let wasm = wat::parse_str(r#"(module (func (result i32) (i64.const 1)))"#).unwrap();
    let msg = compile_err(&wasm);
    assert!(msg.contains("type mismatch") && msg.contains("offset 0x"), "{msg}");
}

#[test]
fn malformed_module_reports_message_and_offset() {
    let msg = compile_err(b"\0asm\x01\0\0\0\x01\x05\x01\x60\x00");
    assert!(msg.contains("offset 0x"), "{msg}");
    let msg = compile_err(b"\0wasm");
    assert!(msg.contains("magic") || msg.contains("offset"), "{msg}");
}

#[test]
fn explicit_bounds_checks_trap_like_guard_pages() {
    let src = r#"(module (memory 1)
        (func (export "load") (param i32) (result i32) (i32.load offset=4 (local.get 0)))
        (func (export "store") (param i32) (i64.store (local.get 0) (i64.const 7))))"#;
    let settings = Settings { bounds_checks: BoundsChecks::Explicit, ..Settings::default() };
    let module = wasce_engine::load(&wat::parse_str(src).unwrap(), &settings).unwrap();
    for isolation in [Isolation::Kvm, Isolation::Process] {
        let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).unwrap();
        let inst = Linker::new().instantiate(&mut store, &module).unwrap();
        let Some(Extern::Func(load)) = store.export(inst, "load") else { panic!() };
        let Some(Extern::Func(st)) = store.export(inst, "store") else { panic!() };
        assert_eq!(store.call(load, &[Val::I32(65532 - 4)]).unwrap(), vec![Val::I32(0)]);
        for (f, arg) in [(load, 65532 - 3), (load, -1), (st, 65529), (st, i32::MAX)] {
            let r = store.call(f, &[Val::I32(arg)]);
            assert!(matches!(r, Err(Error::Trap(ref t)) if t.trap == Trap::MemoryOutOfBounds), "{isolation:?} {arg}: {r:?}");
        }
        store.call(st, &[Val::I32(65528)]).unwrap();
        assert_eq!(store.call(load, &[Val::I32(65524)]).unwrap(), vec![Val::I32(7)]);
    }
}
