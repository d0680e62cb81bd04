//! AOT artifacts: a module compiled to a `.cwasm` file and loaded from it behaves exactly like
//! the module compiled in process, in both isolation modes (results, memory and table
//! initialisation, host calls, traps and their backtraces); a truncated, corrupted or
//! incompatible artifact is an error and never a panic; the code section is page-aligned and
//! mapped straight from the file. Needs /dev/kvm (fails loudly without it).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use wasce_compiler::artifact;
use wasce_engine::{Error, Extern, Isolation, Linker, Module, Settings, Store, StoreConfig, Val};

const MODULE: &str = r#"
(module
  (import "host" "twice" (func $twice (param i32) (result i32)))
  (type $ii (func (param i32) (result i32)))
  (memory (export "mem") 1 4)
  (data (i32.const 16) "hello, artifact")
  (data $passive "PASSIVE")
  (table 4 funcref)
  (elem (i32.const 0) $inc $dbl)
  (elem $later func $twice)
  (global $g (mut i32) (i32.const 100))
  (global (export "answer") i64 (i64.const 42))
  (func $init (i32.store8 (i32.const 0) (i32.const 7)))
  (start $init)
  (func $inc (type $ii) (i32.add (local.get 0) (i32.const 1)))
  (func $dbl (type $ii) (i32.mul (local.get 0) (i32.const 2)))
  (func (export "indirect") (param i32 i32) (result i32)
    (call_indirect (type $ii) (local.get 1) (local.get 0)))
  (func (export "host") (param i32) (result i32) (call $twice (local.get 0)))
  (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export "passive") (result i32)
    (memory.init $passive (i32.const 1000) (i32.const 1) (i32.const 6))
    (table.init $later (i32.const 2) (i32.const 0) (i32.const 1))
    (i32.add (i32.load8_u (i32.const 1000)) (call_indirect (type $ii) (i32.const 5) (i32.const 2))))
  (func (export "bump") (result i32)
    (global.set $g (i32.add (global.get $g) (i32.const 1))) (global.get $g))
  (func (export "grow") (result i32) (drop (memory.grow (i32.const 1))) (memory.size))
  (func (export "floats") (param f64 i64) (result f64 i64)
    (f64.mul (local.get 0) (f64.const 1.5)) (i64.rotl (local.get 1) (i64.const 13)))
  (func $inner (result i32) (i32.load (i32.const 400000)))
  (func $middle (result i32) (i32.add (call $inner) (i32.const 1)))
  (func $outer (export "trap") (result i32) (call $middle))
  (func $spin (param i32) (if (local.get 0) (then (call $spin (i32.sub (local.get 0) (i32.const 1))))) (unreachable))
  (func (export "unreachable") (call $spin (i32.const 3)))
  (func (export "divide") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
)
"#;

/// (export, arguments) run against every build of MODULE.
fn calls() -> Vec<(&'static str, Vec<Val>)> {
    vec![
        ("load", vec![Val::I32(0)]),
        ("load", vec![Val::I32(16)]),
        ("load", vec![Val::I32(30)]),
        ("indirect", vec![Val::I32(0), Val::I32(41)]),
        ("indirect", vec![Val::I32(1), Val::I32(21)]),
        ("indirect", vec![Val::I32(3), Val::I32(1)]),
        ("host", vec![Val::I32(17)]),
        ("passive", vec![]),
        ("bump", vec![]),
        ("bump", vec![]),
        ("grow", vec![]),
        ("floats", vec![Val::F64(2.5f64.to_bits()), Val::I64(-5)]),
        ("trap", vec![]),
        ("unreachable", vec![]),
        ("divide", vec![Val::I32(7), Val::I32(0)]),
        ("divide", vec![Val::I32(i32::MIN), Val::I32(-1)]),
        ("divide", vec![Val::I32(-9), Val::I32(2)]),
    ]
}

