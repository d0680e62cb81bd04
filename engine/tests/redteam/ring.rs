//! The exit-less host-call ring against a hostile guest: the ring server thread and the vCPU
//! thread must never act on one store at the same time, and a host function that panics on
//! the ring must end the run with an error, not the server (which would leave the host
//! waiting for it forever). Each run is watched from another thread, so that a hang fails the
//! test instead of hanging it.

use crate::common::*;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use wasce_engine::store::testing;
use wasce_engine::{Error, Extern, FuncType, HostcallTransport, Isolation, Linker, Settings, Store, StoreConfig, Val};
use wasce_hypercall::*;

/// Run `f` on another thread; fail the test if it does not finish within `limit`.
fn watched<T: Send + 'static>(what: &str, limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after {limit:?} (the host hangs)"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the calling thread died (a panic escaped the store)"),
    }
}

fn kvm_store(transport: HostcallTransport) -> Store {
    kvm_required();
    Store::new(StoreConfig { isolation: Isolation::Kvm, hostcall: transport, ..StoreConfig::default() }).expect("a KVM store")
}

fn empty_type() -> FuncType {
    FuncType { params: vec![], results: vec![] }
}

/// A host function that records how many host threads run it at once (and for how long it
/// holds the store: 20 ms, a window for a second thread to come in).
#[derive(Clone, Default)]
struct Probe {
    inside: Arc<AtomicU32>,
    most: Arc<AtomicU32>,
    calls: Arc<AtomicU32>,
}

