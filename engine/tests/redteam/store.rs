//! The store: host memory proportional to what a guest declares (finding 12a), host functions
//! reached from records the guest cannot forge (finding 12b), and failed instantiations that
//! leave no guest mapping of freed host memory (finding 12c).
//!
//! Attacks that measure this process's memory or place host pages at chosen addresses run in a
//! child process (this test binary again, one test, one thread), so that other tests running
//! beside them cannot disturb the measurement or take the addresses.

use crate::common::{describe, kvm_required, text, wasm};
use std::sync::{Arc, Mutex};
use wasce_engine::store::testing;
use wasce_engine::{Caller, Error, Extern, FuncType, HostcallTransport, InstanceId, Isolation, Linker, Module, Settings, Store, StoreConfig, Val};

const MODES: [Isolation; 2] = [Isolation::Kvm, Isolation::Process];
/// The KVM transports, and process mode (where there is no transport).
const SETUPS: [(Isolation, HostcallTransport); 3] =
    [(Isolation::Kvm, HostcallTransport::Ring), (Isolation::Kvm, HostcallTransport::Exit), (Isolation::Process, HostcallTransport::Auto)];

const CHILD: &str = "WASCE_REDTEAM_STORE_CHILD";

/// Whether this process is the child started by `in_child(name)`.
fn is_child(name: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(name)
}

/// Run test `name` (this module's) alone in a child process and return its stdout.
fn in_child(name: &str, args: &str) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([&format!("store::{name}"), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .env("WASCE_REDTEAM_STORE_ARGS", args)
        .output()
        .unwrap();
    assert!(out.status.success(), "child {name} ({args}) failed:\n{}", describe(&out));
    text(&out.stdout)
}

fn child_args() -> String {
    std::env::var("WASCE_REDTEAM_STORE_ARGS").unwrap_or_default()
}

/// `key=value` reported by a child.
fn reported(stdout: &str, key: &str) -> u64 {
    let prefix = format!("REPORT {key}=");
    let line = stdout.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("child did not report {key}:\n{stdout}"));
    line.trim().parse().unwrap()
}

/// (virtual size, resident size) of this process in bytes.
fn statm() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let mut f = s.split_whitespace().map(|x| x.parse::<u64>().unwrap());
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    (f.next().unwrap() * page, f.next().unwrap() * page)
}

fn isolation_arg(s: &str) -> (Isolation, HostcallTransport) {
    match s {
        "kvm-ring" => (Isolation::Kvm, HostcallTransport::Ring),
        "kvm-exit" => (Isolation::Kvm, HostcallTransport::Exit),
        "process" => (Isolation::Process, HostcallTransport::Auto),
        other => panic!("unknown setup {other}"),
    }
}

fn load(wat: &str) -> Module {
    wasce_engine::load(&wasm(wat), &Settings::default()).unwrap()
}

fn new_store(isolation: Isolation, hostcall: HostcallTransport, config: StoreConfig) -> Store {
    if isolation == Isolation::Kvm {
        kvm_required();
    }
    Store::new(StoreConfig { isolation, hostcall, ..config }).expect("create the store")
}

fn func(store: &Store, instance: InstanceId, name: &str) -> wasce_engine::FuncId {
    match store.export(instance, name) {
        Some(Extern::Func(f)) => f,
        other => panic!("export {name}: {other:?}"),
    }
}

fn call_i32(store: &mut Store, instance: InstanceId, name: &str, args: &[Val]) -> i32 {
    let f = func(store, instance, name);
    match store.call(f, args) {
        Ok(v) => match v[..] {
            [Val::I32(x)] => x,
            _ => panic!("{name}: {v:?}"),
        },
        Err(e) => panic!("{name}: {e}"),
    }
}

// ---- Finding 12a: amplification by declared sizes ---------------------------------------------

const TABLES: u64 = 13;
const TABLE_MIN: u64 = 10_000_000;

