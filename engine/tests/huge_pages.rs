//! 2 MiB guest pages for linear memory (`kvm::paging::PageSize::Huge`): every aligned 2 MiB
//! wholly inside a memory's size is one 2 MiB leaf, and the edges stay 4 KiB, so an access
//! just past the size still traps, whatever the size, after instantiation and after growth,
//! and after a warm restore has shrunk the memory again. Every page of the memory reads back
//! what was written through it. Needs /dev/kvm (fails loudly without it).

use wasce_engine::{Error, Extern, Isolation, Linker, Settings, Store, StoreConfig, Trap, Val};

const MODULE: &str = r#"
(module
  (memory (export "memory") 33)
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export "store") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
  ;; Write a different byte at the start of every 4 KiB page below `end`, then check them all:
  ;; the number of pages that did not read back (0 expected).
  (func (export "pattern") (param $end i32) (result i32)
    (local $p i32) (local $bad i32)
    (loop $w
      (i32.store8 (local.get $p) (i32.shr_u (local.get $p) (i32.const 12)))
      (local.set $p (i32.add (local.get $p) (i32.const 4096)))
      (br_if $w (i32.lt_u (local.get $p) (local.get $end))))
    (local.set $p (i32.const 0))
    (loop $r
      (if (i32.ne (i32.load8_u (local.get $p)) (i32.and (i32.shr_u (local.get $p) (i32.const 12)) (i32.const 255)))
        (then (local.set $bad (i32.add (local.get $bad) (i32.const 1)))))
      (local.set $p (i32.add (local.get $p) (i32.const 4096)))
      (br_if $r (i32.lt_u (local.get $p) (local.get $end))))
    (local.get $bad)))
"#;

const PAGE: i32 = 65536;

struct Fixture {
    store: Store,
    instance: wasce_engine::InstanceId,
}

impl Fixture {
    fn new() -> Fixture {
        let module = wasce_engine::load(&wat::parse_str(MODULE).unwrap(), &Settings::default()).unwrap();
        let mut store = Store::new(StoreConfig { isolation: Isolation::Kvm, ..StoreConfig::default() }).expect("create a KVM store");
        let instance = Linker::new().instantiate(&mut store, &module).unwrap();
        Fixture { store, instance }
    }

    fn call(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
        let Some(Extern::Func(f)) = self.store.export(self.instance, name) else { panic!("no export {name}") };
        self.store.call(f, args)
    }

    /// The last byte below `pages` loads; the first byte at `pages` traps.
    fn assert_edge(&mut self, pages: i32) {
        let last = pages * PAGE - 1;
        assert_eq!(self.call("load", &[Val::I32(last)]).unwrap(), vec![Val::I32(0)], "last byte of {pages} pages");
        match self.call("load", &[Val::I32(pages * PAGE)]) {
            Err(Error::Trap(t)) => assert_eq!(t.trap, Trap::MemoryOutOfBounds, "just past {pages} pages"),
            other => panic!("a load just past {pages} pages gave {other:?}"),
        }
        match self.call("store", &[Val::I32(pages * PAGE + 4096), Val::I32(1)]) {
            Err(Error::Trap(t)) => assert_eq!(t.trap, Trap::MemoryOutOfBounds),
            other => panic!("a store past {pages} pages gave {other:?}"),
        }
    }
}

#[test]
fn the_edges_fault_at_every_size() {
    let mut f = Fixture::new();
    // 33 pages: one whole 2 MiB, then 64 KiB of 4 KiB pages.
    f.assert_edge(33);
    // To 64 pages (4 MiB, an exact multiple), then 1,025 (64 MiB + 64 KiB), then 1,056.
    let mut pages = 33;
    for to in [64, 1025, 1056] {
        assert_eq!(f.call("grow", &[Val::I32(to - pages)]).unwrap(), vec![Val::I32(pages)]);
        pages = to;
        f.assert_edge(pages);
    }
    assert_eq!(f.call("pattern", &[Val::I32(pages * PAGE)]).unwrap(), vec![Val::I32(0)], "every page holds what was written");
}

#[test]
fn a_restored_memory_faults_past_its_old_size() {
    let mut f = Fixture::new();
    let snap = f.store.snapshot().unwrap();
    assert_eq!(f.call("grow", &[Val::I32(1023)]).unwrap(), vec![Val::I32(33)]);
    assert_eq!(f.call("pattern", &[Val::I32(1056 * PAGE)]).unwrap(), vec![Val::I32(0)]);
    f.store.restore(&snap).unwrap();
    f.assert_edge(33);
    // Grown again, the memory reads as zeros above the snapshot's size.
    assert_eq!(f.call("grow", &[Val::I32(1023)]).unwrap(), vec![Val::I32(33)]);
    for at in [33 * PAGE, 40 * PAGE + 5, 1056 * PAGE - 1] {
        assert_eq!(f.call("load", &[Val::I32(at)]).unwrap(), vec![Val::I32(0)], "byte {at} after regrowth");
    }
    f.assert_edge(1056);
}