impl Probe {
    fn host_fn(&self) -> wasce_engine::HostFn {
        let p = self.clone();
        Arc::new(move |_caller, _args, _results| {
            let now = p.inside.fetch_add(1, SeqCst) + 1;
            p.most.fetch_max(now, SeqCst);
            p.calls.fetch_add(1, SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            p.inside.fetch_sub(1, SeqCst);
            Ok(())
        })
    }
}

fn mov_imm64(opcode: u8, value: u64) -> Vec<u8> {
    let mut v = vec![0x48, opcode];
    v.extend_from_slice(&value.to_le_bytes());
    v
}

/// `mov r8, imm64`
fn mov_r8(value: u64) -> Vec<u8> {
    let mut v = vec![0x49, 0xb8];
    v.extend_from_slice(&value.to_le_bytes());
    v
}

/// `mov r11, imm64`
fn mov_r11(value: u64) -> Vec<u8> {
    let mut v = vec![0x49, 0xbb];
    v.extend_from_slice(&value.to_le_bytes());
    v
}

/// Spin (`pause`) while the dword at `[r8 + field]` is (`while_equal`) or is not equal to
/// `value`, at most r11 times.
fn spin_on(field: u8, value: u32, while_equal: bool, bound: u64) -> Vec<u8> {
    let mut v = mov_r11(bound);
    // cmp dword [r8 + field], imm32
    v.extend([0x41, 0x81, 0x78, field]);
    v.extend(value.to_le_bytes());
    // je/jne +7 (out of the loop): past pause (2), dec r11 (3) and jnz back (2)
    v.extend([if while_equal { 0x75 } else { 0x74 }, 0x07]);
    v.extend([0xf3, 0x90]); // pause
    v.extend([0x49, 0xff, 0xcb]); // dec r11
    // jnz back to the cmp: the cmp is 8 bytes, the jcc 2, pause 2, dec 3, jnz 2 = 17
    v.extend([0x75, (-17i8) as u8]);
    v
}

/// Finding 4 (issue 12): a guest posts a request on the ring, then makes a host-call exit.
/// The vCPU thread serves the exit with the store while the ring server, woken by that very
/// exit, claims the ring request and serves it with the same store: two host threads in one
/// store (the server only checked that a call was active). A host function that counts the
/// threads inside it must never see two; the run ends normally and the store keeps working.
#[test]
fn a_ring_request_and_an_exit_never_share_the_store() {
    let mut store = kvm_store(HostcallTransport::Ring);
    let probe = Probe::default();
    let probe_fn = store.new_host_func(empty_type(), probe.host_fn());
    let module = wasce_engine::load(
        &wasm(r#"(module (import "host" "probe" (func)) (func (export "ok") (result i32) (i32.const 42)))"#),
        &Settings::default(),
    )
    .unwrap();
    let mut linker = Linker::new();
    linker.define("host", "probe", Extern::Func(probe_fn));
    let instance = linker.instantiate(&mut store, &module).unwrap();
    // What a guest names to call the probe: the instance's import record (its VMFuncRef).
    let probe_id = testing::vmctx(&store, instance) + module.compiled.layout.funcref(0) as u64;
    let Some(Extern::Func(ok)) = store.export(instance, "ok") else { panic!() };

    // rsi = rdx = vmctx, rcx = values (8 slots of 16 bytes on the guest stack).
    let mut code = mov_r8(RING_GVA);
    // 1. Wait until the ring server has gone to sleep (idle), so that only the exit wakes it.
    code.extend(spin_on(RING_AWAKE as u8, 0, false, 200_000_000));
    // 2. Post a request for the probe (values in slot 1, the caller's vmctx), bypassing the
    //    `awake` check the real trampoline makes.
    code.extend(mov_imm64(0xb8, probe_id)); // mov rax, probe
    code.extend([0x49, 0x89, 0x40, RING_FUNC as u8]); // mov [r8 + FUNC], rax
    code.extend([0x48, 0x8d, 0x41, 0x10]); // lea rax, [rcx + 16]
    code.extend([0x49, 0x89, 0x40, RING_VALUES as u8]); // mov [r8 + VALUES], rax
    code.extend([0x49, 0x89, 0x50, RING_CALLER as u8]); // mov [r8 + CALLER], rdx
    code.extend([0x41, 0xc7, 0x00]); // mov dword [r8 + STATE], SUBMITTED
    code.extend(RING_SUBMITTED.to_le_bytes());
    // 3. At once, the probe again through a host-call exit: rdi = vmctx, rsi = function,
    //    rdx = values (slot 0).
    code.extend([0x48, 0x89, 0xd7]); // mov rdi, rdx
    code.extend(mov_imm64(0xbe, probe_id)); // mov rsi, probe
    code.extend([0x48, 0x89, 0xca]); // mov rdx, rcx
    code.extend([0x48, 0xa1]); // mov rax, [hypercall HOST_CALL]
    code.extend(hcall_address(HCALL_HOST_CALL).to_le_bytes());
    // 4. Give the ring request a moment to be answered, then leave the slot idle and return.
    code.extend(spin_on(RING_STATE as u8, RING_DONE, false, 2_000_000));
    code.extend([0x41, 0xc7, 0x00]); // mov dword [r8 + STATE], IDLE
    code.extend(RING_IDLE.to_le_bytes());
    code.push(0xc3); // ret

    let p = probe.clone();
    let (r, mut store) = watched("ring request + exit", Duration::from_secs(20), move || {
        let mut values = vec![0u128; 8];
        let r = testing::run_guest_code_in(&mut store, instance, &code, &mut values);
        (r, store)
    });
    r.expect("the guest's calls are served, one after the other");
    assert!(p.calls.load(SeqCst) >= 1, "the exit's host call ran");
    assert_eq!(p.most.load(SeqCst), 1, "two host threads ran a host function of one store at once");
    assert_eq!(store.call(ok, &[]).unwrap(), vec![Val::I32(42)]);
}

/// Finding 4 (issue 12): a host function that panics while the ring server serves it. The panic
/// used to end the server thread with its `busy` flag set, and the vCPU thread then waited for
/// it forever. Now the run gets an error and the store, its VM and the ring keep working. With
/// the exit transport (the panic on the vCPU thread) and in process mode (the panic inside a
/// call from compiled code) the same holds.
#[test]
fn a_host_function_panicking_on_the_ring_is_an_error() {
    for (isolation, transport) in [
        (Isolation::Kvm, HostcallTransport::Ring),
        (Isolation::Kvm, HostcallTransport::Exit),
        (Isolation::Process, HostcallTransport::Exit),
    ] {
        if isolation == Isolation::Kvm {
            kvm_required();
        }
        let what = format!("{isolation:?} {transport:?}");
        let mut store = Store::new(StoreConfig { isolation, hostcall: transport, ..StoreConfig::default() }).expect("a store");
        // Over the ring, it panics only when the ring server runs it (a call the guest made
        // before the server was awake takes the exit and returns normally: the guest retries).
        let ring_only = transport == HostcallTransport::Ring;
        let bomb = store.new_host_func(
            empty_type(),
            Arc::new(move |_caller, _args, _results| {
                if !ring_only || std::thread::current().name() == Some("wasce-ring") {
                    panic!("a host function panics (red-team test)");
                }
                Ok(())
            }),
        );
        let nop = store.new_host_func(empty_type(), Arc::new(|_caller, _args, _results| Ok(())));
        let mut linker = Linker::new();
        linker.define("host", "bomb", Extern::Func(bomb));
        linker.define("host", "nop", Extern::Func(nop));
        let module = wasce_engine::load(
            &wasm(
                r#"(module
  (import "host" "bomb" (func $bomb))
  (import "host" "nop" (func $nop))
  (func (export "bomb") (local $i i32)
    (loop $l (call $bomb) (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 1000000)))))
  (func (export "nops") (param $n i32) (result i32) (local $i i32)
    (loop $l (call $nop) (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $i)))"#,
            ),
            &Settings::default(),
        )
        .unwrap();
        let instance = linker.instantiate(&mut store, &module).unwrap();
        let Some(Extern::Func(bomb_export)) = store.export(instance, "bomb") else { panic!() };
        let Some(Extern::Func(nops)) = store.export(instance, "nops") else { panic!() };
        let w = what.clone();
        let (r, mut store) = watched(&what, Duration::from_secs(20), move || {
            let r = store.call(bomb_export, &[]);
            (r, store)
        });
        match r {
            Err(Error::Host(msg)) => assert!(msg.contains("panicked"), "{w}: {msg}"),
            other => panic!("{w}: expected the host function's panic as an error, got {other:?}"),
        }
        if ring_only {
            assert!(store.stats().ring_calls >= 1, "{w}: the panicking call was served over the ring");
        }
        // The store, its VM and its ring server still work.
        let before = store.stats().ring_calls;
        let (r, store) = watched(&what, Duration::from_secs(20), move || {
            let r = store.call(nops, &[Val::I32(2000)]);
            (r, store)
        });
        assert_eq!(r.unwrap(), vec![Val::I32(2000)], "{w}");
        if ring_only {
            assert!(store.stats().ring_calls > before, "{w}: the ring server serves again");
        }
    }
}