/// A module with enough code for many pages: a chain of 400 functions.
fn big_module() -> String {
    let mut wat = String::from("(module\n  (func $f0 (param i32) (result i32) (local.get 0))\n");
    for i in 1..400 {
        wat += &format!(
            "  (func $f{i} (param i32) (result i32) (call $f{} (i32.xor (i32.add (i32.mul (local.get 0) (i32.const {})) (i32.const {i})) (i32.shr_u (local.get 0) (i32.const 7)))))\n",
            i - 1,
            2 * i + 1
        );
    }
    wat += "  (func (export \"chain\") (param i32) (result i32) (call $f399 (local.get 0))))\n";
    wat
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("wasce-aot-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).unwrap()
}

fn compile_artifact(wat: &str) -> Vec<u8> {
    wasce_engine::compile_to_artifact(&wasm(wat), &Settings::default()).unwrap()
}

/// Run every call of `calls` in a fresh store; describe each outcome (results, or the trap's
/// message and backtrace) as a string for comparison.
fn run(module: &Module, isolation: Isolation, calls: &[(&str, Vec<Val>)]) -> Vec<String> {
    let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).expect("create store");
    let mut linker = Linker::new();
    let ty = wasce_engine::FuncType { params: vec![wasce_compiler::module::WasmType::I32], results: vec![wasce_compiler::module::WasmType::I32] };
    let twice = store.new_host_func(
        ty,
        Arc::new(|_: &mut wasce_engine::Caller<'_>, args: &[Val], results: &mut [Val]| {
            let Val::I32(x) = args[0] else { unreachable!() };
            results[0] = Val::I32(x * 2);
            Ok(())
        }),
    );
    linker.define("host", "twice", Extern::Func(twice));
    let instance = linker.instantiate(&mut store, module).expect("instantiate");
    let mut out = Vec::new();
    for (name, args) in calls {
        let Some(Extern::Func(f)) = store.export(instance, name) else { panic!("no export {name}") };
        out.push(match store.call(f, args) {
            Ok(vals) => format!("{name}{args:?} = {vals:?}"),
            Err(Error::Trap(t)) => format!("{name}{args:?} trapped: {t} at {:?}", t.backtrace),
            Err(e) => format!("{name}{args:?} failed: {e}"),
        });
    }
    if let Some(Extern::Global(g)) = store.export(instance, "answer") {
        out.push(format!("answer = {:?}", store.global_get(g)));
    }
    out
}

#[test]
fn artifact_runs_like_the_wasm_in_both_modes() {
    let dir = Scratch::new();
    let from_wasm = wasce_engine::load(&wasm(MODULE), &Settings::default()).unwrap();
    let path = dir.write("module.cwasm", &compile_artifact(MODULE));
    let from_artifact = wasce_engine::load_artifact(&path).unwrap();
    assert_eq!(from_artifact.compiled.code.bytes(), from_wasm.compiled.code.bytes(), "same code image");

    let calls = calls();
    for isolation in [Isolation::Kvm, Isolation::Process] {
        let expected = run(&from_wasm, isolation, &calls);
        let actual = run(&from_artifact, isolation, &calls);
        assert_eq!(actual, expected, "in {isolation:?}");
    }
    // What the outcomes are (so that "equal" is not "equally broken").
    let outcomes = run(&from_artifact, Isolation::Kvm, &calls);
    let expect = [
        "load[I32(0)] = [I32(7)]",
        "load[I32(16)] = [I32(104)]",
        "indirect[I32(0), I32(41)] = [I32(42)]",
        "indirect[I32(1), I32(21)] = [I32(42)]",
        "indirect[I32(3), I32(1)] trapped: wasm trap: uninitialized element",
        "host[I32(17)] = [I32(34)]",
        "passive[] = [I32(75)]", // 'A' (65) + twice(5)
        "bump[] = [I32(102)]",
        "grow[] = [I32(2)]",
        "trap[] trapped: wasm trap: out of bounds memory access at [\"inner\", \"middle\", \"outer\"]",
        "unreachable[] trapped: wasm trap: unreachable at [\"spin\", \"spin\", \"spin\", \"spin\", \"<wasm function 15>\"]",
        "divide[I32(7), I32(0)] trapped: wasm trap: integer divide by zero",
        "divide[I32(-2147483648), I32(-1)] trapped: wasm trap: integer overflow",
        "answer = I64(42)",
    ];
    for e in expect {
        assert!(outcomes.iter().any(|o| o.starts_with(e)), "no outcome starts with {e:?}:\n{outcomes:#?}");
    }
}

