//! Hostile guests: modules that try to get out of the sandbox or take the host down. Each case
//! asserts a contained outcome (a limit reached, a trap, an errno) and then that the host and
//! the other instances keep working: a canary instance in its own KVM store, created before
//! any case, must still compute the right answer after every case, a fresh store must work,
//! and the host must not have leaked file descriptors.
//!
//! Cases run in both isolation modes unless they need a timeout (KVM only). The deeper WASI
//! escape matrix (229 path and pointer cases) is `wasi_escape.rs`; this file covers what an
//! attacker does with resources and timing. Needs /dev/kvm (fails loudly without it).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasce_engine::wasi::{add_to_linker, Preopen, Stdio, WasiConfig};
use wasce_engine::{Error, Extern, HostcallTransport, Isolation, Linker, Settings, Store, StoreConfig, Trap, Val};

const MODES: [Isolation; 2] = [Isolation::Kvm, Isolation::Process];

// WASI errno values (engine/src/wasi/abi.rs).
const SUCCESS: i32 = 0;
const FAULT: i32 = 21;
const INVAL: i32 = 28;
const MFILE: i32 = 33;

/// The cases run one at a time: the fd-leak check counts this process's descriptors, which
/// cases running beside it (stores, VMs, canaries) would change under it.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- the bystanders ----------------------------------------------------------------------------

/// An instance in its own KVM store that must keep working whatever the hostile guests do.
struct Canary {
    store: Store,
    fib: wasce_engine::FuncId,
}

