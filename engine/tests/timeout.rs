//! A guest stuck in a loop is stopped by the timeout (a signal kicks the vCPU out of KVM_RUN),
//! within twice the limit, and the store keeps working. Needs /dev/kvm.

use std::time::{Duration, Instant};
use wasce_engine::{Error, Extern, Isolation, Linker, Settings, Store, StoreConfig, Trap, Val};

const MODULE: &str = r#"
(module
  (func $spin (export "spin") (loop (br 0)))
  (func (export "answer") (result i32) (i32.const 7)))
"#;

#[test]
fn infinite_loop_ends_at_the_timeout() {
    let module = wasce_engine::load(&wat::parse_str(MODULE).unwrap(), &Settings::default()).unwrap();
    let limit = Duration::from_millis(200);
    let config = StoreConfig { isolation: Isolation::Kvm, timeout: Some(limit), ..StoreConfig::default() };
    let mut store = Store::new(config).expect("create a KVM store");
    let instance = Linker::new().instantiate(&mut store, &module).unwrap();
    let Some(Extern::Func(spin)) = store.export(instance, "spin") else { panic!() };
    let start = Instant::now();
    let result = store.call(spin, &[]);
    let elapsed = start.elapsed();
    assert!(matches!(result, Err(Error::Trap(ref t)) if t.trap == Trap::Interrupt), "{result:?}");
    // The interrupt says where the guest was.
    let Err(Error::Trap(t)) = result else { unreachable!() };
    assert_eq!(t.backtrace.first().map(String::as_str), Some("spin"), "{:?}", t.backtrace);
    assert!(elapsed >= limit && elapsed < 2 * limit, "stopped after {elapsed:?} with a {limit:?} limit");

    // The next call, on a fresh instance in the same store, works.
    let fresh = Linker::new().instantiate(&mut store, &module).unwrap();
    let Some(Extern::Func(answer)) = store.export(fresh, "answer") else { panic!() };
    assert_eq!(store.call(answer, &[]).unwrap(), vec![Val::I32(7)]);
}

#[test]
fn process_mode_refuses_a_timeout() {
    let config = StoreConfig { isolation: Isolation::Process, timeout: Some(Duration::from_millis(10)), ..StoreConfig::default() };
    let err = Store::new(config).err().expect("process mode cannot enforce a timeout");
    assert!(err.to_string().contains("--isolation kvm"), "{err}");
}

