//! Tail calls and typed function references, in the KVM guest and in process mode: a chain of
//! a million tail calls runs in constant stack (direct, indirect, through a reference, with
//! stack arguments), ordinary recursion still ends in `call stack exhausted`, fuel is charged
//! across tail calls, null references trap, and the embedder cannot pass a function reference
//! of the wrong type. Needs /dev/kvm (fails loudly without it).

use wasce_engine::{Error, Extern, Isolation, Linker, Settings, Store, StoreConfig, Trap, Val};

const MODULE: &str = r#"
(module
  (type $ii (func (param i64) (result i32)))
  (table $t 2 funcref)
  (elem (table $t) (i32.const 0) func $even_i $odd_i)
  (elem declare func $even_r $odd_r)
  (func $even (export "even") (param i64) (result i32)
    (if (result i32) (i64.eqz (local.get 0)) (then (i32.const 44))
      (else (return_call $odd (i64.sub (local.get 0) (i64.const 1))))))
  (func $odd (param i64) (result i32)
    (if (result i32) (i64.eqz (local.get 0)) (then (i32.const 99))
      (else (return_call $even (i64.sub (local.get 0) (i64.const 1))))))
  (func $even_i (export "even_indirect") (type $ii)
    (if (result i32) (i64.eqz (local.get 0)) (then (i32.const 44))
      (else (return_call_indirect $t (type $ii) (i64.sub (local.get 0) (i64.const 1)) (i32.const 1)))))
  (func $odd_i (type $ii)
    (if (result i32) (i64.eqz (local.get 0)) (then (i32.const 99))
      (else (return_call_indirect $t (type $ii) (i64.sub (local.get 0) (i64.const 1)) (i32.const 0)))))
  (func $even_r (export "even_ref") (type $ii)
    (if (result i32) (i64.eqz (local.get 0)) (then (i32.const 44))
      (else (return_call_ref $ii (i64.sub (local.get 0) (i64.const 1)) (ref.func $odd_r)))))
  (func $odd_r (type $ii)
    (if (result i32) (i64.eqz (local.get 0)) (then (i32.const 99))
      (else (return_call_ref $ii (i64.sub (local.get 0) (i64.const 1)) (ref.func $even_r)))))
  ;; Ten parameters (four on the stack) alternating with two: the stack-argument area changes size.
  (func $many (export "many") (param i64 i64 i64 i64 i64 i64 i64 i64 i64 i64) (result i64)
    (if (result i64) (i64.eqz (local.get 0)) (then (i64.add (local.get 9) (local.get 8)))
      (else (return_call $few (i64.sub (local.get 0) (i64.const 1)) (local.get 9)))))
  (func $few (param i64 i64) (result i64)
    (return_call $many (local.get 0) (i64.const 1) (i64.const 2) (i64.const 3) (i64.const 4)
      (i64.const 5) (i64.const 6) (i64.const 7) (i64.const 8) (i64.add (local.get 1) (i64.const 1))))
  (func $recurse (export "recurse") (param i64) (result i64)
    (i64.add (i64.const 1) (call $recurse (local.get 0))))
  (func (export "null_call_ref") (result i32)
    (call_ref $ii (i64.const 0) (ref.null $ii)))
  (func (export "null_as_non_null")
    (drop (ref.as_non_null (ref.null func))))
  (func (export "get_even_ref") (result (ref $ii)) (ref.func $even_r))
  (func (export "get_other_ref") (result funcref) (ref.func $many))
  (func (export "call_typed") (param (ref $ii)) (result i32)
    (call_ref $ii (i64.const 10) (local.get 0)))
  (global (export "g") (mut (ref null $ii)) (ref.null $ii))
  (func (export "ok") (result i32) (i32.const 42))
)
"#;

fn setup(isolation: Isolation, fuel: Option<u64>) -> (Store, wasce_engine::InstanceId) {
    let settings = Settings { consume_fuel: fuel.is_some(), ..Settings::default() };
    let module = wasce_engine::load(&wat::parse_str(MODULE).unwrap(), &settings).unwrap();
    let mut store = Store::new(StoreConfig { isolation, fuel, ..StoreConfig::default() }).expect("create store");
    let instance = Linker::new().instantiate(&mut store, &module).unwrap();
    (store, instance)
}

