//! `memory.copy` and `memory.fill` (the runtime routines both modes call: overlapping 1-16-byte
//! moves up to 64 bytes; above, chunks of vector moves with the far end moved first and stored
//! last, backwards when a copy's destination overlaps its source from above; forwards `rep
//! movsb`/`rep stosb` for long ranges apart; the SSE and AVX2 sets are tested directly in
//! `wasce_vmguest::wasi`) give exactly `memmove`'s and
//! `memset`'s results for every direction, distance and length around each size class, in the
//! KVM guest and in process mode, and bounds-check both ranges. Needs /dev/kvm (fails loudly
//! without it).

use wasce_engine::{Error, Extern, FuncId, Isolation, Linker, Settings, Store, StoreConfig, Trap, Val};

const MODULE: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "reset")
    (local $i i32)
    (loop $l
      (i32.store8 (local.get $i) (i32.xor (local.get $i) (i32.shr_u (local.get $i) (i32.const 8))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 65536)))))
  (func (export "copy") (param i32 i32 i32) (memory.copy (local.get 0) (local.get 1) (local.get 2)))
  (func (export "fill") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2)))
  (func (export "load") (param i32) (result i64) (i64.load (local.get 0))))
"#;

fn pattern() -> Vec<u8> {
    (0..65536u32).map(|i| (i ^ (i >> 8)) as u8).collect()
}

struct Fixture {
    store: Store,
    reset: FuncId,
    copy: FuncId,
    fill: FuncId,
    load: FuncId,
}

fn fixture(isolation: Isolation) -> Fixture {
    let module = wasce_engine::load(&wat::parse_str(MODULE).unwrap(), &Settings::default()).unwrap();
    let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).expect("create a store");
    let instance = Linker::new().instantiate(&mut store, &module).unwrap();
    let func = |store: &Store, name: &str| match store.export(instance, name) {
        Some(Extern::Func(f)) => f,
        _ => panic!("no export {name}"),
    };
    let (reset, copy, fill, load) = (func(&store, "reset"), func(&store, "copy"), func(&store, "fill"), func(&store, "load"));
    Fixture { store, reset, copy, fill, load }
}

const LENGTHS: [i32; 33] = [
    0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 100, 127, 128, 129, 191, 192, 193, 1000, 2047, 2048,
    2049, 2100, 4097,
];

#[test]
fn memory_copy_is_memmove_in_the_vm() {
    copy_is_memmove(Isolation::Kvm);
}

#[test]
fn memory_copy_is_memmove_in_process_mode() {
    copy_is_memmove(Isolation::Process);
}

#[test]
fn memory_fill_is_memset() {
    for isolation in [Isolation::Kvm, Isolation::Process] {
        let Fixture { mut store, reset, fill, load, .. } = fixture(isolation);
        for len in LENGTHS {
            for dst in [1000, 1003] {
                store.call(reset, &[]).unwrap();
                store.call(fill, &[Val::I32(dst), Val::I32(0x1a5), Val::I32(len)]).unwrap();
                let mut want = pattern();
                want[dst as usize..(dst + len) as usize].fill(0xa5);
                for at in (((dst - 24) & !7)..dst + len + 24).step_by(8) {
                    let expect = i64::from_le_bytes(want[at as usize..at as usize + 8].try_into().unwrap());
                    assert_eq!(store.call(load, &[Val::I32(at)]).unwrap(), vec![Val::I64(expect)], "{isolation:?}: fill {dst} len {len}: bytes at {at}");
                }
            }
        }
        match store.call(fill, &[Val::I32(65530), Val::I32(0), Val::I32(7)]) {
            Err(Error::Trap(t)) => assert_eq!(t.trap, Trap::MemoryOutOfBounds),
            other => panic!("{isolation:?}: fill out of bounds gave {other:?}"),
        }
    }
}

/// Destination minus source: overlapping either way at distances inside a 16-byte move, a
/// 64-byte chunk and beyond one, and apart.
const DELTAS: [i32; 23] = [-100, -65, -64, -63, -40, -17, -16, -15, -8, -1, 0, 1, 2, 8, 15, 16, 17, 40, 63, 64, 65, 100, 5000];

fn copy_is_memmove(isolation: Isolation) {
    let Fixture { mut store, reset, copy, load, .. } = fixture(isolation);
    let base = 1000i32;
    let mut cases = 0;
    for len in LENGTHS {
        for delta in DELTAS {
            store.call(reset, &[]).unwrap();
            let (dst, src) = (base + delta.max(0) + 64, base - delta.min(0) + 64);
            let (dst, src) = if delta >= 0 { (dst, base + 64) } else { (base + 64, src) };
            store.call(copy, &[Val::I32(dst), Val::I32(src), Val::I32(len)]).unwrap();
            let mut want = pattern();
            want.copy_within(src as usize..(src + len) as usize, dst as usize);
            // The window around both ranges (the pattern elsewhere is untouched by construction).
            let lo = (dst.min(src) - 24) & !7;
            for at in (lo..dst.max(src) + len + 24).step_by(8) {
                let got = store.call(load, &[Val::I32(at)]).unwrap();
                let expect = i64::from_le_bytes(want[at as usize..at as usize + 8].try_into().unwrap());
                assert_eq!(got, vec![Val::I64(expect)], "{isolation:?}: copy dst {dst} src {src} len {len}: bytes at {at}");
            }
            cases += 1;
        }
    }
    assert_eq!(cases, LENGTHS.len() * DELTAS.len());
    // Either range out of bounds traps, and nothing is copied.
    store.call(reset, &[]).unwrap();
    for (dst, src, len) in [(65530, 0, 7), (0, 65530, 7), (-1, 0, 1), (0, -16, 16)] {
        match store.call(copy, &[Val::I32(dst), Val::I32(src), Val::I32(len)]) {
            Err(Error::Trap(t)) => assert_eq!(t.trap, Trap::MemoryOutOfBounds),
            other => panic!("copy {dst} {src} {len} gave {other:?}"),
        }
    }
    let want = pattern();
    let first = i64::from_le_bytes(want[0..8].try_into().unwrap());
    assert_eq!(store.call(load, &[Val::I32(0)]).unwrap(), vec![Val::I64(first)]);
}