impl Canary {
    fn new() -> Canary {
        let wat = r#"(module (func $fib (export "fib") (param i32) (result i32)
            (if (result i32) (i32.lt_u (local.get 0) (i32.const 2)) (then (local.get 0))
              (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1))) (call $fib (i32.sub (local.get 0) (i32.const 2))))))))"#;
        let mut store = Store::new(StoreConfig::default()).expect("create the canary's KVM store (is /dev/kvm usable?)");
        let instance = Linker::new().instantiate(&mut store, &load(wat)).unwrap();
        let Some(Extern::Func(fib)) = store.export(instance, "fib") else { panic!() };
        Canary { store, fib }
    }

    /// The canary still computes, and a brand-new store in each mode still works.
    fn check(&mut self, after: &str) {
        assert_eq!(self.store.call(self.fib, &[Val::I32(20)]).unwrap(), vec![Val::I32(6765)], "canary broken after {after}");
        for isolation in MODES {
            let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).unwrap();
            let instance = Linker::new().instantiate(&mut store, &load(r#"(module (func (export "f") (result i32) (i32.const 42)))"#)).unwrap();
            let Some(Extern::Func(f)) = store.export(instance, "f") else { panic!() };
            assert_eq!(store.call(f, &[]).unwrap(), vec![Val::I32(42)], "a fresh {isolation:?} store after {after}");
        }
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn load(wat: &str) -> wasce_engine::Module {
    wasce_engine::load(&wat::parse_str(wat).unwrap(), &Settings::default()).unwrap()
}

/// A store in `isolation` with `config`'s limits, WASI linked with `wasi`, `wat` instantiated.
fn instance(isolation: Isolation, config: StoreConfig, wasi: Option<WasiConfig>, wat: &str) -> (Store, wasce_engine::InstanceId) {
    let mut store = Store::new(StoreConfig { isolation, ..config }).expect("create store");
    let mut linker = Linker::new();
    if let Some(wasi) = wasi {
        add_to_linker(&mut store, &mut linker, wasi).unwrap();
    }
    let instance = linker.instantiate(&mut store, &load(wat)).expect("instantiate");
    (store, instance)
}

fn call(store: &mut Store, instance: wasce_engine::InstanceId, name: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
    let Some(Extern::Func(f)) = store.export(instance, name) else { panic!("no export {name}") };
    store.call(f, args)
}

fn i32_of(r: Result<Vec<Val>, Error>) -> i32 {
    match r {
        Ok(v) => match v[..] {
            [Val::I32(x)] => x,
            _ => panic!("{v:?}"),
        },
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn trap_of(r: Result<Vec<Val>, Error>) -> Trap {
    match r {
        Err(Error::Trap(t)) => t.trap,
        other => panic!("expected a trap, got {other:?}"),
    }
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("wasce-hostile-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn preopen(dir: &Path) -> WasiConfig {
    WasiConfig { preopens: vec![Preopen { host: dir.to_path_buf(), guest: ".".into() }], stdout: Stdio::Null, stderr: Stdio::Null, ..WasiConfig::default() }
}

// ---- the cases ---------------------------------------------------------------------------------

/// Growing memory and a table as far as they go stops at the store's limits with -1 (not a
/// trap, not an abort), the whole grown memory is usable, and one byte past it traps.
#[test]
fn memory_and_table_growth_stop_at_the_limit() {
    let _serial = serial();
    let mut canary = Canary::new();
    let wat = r#"(module
      (memory 1) (table 1 funcref)
      (func $f)
      (func (export "grow_memory") (result i32)
        (block $full (loop $more
          (br_if $full (i32.eq (memory.grow (i32.const 37)) (i32.const -1)))
          (br $more)))
        ;; at the limit even a one-page grow and a 4 GiB grow fail
        (if (i32.ne (memory.grow (i32.const 1)) (i32.const -1)) (then (unreachable)))
        (if (i32.ne (memory.grow (i32.const 65536)) (i32.const -1)) (then (unreachable)))
        (memory.fill (i32.const 0) (i32.const 0xab) (i32.mul (memory.size) (i32.const 65536)))
        (memory.size))
      (func (export "last_byte") (result i32) (i32.load8_u (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 1))))
      (func (export "past_the_end") (result i32) (i32.load8_u (i32.mul (memory.size) (i32.const 65536))))
      (func (export "grow_table") (result i32)
        (block $full (loop $more
          (br_if $full (i32.eq (table.grow (ref.func $f) (i32.const 11111)) (i32.const -1)))
          (br $more)))
        (if (i32.ne (table.grow (ref.null func) (i32.const 0x7fffffff)) (i32.const -1)) (then (unreachable)))
        (table.size))
      (elem declare func $f))"#;
    for isolation in MODES {
        let config = StoreConfig { max_memory_pages: 1000, max_table_elements: 100_000, ..StoreConfig::default() };
        let (mut store, inst) = instance(isolation, config, None, wat);
        assert_eq!(i32_of(call(&mut store, inst, "grow_memory", &[])), 1000, "{isolation:?}");
        assert_eq!(i32_of(call(&mut store, inst, "last_byte", &[])), 0xab);
        assert_eq!(trap_of(call(&mut store, inst, "past_the_end", &[])), Trap::MemoryOutOfBounds);
        assert_eq!(i32_of(call(&mut store, inst, "grow_table", &[])), 100_000, "{isolation:?}");
        drop(store);
        canary.check(&format!("growth to the limit in {isolation:?}"));
    }
}

/// Unbounded recursion (plain, with huge frames, and through `call_indirect`) traps with
/// `call stack exhausted`, and the same store runs the next call normally.
#[test]
fn deep_recursion_traps_and_the_store_recovers() {
    let _serial = serial();
    let mut canary = Canary::new();
    let mut big_frame = String::from("(func $big (export \"big\") (param i64) (result i64)");
    for i in 0..200 {
        big_frame += &format!(" (local $l{i} v128)");
    }
    big_frame += " (local.set $l7 (i64x2.splat (local.get 0))) (i64.add (call $big (i64.add (local.get 0) (i64.const 1))) (i64x2.extract_lane 0 (local.get $l7))))";
    let wat = format!(
        r#"(module
      (type $t (func (param i32) (result i32)))
      (table 1 funcref) (elem (i32.const 0) $indirect)
      (func $plain (export "plain") (param i32) (result i32) (i32.add (call $plain (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
      (func $indirect (export "indirect") (param i32) (result i32) (call_indirect (type $t) (local.get 0) (i32.const 0)))
      {big_frame}
      (func (export "ok") (result i32) (i32.const 5)))"#
    );
    for isolation in MODES {
        let (mut store, inst) = instance(isolation, StoreConfig::default(), None, &wat);
        assert_eq!(trap_of(call(&mut store, inst, "plain", &[Val::I32(0)])), Trap::StackOverflow, "{isolation:?}");
        assert_eq!(trap_of(call(&mut store, inst, "indirect", &[Val::I32(0)])), Trap::StackOverflow);
        assert_eq!(trap_of(call(&mut store, inst, "big", &[Val::I64(0)])), Trap::StackOverflow);
        assert_eq!(i32_of(call(&mut store, inst, "ok", &[])), 5);
        drop(store);
        canary.check(&format!("deep recursion in {isolation:?}"));
    }
}

/// An infinite loop ends at the timeout in the VM (and on fuel in process mode, which cannot
/// interrupt); so does a loop that keeps calling the host.
#[test]
fn infinite_loops_end() {
    let _serial = serial();
    let mut canary = Canary::new();
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (memory 1)
      (func (export "spin") (loop (br 0)))
      (func (export "spin_calling_host") (loop (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 8))) (br 0)))
      (func (export "ok") (result i32) (i32.const 5)))"#;
    let limit = Duration::from_millis(300);
    for hostcall in [HostcallTransport::Ring, HostcallTransport::Exit] {
        let config = StoreConfig { timeout: Some(limit), hostcall, ..StoreConfig::default() };
        let (mut store, inst) = instance(Isolation::Kvm, config, Some(WasiConfig { stdout: Stdio::Null, ..WasiConfig::default() }), wat);
        for f in ["spin", "spin_calling_host"] {
            let t = Instant::now();
            assert_eq!(trap_of(call(&mut store, inst, f, &[])), Trap::Interrupt, "{f} {hostcall:?}");
            assert!(t.elapsed() < 3 * limit, "{f} stopped after {:?}", t.elapsed());
        }
        assert_eq!(i32_of(call(&mut store, inst, "ok", &[])), 5);
    }
    let module = wasce_engine::load(&wat::parse_str(wat).unwrap(), &Settings { consume_fuel: true, ..Settings::default() }).unwrap();
    let mut store = Store::new(StoreConfig { isolation: Isolation::Process, fuel: Some(5_000_000), ..StoreConfig::default() }).unwrap();
    let mut linker = Linker::new();
    add_to_linker(&mut store, &mut linker, WasiConfig { stdout: Stdio::Null, ..WasiConfig::default() }).unwrap();
    let inst = linker.instantiate(&mut store, &module).unwrap();
    assert_eq!(trap_of(call(&mut store, inst, "spin", &[])), Trap::OutOfFuel);
    canary.check("infinite loops");
}

/// Opening files until the table is full gives EMFILE (the guest's limit, not the host's):
/// the host can still open files, closing one lets the guest open again, and dropping the
/// store gives every host descriptor back.
#[test]
fn fd_exhaustion_is_the_guests_problem() {
    let _serial = serial();
    let mut canary = Canary::new();
    let dir = Scratch::new();
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
      (memory 1)
      (data (i32.const 100) ".")
      (func $open (result i32)
        (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 2) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0)))
      ;; open until an error; store the count at 8, return the errno
      (func (export "exhaust") (result i32) (local $e i32)
        (block $done (loop $more
          (local.set $e (call $open))
          (br_if $done (local.get $e))
          (i32.store (i32.const 8) (i32.add (i32.load (i32.const 8)) (i32.const 1)))
          (br $more)))
        (local.get $e))
      (func (export "count") (result i32) (i32.load (i32.const 8)))
      (func (export "close_last_then_open") (result i32)
        (drop (call $fd_close (i32.load (i32.const 0))))
        (call $open)))"#;
    let baseline = open_fds();
    for isolation in MODES {
        for max_fds in [Some(100), None] {
            let wasi = WasiConfig { max_fds, ..preopen(&dir.0) };
            let (mut store, inst) = instance(isolation, StoreConfig::default(), Some(wasi), wat);
            assert_eq!(i32_of(call(&mut store, inst, "exhaust", &[])), MFILE, "{isolation:?} {max_fds:?}");
            let count = i32_of(call(&mut store, inst, "count", &[]));
            assert!(count > 50, "opened only {count}");
            assert!(std::fs::File::open("/proc/self/status").is_ok(), "the host can still open files");
            assert_eq!(i32_of(call(&mut store, inst, "close_last_then_open", &[])), SUCCESS);
            drop(store);
            assert!(open_fds() <= baseline + 4, "host descriptors leaked: {baseline} before, {} after", open_fds());
        }
    }
    canary.check("fd exhaustion");
}