#[test]
fn multi_page_code_is_copied_out_of_the_file_and_runs_in_both_modes() {
    let dir = Scratch::new();
    let bytes = compile_artifact(&big_module());
    let header = artifact::header(&bytes, key()).unwrap();
    assert_eq!(header.code.start % 4096, 0, "code section offset {} is not page-aligned", header.code.start);
    assert_eq!(header.data.start % 4096, 0, "data section offset {} is not page-aligned", header.data.start);
    assert_eq!(header.code.end, bytes.len(), "the code section ends the file");
    assert!(header.code.len() > 3 * 4096, "want several pages of code, got {} bytes", header.code.len());
    let path = dir.write("big.cwasm", &bytes);
    let module = wasce_engine::load_artifact(&path).unwrap();

    // The code runs from anonymous read-execute memory, never from a mapping of the file
    // (whose unwritten pages would keep following the file).
    let base = module.code_base();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| u64::from_str_radix(l.split('-').next().unwrap(), 16) == Ok(base))
        .unwrap_or_else(|| panic!("no mapping at {base:#x}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1], "r-xp", "{line}");
    assert_eq!(fields.len(), 5, "code is an anonymous mapping: {line}");
    assert!(!maps.contains(path.canonicalize().unwrap().to_str().unwrap()), "nothing maps the artifact:\n{maps}");

    let from_wasm = wasce_engine::load(&wasm(&big_module()), &Settings::default()).unwrap();
    let calls: Vec<_> = [0, 1, 12345, -1].iter().map(|&x| ("chain", vec![Val::I32(x)])).collect();
    for isolation in [Isolation::Kvm, Isolation::Process] {
        let run = |m: &Module| {
            let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).expect("create store");
            let instance = Linker::new().instantiate(&mut store, m).unwrap();
            let Some(Extern::Func(f)) = store.export(instance, "chain") else { panic!() };
            calls.iter().map(|(_, args)| store.call(f, args).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(&module), run(&from_wasm), "in {isolation:?}");
    }

    // Rewriting the file in place (as a guest whose preopen holds it could) changes nothing
    // that runs, and it can be deleted while loaded.
    let code_before = module.compiled.code.bytes().to_vec();
    std::fs::write(&path, vec![0xccu8; bytes.len()]).unwrap();
    assert_eq!(module.compiled.code.bytes(), &code_before[..]);
    std::fs::remove_file(&path).unwrap();
    let mut store = Store::new(StoreConfig { isolation: Isolation::Process, ..StoreConfig::default() }).unwrap();
    let instance = Linker::new().instantiate(&mut store, &module).unwrap();
    let Some(Extern::Func(f)) = store.export(instance, "chain") else { panic!() };
    assert!(store.call(f, &[Val::I32(3)]).is_ok());
}

/// The data segments of a module loaded from an artifact are mapped copy-on-write from a
/// sealed memfd holding the artifact's image section (never from the artifact file, which a
/// guest might be able to write): instances see the data, their writes stay private (to the
/// instance, not to the file or other instances), in both isolation modes; a module compiled in
/// process maps the same image the same way. (A memory of the VM takes an image this small as
/// a copy instead, and must show the same contents and privacy.)
#[test]
fn data_segments_are_mapped_copy_on_write() {
    const DATA: &str = r#"
    (module
      (memory (export "mem") 4)
      (data (i32.const 70000) "image")
      (data (i32.const 70002) "AG")
      (data (i32.const 200000) "far")
      (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0)))
      (func (export "store") (param i32 i32) (i32.store8 (local.get 0) (local.get 1))))"#;
    let dir = Scratch::new();
    let bytes = compile_artifact(DATA);
    let header = artifact::header(&bytes, key()).unwrap();
    assert_eq!(header.image.start % 4096, 0);
    // Pages 17 (70000 / 4096) to 48 (200002 / 4096): 32 pages.
    assert_eq!(header.image.len(), 32 * 4096, "{header:?}");
    assert_eq!(&bytes[header.image.start + 70000 - 17 * 4096..][..5], b"imAGe");
    let path = dir.write("data.cwasm", &bytes);
    let file_path = path.canonicalize().unwrap();
    let from_artifact = wasce_engine::load_artifact(&path).unwrap();
    let from_wasm = wasce_engine::load(&wasm(DATA), &Settings::default()).unwrap();
    for module in [&from_artifact, &from_wasm] {
        for isolation in [Isolation::Kvm, Isolation::Process] {
            let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).unwrap();
            let a = Linker::new().instantiate(&mut store, module).unwrap();
            let b = Linker::new().instantiate(&mut store, module).unwrap();
            let func = |i, name| match store.export(i, name) { Some(Extern::Func(f)) => f, _ => panic!("no {name}") };
            let (load_a, store_a, load_b) = (func(a, "load"), func(a, "store"), func(b, "load"));
            let load = |store: &mut Store, f, at: i32| store.call(f, &[Val::I32(at)]).unwrap()[0];
            let text: Vec<Val> = (70000..70005).map(|at| load(&mut store, load_a, at)).collect();
            assert_eq!(text, b"imAGe".iter().map(|&c| Val::I32(c as i32)).collect::<Vec<_>>(), "{isolation:?}");
            assert_eq!(load(&mut store, load_a, 200001), Val::I32(b'a' as i32));
            assert_eq!(load(&mut store, load_a, 69999), Val::I32(0), "zeros around the data");
            assert_eq!(load(&mut store, load_a, 100000), Val::I32(0), "zeros between the segments");
            store.call(store_a, &[Val::I32(70000), Val::I32(b'X' as i32)]).unwrap();
            store.call(store_a, &[Val::I32(100000), Val::I32(1)]).unwrap();
            assert_eq!(load(&mut store, load_a, 70000), Val::I32(b'X' as i32));
            assert_eq!(load(&mut store, load_b, 70000), Val::I32(b'i' as i32), "the other instance keeps the image");
            assert_eq!(load(&mut store, load_b, 100000), Val::I32(0));
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
            let image_maps = maps.lines().filter(|l| l.contains("memfd:wasce-memory-image") && l.contains(" rw-p ")).count();
            match isolation {
                Isolation::Process => assert!(image_maps >= 2, "each instance maps the image from the sealed memfd:\n{maps}"),
                // A memory of the VM takes a small image as a copy (`LinearMemory::prefers_copy`).
                Isolation::Kvm => assert_eq!(image_maps, 0, "a small image is copied into a memory of the VM:\n{maps}"),
            }
            assert!(!maps.contains(file_path.to_str().unwrap()), "nothing maps the artifact file:\n{maps}");
        }
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the artifact is never written");
}

