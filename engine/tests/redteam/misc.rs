//! Issue 12, "Smaller ones": crafted artifacts with a valid checksum (finding a), panics after
//! confinement (finding b), process-mode fault handling next to an embedder's own signal
//! handlers (finding c).

use crate::common::{describe, text, wasm, Scratch};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use wasce_compiler::artifact;
use wasce_compiler::module::{ConstExpr, DataMode, ElemMode, WasmType};
use wasce_compiler::{CompiledModule, Settings};
use wasce_engine::{Error, HostcallTransport, Isolation, Linker, Store, StoreConfig};

// ---- (a) Crafted artifacts with a valid checksum --------------------------------------------

/// A module that uses every kind of constant expression the artifact stores: an imported
/// global, defined globals of each type, a table with an initialiser, active, passive and
/// declared element segments, active and passive data segments, exports of every kind.
const RICH: &str = r#"(module
  (import "env" "base" (global $base i32))
  (memory (export "mem") 1 2)
  (table $t (export "tab") 4 8 funcref)
  (global $a (export "a") i32 (i32.const 7))
  (global $b i32 (global.get $base))
  (global $c i64 (i64.const -1))
  (global $d f32 (f32.const 1.5))
  (global $e f64 (f64.const 2.5))
  (global $f funcref (ref.func $one))
  (global $g (mut i32) (i32.const 0))
  (global $h externref (ref.null extern))
  (func $one (result i32) (i32.const 1))
  (func $two (export "two") (result i32) (i32.add (global.get $a) (call_indirect (result i32) (i32.const 0))))
  (elem (i32.const 0) $one $two)
  (elem funcref (ref.func $one) (ref.null func))
  (elem declare func $two)
  (data (i32.const 16) "active")
  (data "passive"))"#;

/// A compiled module, decoded from a genuine artifact (so that it is exactly what the
/// compiler writes), for a test to change and serialize again with a valid checksum.
fn decoded(wat: &str) -> CompiledModule {
    let bytes = wasce_engine::compile_to_artifact(&wasm(wat), &Settings::default()).unwrap();
    artifact::deserialize(&bytes).unwrap().into_compiled()
}

/// The artifact of `module`, with a valid checksum.
fn forge(module: &CompiledModule) -> Vec<u8> {
    artifact::serialize(module, &Settings::default()).unwrap()
}

fn linker(store: &mut Store) -> Linker {
    let mut linker = Linker::new();
    let g = store
        .new_global(wasce_compiler::module::GlobalType { ty: WasmType::I32, mutable: false }, wasce_engine::Val::I32(5))
        .unwrap();
    linker.define("env", "base", wasce_engine::Extern::Global(g));
    linker
}

/// Load `path` through the library and instantiate it in `config`'s store; any panic is
/// caught and returned as `Err(message)`.
fn load_and_instantiate(path: &Path, config: StoreConfig) -> Result<Result<(), Error>, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let module = wasce_engine::load_artifact(path)?;
        let mut store = Store::new(config)?;
        let linker = linker(&mut store);
        linker.instantiate(&mut store, &module).map(drop)
    }))
    .map_err(|p| p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())
}

