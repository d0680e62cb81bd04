//! The threads proposal in a one-thread store: atomics trap like plain accesses under explicit
//! bounds checks, `memory.atomic.wait` sleeps for its timeout and no longer than the call's
//! deadline, and extended constant expressions read imported globals. Needs /dev/kvm.

use std::time::{Duration, Instant};
use wasce_engine::{BoundsChecks, Error, Extern, FuncId, Isolation, Linker, Settings, Store, StoreConfig, Trap, Val};

const ATOMICS: &str = r#"(module (memory 1 1 shared)
    (func (export "load") (param i32) (result i32) (i32.atomic.load offset=4 (local.get 0)))
    (func (export "add") (param i32) (result i64) (i64.atomic.rmw.add (local.get 0) (i64.const 1)))
    (func (export "cas") (param i32) (result i32) (i32.atomic.rmw16.cmpxchg_u (local.get 0) (i32.const 0) (i32.const 1)))
    (func (export "store") (param i32) (i64.atomic.store32 (local.get 0) (i64.const 7)))
    (func (export "notify") (param i32) (result i32) (memory.atomic.notify (local.get 0) (i32.const 1)))
    (func (export "wait") (param i32 i64) (result i32) (memory.atomic.wait32 (local.get 0) (i32.const 0) (local.get 1))))"#;

fn func(store: &Store, inst: wasce_engine::InstanceId, name: &str) -> FuncId {
    let Some(Extern::Func(f)) = store.export(inst, name) else { panic!("no {name}") };
    f
}

fn trap_of(r: Result<Vec<Val>, Error>) -> Option<Trap> {
    match r {
        Err(Error::Trap(t)) => Some(t.trap),
        _ => None,
    }
}

#[test]
fn atomics_check_alignment_then_bounds_in_both_bounds_modes() {
    for bounds_checks in [BoundsChecks::GuardPages, BoundsChecks::Explicit] {
        let settings = Settings { bounds_checks, ..Settings::default() };
        let module = wasce_engine::load(&wat::parse_str(ATOMICS).unwrap(), &settings).unwrap();
        for isolation in [Isolation::Kvm, Isolation::Process] {
            let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).unwrap();
            let inst = Linker::new().instantiate(&mut store, &module).unwrap();
            let (load, add, cas, st, notify, wait) =
                (func(&store, inst, "load"), func(&store, inst, "add"), func(&store, inst, "cas"), func(&store, inst, "store"), func(&store, inst, "notify"), func(&store, inst, "wait"));
            let what = format!("{bounds_checks:?} {isolation:?}");
            let oob = Some(Trap::MemoryOutOfBounds);
            let unaligned = Some(Trap::HeapMisaligned);
            for (f, arg, want) in [
                (load, 65528, None),
                (load, 65532, oob),
                (load, -4, oob),
                (load, 65533, unaligned),
                (load, 2, unaligned),
                (add, 65536, oob),
                (add, 65532, unaligned),
                (add, i32::MIN, oob),
                (cas, 65536, oob),
                (cas, 65535, unaligned),
                (st, 65536, oob),
                (st, 65532, None),
                (notify, 65536, oob),
                (notify, 65534, unaligned),
            ] {
                let r = store.call(f, &[Val::I32(arg)]);
                match want {
                    None => assert!(r.is_ok(), "{what} {arg}: {r:?}"),
                    Some(t) => assert_eq!(trap_of(r), Some(t), "{what} {arg}"),
                }
            }
            assert_eq!(trap_of(store.call(wait, &[Val::I32(65536), Val::I64(0)])), oob, "{what}");
            assert_eq!(store.call(add, &[Val::I32(8)]).unwrap(), vec![Val::I64(0)]);
            assert_eq!(store.call(add, &[Val::I32(8)]).unwrap(), vec![Val::I64(1)]);
            assert_eq!(store.call(load, &[Val::I32(65528)]).unwrap(), vec![Val::I32(7)]);
            assert_eq!(store.call(notify, &[Val::I32(0)]).unwrap(), vec![Val::I32(0)]);
        }
    }
}

#[test]
fn wait_sleeps_for_its_timeout_in_both_modes() {
    let module = wasce_engine::load(&wat::parse_str(ATOMICS).unwrap(), &Settings::default()).unwrap();
    for isolation in [Isolation::Kvm, Isolation::Process] {
        let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).unwrap();
        let inst = Linker::new().instantiate(&mut store, &module).unwrap();
        let wait = func(&store, inst, "wait");
        let start = Instant::now();
        assert_eq!(store.call(wait, &[Val::I32(0), Val::I64(30_000_000)]).unwrap(), vec![Val::I32(2)]);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(30) && took < Duration::from_secs(2), "{isolation:?}: {took:?}");
    }
}

