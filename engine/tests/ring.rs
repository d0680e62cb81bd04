//! The exit-less host-call ring: calls keep their order, `proc_exit`, traps and timeouts in the
//! middle of ring traffic end the call cleanly, and the store keeps working. Each test runs with
//! both transports where it makes sense. Needs /dev/kvm.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasce_engine::wasi::{add_to_linker, run_command, Stdio, WasiConfig};
use wasce_engine::{Error, Extern, HostcallTransport, Isolation, Linker, Settings, Store, StoreConfig, Trap, Val};

const MODULE: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovec at 0 -> (buf 16, len 4); the 4 bytes at 16 are the decimal counter
  (data (i32.const 0) "\10\00\00\00\04\00\00\00")
  ;; a clock subscription at 64: relative 10 s on the monotonic clock
  (data (i32.const 64) "\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\01\00\00\00\00\00\00\00\00\e4\0b\54\02\00\00\00")
  (func $emit (param $i i32)
    ;; write the 4-digit decimal form of $i
    (i32.store8 (i32.const 16) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $i) (i32.const 1000)) (i32.const 10))))
    (i32.store8 (i32.const 17) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $i) (i32.const 100)) (i32.const 10))))
    (i32.store8 (i32.const 18) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $i) (i32.const 10)) (i32.const 10))))
    (i32.store8 (i32.const 19) (i32.add (i32.const 48) (i32.rem_u (local.get $i) (i32.const 10))))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32))))
  (func $count (export "count") (param $n i32)
    (local $i i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (call $emit (local.get $i))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))
  (func (export "count_then_exit") (call $count (i32.const 500)) (call $proc_exit (i32.const 7)))
  (func (export "count_then_trap") (call $count (i32.const 500)) (unreachable))
  (func (export "count_then_sleep") (call $count (i32.const 100))
    (drop (call $poll_oneoff (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 160))))
  (func (export "_start") (call $count (i32.const 10)))
)
"#;

fn setup(transport: HostcallTransport, timeout: Option<Duration>) -> (Store, Linker, wasce_engine::Module, Arc<Mutex<Vec<u8>>>) {
    let module = wasce_engine::load(&wat::parse_str(MODULE).unwrap(), &Settings::default()).unwrap();
    let mut store = Store::new(StoreConfig { isolation: Isolation::Kvm, hostcall: transport, timeout, ..StoreConfig::default() }).expect("KVM store");
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut linker = Linker::new();
    add_to_linker(&mut store, &mut linker, WasiConfig { stdout: Stdio::Capture(out.clone()), ..WasiConfig::default() }).unwrap();
    (store, linker, module, out)
}

fn expected(n: u32) -> String {
    (0..n).map(|i| format!("{i:04}")).collect()
}

fn call(store: &mut Store, linker: &Linker, module: &wasce_engine::Module, name: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
    let inst = linker.instantiate(store, module)?;
    let Some(Extern::Func(f)) = store.export(inst, name) else { panic!("{name}") };
    store.call(f, args)
}

#[test]
fn calls_keep_their_order_on_both_transports() {
    for transport in [HostcallTransport::Ring, HostcallTransport::Exit] {
        let (mut store, linker, module, out) = setup(transport, None);
        call(&mut store, &linker, &module, "count", &[Val::I32(3000)]).unwrap();
        assert_eq!(String::from_utf8(out.lock().unwrap().clone()).unwrap(), expected(3000), "{transport:?}");
        // Every call was served exactly once, over the ring or by an exit (how many go each way
        // depends on scheduling: a sleeping server makes the guest use the exit).
        let stats = store.stats();
        assert_eq!(stats.ring_calls + stats.hypercalls, 3000, "{transport:?}: {stats:?}");
        if transport == HostcallTransport::Exit {
            assert_eq!(stats.ring_calls, 0);
        }
    }
}

#[test]
fn proc_exit_after_ring_traffic() {
    for transport in [HostcallTransport::Ring, HostcallTransport::Exit] {
        let (mut store, linker, module, out) = setup(transport, None);
        let r = call(&mut store, &linker, &module, "count_then_exit", &[]);
        assert!(matches!(r, Err(Error::Exit(7))), "{transport:?}: {r:?}");
        assert_eq!(out.lock().unwrap().len(), 2000);
        assert_eq!(run_command(&mut store, &linker, &module).unwrap(), 0, "store usable after proc_exit");
    }
}

#[test]
fn trap_after_ring_traffic() {
    let (mut store, linker, module, out) = setup(HostcallTransport::Ring, None);
    let r = call(&mut store, &linker, &module, "count_then_trap", &[]);
    assert!(matches!(r, Err(Error::Trap(ref t)) if t.trap == Trap::UnreachableCodeReached), "{r:?}");
    assert_eq!(out.lock().unwrap().len(), 2000);
    call(&mut store, &linker, &module, "count", &[Val::I32(5)]).unwrap();
}

#[test]
fn timeout_during_a_pending_host_call() {
    // poll_oneoff sleeps 10 s inside the host; the 300 ms timeout must still end the call.
    for transport in [HostcallTransport::Ring, HostcallTransport::Exit] {
        let limit = Duration::from_millis(300);
        let (mut store, linker, module, _out) = setup(transport, Some(limit));
        let start = Instant::now();
        let r = call(&mut store, &linker, &module, "count_then_sleep", &[]);
        let elapsed = start.elapsed();
        assert!(matches!(r, Err(Error::Trap(ref t)) if t.trap == Trap::Interrupt), "{transport:?}: {r:?}");
        assert!(elapsed < 2 * limit, "{transport:?}: stopped after {elapsed:?}");
        call(&mut store, &linker, &module, "count", &[Val::I32(5)]).unwrap();
    }
}

#[test]
fn idle_server_uses_little_cpu() {
    let (mut store, linker, module, _out) = setup(HostcallTransport::Ring, None);
    call(&mut store, &linker, &module, "count", &[Val::I32(10)]).unwrap();
    let before = store.ring_server_cpu_time().expect("a ring server");
    std::thread::sleep(Duration::from_millis(300));
    let idle = store.ring_server_cpu_time().unwrap() - before;
    assert!(idle < Duration::from_millis(5), "the idle server used {idle:?} of CPU in 300 ms");
}