/// 13 tables of 10M funcref elements each (1.04 GB of elements), in a few hundred bytes, plus a
/// small table to grow, and functions that use the last big table.
fn amplifying_module() -> String {
    let mut wat = String::from("(module\n");
    for i in 0..TABLES {
        wat += &format!("  (table $t{i} {TABLE_MIN} funcref)\n");
    }
    let last = TABLES - 1;
    wat += &format!(
        r#"  (table $small 0 funcref)
  (func $seven (result i32) (i32.const 7))
  (elem declare func $seven)
  (func (export "size") (result i32) (table.size $t{last}))
  (func (export "is_null") (param i32) (result i32) (ref.is_null (table.get $t{last} (local.get 0))))
  (func (export "set") (param i32) (table.set $t{last} (local.get 0) (ref.func $seven)))
  (func (export "call") (param i32) (result i32) (call_indirect $t{last} (result i32) (local.get 0)))
  (func (export "grow_big") (param i32) (result i32) (table.grow $t{last} (ref.null func) (local.get 0)))
  (func (export "grow_small") (param i32) (result i32) (table.grow $small (ref.null func) (local.get 0)))
  (func (export "small_is_null") (param i32) (result i32) (ref.is_null (table.get $small (local.get 0))))
  (func (export "small_size") (result i32) (table.size $small)))"#
    );
    wat
}

