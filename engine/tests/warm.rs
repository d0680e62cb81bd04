//! Warm instances (`wasce_engine::warm`): nothing of one run is visible to the next (memory,
//! globals, grown memory, tables, the fd table, arguments and environment, captured streams),
//! traps, exits and timeouts end a run without harming the instance, and the pool hands
//! instances out and takes them back. Both isolation modes (KVM where /dev/kvm is usable).

use std::sync::Arc;
use std::time::{Duration, Instant};
use wasce_engine::warm::{Pool, Prelinked, RunRequest, WarmConfig};
use wasce_engine::wasi::WasiConfig;
use wasce_engine::{Isolation, Settings, StoreConfig};

/// Each run: increments a counter in memory and a global, grows memory by a page and checks
/// the new page reads zero before writing it, grows the table by one (checking its new
/// element is null), writes a byte past its arguments in a scratch area, then prints
/// `m=<counter> g=<global> z=<0 if the grown page was zero> s=<memory pages> t=<table size> n=<null>`.
const COUNTER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (global $g (mut i32) (i32.const 0))
  (data (i32.const 200) "m=? g=? z=? s=? t=? n=?\n")
  (func $digit (param $at i32) (param $v i32)
    (i32.store8 (local.get $at) (i32.add (i32.const 48) (local.get $v))))
  (func (export "_start")
    (local $old i32)
    (i32.store (i32.const 100) (i32.add (i32.load (i32.const 100)) (i32.const 1)))
    (global.set $g (i32.add (global.get $g) (i32.const 1)))
    (local.set $old (memory.grow (i32.const 1)))
    (call $digit (i32.const 202) (i32.load (i32.const 100)))
    (call $digit (i32.const 206) (global.get $g))
    (call $digit (i32.const 210) (i32.load8_u (i32.add (i32.mul (local.get $old) (i32.const 65536)) (i32.const 8))))
    (i32.store8 (i32.add (i32.mul (local.get $old) (i32.const 65536)) (i32.const 8)) (i32.const 7))
    (call $digit (i32.const 214) (memory.size))
    (drop (table.grow $t (ref.null func) (i32.const 1)))
    (call $digit (i32.const 218) (table.size $t))
    (call $digit (i32.const 222) (ref.is_null (table.get $t (i32.const 1))))
    (table.set $t (i32.const 1) (ref.func $digit))
    (i32.store (i32.const 0) (i32.const 200))
    (i32.store (i32.const 4) (i32.const 24))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 300))))
  (elem declare func $digit)
)
"#;

/// Echoes its arguments, an environment variable's presence and stdin, and opens fd 3's
/// files: prints `argc=N env=N stdin=<bytes>`.
const ECHO: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 200) "argc=? env=? stdin=")
  (func (export "_start")
    (drop (call $args_sizes_get (i32.const 100) (i32.const 104)))
    (drop (call $environ_sizes_get (i32.const 108) (i32.const 112)))
    (i32.store8 (i32.const 205) (i32.add (i32.const 48) (i32.load (i32.const 100))))
    (i32.store8 (i32.const 211) (i32.add (i32.const 48) (i32.load (i32.const 108))))
    ;; read stdin into 219.. (up to 64 bytes)
    (i32.store (i32.const 0) (i32.const 219))
    (i32.store (i32.const 4) (i32.const 64))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 120)))
    (i32.store (i32.const 0) (i32.const 200))
    (i32.store (i32.const 4) (i32.add (i32.const 19) (i32.load (i32.const 120))))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 124)))
    (call $proc_exit (i32.load (i32.const 100))))
)
"#;

const SPIN: &str = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory 1)
  (func (export "_start")
    (if (i32.load (i32.const 0)) (then (loop $l (br $l))))
    (i32.store (i32.const 0) (i32.const 1))
    (unreachable))
)
"#;

fn kvm_usable() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

fn modes() -> Vec<Isolation> {
    let mut m = vec![Isolation::Process];
    if kvm_usable() {
        m.push(Isolation::Kvm);
    } else {
        eprintln!("no usable /dev/kvm: KVM mode skipped");
    }
    m
}

fn prelinked(wat: &str, isolation: Isolation, timeout: Option<Duration>) -> Arc<Prelinked> {
    let module = wasce_engine::load(&wat::parse_str(wat).unwrap(), &Settings::default()).unwrap();
    let config = WarmConfig {
        store: StoreConfig { isolation, timeout, ..StoreConfig::default() },
        wasi: WasiConfig { args: vec!["prog".into()], ..WasiConfig::default() },
        ..WarmConfig::default()
    };
    Arc::new(Prelinked::new(module, config).unwrap())
}

