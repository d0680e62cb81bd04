//! In the VM, `args_*`, `environ_*`, `clock_*` (realtime, monotonic) and `random_get` are
//! served by the guest runtime without a VM exit, with the same results as the host's
//! implementation; anything else (another clock, a bad pointer) falls back to the host.

use wasce_engine::wasi::{add_to_linker, WasiConfig};
use wasce_engine::{Extern, Isolation, Linker, Settings, Store, StoreConfig, Val};

const MODULE: &str = r#"
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $clock_res_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; 0..8: sizes; 16..: argv pointers; 64..: argv strings; 256..: environ pointers;
  ;; 320..: environ strings; 512: time; 520: res; 600..: random bytes.
  (func (export "strings") (result i32)
    (i32.or (i32.or (call $args_sizes_get (i32.const 0) (i32.const 4))
                    (call $args_get (i32.const 16) (i32.const 64)))
            (i32.or (call $environ_sizes_get (i32.const 8) (i32.const 12))
                    (call $environ_get (i32.const 256) (i32.const 320)))))
  (func (export "time") (param $clock i32) (result i64)
    (drop (call $clock_time_get (local.get $clock) (i64.const 1) (i32.const 512)))
    (i64.load (i32.const 512)))
  (func (export "res") (param $clock i32) (result i64)
    (drop (call $clock_res_get (local.get $clock) (i32.const 520)))
    (i64.load (i32.const 520)))
  (func (export "random") (param $len i32) (result i32)
    (call $random_get (i32.const 600) (local.get $len)))
  (func (export "time_at") (param $ptr i32) (result i32)
    (call $clock_time_get (i32.const 1) (i64.const 1) (local.get $ptr)))
  (func (export "spin_clock") (param $n i32)
    (loop $l
      (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 512)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))))
"#;

struct Run {
    store: Store,
    instance: wasce_engine::InstanceId,
}

impl Run {
    fn new(isolation: Isolation) -> Run {
        let module = wasce_engine::load(&wat::parse_str(MODULE).unwrap(), &Settings::default()).unwrap();
        let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).expect("store");
        let mut linker = Linker::new();
        let config = WasiConfig {
            args: vec!["prog".into(), "first arg".into(), "ünïcode".into()],
            env: vec![("A".into(), "1".into()), ("EMPTY".into(), "".into())],
            ..WasiConfig::default()
        };
        add_to_linker(&mut store, &mut linker, config).unwrap();
        let instance = linker.instantiate(&mut store, &module).unwrap();
        Run { store, instance }
    }

    fn call(&mut self, name: &str, args: &[Val]) -> Val {
        let Some(Extern::Func(f)) = self.store.export(self.instance, name) else { panic!("{name}") };
        self.store.call(f, args).unwrap().first().copied().unwrap_or(Val::I32(0))
    }

    fn memory(&self) -> Vec<u8> {
        let Some(Extern::Memory(m)) = self.store.export(self.instance, "memory") else { panic!() };
        self.store.memory_data(m)[..1024].to_vec()
    }
}

#[test]
fn same_results_as_the_host_and_no_exits() {
    let mut vm = Run::new(Isolation::Kvm);
    let mut host = Run::new(Isolation::Process);
    assert_eq!(vm.call("strings", &[]), Val::I32(0));
    assert_eq!(host.call("strings", &[]), Val::I32(0));
    assert_eq!(vm.memory()[..512], host.memory()[..512], "args and environ as the host writes them");

    for clock in [0, 1] {
        assert_eq!(vm.call("res", &[Val::I32(clock)]), host.call("res", &[Val::I32(clock)]));
        let Val::I64(a) = host.call("time", &[Val::I32(clock)]) else { panic!() };
        let Val::I64(b) = vm.call("time", &[Val::I32(clock)]) else { panic!() };
        let Val::I64(c) = host.call("time", &[Val::I32(clock)]) else { panic!() };
        assert!(a <= b + 1_000_000 && b <= c + 1_000_000, "clock {clock}: host {a}, guest {b}, host {c}");
    }
    assert_eq!(vm.call("random", &[Val::I32(37)]), Val::I32(0));
    assert!(vm.memory()[600..637].iter().any(|b| *b != 0));

    let before = (vm.store.stats().hypercalls, vm.store.stats().ring_calls);
    vm.call("spin_clock", &[Val::I32(10_000)]);
    let after = (vm.store.stats().hypercalls, vm.store.stats().ring_calls);
    assert_eq!(after, before, "clock_time_get must not reach the host");
}

#[test]
fn unusual_cases_fall_back_to_the_host() {
    let mut vm = Run::new(Isolation::Kvm);
    let host = |s: &Store| s.stats().hypercalls + s.stats().ring_calls;
    let before = host(&vm.store);
    // The process CPU-time clock is the host's business.
    let Val::I64(t) = vm.call("time", &[Val::I32(2)]) else { panic!() };
    assert!(t > 0);
    // A pointer at the end of memory: the host answers EFAULT (21).
    assert_eq!(vm.call("time_at", &[Val::I32(65532)]), Val::I32(21));
    assert_eq!(vm.call("random", &[Val::I32(70000)]), Val::I32(21));
    assert_eq!(host(&vm.store), before + 3, "each fallback is served by the host once (by exit or ring)");
}
