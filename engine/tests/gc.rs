//! The GC proposal: wasce's own script (`gc.wast`: objects across chunks, casts through the
//! subtype registry, the any/extern representations, constant expressions, the heap limit)
//! in both isolation modes, the `max_gc_heap_bytes` limit, and the embedder's checks of GC
//! values (object addresses are refused as arguments and global values). Needs /dev/kvm.

use std::path::Path;
use wasce_engine::{Error, Extern, Isolation, Linker, Settings, Store, StoreConfig, Trap, Val};

#[test]
fn gc_script_in_both_modes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gc.wast");
    for isolation in [Isolation::Process, Isolation::Kvm] {
        let outcome = wasce_engine::wast::run_file(&path, isolation).unwrap();
        assert!(outcome.failures.is_empty() && outcome.passed > 0, "{isolation:?}: {:?}", outcome.failures);
    }
}

const MODULE: &str = r#"(module
    (type $s (struct (field (mut i32))))
    (type $a (array (mut i64)))
    (global (export "g") (mut anyref) (ref.null any))
    (func (export "new") (result anyref) (struct.new $s (i32.const 7)))
    (func (export "get") (param anyref) (result i32) (struct.get $s 0 (ref.cast (ref $s) (local.get 0))))
    (func (export "kind") (param anyref) (result i32)
      (if (result i32) (ref.test (ref i31) (local.get 0)) (then (i32.const 1))
        (else (if (result i32) (ref.test (ref eq) (local.get 0)) (then (i32.const 2)) (else (i32.const 3))))))
    (func (export "ext") (param externref) (result i32) (call 2 (any.convert_extern (local.get 0))))
    (func (export "alloc") (param $n i32)
      (loop $l
        (drop (array.new_default $a (i32.const 1000)))
        (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))))"#;

fn setup(isolation: Isolation, max_gc_heap_bytes: u64) -> (Store, wasce_engine::InstanceId) {
    let module = wasce_engine::load(&wat::parse_str(MODULE).unwrap(), &Settings::default()).unwrap();
    let mut store = Store::new(StoreConfig { isolation, max_gc_heap_bytes, ..StoreConfig::default() }).unwrap();
    let inst = Linker::new().instantiate(&mut store, &module).unwrap();
    (store, inst)
}

fn call(store: &mut Store, inst: wasce_engine::InstanceId, name: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
    let Some(Extern::Func(f)) = store.export(inst, name) else { panic!("no {name}") };
    store.call(f, args)
}

#[test]
fn the_heap_limit_traps() {
    for isolation in [Isolation::Process, Isolation::Kvm] {
        let (mut store, inst) = setup(isolation, 4 << 20);
        // 8 KB arrays: about 500 fit in 4 MiB.
        assert!(call(&mut store, inst, "alloc", &[Val::I32(100)]).is_ok());
        match call(&mut store, inst, "alloc", &[Val::I32(1000)]) {
            Err(Error::Trap(t)) => assert_eq!(t.trap, Trap::GcHeapOutOfMemory, "{isolation:?}"),
            other => panic!("{isolation:?}: {other:?}"),
        }
    }
}

#[test]
fn embedders_pass_null_i31_and_host_values_but_not_objects() {
    for isolation in [Isolation::Process, Isolation::Kvm] {
        let (mut store, inst) = setup(isolation, 1 << 20);
        let obj = call(&mut store, inst, "new", &[]).unwrap()[0];
        assert!(matches!(obj, Val::AnyRef(a) if a != 0 && a % 8 == 0), "{obj:?}");
        // An object address from the embedder is refused, as an argument and as a global.
        assert!(matches!(call(&mut store, inst, "get", &[obj]), Err(Error::Usage(_))), "{isolation:?}");
        let Some(Extern::Global(g)) = store.export(inst, "g") else { panic!() };
        assert!(store.global_set(g, obj).is_err());
        let Val::AnyRef(raw) = obj else { unreachable!() };
        assert!(matches!(call(&mut store, inst, "ext", &[Val::ExternAny(raw | 1 << 63)]), Err(Error::Usage(_))));
        // i31, host values and null are accepted.
        assert_eq!(call(&mut store, inst, "kind", &[Val::AnyRef(((-3i32 as u32) << 1 | 1) as u64)]).unwrap(), [Val::I32(1)]);
        assert_eq!(call(&mut store, inst, "kind", &[Val::AnyRef(wasce_engine::values::host_any(9))]).unwrap(), [Val::I32(3)]);
        assert_eq!(call(&mut store, inst, "ext", &[Val::ExternRef(Some(9))]).unwrap(), [Val::I32(3)]);
        assert_eq!(call(&mut store, inst, "kind", &[Val::AnyRef(0)]).unwrap(), [Val::I32(3)]);
        store.global_set(g, Val::AnyRef(5)).unwrap();
        // A null cast traps.
        match call(&mut store, inst, "get", &[Val::AnyRef(0)]) {
            Err(Error::Trap(t)) => assert_eq!(t.trap, Trap::CastFailure),
            other => panic!("{other:?}"),
        }
    }
}

/// GC type definitions (a recursion group, a final subtype) and GC constant expressions in
/// globals and element segments survive an artifact, in both modes.
#[test]
fn gc_modules_run_from_artifacts() {
    let wat = r#"(module
      (rec (type $node (sub (struct (field i32) (field (ref null $node))))) (type $f (func (result i32))))
      (type $sub (sub final $node (struct (field i32) (field (ref null $node)) (field i8))))
      (type $pts (array (ref null $node)))
      (global $g (ref $pts) (array.new_fixed $pts 2 (struct.new $node (i32.const 5) (ref.null $node))
        (struct.new $sub (i32.const 6) (ref.null none) (i32.const 300))))
      (elem $e (ref null $node) (item (struct.new_default $node)))
      (func (export "main") (result i32)
        (i32.add (struct.get $node 0 (ref.cast (ref $node) (array.get $pts (global.get $g) (i32.const 1))))
                 (struct.get_u $sub 2 (ref.cast (ref $sub) (array.get $pts (global.get $g) (i32.const 1))))))
      (func (export "elem") (result i32)
        (struct.get $node 0 (array.get $pts (array.new_elem $pts $e (i32.const 0) (i32.const 1)) (i32.const 0)))))"#;
    let bytes = wasce_engine::compile_to_artifact(&wat::parse_str(wat).unwrap(), &Settings::default()).unwrap();
    let path = std::env::temp_dir().join(format!("wasce-gc-{}.cwasm", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let module = wasce_engine::load_artifact(&path);
    let _ = std::fs::remove_file(&path);
    let module = module.unwrap();
    for isolation in [Isolation::Process, Isolation::Kvm] {
        let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).unwrap();
        let inst = Linker::new().instantiate(&mut store, &module).unwrap();
        assert_eq!(call(&mut store, inst, "main", &[]).unwrap(), [Val::I32(50)], "{isolation:?}");
        assert_eq!(call(&mut store, inst, "elem", &[]).unwrap(), [Val::I32(0)], "{isolation:?}");
    }
}
