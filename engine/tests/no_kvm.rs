//! Without a usable KVM device a VM store fails with a message that says so and names the way
//! out; it never falls back to process mode silently. (Its own test binary: it changes the
//! process environment.)

use wasce_engine::{Isolation, Store, StoreConfig};

#[test]
fn missing_kvm_is_a_clear_error() {
    // SAFETY: this binary runs no other test, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("WASCE_KVM_DEVICE", "/nonexistent/kvm") };
    let err = Store::new(StoreConfig { isolation: Isolation::Kvm, ..StoreConfig::default() }).err();
    let msg = err.expect("a store without KVM must fail").to_string();
    assert!(msg.contains("KVM is not available") && msg.contains("--isolation process"), "{msg}");
    // Process mode does not need KVM.
    assert!(Store::new(StoreConfig { isolation: Isolation::Process, ..StoreConfig::default() }).is_ok());
}