/// Writes with absurd lengths are refused (EFAULT, EINVAL) before anything is written; a write
/// of a whole 64 MiB memory works (possibly short: the host caps one transfer); a write past the
/// file-size limit is EFBIG.
#[test]
fn huge_writes_are_checked_not_trusted() {
    let _serial = serial();
    let mut canary = Canary::new();
    let dir = Scratch::new();
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (memory 1024)
      (data (i32.const 100) "out")
      (func $file (result i32)
        (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 3) (i32.const 9) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 0))
          (then (unreachable)))
        (i32.load (i32.const 0)))
      ;; iovec at 16 = {buf, len}; nwritten at 8
      (func $write (param $fd i32) (param $buf i32) (param $len i32) (param $iovs i32) (param $n i32) (result i32)
        (i32.store (i32.const 16) (local.get $buf))
        (i32.store (i32.const 20) (local.get $len))
        (call $fd_write (local.get $fd) (local.get $iovs) (local.get $n) (i32.const 8)))
      (func (export "len_4g") (result i32) (call $write (call $file) (i32.const 0) (i32.const -1) (i32.const 16) (i32.const 1)))
      (func (export "len_past_end") (result i32) (call $write (call $file) (i32.const 0x3ffff00) (i32.const 0x200) (i32.const 16) (i32.const 1)))
      (func (export "iovs_count_huge") (result i32) (call $write (call $file) (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 0x10000000)))
      ;; 1024 overlapping iovecs of 64 MiB each: all in bounds, 64 GiB in all
      (func (export "iovecs_sum_overflow") (result i32) (local $i i32)
        (loop $fill
          (i32.store (i32.add (i32.const 1024) (i32.mul (local.get $i) (i32.const 8))) (i32.const 0))
          (i32.store (i32.add (i32.const 1028) (i32.mul (local.get $i) (i32.const 8))) (i32.const 0x4000000))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $fill (i32.lt_u (local.get $i) (i32.const 1024))))
        (call $fd_write (call $file) (i32.const 1024) (i32.const 1024) (i32.const 8)))
      (func (export "iovs_at_end") (result i32) (call $write (call $file) (i32.const 0) (i32.const 1) (i32.const 0x3fffffc) (i32.const 1)))
      ;; 64 iovecs of 1 MiB each: the whole memory
      (func (export "whole_memory") (result i32) (local $i i32)
        (loop $fill
          (i32.store (i32.add (i32.const 1024) (i32.mul (local.get $i) (i32.const 8))) (i32.mul (local.get $i) (i32.const 0x100000)))
          (i32.store (i32.add (i32.const 1028) (i32.mul (local.get $i) (i32.const 8))) (i32.const 0x100000))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $fill (i32.lt_u (local.get $i) (i32.const 64))))
        (call $fd_write (call $file) (i32.const 1024) (i32.const 64) (i32.const 8)))
      (func (export "nwritten") (result i32) (i32.load (i32.const 8))))"#;
    for isolation in MODES {
        // More iovecs than IOV_MAX, or lengths summing past 4 GiB, are EINVAL as in writev(2).
        let cases = [("len_4g", FAULT), ("len_past_end", FAULT), ("iovs_count_huge", INVAL), ("iovecs_sum_overflow", INVAL), ("iovs_at_end", FAULT)];
        for (f, errno) in cases {
            let (mut store, inst) = instance(isolation, StoreConfig::default(), Some(preopen(&dir.0)), wat);
            assert_eq!(i32_of(call(&mut store, inst, f, &[])), errno, "{f} in {isolation:?}");
            assert_eq!(std::fs::metadata(dir.0.join("out")).unwrap().len(), 0, "{f} wrote something");
        }
        let (mut store, inst) = instance(isolation, StoreConfig::default(), Some(preopen(&dir.0)), wat);
        assert_eq!(i32_of(call(&mut store, inst, "whole_memory", &[])), SUCCESS);
        let written = i32_of(call(&mut store, inst, "nwritten", &[]));
        assert!(written > 0 && written as u64 == std::fs::metadata(dir.0.join("out")).unwrap().len(), "wrote {written}");
        let limited = WasiConfig { max_file_size: Some(1 << 20), ..preopen(&dir.0) };
        let (mut store, inst) = instance(isolation, StoreConfig::default(), Some(limited), wat);
        assert_eq!(i32_of(call(&mut store, inst, "whole_memory", &[])), 22, "EFBIG past the file-size limit");
        assert!(std::fs::metadata(dir.0.join("out")).unwrap().len() <= 1 << 20);
    }
    canary.check("huge writes");
}