#[test]
fn a_thousand_runs_all_see_the_first_state() {
    for isolation in modes() {
        let pre = prelinked(COUNTER, isolation, None);
        let mut instance = pre.instantiate().unwrap();
        for i in 0..1000 {
            let r = instance.run(&RunRequest::default()).unwrap();
            assert_eq!(r.trap, None, "{isolation:?} run {i}");
            assert_eq!(r.exit_code, Some(0));
            assert_eq!(String::from_utf8_lossy(&r.stdout), "m=1 g=1 z=0 s=2 t=2 n=1\n", "{isolation:?} run {i}");
            assert_eq!(r.peak_memory, 2 * 65536);
        }
        assert_eq!(instance.runs(), 1000);
    }
}

#[test]
fn arguments_environment_and_streams_are_per_run() {
    for isolation in modes() {
        let pre = prelinked(ECHO, isolation, None);
        let mut instance = pre.instantiate().unwrap();
        for (args, env, stdin) in [(vec!["a", "b"], vec![("X", "1")], "hello"), (vec![], vec![], ""), (vec!["c"], vec![("Y", "2"), ("Z", "3")], "x")] {
            let req = RunRequest {
                args: args.iter().map(|s| s.to_string()).collect(),
                env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                stdin: stdin.as_bytes().to_vec(),
                ..RunRequest::default()
            };
            let r = instance.run(&req).unwrap();
            assert_eq!(r.exit_code, Some(args.len() as i32 + 1), "{isolation:?}");
            assert_eq!(String::from_utf8_lossy(&r.stdout), format!("argc={} env={} stdin={stdin}", args.len() + 1, env.len()), "{isolation:?}");
            assert!(r.stderr.is_empty());
        }
        // Output beyond the run's limit is cut.
        let r = instance.run(&RunRequest { stdin: b"0123456789".to_vec(), max_output: Some(5), ..RunRequest::default() }).unwrap();
        assert_eq!(r.stdout, b"argc=");
    }
}

#[test]
fn traps_and_timeouts_leave_the_instance_usable() {
    let isolation = Isolation::Kvm;
    if !kvm_usable() {
        return;
    }
    let pre = prelinked(SPIN, isolation, Some(Duration::from_secs(10)));
    let mut instance = pre.instantiate().unwrap();
    for _ in 0..3 {
        // The flag at 0 is clear after every restore: the run traps (unreachable) at once.
        let r = instance.run(&RunRequest::default()).unwrap();
        assert_eq!(r.exit_code, None);
        assert_eq!(r.trap.as_deref(), Some("unreachable"));
        assert!(!r.timed_out);
    }
    // Had the flag the last run set survived, this run would spin until its timeout.
    let t = Instant::now();
    let r = instance.run(&RunRequest { timeout: Some(Duration::from_millis(5000)), ..RunRequest::default() }).unwrap();
    assert_eq!(r.trap.as_deref(), Some("unreachable"));
    assert!(!r.timed_out && t.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_spinning_run_times_out_and_the_next_run_is_clean() {
    if !kvm_usable() {
        return;
    }
    let spin_forever = SPIN.replace("(if (i32.load (i32.const 0)) (then (loop $l (br $l))))", "(loop $l (br $l))");
    let pre = prelinked(&spin_forever, Isolation::Kvm, Some(Duration::from_secs(10)));
    let mut instance = pre.instantiate().unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let r = instance.run(&RunRequest { timeout: Some(Duration::from_millis(200)), ..RunRequest::default() }).unwrap();
        assert!(r.timed_out, "{r:?}");
        assert_eq!(r.trap.as_deref(), Some("interrupt"));
        assert_eq!(r.exit_code, None);
        assert!(t.elapsed() >= Duration::from_millis(200));
    }
    let counter = prelinked(COUNTER, Isolation::Kvm, Some(Duration::from_secs(10)));
    let mut c = counter.instantiate().unwrap();
    let r = c.run(&RunRequest { timeout: Some(Duration::from_millis(200)), ..RunRequest::default() }).unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "m=1 g=1 z=0 s=2 t=2 n=1\n");
}

#[test]
fn memory_limits_are_per_run() {
    for isolation in modes() {
        let pre = prelinked(COUNTER, isolation, None);
        let mut instance = pre.instantiate().unwrap();
        // One page only: the grow fails (-1), and the program then writes out of bounds.
        let r = instance.run(&RunRequest { max_memory: Some(65536), ..RunRequest::default() }).unwrap();
        assert!(r.memory_limited, "{isolation:?}: {r:?}");
        assert_eq!(r.trap.as_deref(), Some("out of bounds memory access"));
        let r = instance.run(&RunRequest::default()).unwrap();
        assert!(!r.memory_limited);
        assert_eq!(String::from_utf8_lossy(&r.stdout), "m=1 g=1 z=0 s=2 t=2 n=1\n");
    }
}

