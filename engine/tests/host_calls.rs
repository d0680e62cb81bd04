//! Host functions as compiled code calls them (`Store::host_call`, the path of every WASI call):
//! arguments and results of every value type arrive and return intact, also past the arity the
//! host keeps on its stack (ten values); a host function that returns values of the wrong type,
//! or panics, is the call's error and the store keeps working. In process mode and in the VM
//! over both transports. Needs /dev/kvm (fails loudly without it).

use std::sync::Arc;
use wasce_compiler::module::WasmType;
use wasce_engine::{
    Caller, Error, Extern, FuncType, HostcallTransport, Isolation, Linker, Settings, Store,
    StoreConfig, Val,
};

/// `wide` takes 12 values and returns 11 (more than the 10 kept inline); `narrow` returns an
/// i64 where its type says i32; `boom` panics.
const MODULE: &str = r#"
(module
  (import "host" "wide" (func $wide (param i32 i64 f32 f64 i32 i64 f32 f64 i32 i64 f32 f64)
                                   (result i64 i32 f64 f32 i64 i32 f64 f32 i64 i32 i64)))
  (import "host" "narrow" (func $narrow (result i32)))
  (import "host" "boom" (func $boom (result i32)))
  (func (export "wide") (result i64)
    (local $r0 i64) (local $r1 i32) (local $r2 f64) (local $r3 f32) (local $r4 i64) (local $r5 i32) (local $r6 f64) (local $r7 f32) (local $r8 i64) (local $r9 i32) (local $r10 i64)
    (call $wide (i32.const 1) (i64.const 2) (f32.const 3) (f64.const 4)
                (i32.const 5) (i64.const 6) (f32.const 7) (f64.const 8)
                (i32.const 9) (i64.const 10) (f32.const 11) (f64.const 12))
    (local.set $r10) (local.set $r9) (local.set $r8) (local.set $r7) (local.set $r6) (local.set $r5) (local.set $r4) (local.set $r3) (local.set $r2) (local.set $r1) (local.set $r0)
    ;; sum of (i + 1) * result i: any result lost, or two swapped, changes it
    (i64.add (i64.add (i64.add (i64.add (i64.add (i64.add (i64.add (i64.add (i64.add (i64.add (i64.add (i64.const 0)
      (i64.mul (i64.const 1) (local.get $r0)))
      (i64.mul (i64.const 2) (i64.extend_i32_u (local.get $r1))))
      (i64.mul (i64.const 3) (i64.trunc_f64_u (local.get $r2))))
      (i64.mul (i64.const 4) (i64.trunc_f32_u (local.get $r3))))
      (i64.mul (i64.const 5) (local.get $r4)))
      (i64.mul (i64.const 6) (i64.extend_i32_u (local.get $r5))))
      (i64.mul (i64.const 7) (i64.trunc_f64_u (local.get $r6))))
      (i64.mul (i64.const 8) (i64.trunc_f32_u (local.get $r7))))
      (i64.mul (i64.const 9) (local.get $r8)))
      (i64.mul (i64.const 10) (i64.extend_i32_u (local.get $r9))))
      (i64.mul (i64.const 11) (local.get $r10))))
  (func (export "narrow") (result i32) (call $narrow))
  (func (export "boom") (result i32) (call $boom))
  (func (export "ok") (result i32) (i32.const 42))
)
"#;

fn ty(params: &[WasmType], results: &[WasmType]) -> FuncType {
    FuncType {
        params: params.to_vec(),
        results: results.to_vec(),
    }
}