/// This user's artifact key (the test process's own, as `wasce` would use).
fn key() -> &'static artifact::Key {
    wasce_engine::key::user_key().expect("the artifact key")
}

fn load_err(dir: &Scratch, name: &str, bytes: &[u8]) -> String {
    let path = dir.write(name, bytes);
    match wasce_engine::load_artifact(&path) {
        Ok(_) => panic!("{name}: loaded a bad artifact"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "not one line: {msg}");
            assert!(msg.contains(name), "the error names the file: {msg}");
            msg
        }
    }
}

#[test]
fn truncated_artifacts_are_errors() {
    let dir = Scratch::new();
    let bytes = compile_artifact(MODULE);
    // Every length, decoding in memory.
    for len in 0..bytes.len() {
        assert!(artifact::deserialize(&bytes[..len], key()).is_err(), "truncated to {len} bytes decoded");
    }
    // Many lengths, loading from a file.
    let header = artifact::header(&bytes, key()).unwrap();
    let mut lengths: Vec<usize> = (0..bytes.len()).step_by(97).collect();
    lengths.extend([1, 8, 9, 15, 16, 47, 48, 49, 55, 56, 119, 120, 121, header.meta.start, header.meta.end, header.data.start, header.image.start, header.image.end, header.code.start, header.code.start + 1, bytes.len() - 1]);
    for len in lengths {
        let msg = load_err(&dir, "cut.cwasm", &bytes[..len]);
        if len >= 120 {
            assert!(msg.contains(&format!("truncated ({len} of {} bytes)", bytes.len())), "{msg}");
        }
    }
}

#[test]
fn corrupted_artifacts_are_errors() {
    let dir = Scratch::new();
    let bytes = compile_artifact(MODULE);
    let mut copy = bytes.clone();
    // Every byte, decoding in memory; one flipped bit and one overwritten byte.
    for i in 0..bytes.len() {
        for new in [bytes[i] ^ 1, bytes[i].wrapping_add(0x80)] {
            copy[i] = new;
            assert!(artifact::deserialize(&copy, key()).is_err(), "byte {i} changed to {new:#x} decoded");
        }
        copy[i] = bytes[i];
    }
    // Many positions, loading from a file: the MAC catches them.
    for i in (16..bytes.len()).step_by(131).chain([30, 40, 50, 80, 100, bytes.len() - 1]) {
        copy[i] ^= 0x40;
        let msg = load_err(&dir, "flipped.cwasm", &copy);
        assert!(msg.contains("failed authentication") || msg.contains("truncated"), "byte {i}: {msg}");
        copy[i] = bytes[i];
    }
    // Not an artifact at all, and an artifact with a wrong format version.
    assert!(load_err(&dir, "empty.cwasm", b"").contains("not a wasce artifact"));
    assert!(load_err(&dir, "wasm.cwasm", &wasm(MODULE)).contains("not a wasce artifact"));
    copy[12] = 9;
    let msg = load_err(&dir, "v9.cwasm", &copy);
    let reads = format!("reads version {}", artifact::FORMAT_VERSION);
    assert!(msg.contains("format version 9") && msg.contains(&reads) && msg.contains("recompile"), "{msg}");
}