/// `poll_oneoff` with no subscriptions, a subscription array past the end of memory, an
/// unknown clock, a deadline in the past, and a relative timeout of 2^64-1 ns (which the VM's
/// timeout must cut short, whichever thread serves the call).
#[test]
fn poll_oneoff_with_absurd_arguments() {
    let _serial = serial();
    let mut canary = Canary::new();
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (memory 1)
      ;; one clock subscription at 0 (48 bytes): userdata 0..8, tag 8, clock id 16, timeout 24,
      ;; precision 32, flags 40; events at 256; nevents at 512.
      (func $clock (param $id i32) (param $timeout i64) (param $flags i32) (result i32)
        (i32.store8 (i32.const 8) (i32.const 0))
        (i32.store (i32.const 16) (local.get $id))
        (i64.store (i32.const 24) (local.get $timeout))
        (i32.store16 (i32.const 40) (local.get $flags))
        (call $poll (i32.const 0) (i32.const 256) (i32.const 1) (i32.const 512)))
      (func (export "none") (result i32) (call $poll (i32.const 0) (i32.const 256) (i32.const 0) (i32.const 512)))
      (func (export "too_many") (result i32) (call $poll (i32.const 0) (i32.const 256) (i32.const 0x7fffffff) (i32.const 512)))
      (func (export "nevents_at_end") (result i32) (call $poll (i32.const 0) (i32.const 256) (i32.const 1) (i32.const 65534)))
      (func (export "unknown_clock") (result i32)
        (if (call $clock (i32.const 999) (i64.const 1) (i32.const 0)) (then (unreachable)))
        (i32.load16_u (i32.const 264)))  ;; the event's error
      (func (export "past_deadline") (result i32) (call $clock (i32.const 1) (i64.const 0) (i32.const 1)))
      (func (export "forever") (result i32) (call $clock (i32.const 1) (i64.const -1) (i32.const 0))))"#;
    for isolation in MODES {
        let (mut store, inst) = instance(isolation, StoreConfig::default(), Some(WasiConfig::default()), wat);
        assert_eq!(i32_of(call(&mut store, inst, "none", &[])), INVAL, "{isolation:?}");
        assert_eq!(i32_of(call(&mut store, inst, "too_many", &[])), FAULT);
        assert_eq!(i32_of(call(&mut store, inst, "nevents_at_end", &[])), FAULT);
        assert_eq!(i32_of(call(&mut store, inst, "unknown_clock", &[])), INVAL);
        let t = Instant::now();
        assert_eq!(i32_of(call(&mut store, inst, "past_deadline", &[])), SUCCESS);
        assert!(t.elapsed() < Duration::from_secs(1));
    }
    let limit = Duration::from_millis(300);
    for hostcall in [HostcallTransport::Ring, HostcallTransport::Exit] {
        let config = StoreConfig { timeout: Some(limit), hostcall, ..StoreConfig::default() };
        let (mut store, inst) = instance(Isolation::Kvm, config, Some(WasiConfig::default()), wat);
        let t = Instant::now();
        assert_eq!(trap_of(call(&mut store, inst, "forever", &[])), Trap::Interrupt, "{hostcall:?}");
        assert!(t.elapsed() < 3 * limit, "a 2^64 ns poll stopped after {:?}", t.elapsed());
        assert_eq!(i32_of(call(&mut store, inst, "none", &[])), INVAL, "the store serves calls after the timeout");
    }
    canary.check("absurd polls");
}

