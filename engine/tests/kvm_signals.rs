//! Creating a VM while signals arrive. KVM_CREATE_VM registers an MMU notifier, which gives up
//! with EINTR when a signal is pending (whatever its handler's SA_RESTART says); an embedder
//! with timers or profilers (libFuzzer's SIGALRM found it) must still get its store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasce_engine::store::Isolation;
use wasce_engine::{Store, StoreConfig};

extern "C" fn ignore(_: libc::c_int) {}

#[test]
fn stores_are_created_while_signals_arrive() {
    let kvm = StoreConfig { isolation: Isolation::Kvm, ..StoreConfig::default() };
    if let Err(e) = Store::new(kvm.clone()) {
        eprintln!("skipped: KVM unavailable ({e})");
        return;
    }
    // SAFETY: installing a handler that does nothing, with SA_RESTART as a well-behaved
    // embedder would.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = ignore as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
    }
    // SAFETY: pthread_self has no preconditions.
    let target = unsafe { libc::pthread_self() };
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: `target` is the test thread, alive until `stop` is set and this
                // thread is joined.
                unsafe { libc::pthread_kill(target, libc::SIGUSR2) };
                std::thread::sleep(Duration::from_micros(20));
            }
        })
    };
    let results: Vec<_> = (0..100).map(|_| Store::new(kvm.clone()).map(drop)).collect();
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let failures: Vec<String> = results.into_iter().filter_map(|r| r.err().map(|e| e.to_string())).collect();
    assert!(failures.is_empty(), "{} of 100 stores failed, e.g. {}", failures.len(), failures[0]);
}

/// A signal of the embedder's that lands while the guest runs stops KVM_RUN with EINTR, like the
/// watchdog's kick; only the kick may end the call (with the `interrupt` trap).
#[test]
fn guest_calls_survive_foreign_signals() {
    let kvm = StoreConfig { isolation: Isolation::Kvm, ..StoreConfig::default() };
    let Ok(mut store) = Store::new(kvm) else {
        eprintln!("skipped: KVM unavailable");
        return;
    };
    let wasm = wat::parse_str(
        r#"(module (func (export "spin") (param i32) (result i32)
            (loop (br_if 0 (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))
            (i32.const 42)))"#,
    )
    .unwrap();
    let module = wasce_engine::load(&wasm, &wasce_engine::Settings::default()).unwrap();
    let instance = store.instantiate(&module, &[]).unwrap();
    let Some(wasce_engine::Extern::Func(spin)) = store.export(instance, "spin") else { panic!("no export") };
    // SAFETY: as in `stores_are_created_while_signals_arrive`.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = ignore as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
    }
    // SAFETY: pthread_self has no preconditions.
    let target = unsafe { libc::pthread_self() };
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: as in `stores_are_created_while_signals_arrive`.
                unsafe { libc::pthread_kill(target, libc::SIGUSR2) };
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let results: Vec<_> = (0..5).map(|_| store.call(spin, &[wasce_engine::Val::I32(100_000_000)])).collect();
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    for r in results {
        assert_eq!(r.map_err(|e| e.to_string()), Ok(vec![wasce_engine::Val::I32(42)]));
    }
}