/// Finding 12a (issue 12): "a 387-byte module commits 1 GB (13 tables × 10M entries filled
/// eagerly)". With a store-wide limit that admits it, the module instantiates and the host's
/// resident memory grows by a few MiB, not by the 1.04 GB declared; the tables still behave
/// (size, null elements never written, set and call far into a table, grow up to the limit).
/// In both isolation modes, each in a child process that measures its own RSS.
#[test]
fn declared_table_sizes_do_not_commit_host_memory() {
    const NAME: &str = "declared_table_sizes_do_not_commit_host_memory";
    if is_child(NAME) {
        let (isolation, hostcall) = isolation_arg(&child_args());
        let config = StoreConfig {
            max_table_elements: TABLE_MIN,
            // The big tables, the warm-up module's 100 and 1000 for the small one.
            max_table_elements_total: TABLES * TABLE_MIN + 100 + 1000,
            ..StoreConfig::default()
        };
        let mut store = new_store(isolation, hostcall, config);
        let module = load(&amplifying_module());
        // Warm up: instantiate and call something small first, so that the measurement below
        // sees only what the tables cost.
        let warm = Linker::new().instantiate(&mut store, &load(r#"(module (table 100 funcref) (func (export "f") (result i32) (i32.const 1)))"#)).unwrap();
        call_i32(&mut store, warm, "f", &[]);
        let (_, before) = statm();
        let inst = Linker::new().instantiate(&mut store, &module).expect("the store's limits admit the module");
        assert_eq!(call_i32(&mut store, inst, "size", &[]), TABLE_MIN as i32);
        let (_, after) = statm();
        println!("\nREPORT rss_growth={}", after.saturating_sub(before));
        for i in [0, 1, 4096, 5_000_000, TABLE_MIN as i32 - 1] {
            assert_eq!(call_i32(&mut store, inst, "is_null", &[Val::I32(i)]), 1, "element {i} of an untouched table is null");
        }
        call_i32(&mut store, inst, "size", &[]);
        let set = func(&store, inst, "set");
        store.call(set, &[Val::I32(9_999_999)]).unwrap();
        assert_eq!(call_i32(&mut store, inst, "call", &[Val::I32(9_999_999)]), 7);
        assert_eq!(call_i32(&mut store, inst, "is_null", &[Val::I32(9_999_998)]), 1);
        assert_eq!(call_i32(&mut store, inst, "grow_big", &[Val::I32(1)]), -1, "past the per-table limit");
        assert_eq!(call_i32(&mut store, inst, "grow_small", &[Val::I32(600)]), 0);
        assert_eq!(call_i32(&mut store, inst, "small_size", &[]), 600);
        assert_eq!(call_i32(&mut store, inst, "small_is_null", &[Val::I32(599)]), 1);
        assert_eq!(call_i32(&mut store, inst, "grow_small", &[Val::I32(400)]), 600, "up to the store-wide limit");
        assert_eq!(call_i32(&mut store, inst, "grow_small", &[Val::I32(1)]), -1, "past the store-wide limit");
        assert_eq!(call_i32(&mut store, inst, "small_size", &[]), 1000);
        return;
    }
    for setup in ["kvm-ring", "process"] {
        let out = in_child(NAME, setup);
        let growth = reported(&out, "rss_growth");
        let declared = TABLES * TABLE_MIN * 8;
        assert!(growth < 48 << 20, "{setup}: instantiating {declared} bytes of declared tables grew RSS by {growth} bytes");
    }
}

/// Finding 12a (issue 12): per-table limits multiply by the number of tables (and of instances),
/// so the store bounds the elements of all its tables together (`max_table_elements_total`): the
/// amplifying module is refused by default with an error that names the limit, and `table.grow`
/// fails (-1) at the store-wide limit even when the table's own limit would allow it.
#[test]
fn the_store_bounds_table_elements_in_all() {
    for isolation in MODES {
        let mut store = new_store(isolation, HostcallTransport::Auto, StoreConfig::default());
        let total = store.config().max_table_elements_total;
        let err = Linker::new().instantiate(&mut store, &load(&amplifying_module())).expect_err("13 × 10M elements by default");
        assert!(matches!(err, Error::Limit(_)) && err.to_string().contains("max_table_elements_total"), "{isolation:?}: {err}");
        // The refused module left nothing behind: a table of the whole budget still fits.
        let wat = format!(
            r#"(module (table $a {} funcref) (table $b 0 funcref)
                (func (export "grow_b") (param i32) (result i32) (table.grow $b (ref.null func) (local.get 0))))"#,
            total - 10
        );
        let inst = Linker::new().instantiate(&mut store, &load(&wat)).expect("within the store-wide limit");
        assert_eq!(call_i32(&mut store, inst, "grow_b", &[Val::I32(11)]), -1, "{isolation:?}: past the store-wide limit");
        assert_eq!(call_i32(&mut store, inst, "grow_b", &[Val::I32(10)]), 0, "{isolation:?}: up to it");
        let more = Linker::new().instantiate(&mut store, &load("(module (table 1 funcref))"));
        assert!(matches!(more, Err(Error::Limit(_))), "{isolation:?}: another instance's table counts too: {more:?}");
    }
}

// ---- Finding 12b: host calls from forged names --------------------------------------------------

/// Which instance each host function saw as its caller, by function name.
type Seen = Arc<Mutex<Vec<(&'static str, Option<InstanceId>)>>>;

fn recording(store: &mut Store, name: &'static str, seen: &Seen) -> wasce_engine::FuncId {
    let seen = seen.clone();
    store.new_host_func(
        FuncType { params: vec![], results: vec![] },
        Arc::new(move |caller: &mut Caller<'_>, _: &[Val], _: &mut [Val]| {
            seen.lock().unwrap().push((name, caller.instance));
            Ok(())
        }),
    )
}

/// Finding 12b (issue 12): "any instance in a store can act as another instance's vmctx and call
/// host functions it never imported", with ordinary modules linked in one store: X imports
/// `whoami` and puts it in a table it exports; Y never imports `whoami` but calls it through X's
/// table. The host function must run on behalf of the instance that imported it (X), never of Y.
/// Both isolation modes, both KVM transports.
#[test]
fn a_host_function_runs_for_the_instance_that_imported_it() {
    for (isolation, hostcall) in SETUPS {
        let mut store = new_store(isolation, hostcall, StoreConfig::default());
        let seen: Seen = Arc::default();
        let whoami = recording(&mut store, "whoami", &seen);
        let mut linker = Linker::new();
        linker.define("env", "whoami", Extern::Func(whoami));
        let x = linker
            .instantiate(
                &mut store,
                &load(
                    r#"(module (import "env" "whoami" (func $w)) (table (export "t") 1 funcref) (elem (i32.const 0) $w)
                         (func (export "direct") (call $w)))"#,
                ),
            )
            .unwrap();
        linker.define_instance(&store, "x", x);
        let y = linker
            .instantiate(
                &mut store,
                &load(r#"(module (import "x" "t" (table 1 funcref)) (func (export "via_table") (call_indirect (i32.const 0))))"#),
            )
            .unwrap();
        store.call(func(&store, x, "direct"), &[]).unwrap();
        store.call(func(&store, y, "via_table"), &[]).unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen, vec![("whoami", Some(x)), ("whoami", Some(x))], "{isolation:?}/{hostcall:?}: Y = {y:?} never imported whoami");
    }
}