/// Out-pointers and in-pointers one byte short of the end of memory are EFAULT (nothing
/// written, no host fault); the same calls ending exactly at the end succeed.
#[test]
fn pointers_at_the_edge_of_memory() {
    let _serial = serial();
    let mut canary = Canary::new();
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
      (memory 1)
      (func (export "sizes") (param i32) (result i32) (call $args_sizes_get (i32.const 0) (local.get 0)))
      ;; argv (2 pointers) at 0, strings at the given address (16 bytes of "prog\0argument1\0" + 1)
      (func (export "args") (param i32) (result i32) (call $args_get (i32.const 0) (local.get 0)))
      (func (export "argv_at") (param i32) (result i32) (call $args_get (local.get 0) (i32.const 100)))
      (func (export "clock") (param i32) (result i32) (call $clock_time_get (i32.const 0) (i64.const 1) (local.get 0)))
      (func (export "random") (param i32 i32) (result i32) (call $random_get (local.get 0) (local.get 1)))
      (func (export "iovec_at") (param i32) (result i32) (call $fd_write (i32.const 1) (local.get 0) (i32.const 1) (i32.const 8)))
      (func (export "environ") (param i32) (result i32) (call $environ_get (i32.const 0) (local.get 0))))"#;
    let end = 65536;
    for isolation in MODES {
        let wasi = WasiConfig { args: vec!["prog".into(), "argument1".into()], env: vec![("K".into(), "V".into())], stdout: Stdio::Null, ..WasiConfig::default() };
        let (mut store, inst) = instance(isolation, StoreConfig::default(), Some(wasi), wat);
        let mut c = |f: &str, args: &[i32]| i32_of(call(&mut store, inst, f, &args.iter().map(|a| Val::I32(*a)).collect::<Vec<_>>()));
        assert_eq!(c("sizes", &[end - 3]), FAULT, "{isolation:?}");
        assert_eq!(c("sizes", &[end - 4]), SUCCESS);
        // "prog\0argument1\0" is 15 bytes.
        assert_eq!(c("args", &[end - 14]), FAULT);
        assert_eq!(c("args", &[end - 15]), SUCCESS);
        assert_eq!(c("argv_at", &[end - 7]), FAULT);
        assert_eq!(c("argv_at", &[end - 8]), SUCCESS);
        assert_eq!(c("clock", &[end - 7]), FAULT);
        assert_eq!(c("clock", &[end - 8]), SUCCESS);
        assert_eq!(c("clock", &[-1]), FAULT);
        assert_eq!(c("random", &[end - 1, 2]), FAULT);
        assert_eq!(c("random", &[end - 1, 1]), SUCCESS);
        assert_eq!(c("random", &[0, -1]), FAULT);
        assert_eq!(c("iovec_at", &[end - 7]), FAULT);
        assert_eq!(c("environ", &[end - 3]), FAULT, "\"K=V\\0\" is 4 bytes");
        assert_eq!(c("environ", &[end - 4]), SUCCESS);
    }
    canary.check("edge pointers");
}