/// A store with MODULE instantiated against the three host functions.
fn store(isolation: Isolation, hostcall: HostcallTransport) -> (Store, wasce_engine::InstanceId) {
    use WasmType::*;
    let module =
        wasce_engine::load(&wat::parse_str(MODULE).unwrap(), &Settings::default()).unwrap();
    let mut store = Store::new(StoreConfig {
        isolation,
        hostcall,
        ..StoreConfig::default()
    })
    .expect("store (KVM needs /dev/kvm)");
    let mut linker = Linker::new();
    let wide = store.new_host_func(
        ty(
            &[I32, I64, F32, F64, I32, I64, F32, F64, I32, I64, F32, F64],
            &[I64, I32, F64, F32, I64, I32, F64, F32, I64, I32, I64],
        ),
        Arc::new(|_: &mut Caller<'_>, args: &[Val], results: &mut [Val]| {
            // Every argument, as the integer it holds.
            let n: Vec<u64> = args
                .iter()
                .map(|v| match *v {
                    Val::I32(x) => x as u64,
                    Val::I64(x) => x as u64,
                    Val::F32(b) => f32::from_bits(b) as u64,
                    Val::F64(b) => f64::from_bits(b) as u64,
                    _ => panic!("unexpected {v:?}"),
                })
                .collect();
            assert_eq!(n, (1..=12).collect::<Vec<u64>>(), "arguments as passed");
            assert_eq!(results.len(), 11);
            // Result i is 11 + i (two digits each), of the result's type.
            for (i, r) in results.iter_mut().enumerate() {
                let v = 11 + i as u64;
                *r = match r {
                    Val::I32(_) => Val::I32(v as i32),
                    Val::I64(_) => Val::I64(v as i64),
                    Val::F32(_) => Val::F32((v as f32).to_bits()),
                    Val::F64(_) => Val::F64((v as f64).to_bits()),
                    other => panic!("unexpected result slot {other:?}"),
                };
            }
            Ok(())
        }),
    );
    let narrow = store.new_host_func(
        ty(&[], &[I32]),
        Arc::new(|_: &mut Caller<'_>, _: &[Val], results: &mut [Val]| {
            results[0] = Val::I64(1);
            Ok(())
        }),
    );
    let boom = store.new_host_func(
        ty(&[], &[I32]),
        Arc::new(|_: &mut Caller<'_>, _: &[Val], _: &mut [Val]| panic!("boom from the host")),
    );
    linker.define("host", "wide", Extern::Func(wide));
    linker.define("host", "narrow", Extern::Func(narrow));
    linker.define("host", "boom", Extern::Func(boom));
    let instance = linker
        .instantiate(&mut store, &module)
        .expect("instantiate");
    (store, instance)
}

fn call(
    store: &mut Store,
    instance: wasce_engine::InstanceId,
    name: &str,
) -> Result<Vec<Val>, Error> {
    let Some(Extern::Func(f)) = store.export(instance, name) else {
        panic!("no export {name}")
    };
    store.call(f, &[])
}

fn check(isolation: Isolation, hostcall: HostcallTransport) {
    let (mut store, instance) = store(isolation, hostcall);
    // Result i is 11 + i, weighted by i + 1 (see MODULE).
    let expected = call(&mut store, instance, "wide").expect("wide");
    let sum: i64 = (0..11).map(|i| (i + 1) * (11 + i)).sum();
    assert_eq!(
        expected,
        vec![Val::I64(sum)],
        "{isolation:?}/{hostcall:?}: every result returned in its slot"
    );
    for _ in 0..3 {
        let e = call(&mut store, instance, "narrow").expect_err("a mistyped result is an error");
        assert!(e.to_string().contains("do not match its type"), "{e}");
        let e = call(&mut store, instance, "boom").expect_err("a panic is an error");
        assert!(e.to_string().contains("boom from the host"), "{e}");
        assert_eq!(
            call(&mut store, instance, "ok").expect("the store still works"),
            vec![Val::I32(42)]
        );
        assert_eq!(
            call(&mut store, instance, "wide").expect("wide again"),
            expected
        );
    }
}

#[test]
fn process_mode() {
    check(Isolation::Process, HostcallTransport::Exit);
}

#[test]
fn vm_with_exits() {
    check(Isolation::Kvm, HostcallTransport::Exit);
}

#[test]
fn vm_with_the_ring() {
    check(Isolation::Kvm, HostcallTransport::Ring);
}