/// Raw guest code: the HostCall builtin called through the builtin table, as compiled code calls
/// it (so in ring mode over the ring), with rdi = `caller`, rsi = `name`, rdx = the values array
/// (the entry's rcx); the status goes to value slot 3.
fn host_call_code(builtins: u64, caller: u64, name: u64) -> Vec<u8> {
    let mut c = vec![0x41, 0x54]; // push r12 (also aligns the stack for the call)
    c.extend([0x49, 0x89, 0xcc]); // mov r12, rcx
    c.extend([0x48, 0xbf]); // mov rdi, caller
    c.extend(caller.to_le_bytes());
    c.extend([0x48, 0xbe]); // mov rsi, name
    c.extend(name.to_le_bytes());
    c.extend([0x4c, 0x89, 0xe2]); // mov rdx, r12
    c.extend([0x48, 0xb8]); // mov rax, builtins
    c.extend(builtins.to_le_bytes());
    c.extend([0xff, 0x50, 8 * 10]); // call [rax + 8 * HostCall]
    c.extend([0x49, 0x89, 0x44, 0x24, 0x30]); // mov [r12 + 48], rax
    c.extend([0x41, 0x5c, 0xc3]); // pop r12; ret
    c
}

/// Make the host-call builtin call from a guest in `store`: raw code in the VM, or in process
/// mode the dispatcher compiled code's builtin calls into. Returns the status (0 = the host
/// function ran).
fn forged_host_call(store: &mut Store, caller: u64, name: u64) -> u64 {
    match store.isolation() {
        Isolation::Kvm => {
            let code = host_call_code(testing::builtin_table(store), caller, name);
            let mut values = vec![0u128; 8];
            match testing::run_guest_code(store, &code, &mut values) {
                Ok(()) => values[3] as u64,
                Err(e) => panic!("the forged host call stopped the guest: {e}"),
            }
        }
        Isolation::Process => {
            let mut values = [0u128; 8];
            wasce_engine::store::dispatch_builtin(store, wasce_hypercall::HCALL_HOST_CALL, caller, [name, values.as_mut_ptr() as u64, 0, 0, 0])
        }
    }
}