/// A host thread keeps swapping a directory inside the preopen for a symlink to a directory
/// outside, while the guest opens and reads a file through it thousands of times: the guest
/// never reads the outside file (openat2 RESOLVE_BENEATH checks every component atomically).
#[test]
fn racing_a_directory_swap_never_reads_outside() {
    let _serial = serial();
    let mut canary = Canary::new();
    let root = Scratch::new();
    let (sandbox, outside) = (root.0.join("sandbox"), root.0.join("outside"));
    std::fs::create_dir_all(sandbox.join("real")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(sandbox.join("real/f"), "inside").unwrap();
    std::fs::write(outside.join("f"), "TOPSECRET").unwrap();
    std::os::unix::fs::symlink(&outside, sandbox.join("evil")).unwrap();
    std::fs::rename(sandbox.join("real"), sandbox.join("d")).unwrap();
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
      (memory 1)
      (data (i32.const 100) "d/f")
      ;; iovec at 16: buf 1024, len 16
      (data (i32.const 16) "\00\04\00\00\10\00\00\00")
      ;; returns opens that succeeded; 8 counts reads that saw 'T'
      (func (export "race") (param $n i32) (result i32) (local $ok i32)
        (loop $more
          (if (i32.eqz (call $path_open (i32.const 3) (i32.const 1) (i32.const 100) (i32.const 3) (i32.const 0) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 0)))
            (then
              (local.set $ok (i32.add (local.get $ok) (i32.const 1)))
              (i32.store8 (i32.const 1024) (i32.const 0))
              (drop (call $fd_read (i32.load (i32.const 0)) (i32.const 16) (i32.const 1) (i32.const 4)))
              (if (i32.eq (i32.load8_u (i32.const 1024)) (i32.const 84))
                (then (i32.store (i32.const 8) (i32.add (i32.load (i32.const 8)) (i32.const 1)))))
              (drop (call $fd_close (i32.load (i32.const 0))))))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br_if $more (local.get $n)))
        (local.get $ok))
      (func (export "leaked") (result i32) (i32.load (i32.const 8))))"#;
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, sandbox) = (stop.clone(), sandbox.clone());
        std::thread::spawn(move || {
            let (d, evil, tmp) = (sandbox.join("d"), sandbox.join("evil"), sandbox.join("tmp"));
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // d <-> evil, through tmp: d is by turns the real directory and the symlink out.
                let _ = std::fs::rename(&d, &tmp);
                let _ = std::fs::rename(&evil, &d);
                let _ = std::fs::rename(&tmp, &evil);
                swaps += 1;
            }
            swaps
        })
    };
    for isolation in MODES {
        let (mut store, inst) = instance(isolation, StoreConfig::default(), Some(preopen(&sandbox)), wat);
        let opened = i32_of(call(&mut store, inst, "race", &[Val::I32(3000)]));
        assert_eq!(i32_of(call(&mut store, inst, "leaked", &[])), 0, "{isolation:?}: read the outside file through the swap");
        assert!(opened > 0, "{isolation:?}: the race never let an open through; the test proves nothing");
        eprintln!("{isolation:?}: {opened} of 3000 opens succeeded while the directory was being swapped");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(swapper.join().unwrap() > 100, "the swapper barely ran");
    canary.check("the swap race");
}