fn configs() -> [(&'static str, StoreConfig); 3] {
    let kvm = |hostcall| StoreConfig { isolation: Isolation::Kvm, hostcall, ..StoreConfig::default() };
    [
        ("process", StoreConfig { isolation: Isolation::Process, ..StoreConfig::default() }),
        ("kvm/ring", kvm(HostcallTransport::Ring)),
        ("kvm/exit", kvm(HostcallTransport::Exit)),
    ]
}

/// Each crafted artifact: a name, and how it differs from `RICH`.
fn crafted() -> Vec<(&'static str, CompiledModule)> {
    let base = decoded(RICH);
    let info_of = |f: &dyn Fn(&mut CompiledModule)| {
        let mut m = base.clone();
        f(&mut m);
        m
    };
    // Global indices: 0 = the import $base, 1.. = $a, $b, $c, $d, $e, $f, $g (mutable), $h.
    vec![
        // The finding: $a (global 1) reads $h (global 8), which does not exist yet.
        ("global.get of a later global", info_of(&|m| m.info.global_inits[0] = ConstExpr::GlobalGet(8))),
        ("global.get of itself", info_of(&|m| m.info.global_inits[0] = ConstExpr::GlobalGet(1))),
        ("global.get of a mutable global", info_of(&|m| m.info.datas[0].mode = DataMode::Active { memory: 0, offset: ConstExpr::GlobalGet(7) })),
        ("global.get out of range", info_of(&|m| m.info.table_inits[0] = ConstExpr::GlobalGet(1000))),
        ("an i32 global initialised with an i64", info_of(&|m| m.info.global_inits[0] = ConstExpr::I64(1))),
        ("a funcref global initialised with a number", info_of(&|m| m.info.global_inits[5] = ConstExpr::I64(0x4141_4141_4141))),
        ("a funcref global initialised with ref.null extern", info_of(&|m| m.info.global_inits[5] = ConstExpr::RefNull(WasmType::ExternRef))),
        ("ref.func out of range in a global", info_of(&|m| m.info.global_inits[5] = ConstExpr::RefFunc(99))),
        ("a table initialised with a number", info_of(&|m| m.info.table_inits[0] = ConstExpr::I32(0x1000))),
        ("an element item of the wrong type", info_of(&|m| m.info.elems[1].items[0] = ConstExpr::I64(8))),
        ("externref elements for a funcref table", info_of(&|m| {
            m.info.elems[0].ty = WasmType::ExternRef;
            m.info.elems[0].items = vec![ConstExpr::RefNull(WasmType::ExternRef)];
        })),
        ("an element offset of type i64", info_of(&|m| {
            if let ElemMode::Active { offset, .. } = &mut m.info.elems[0].mode {
                *offset = ConstExpr::I64(0);
            }
        })),
        ("a data offset of type f64", info_of(&|m| m.info.datas[0].mode = DataMode::Active { memory: 0, offset: ConstExpr::F64(0) })),
        ("a start function with a result", info_of(&|m| m.info.start = Some(1))),
        ("a memory above 4 GiB", info_of(&|m| m.info.memories[0].min = 1 << 20)),
        ("a memory with max below min", info_of(&|m| m.info.memories[0].max = Some(0))),
        ("a table with max below min", info_of(&|m| m.info.tables[0].max = Some(1))),
    ]
}

/// Finding a (issue 12): "a crafted artifact with a valid checksum panics the host
/// (`global.get` of a later global in an init expression)". Every constant expression, segment,
/// start function and limit of an artifact is checked when it is decoded: each crafted
/// artifact (changed metadata, valid checksum) is a clear "malformed artifact" error from
/// `load_artifact`, never a panic, whatever store it is meant for.
#[test]
fn crafted_artifacts_are_malformed_not_panics() {
    crate::common::kvm_required();
    let s = Scratch::new();
    // The genuine artifact loads and runs in every store.
    let good = s.write("good.cwasm", forge(&decoded(RICH)));
    for (name, config) in configs() {
        assert!(matches!(load_and_instantiate(&good, config), Ok(Ok(()))), "{name}: the genuine artifact must instantiate");
    }
    for (what, module) in crafted() {
        let path = s.write("crafted.cwasm", forge(&module));
        for (name, config) in configs() {
            match load_and_instantiate(&path, config) {
                Err(panic) => panic!("{what} ({name}): the host panicked: {panic}"),
                Ok(Ok(())) => panic!("{what} ({name}): the crafted artifact was instantiated"),
                Ok(Err(e)) => {
                    let msg = e.to_string();
                    assert!(msg.contains("malformed artifact"), "{what} ({name}): {msg}");
                }
            }
        }
    }
}

/// Finding a (issue 12), through the CLI: `wasce exec` of an artifact whose global initialiser
/// reads a later global ends with status 1 and names the malformed artifact, in both
/// isolation modes and both host-call transports (it used to panic: status 101).
#[test]
fn crafted_artifact_under_wasce_exec_is_an_error() {
    crate::common::kvm_required();
    let s = Scratch::new();
    let mut module = decoded(RICH);
    module.info.global_inits[0] = ConstExpr::GlobalGet(8);
    let path = s.write("crafted.cwasm", forge(&module));
    for args in [&["--isolation", "kvm", "--hostcall", "ring"][..], &["--isolation", "kvm", "--hostcall", "exit"], &["--isolation", "process"]] {
        let o = s.wasce().arg("exec").args(args).args(["--invoke", "two"]).arg(&path).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", describe(&o));
        let err = text(&o.stderr);
        assert!(err.contains("malformed artifact") && err.contains("global.get 8") && !err.contains("panicked"), "{args:?}: {err}");
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Finding a (issue 12), the class: random changes to the metadata of a genuine artifact,
/// each with a valid checksum, are decoded, validated and (when accepted) instantiated in
/// process isolation; none may panic. Mutants that move code (function or trampoline
/// locations, the trap table) are not run: the code of an artifact is trusted by design, only
/// its metadata is checked.
#[test]
fn mutated_metadata_never_panics() {
    const ROUNDS: usize = 20_000;
    let s = Scratch::new();
    let genuine = forge(&decoded(RICH));
    let header = artifact::deserialize(&genuine).unwrap().header;
    let original = decoded(RICH);
    let meta = header.meta.clone();
    let (mut accepted, mut instantiated) = (0, 0);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..ROUNDS {
        let mut bytes = genuine.clone();
        for _ in 0..1 + rng.below(3) {
            let at = meta.start + rng.below(meta.len());
            bytes[at] = match rng.below(4) {
                0 => bytes[at] ^ (1 << rng.below(8)),
                1 => bytes[at].wrapping_add(1),
                2 => bytes[at].wrapping_sub(1),
                _ => rng.next() as u8,
            };
        }
        artifact::update_checksum(&mut bytes);
        let decoded = catch_unwind(|| artifact::deserialize(&bytes).map(|a| a.into_compiled()));
        let Ok(decoded) = decoded else { panic!("round {round}: deserialize panicked") };
        let Ok(module) = decoded else { continue };
        accepted += 1;
        if module.funcs != original.funcs || module.entry_trampolines != original.entry_trampolines || module.host_trampolines != original.host_trampolines || module.traps != original.traps {
            continue;
        }
        let path = s.write("mutant.cwasm", &bytes);
        match load_and_instantiate(&path, StoreConfig { isolation: Isolation::Process, ..StoreConfig::default() }) {
            Err(panic) => panic!("round {round}: the host panicked: {panic}"),
            Ok(Ok(())) => instantiated += 1,
            Ok(Err(_)) => {}
        }
    }
    println!("mutated metadata: {accepted} of {ROUNDS} mutants decoded, {instantiated} instantiated");
    assert!(accepted > 0 && instantiated > 0, "the mutations exercised nothing ({accepted} decoded, {instantiated} instantiated)");
}