/// Replace `from` by `to` (same length) in the artifact's header and renew the MAC (as only a
/// holder of the user's key can).
fn edit_header(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let header_end = artifact::header(bytes, key()).unwrap().meta.start;
    let at = bytes[..header_end].windows(from.len()).position(|w| w == from.as_bytes()).unwrap_or_else(|| panic!("no {from:?} in the header"));
    let mut edited = bytes.to_vec();
    edited[at..at + to.len()].copy_from_slice(to.as_bytes());
    artifact::update_mac(&mut edited, key());
    edited
}

#[test]
fn incompatible_artifacts_name_both_builds() {
    let dir = Scratch::new();
    let bytes = compile_artifact(MODULE);
    let header = artifact::header(&bytes, key()).unwrap();
    // The crate version and the compiler's build id.
    let version = artifact::COMPILER_VERSION;
    assert!(version.starts_with(concat!(env!("CARGO_PKG_VERSION"), "+")), "{version}");
    assert_eq!(header.compiler_version, version);
    assert_eq!(header.isa, artifact::host_isa().unwrap());
    let (target, flags) = header.isa.split_once(' ').expect("the host has ISA flags");

    // Another compiler version.
    let other = "9".repeat(version.len());
    let msg = load_err(&dir, "version.cwasm", &edit_header(&bytes, version, &other));
    assert!(msg.contains(&format!("compiled by wasce {other} for {target} [{flags}]")), "{msg}");
    assert!(msg.contains(&format!("this is wasce {version} for {target} [{flags}]")), "{msg}");
    assert!(msg.contains("recompile it with `wasce compile`"), "{msg}");

    // An ISA extension this host does not have.
    let flag = flags.split(' ').next().unwrap();
    let fake = format!("has_{}", "x".repeat(flag.len() - 4));
    let msg = load_err(&dir, "isa.cwasm", &edit_header(&bytes, flag, &fake));
    assert!(msg.contains(&format!("this host lacks {fake}")) && msg.contains(&format!("this is wasce {version} for {target} [{flags}]")), "{msg}");

    // Another target.
    let other_target = format!("{}X", &target[..target.len() - 1]);
    let msg = load_err(&dir, "target.cwasm", &edit_header(&bytes, target, &other_target));
    assert!(msg.contains(&format!("for {other_target} [")), "{msg}");

    // Without the key, an edited header is refused.
    let mut unfixed = edit_header(&bytes, version, &other);
    unfixed[16] ^= 1;
    assert!(load_err(&dir, "unfixed.cwasm", &unfixed).contains("failed authentication"));
}

#[test]
fn cli_compiles_and_runs_artifacts() {
    let dir = Scratch::new();
    let wasce = Path::new(env!("CARGO_BIN_EXE_wasce"));
    let src = dir.write("fib.wat", b"(module (func $fib (export \"fib\") (param i32) (result i32)
        (if (result i32) (i32.lt_u (local.get 0) (i32.const 2)) (then (local.get 0))
          (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1))) (call $fib (i32.sub (local.get 0) (i32.const 2))))))))");
    let out = std::process::Command::new(wasce).arg("compile").arg(&src).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cwasm = dir.0.join("fib.cwasm");
    assert!(wasce_engine::is_artifact(&std::fs::read(&cwasm).unwrap()));

    // Detected by content, not by name.
    let renamed = dir.0.join("fib.wasm");
    std::fs::rename(&cwasm, &renamed).unwrap();
    for isolation in ["kvm", "process"] {
        let out = std::process::Command::new(wasce).args(["exec", "--isolation", isolation, "--invoke", "fib"]).arg(&renamed).arg("20").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "6765\n");
    }

    // -o, and a clear one-line error (exit 1) for a corrupted artifact.
    let custom = dir.0.join("custom.bin");
    let out = std::process::Command::new(wasce).arg("compile").arg(&src).arg("-o").arg(&custom).output().unwrap();
    assert!(out.status.success());
    let mut bytes = std::fs::read(&custom).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&custom, &bytes).unwrap();
    let out = std::process::Command::new(wasce).args(["exec", "--invoke", "fib"]).arg(&custom).arg("5").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("custom.bin: artifact failed authentication (it was not written by this user's wasce, or it was changed since); recompile it with `wasce compile`"), "{stderr}");

    // Compiling an artifact again is refused.
    let out = std::process::Command::new(wasce).arg("compile").arg(&renamed).arg("-o").arg(dir.0.join("again.cwasm")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already compiled"));
}
