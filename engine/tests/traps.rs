//! Every trap kind, raised inside the KVM guest and in process mode, must give the same trap and
//! message; and a trap leaves the store usable. Needs /dev/kvm (fails loudly without it).

use wasce_engine::{Error, Extern, Isolation, Linker, Settings, Store, StoreConfig, Trap, Val};

const MODULE: &str = r#"
(module
  (type $v (func))
  (type $i (func (result i32)))
  (memory 1)
  (table 2 funcref)
  (elem (i32.const 0) $ok_fn)
  (func $ok_fn (type $v))
  (func (export "ok") (result i32) (i32.const 42))
  (func $deep (export "oob") (result i32) (i32.load (i32.const 70000)))
  (func (export "oob_store") (i32.store8 (i32.const 65536) (i32.const 1)))
  (func (export "unreachable") (unreachable))
  (func (export "div_zero") (result i32) (i32.div_s (i32.const 1) (i32.const 0)))
  (func (export "overflow") (result i32) (i32.div_s (i32.const 0x80000000) (i32.const -1)))
  (func (export "bad_conversion") (result i32) (i32.trunc_f32_s (f32.const nan)))
  (func (export "conversion_overflow") (result i32) (i32.trunc_f64_u (f64.const 1e20)))
  (func (export "null_call") (call_indirect (type $v) (i32.const 1)))
  (func (export "type_mismatch") (result i32) (call_indirect (type $i) (i32.const 0)))
  (func (export "table_oob") (call_indirect (type $v) (i32.const 5)))
  (func (export "table_get_oob") (drop (table.get 0 (i32.const 9))))
  (func (export "memory_fill_oob") (memory.fill (i32.const 65000) (i32.const 0) (i32.const 1000)))
  (func $recurse (export "exhaust") (call $recurse))
  (func (export "nested") (result i32) (call $deep))
)
"#;

fn run(isolation: Isolation, export: &str) -> Result<Vec<Val>, Error> {
    let module = wasce_engine::load(&wat::parse_str(MODULE).unwrap(), &Settings::default()).unwrap();
    let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).expect("create store");
    let instance = Linker::new().instantiate(&mut store, &module).unwrap();
    let Some(Extern::Func(f)) = store.export(instance, export) else { panic!("no export {export}") };
    let result = store.call(f, &[]);
    // The store keeps working after a trap.
    let Some(Extern::Func(ok)) = store.export(instance, "ok") else { panic!() };
    assert_eq!(store.call(ok, &[]).unwrap(), vec![Val::I32(42)], "store unusable after {export} in {isolation:?}");
    result
}

fn expect_trap(export: &str, trap: Trap, message: &str) {
    for isolation in [Isolation::Kvm, Isolation::Process] {
        match run(isolation, export) {
            Err(Error::Trap(t)) => {
                assert_eq!(t.trap, trap, "{export} in {isolation:?}");
                assert_eq!(t.to_string(), format!("wasm trap: {message}"), "{export} in {isolation:?}");
            }
            other => panic!("{export} in {isolation:?}: expected trap `{message}`, got {other:?}"),
        }
    }
}

#[test]
fn out_of_bounds_load_and_store() {
    expect_trap("oob", Trap::MemoryOutOfBounds, "out of bounds memory access");
    expect_trap("oob_store", Trap::MemoryOutOfBounds, "out of bounds memory access");
    expect_trap("memory_fill_oob", Trap::MemoryOutOfBounds, "out of bounds memory access");
}

#[test]
fn unreachable() {
    expect_trap("unreachable", Trap::UnreachableCodeReached, "unreachable");
}

#[test]
fn integer_traps() {
    expect_trap("div_zero", Trap::IntegerDivisionByZero, "integer divide by zero");
    expect_trap("overflow", Trap::IntegerOverflow, "integer overflow");
    expect_trap("bad_conversion", Trap::BadConversionToInteger, "invalid conversion to integer");
    expect_trap("conversion_overflow", Trap::IntegerOverflow, "integer overflow");
}

#[test]
fn indirect_calls() {
    expect_trap("null_call", Trap::IndirectCallToNull, "uninitialized element");
    expect_trap("type_mismatch", Trap::BadSignature, "indirect call type mismatch");
    expect_trap("table_oob", Trap::TableOutOfBounds, "undefined element");
    expect_trap("table_get_oob", Trap::TableAccessOutOfBounds, "out of bounds table access");
}

#[test]
fn stack_exhaustion() {
    expect_trap("exhaust", Trap::StackOverflow, "call stack exhausted");
}

#[test]
fn backtrace_names_functions_in_both_modes() {
    for isolation in [Isolation::Kvm, Isolation::Process] {
        let Err(Error::Trap(t)) = run(isolation, "nested") else { panic!("expected a trap") };
        assert_eq!(t.backtrace.first().map(String::as_str), Some("deep"), "{isolation:?}: {:?}", t.backtrace);
        assert!(t.backtrace.len() >= 2, "{isolation:?}: {:?}", t.backtrace);
    }
}

#[test]
fn fuel_stops_loops_and_recursion_in_both_modes() {
    let src = r#"(module
        (func (export "spin") (loop (br 0)))
        (func $r (export "recurse") (call $r))
        (func (export "count") (param $n i32) (result i32)
          (local $i i32)
          (block $d (loop $l
            (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $l)))
          (local.get $i)))"#;
    let settings = Settings { consume_fuel: true, ..Settings::default() };
    let module = wasce_engine::load(&wat::parse_str(src).unwrap(), &settings).unwrap();
    for isolation in [Isolation::Kvm, Isolation::Process] {
        let mut store = Store::new(StoreConfig { isolation, fuel: Some(100_000), ..StoreConfig::default() }).unwrap();
        let inst = Linker::new().instantiate(&mut store, &module).unwrap();
        let f = |store: &Store, name: &str| match store.export(inst, name) {
            Some(Extern::Func(f)) => f,
            _ => panic!("{name}"),
        };
        // A short loop fits and consumes fuel deterministically.
        assert_eq!(store.call(f(&store, "count"), &[Val::I32(100)]).unwrap(), vec![Val::I32(100)]);
        let used = 100_000 - store.fuel_remaining();
        assert!(used > 100 && used < 5_000, "{isolation:?}: used {used}");
        store.set_fuel(100_000);
        store.call(f(&store, "count"), &[Val::I32(100)]).unwrap();
        assert_eq!(100_000 - store.fuel_remaining(), used, "fuel use is deterministic");
        for name in ["spin", "recurse"] {
            store.set_fuel(50_000);
            match store.call(f(&store, name), &[]) {
                Err(Error::Trap(t)) => {
                    assert!(t.trap == Trap::OutOfFuel || (name == "recurse" && t.trap == Trap::StackOverflow), "{isolation:?} {name}: {t}");
                    if t.trap == Trap::OutOfFuel {
                        assert_eq!(t.to_string(), "wasm trap: all fuel consumed by WebAssembly");
                    }
                }
                other => panic!("{isolation:?} {name}: {other:?}"),
            }
        }
    }
}