#[test]
fn the_pool_hands_out_and_takes_back() {
    for isolation in modes() {
        let pre = prelinked(COUNTER, isolation, None);
        let pool = Arc::new(Pool::new(pre, 2).unwrap());
        assert_eq!((pool.size(), pool.idle()), (2, 2));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        let r = pool.run(&RunRequest::default(), Duration::from_secs(30)).unwrap();
                        assert_eq!(String::from_utf8_lossy(&r.stdout), "m=1 g=1 z=0 s=2 t=2 n=1\n");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!((pool.size(), pool.idle()), (2, 2));
        assert_eq!(pool.shrink_to(1), 1);
        assert_eq!((pool.size(), pool.idle()), (1, 1));
    }
}

/// `_initialize` counts itself in a global, writes memory (in its second page too) and puts a
/// function in the table; `_start` prints what it finds and counts its runs.
const REACTOR: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (table 2 funcref)
  (type $t (func (result i32)))
  (global $inits (mut i32) (i32.const 0))
  (global $runs (mut i32) (i32.const 0))
  (global $f (mut funcref) (ref.null func))
  (data (i32.const 200) "i=? m=? p=? t=? g=? r=?\n")
  (func $seven (type $t) (i32.const 7))
  (elem declare func $seven)
  (func $digit (param $at i32) (param $v i32)
    (i32.store8 (local.get $at) (i32.add (i32.const 48) (local.get $v))))
  (func (export "_initialize")
    (global.set $inits (i32.add (global.get $inits) (i32.const 1)))
    (i32.store (i32.const 1000) (i32.const 4))
    (i32.store (i32.const 70000) (i32.const 5))
    (table.set (i32.const 1) (ref.func $seven))
    (global.set $f (ref.func $seven)))
  (func (export "_start")
    (global.set $runs (i32.add (global.get $runs) (i32.const 1)))
    (call $digit (i32.const 202) (global.get $inits))
    (call $digit (i32.const 206) (i32.load (i32.const 1000)))
    (call $digit (i32.const 210) (i32.load (i32.const 70000)))
    (call $digit (i32.const 214) (call_indirect (type $t) (i32.const 1)))
    (call $digit (i32.const 218) (i32.eqz (ref.is_null (global.get $f))))
    (call $digit (i32.const 222) (global.get $runs))
    (i32.store (i32.const 1000) (i32.const 9))
    (i32.store (i32.const 0) (i32.const 200))
    (i32.store (i32.const 4) (i32.const 24))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 300)))))
"#;

#[test]
fn an_image_starts_fresh_stores_without_initialising_again() {
    for isolation in modes() {
        let pre = prelinked(REACTOR, isolation, None);
        let mut first = pre.instantiate().unwrap();
        let expected = "i=1 m=4 p=5 t=7 g=1 r=1\n";
        assert_eq!(String::from_utf8_lossy(&first.run(&RunRequest::default()).unwrap().stdout), expected);
        let image = first.image().unwrap();
        for _ in 0..3 {
            let mut fresh = pre.instantiate_image(&image).unwrap();
            for _ in 0..3 {
                let r = fresh.run(&RunRequest::default()).unwrap();
                assert_eq!(String::from_utf8_lossy(&r.stdout), expected, "{isolation:?}");
            }
        }
        // Another module's image is refused.
        let other = prelinked(REACTOR, isolation, None);
        assert!(other.instantiate_image(&image).is_err());
    }
}

/// With an argument: grows memory by a page and writes there; without: reads there (past the
/// memory's size after a restore: must trap, whatever an earlier run left mapped).
const GROW_OR_PEEK: &str = r#"
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory 1)
  (func (export "_start")
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (if (i32.gt_u (i32.load (i32.const 0)) (i32.const 1))
      (then
        (drop (memory.grow (i32.const 1)))
        (i32.store (i32.const 65544) (i32.const 7))
        (call $proc_exit (i32.load (i32.const 65544)))))
    (call $proc_exit (i32.load (i32.const 65544)))))
"#;

#[test]
fn memory_grown_by_one_run_is_out_of_bounds_for_the_next() {
    for isolation in modes() {
        let pre = prelinked(GROW_OR_PEEK, isolation, None);
        let mut instance = pre.instantiate().unwrap();
        for _ in 0..50 {
            let r = instance.run(&RunRequest { args: vec!["grow".into()], ..RunRequest::default() }).unwrap();
            assert_eq!(r.exit_code, Some(7), "{isolation:?}: {r:?}");
            let r = instance.run(&RunRequest::default()).unwrap();
            assert_eq!(r.trap.as_deref(), Some("out of bounds memory access"), "{isolation:?}: {r:?}");
        }
    }
}