fn call(store: &mut Store, instance: wasce_engine::InstanceId, name: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
    let Some(Extern::Func(f)) = store.export(instance, name) else { panic!("no export {name}") };
    store.call(f, args)
}

fn trap_of(r: Result<Vec<Val>, Error>) -> Trap {
    match r {
        Err(Error::Trap(t)) => t.trap,
        other => panic!("expected a trap, got {other:?}"),
    }
}

const MODES: [Isolation; 2] = [Isolation::Kvm, Isolation::Process];

#[test]
fn a_million_tail_calls_run_in_constant_stack() {
    for isolation in MODES {
        let (mut store, inst) = setup(isolation, None);
        for name in ["even", "even_indirect", "even_ref"] {
            assert_eq!(call(&mut store, inst, name, &[Val::I64(1_000_000)]).unwrap(), vec![Val::I32(44)], "{name} {isolation:?}");
            assert_eq!(call(&mut store, inst, name, &[Val::I64(1_000_001)]).unwrap(), vec![Val::I32(99)], "{name} {isolation:?}");
        }
        let mut args = vec![Val::I64(1_000_000)];
        args.extend((0..9).map(|_| Val::I64(0)));
        assert_eq!(call(&mut store, inst, "many", &args).unwrap(), vec![Val::I64(1_000_008)], "{isolation:?}");
    }
}

#[test]
fn recursion_still_exhausts_the_stack() {
    for isolation in MODES {
        let (mut store, inst) = setup(isolation, None);
        assert_eq!(trap_of(call(&mut store, inst, "recurse", &[Val::I64(0)])), Trap::StackOverflow, "{isolation:?}");
        assert_eq!(call(&mut store, inst, "ok", &[]).unwrap(), vec![Val::I32(42)]);
    }
}

#[test]
fn fuel_is_charged_across_tail_calls() {
    for isolation in MODES {
        // Each step of even/odd is about eight operators: 1000 fuel cannot pay for 100,000.
        let (mut store, inst) = setup(isolation, Some(1000));
        assert_eq!(trap_of(call(&mut store, inst, "even", &[Val::I64(100_000)])), Trap::OutOfFuel, "{isolation:?}");
        let (mut store, inst) = setup(isolation, Some(10_000_000));
        assert_eq!(call(&mut store, inst, "even_ref", &[Val::I64(100_000)]).unwrap(), vec![Val::I32(44)]);
        let used = 10_000_000 - store.fuel_remaining();
        assert!((500_000..2_000_000).contains(&used), "{used} fuel for 100,000 tail calls in {isolation:?}");
    }
}

#[test]
fn null_references_trap() {
    for isolation in MODES {
        let (mut store, inst) = setup(isolation, None);
        let t = trap_of(call(&mut store, inst, "null_call_ref", &[]));
        assert_eq!((t, t.message()), (Trap::NullFunctionReference, "null function reference"));
        let t = trap_of(call(&mut store, inst, "null_as_non_null", &[]));
        assert_eq!((t, t.message()), (Trap::NullReference, "null reference"));
    }
}

#[test]
fn typed_arguments_from_the_embedder_are_checked() {
    for isolation in MODES {
        let (mut store, inst) = setup(isolation, None);
        let good = call(&mut store, inst, "get_even_ref", &[]).unwrap();
        assert_eq!(call(&mut store, inst, "call_typed", &good).unwrap(), vec![Val::I32(44)]);
        let other = call(&mut store, inst, "get_other_ref", &[]).unwrap();
        assert!(matches!(call(&mut store, inst, "call_typed", &other), Err(Error::Usage(_))), "wrong type accepted");
        assert!(matches!(call(&mut store, inst, "call_typed", &[Val::FuncRef(0)]), Err(Error::Usage(_))), "null accepted");
        assert!(matches!(call(&mut store, inst, "call_typed", &[Val::FuncRef(good_addr(&good) + 8)]), Err(Error::Usage(_))), "bad address accepted");
        let Some(Extern::Global(g)) = store.export(inst, "g") else { panic!("no global") };
        store.global_set(g, good[0]).unwrap();
        store.global_set(g, Val::FuncRef(0)).unwrap();
        assert!(store.global_set(g, other[0]).is_err(), "global of another function type accepted");
    }
}

fn good_addr(v: &[Val]) -> u64 {
    match v {
        [Val::FuncRef(a)] => *a,
        other => panic!("not a funcref: {other:?}"),
    }
}