#[test]
fn an_endless_wait_ends_at_the_deadline() {
    let module = wasce_engine::load(&wat::parse_str(ATOMICS).unwrap(), &Settings::default()).unwrap();
    let limit = Duration::from_millis(200);
    let config = StoreConfig { isolation: Isolation::Kvm, timeout: Some(limit), ..StoreConfig::default() };
    let mut store = Store::new(config).unwrap();
    let inst = Linker::new().instantiate(&mut store, &module).unwrap();
    let wait = func(&store, inst, "wait");
    for timeout in [-1, i64::MAX, 10_000_000_000] {
        let start = Instant::now();
        let r = store.call(wait, &[Val::I32(0), Val::I64(timeout)]);
        let took = start.elapsed();
        let Err(Error::Trap(t)) = r else { panic!("{timeout}: {r:?}") };
        assert_eq!(t.trap, Trap::Interrupt);
        assert!(took >= limit && took < 3 * limit, "{timeout}: stopped after {took:?}");
    }
    // A short wait under the deadline still returns.
    assert_eq!(store.call(wait, &[Val::I32(0), Val::I64(1_000_000)]).unwrap(), vec![Val::I32(2)]);
}

#[test]
fn extended_constants_read_imported_globals() {
    let src = r#"(module
        (global $g (import "env" "g") i64)
        (global (export "x") i64 (i64.add (i64.mul (global.get $g) (i64.const 3)) (i64.const -1)))
        (global (export "y") i32 (i32.sub (i32.const 5) (i32.const 7))))"#;
    let wasm = wat::parse_str(src).unwrap();
    let compiled = wasce_engine::load(&wasm, &Settings::default()).unwrap();
    for isolation in [Isolation::Kvm, Isolation::Process] {
        let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).unwrap();
        let g = store.new_global(wasce_compiler::module::GlobalType { ty: wasce_compiler::module::WasmType::I64, mutable: false }, Val::I64(14)).unwrap();
        let mut linker = Linker::new();
        linker.define("env", "g", Extern::Global(g));
        let inst = linker.instantiate(&mut store, &compiled).unwrap();
        let get = |store: &Store, name: &str| match store.export(inst, name) {
            Some(Extern::Global(g)) => store.global_get(g),
            _ => panic!("no {name}"),
        };
        assert_eq!(get(&store, "x"), Val::I64(41));
        assert_eq!(get(&store, "y"), Val::I32(-2));
    }
}

/// `threads.wast` (beside this file): bounds and alignment of every atomic family, wait and
/// notify on shared and unshared memories, shared-memory import matching, extended constants.
#[test]
fn edge_script_passes_in_both_modes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/threads.wast");
    for isolation in [Isolation::Kvm, Isolation::Process] {
        let o = wasce_engine::wast::run_file(&path, isolation).unwrap();
        assert!(o.failed == 0 && o.passed > 40, "{isolation:?}: {:?}", o.failures);
    }
}

/// The proposals' own scripts: threads, extended-const and relaxed-simd, and the relaxed-SIMD
/// and extended-const scripts of the 3.0 suite that need nothing else. The only failures are
/// threads/imports.wast's three `multiple tables` assertions, from before WebAssembly 2.0
/// allowed several tables.
#[test]
fn proposal_scripts_pass() {
    let suite = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testsuite/proposals");
    let mut files = Vec::new();
    for dir in ["threads", "extended-const", "relaxed-simd"] {
        for e in std::fs::read_dir(suite.join(dir)).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    for e in std::fs::read_dir(suite.join("wasm-3.0")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.contains("relaxed") {
            files.push(p);
        }
    }
    assert!(files.len() >= 21, "{files:?}");
    for isolation in [Isolation::Kvm, Isolation::Process] {
        for f in &files {
            // A proposal's own scripts are written against 2.0 plus that proposal (the threads
            // scripts predate multi-memory; the extended-const ones, GC's `global.get` of
            // defined globals); the wasm-3.0 copies against 3.0.
            use wasce_engine::Features;
            let path = f.to_string_lossy();
            let features = [("/threads/", Features::THREADS), ("/extended-const/", Features::EXTENDED_CONST), ("/relaxed-simd/", Features::RELAXED_SIMD)]
                .iter()
                .find(|(dir, _)| path.contains(dir))
                .map_or(Features::all(), |(_, f)| *f);
            let settings = wasce_engine::Settings { features, ..Default::default() };
            let o = wasce_engine::wast::run_file_with(f, isolation, settings).unwrap();
            let lines: Vec<u32> = o.failures.iter().map(|(l, _)| *l).collect();
            let expected: &[u32] = if f.ends_with("threads/imports.wast") { &[309, 313, 317] } else { &[] };
            assert_eq!(lines, expected, "{isolation:?} {}: {:?}", f.display(), o.failures);
        }
    }
}