/// Finding 12b (issue 12): raw guest code names host functions itself. A store has `allowed`
/// (imported by A), `b_only` (imported by B) and `secret` (defined, imported by nobody). From
/// A's side the guest calls the host-call builtin with the store's function ids (what the host
/// used to accept), with B's vmctx as the caller, and with every small integer: `secret` never
/// runs and no host function runs for an instance that did not import it. What raw code in
/// the VM can still do is documented: name a live import record of any instance in the same VM,
/// which then runs for that instance (the VM is the isolation unit). Legitimate calls work.
/// KVM (ring and exit) and process mode.
#[test]
fn forged_host_call_names_are_refused() {
    for (isolation, hostcall) in SETUPS {
        let what = format!("{isolation:?}/{hostcall:?}");
        let mut store = new_store(isolation, hostcall, StoreConfig::default());
        let seen: Seen = Arc::default();
        let allowed = recording(&mut store, "allowed", &seen);
        let b_only = recording(&mut store, "b_only", &seen);
        let secret = recording(&mut store, "secret", &seen);
        let mut linker = Linker::new();
        linker.define("env", "allowed", Extern::Func(allowed));
        linker.define("env", "b_only", Extern::Func(b_only));
        linker.define("env", "secret", Extern::Func(secret));
        let a = linker.instantiate(&mut store, &load(r#"(module (import "env" "allowed" (func $f)) (func (export "run") (call $f)))"#)).unwrap();
        let b_module = load(r#"(module (import "env" "b_only" (func $f)) (func (export "run") (call $f)))"#);
        let b = linker.instantiate(&mut store, &b_module).unwrap();
        let (va, vb) = (testing::vmctx(&store, a), testing::vmctx(&store, b));

        // Legitimate calls.
        store.call(func(&store, a, "run"), &[]).unwrap();
        store.call(func(&store, b, "run"), &[]).unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![("allowed", Some(a)), ("b_only", Some(b))], "{what}");
        seen.lock().unwrap().clear();

        // Forged names: the store's function ids with A's and B's vmctx, small integers.
        for caller in [va, vb] {
            for f in [secret, b_only, allowed] {
                let status = forged_host_call(&mut store, caller, testing::func_index(f));
                assert_ne!(status, 0, "{what}: a function id from caller {caller:#x} was accepted");
            }
            for name in (0..64).chain([u64::MAX, 1 << 40, caller, caller + 8]) {
                forged_host_call(&mut store, caller, name);
            }
        }
        let ran = seen.lock().unwrap().clone();
        assert!(ran.iter().all(|(name, _)| *name != "secret"), "{what}: `secret`, imported by nobody, ran: {ran:?}");
        assert!(
            ran.iter().all(|(name, inst)| (*name == "allowed" && *inst == Some(a)) || (*name == "b_only" && *inst == Some(b))),
            "{what}: a host function ran for an instance that did not import it: {ran:?}"
        );
        seen.lock().unwrap().clear();

        // The boundary: B's own import record (an address in B's vmctx, which raw code in the VM
        // can read) is accepted from A's side, and the function runs for B, its importer.
        let record = vb + b_module.compiled.layout.funcref(0) as u64;
        assert_eq!(forged_host_call(&mut store, va, record), 0, "{what}: a live import record");
        assert_eq!(*seen.lock().unwrap(), vec![("b_only", Some(b))], "{what}");

        // And everything still works.
        seen.lock().unwrap().clear();
        store.call(func(&store, a, "run"), &[]).unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![("allowed", Some(a))], "{what}");
    }
}

// ---- Finding 12c: failed instantiations and guest mappings --------------------------------------

/// Raw guest code: read the 8 bytes at `addr` into value slot 0.
fn read_code(addr: u64) -> Vec<u8> {
    let mut c = vec![0x48, 0xb8]; // mov rax, addr
    c.extend(addr.to_le_bytes());
    c.extend([0x48, 0x8b, 0x00]); // mov rax, [rax]
    c.extend([0x48, 0x89, 0x01]); // mov [rcx], rax
    c.push(0xc3);
    c
}

/// What the guest gets reading `addr`: the bytes, or the error that stopped it.
fn guest_read(store: &mut Store, addr: u64) -> Result<u64, Error> {
    let mut values = vec![0u128; 2];
    testing::run_guest_code(store, &read_code(addr), &mut values).map(|()| values[0] as u64)
}

/// Modules whose instantiation fails, each with a code image of its own: (what, module,
/// whether the instance exists when it fails).
fn failing_modules() -> Vec<(&'static str, String, bool)> {
    let body = "(func $f (result i32) (i32.const 41)) (func (export \"f\") (result i32) (call $f))";
    vec![
        ("a memory over the limit", format!("(module (memory 2000) {body})"), false),
        ("a table over the limit", format!("(module (memory 1) (table 2000 funcref) {body})"), false),
        ("a failed import", format!("(module (import \"env\" \"missing\" (func)) (memory 1) {body})"), false),
        ("an out-of-bounds data segment", format!("(module (memory 1) (data (i32.const 65535) \"ab\") {body})"), true),
        ("an out-of-bounds element segment", format!("(module (memory 1) (table 1 funcref) (elem (i32.const 1) $f) {body})"), true),
        ("a start function trap", format!("(module (memory 1) {body} (func $start unreachable) (start $start))"), true),
    ]
}

const SECRET: u64 = 0x5ec7_e7da_7a5e_c7e7;

/// Finding 12c (issue 12): "a failed instantiation leaves a queued guest mapping of freed host
/// memory". Each failing module is instantiated (and fails), then dropped, which frees its code
/// image; the host reuses the address for a page of "another tenant's" data; a later
/// instantiation applies whatever mappings are queued; then guest code reads the address. It
/// must fault, unless the failed instance exists (a segment or start trap: the store keeps it,
/// as the spec requires, and its code is still its code). KVM, ring and exit, in a child
/// process so that nothing else takes the freed addresses.
#[test]
fn failed_instantiation_leaves_no_mapping_of_freed_memory() {
    const NAME: &str = "failed_instantiation_leaves_no_mapping_of_freed_memory";
    if is_child(NAME) {
        let (isolation, hostcall) = isolation_arg(&child_args());
        let config = StoreConfig { max_memory_pages: 1000, max_table_elements: 1000, ..StoreConfig::default() };
        let mut store = new_store(isolation, hostcall, config);
        for (what, wat, exists) in failing_modules() {
            let module = load(&wat);
            let code = module.code_base();
            let first = u64::from_le_bytes(module.compiled.code.bytes()[..8].try_into().unwrap());
            let r = Linker::new().instantiate(&mut store, &module);
            assert!(r.is_err(), "{what}: instantiation should fail");
            drop(module);
            if !exists {
                // The module's code is gone; put someone else's data at its address.
                // SAFETY: MAP_FIXED_NOREPLACE maps a fresh page only if nothing is there.
                let p = unsafe {
                    libc::mmap(code as *mut _, 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE, -1, 0)
                };
                assert_eq!(p as u64, code, "{what}: the freed code address is free again");
                // SAFETY: the page was just mapped read-write.
                unsafe { (p as *mut u64).write(SECRET) };
            }
            // Another instantiation (it flushes queued mappings), which works.
            let ok = Linker::new().instantiate(&mut store, &load(r#"(module (memory 1) (func (export "f") (result i32) (i32.const 5)))"#)).unwrap();
            assert_eq!(call_i32(&mut store, ok, "f", &[]), 5, "{what}");
            match guest_read(&mut store, code) {
                Ok(v) if exists => assert_eq!(v, first, "{what}: the failed instance's code is still its code"),
                Ok(v) => panic!("{what}: the guest read freed host memory at {code:#x} (got {v:#x}, secret {SECRET:#x})"),
                Err(e) if !exists => assert!(e.to_string().contains("faulted") || e.to_string().contains("unbacked"), "{what}: {e}"),
                Err(e) => panic!("{what}: the failed instance's code is not mapped: {e}"),
            }
            println!("\nREPORT checked={}", 1);
        }
        return;
    }
    for setup in ["kvm-ring", "kvm-exit"] {
        in_child(NAME, setup);
    }
}

/// Finding 12c (issue 12), both isolation modes: objects created by an instantiation that fails
/// before the instance exists (its memory, its tables' share of the store-wide limit) are given
/// back, not kept by the store: 200 failed instantiations do not grow the process's address space
/// by 200 memory reservations, and do not use up the table limit.
#[test]
fn failed_instantiations_give_back_what_they_created() {
    const NAME: &str = "failed_instantiations_give_back_what_they_created";
    if is_child(NAME) {
        let (isolation, hostcall) = isolation_arg(&child_args());
        let config = StoreConfig { max_memory_pages: 1000, max_table_elements: 1000, ..StoreConfig::default() };
        let mut store = new_store(isolation, hostcall, config);
        // A memory and a table within the limits, then a table over them.
        let module = load("(module (memory 1) (table 900 funcref) (table 2000 funcref))");
        Linker::new().instantiate(&mut store, &load("(module (memory 1))")).unwrap();
        let (before, _) = statm();
        for _ in 0..200 {
            assert!(matches!(Linker::new().instantiate(&mut store, &module), Err(Error::Limit(_))));
        }
        let (after, _) = statm();
        println!("\nREPORT vm_growth={}", after.saturating_sub(before));
        let ok = Linker::new().instantiate(&mut store, &load(r#"(module (memory 1) (func (export "f") (result i32) (i32.const 5)))"#)).unwrap();
        assert_eq!(call_i32(&mut store, ok, "f", &[]), 5);
        return;
    }
    for setup in ["kvm-ring", "process"] {
        let out = in_child(NAME, setup);
        let growth = reported(&out, "vm_growth");
        assert!(growth < 8 << 30, "{setup}: 200 failed instantiations grew the address space by {growth} bytes");
    }
}
