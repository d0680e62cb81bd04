//! Signals of the embedder's must not break the VM. KVM_CREATE_VM registers an MMU notifier,
//! which gives up with EINTR when a signal is pending (whatever its handler's SA_RESTART says),
//! and a signal during KVM_RUN stops it with EINTR like the watchdog's kick: an embedder with
//! timers or profilers (libFuzzer's SIGALRM found it) must still get its store, and its guest
//! calls must run to the end. Needs /dev/kvm (fails loudly without it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasce_engine::store::Isolation;
use wasce_engine::{Store, StoreConfig};

extern "C" fn ignore(_: libc::c_int) {}

/// SIGUSR2 (handled, with SA_RESTART, as a well-behaved embedder would) sent to the calling
/// thread every `period` until dropped.
struct SignalStorm {
    stop: Arc<AtomicBool>,
    sender: Option<std::thread::JoinHandle<()>>,
}

impl SignalStorm {
    fn start(period: Duration) -> SignalStorm {
        // SAFETY: installing a handler that does nothing.
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
                    // SAFETY: `target` is the thread that started the storm; it joins this
                    // thread (drop) before it can exit.
                    unsafe { libc::pthread_kill(target, libc::SIGUSR2) };
                    std::thread::sleep(period);
                }
            })
        };
        SignalStorm { stop, sender: Some(sender) }
    }
}

impl Drop for SignalStorm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
    }
}

fn kvm() -> StoreConfig {
    StoreConfig { isolation: Isolation::Kvm, ..StoreConfig::default() }
}

#[test]
fn stores_are_created_while_signals_arrive() {
    drop(Store::new(kvm()).expect("create a KVM store (is /dev/kvm usable?)"));
    let storm = SignalStorm::start(Duration::from_micros(20));
    let results: Vec<_> = (0..100).map(|_| Store::new(kvm()).map(drop)).collect();
    drop(storm);
    let failures: Vec<String> = results.into_iter().filter_map(|r| r.err().map(|e| e.to_string())).collect();
    assert!(failures.is_empty(), "{} of 100 stores failed, e.g. {}", failures.len(), failures[0]);
}

/// Only the watchdog's kick may end a call (with the `interrupt` trap); any other signal just
/// runs its handler and the guest resumes.
#[test]
fn guest_calls_survive_foreign_signals() {
    let mut store = Store::new(kvm()).expect("create a KVM store (is /dev/kvm usable?)");
    let wasm = wat::parse_str(
        r#"(module (func (export "spin") (param i32) (result i32)
            (loop (br_if 0 (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))
            (i32.const 42)))"#,
    )
    .unwrap();
    let module = wasce_engine::load(&wasm, &wasce_engine::Settings::default()).unwrap();
    let instance = store.instantiate(&module, &[]).unwrap();
    let Some(wasce_engine::Extern::Func(spin)) = store.export(instance, "spin") else { panic!("no export") };
    let storm = SignalStorm::start(Duration::from_micros(200));
    let results: Vec<_> = (0..5).map(|_| store.call(spin, &[wasce_engine::Val::I32(100_000_000)])).collect();
    drop(storm);
    for r in results {
        assert_eq!(r.map_err(|e| e.to_string()), Ok(vec![wasce_engine::Val::I32(42)]));
    }
}
