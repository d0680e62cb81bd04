//! No input makes wasce panic: at least 10,000 generated, mutated and random modules go through
//! the compiler, and the valid ones through the runtime, each step under `catch_unwind`.
//!
//! Three populations, all derived from the fixed `BASE_SEED`:
//!
//! 1. **valid**: modules from wasm-smith, restricted to WebAssembly 2.0 (MVP, multi-value, bulk
//!    memory, reference types, SIMD, sign extension, saturating float-to-int, mutable globals),
//!    with fuel (`ensure_termination`) so every call ends. Each must compile. Then, for each
//!    exported function, a fresh store instantiates the module through a `Linker` with every
//!    import satisfied by a host object (functions returning zeros, new memories, tables and
//!    globals) and calls the function with zero arguments. Traps are fine; a rejected module, a
//!    link error or a panic is not. This runs in process isolation, and every `KVM_EVERY`th
//!    module runs again in KVM isolation (without a usable `/dev/kvm` the test fails: its KVM
//!    half never passes silently).
//! 2. **mutated**: each valid module after 1 to 8 random byte edits (flip a bit, overwrite,
//!    insert, delete). Compiling may succeed or fail but must not panic. Mutants are not run:
//!    nothing bounds their execution any more.
//! 3. **random**: the header `\0asm\1\0\0\0` followed by random bytes, half plain noise and half
//!    framed as sections with plausible ids and sizes (to get past the section reader). Compiling
//!    must not panic.
//!
//! Case `i` of a population draws everything from a splitmix64 generator seeded with
//! `case_seed(population, i)`; a failure names its population and case index and its bytes are
//! saved to `/tmp/wasce-fuzz-repro/<population>-<index>.wasm`. A panic inside compiled code
//! aborts the process rather than unwinding; set `NO_PANIC_TRACE=1` to print each case before it
//! runs, so the last line names the culprit. `NO_PANIC_SCALE=n` runs `n` times as many cases.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;

use arbitrary::Unstructured;
use wasce_compiler::module::ExportKind;
use wasce_engine::store::Isolation;
use wasce_engine::{Error, Extern, Module, Settings, Store, StoreConfig, Val};
use wasce_spec_tests::imports;

const BASE_SEED: u64 = 0x5741_5343_455f_4e50;
/// Valid modules generated; each also yields one mutant.
const VALID: u64 = 5_000;
/// Random byte strings.
const RANDOM: u64 = 4_000;
/// Loop iterations and calls each instance may make before wasm-smith's fuel check traps.
const FUEL: u32 = 1_000;
const HEADER: [u8; 8] = *b"\0asm\x01\0\0\0";
/// Every how many valid modules also run in KVM isolation (a VM per store is slow to set up).
const KVM_EVERY: u64 = 10;
const REPRO_DIR: &str = "/tmp/wasce-fuzz-repro";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Population {
    Valid,
    Mutated,
    Random,
}

impl Population {
    fn name(self) -> &'static str {
        match self {
            Population::Valid => "valid",
            Population::Mutated => "mutated",
            Population::Random => "random",
        }
    }
}

fn case_seed(population: Population, index: u64) -> u64 {
    BASE_SEED ^ ((population as u64 + 1) << 56) ^ index
}

/// splitmix64: tiny, deterministic, and good enough to drive a fuzzer.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

// ---- Generating cases ------------------------------------------------------------------------

/// wasm-smith restricted to the features wasce implements, and to small modules.
/// Half the modules avoid traps (so calls run further), half do not (so traps get exercised).
fn smith_config(rng: &mut Rng) -> wasm_smith::Config {
    wasm_smith::Config {
        disallow_traps: rng.below(2) == 0,
        max_memories: 3,
        max_tables: 4,
        // Small modules, so that ten thousand of them compile quickly.
        min_funcs: 1,
        max_funcs: 10,
        max_instructions: 100,
        max_nesting_depth: 6,
        max_types: 12,
        max_imports: 6,
        max_globals: 8,
        max_data_segments: 4,
        max_element_segments: 4,
        max_elements: 16,
        max_table_elements: 1_000,
        max_memory32_bytes: 16 << 16,
        max_memory64_bytes: 16 << 16,
        // Export everything, so that every function gets called.
        export_everything: true,
        // Every implemented proposal, also those the differential reference lacks (this test
        // only asks that nothing panics): exceptions and relaxed SIMD on top of `implemented()`.
        exceptions_enabled: true,
        relaxed_simd_enabled: true,
        gc_enabled: true,
        // Atomics and shared memories; modules with `memory.atomic.wait` are left out (below).
        threads_enabled: true,
        ..wasce_spec_tests::smith::implemented()
    }
}

/// A valid module with fuel, or `None` when wasm-smith gives up on this input.
fn smith_module(rng: &mut Rng) -> Option<Vec<u8>> {
    let config = smith_config(rng);
    let len = 512 + rng.below(4096);
    let data = rng.bytes(len);
    let mut module = wasm_smith::Module::new(config, &mut Unstructured::new(&data)).ok()?;
    module.ensure_termination(FUEL).ok()?;
    let wasm = module.to_bytes();
    // A wait with no timeout on a shared memory blocks for ever in a one-thread store (as the
    // spec says; in KVM mode only a deadline ends it), which fuel cannot bound: such modules are
    // skipped. Waits are tested in `engine/tests/threads.rs`.
    (!has_atomic_wait(&wasm)).then_some(wasm)
}

/// Whether any function body of `wasm` has a `memory.atomic.wait32/64`.
fn has_atomic_wait(wasm: &[u8]) -> bool {
    use wasmparser::{Operator, Parser, Payload};
    Parser::new(0).parse_all(wasm).any(|p| match p {
        Ok(Payload::CodeSectionEntry(body)) => body.get_operators_reader().is_ok_and(|mut ops| {
            // (Stops at the end or at the first operator that does not decode.)
            std::iter::from_fn(|| if ops.eof() { None } else { ops.read().ok() })
                .any(|op| matches!(op, Operator::MemoryAtomicWait32 { .. } | Operator::MemoryAtomicWait64 { .. }))
        }),
        _ => false,
    })
}

/// `wasm` after 1 to 8 random edits past the header.
fn mutate(wasm: &[u8], rng: &mut Rng) -> Vec<u8> {
    const INTERESTING: [u8; 8] = [0x00, 0x01, 0x0b, 0x40, 0x7f, 0x80, 0xfd, 0xff];
    let mut out = wasm.to_vec();
    for _ in 0..1 + rng.below(8) {
        let pos = HEADER.len() + rng.below(out.len().saturating_sub(HEADER.len()) + 1);
        if pos >= out.len() {
            out.push(rng.byte());
            continue;
        }
        match rng.below(5) {
            0 => out[pos] ^= 1 << rng.below(8),
            1 => out[pos] = rng.byte(),
            2 => out[pos] = INTERESTING[rng.below(INTERESTING.len())],
            3 => out.insert(pos, rng.byte()),
            _ => {
                out.remove(pos);
            }
        }
    }
    out
}

/// The header, then random bytes: plain noise, or sections with random ids, sizes and contents.
fn random_module(rng: &mut Rng) -> Vec<u8> {
    let mut out = HEADER.to_vec();
    if rng.below(2) == 0 {
        let len = rng.below(257);
        out.extend(rng.bytes(len));
    } else {
        for _ in 0..rng.below(7) {
            out.push(rng.below(14) as u8);
            let len = rng.below(64);
            let mut size = len as u32;
            loop {
                let byte = (size & 0x7f) as u8;
                size >>= 7;
                if size == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
            out.extend(rng.bytes(len));
        }
    }
    out
}

// ---- Running cases ---------------------------------------------------------------------------

thread_local! {
    /// Message and location of the last panic on this thread, recorded by the panic hook.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Record every panic with its location (`catch_unwind` only returns the payload).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            s.to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "(non-string payload)".to_string()
        };
        let location = info.location().map_or_else(String::new, |l| format!(" at {l}"));
        let text = format!("{msg}{location}");
        eprintln!("no_panic: panic: {text}");
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
    }));
}

/// Run `f`, turning a panic into `Err(message)`.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| "(unknown panic)".into()))
}

#[derive(Default)]
struct Tally {
    /// Whether valid modules also run in KVM isolation.
    kvm: bool,
    valid: u64,
    mutated: u64,
    random: u64,
    /// Modules that compiled / were rejected, over all populations.
    compiled: u64,
    rejected: u64,
    /// wasm-smith inputs it could not turn into a module (skipped, not counted as modules).
    smith_skipped: u64,
    instantiations: u64,
    /// Instantiations in KVM isolation (included in `instantiations`).
    kvm_instantiations: u64,
    calls: u64,
    returns: u64,
    traps: u64,
    failures: Vec<String>,
}

impl Tally {
    fn fail(&mut self, population: Population, index: u64, wasm: &[u8], what: &str) {
        let name = format!("{}-{index}", population.name());
        let saved = std::fs::create_dir_all(REPRO_DIR)
            .and_then(|()| std::fs::write(Path::new(REPRO_DIR).join(format!("{name}.wasm")), wasm));
        let path = match saved {
            Ok(()) => format!("{REPRO_DIR}/{name}.wasm"),
            Err(e) => format!("(not saved: {e})"),
        };
        let line = format!("{name} (seed {:#018x}, {path}): {what}", case_seed(population, index));
        eprintln!("no_panic: FAIL {line}");
        self.failures.push(line);
    }
}

/// A fresh store for `isolation`, and a host object for each import of `module`.
fn store_and_imports(module: &Module, isolation: Isolation) -> Result<(Store, Vec<Extern>), Error> {
    imports::store_and_imports(module, StoreConfig { isolation, max_memory_pages: 1024, ..StoreConfig::default() })
}

/// Sort what came back from instantiating or calling: a trap or an uncaught exception is
/// fine, other errors are not.
fn outcome(tally: &mut Tally, what: &str, result: Result<(), Error>) -> Result<(), String> {
    match result {
        Ok(()) => Ok(()),
        Err(Error::Trap(_) | Error::Exception) => {
            tally.traps += 1;
            Ok(())
        }
        Err(e) => Err(format!("{what}: unexpected error: {e}")),
    }
}

/// Instantiate a valid module once per exported function, in a fresh store each time (so each
/// call has the whole fuel), and call that function with zero arguments.
fn exercise(module: &Module, isolation: Isolation, tally: &mut Tally) -> Result<(), String> {
    let info = &module.compiled.info;
    let funcs: Vec<&str> =
        info.exports.iter().filter(|e| e.kind == ExportKind::Func).map(|e| e.name.as_str()).collect();
    for round in 0..funcs.len().max(1) {
        let (mut store, imports) =
            store_and_imports(module, isolation).map_err(|e| format!("creating imports: {e}"))?;
        tally.instantiations += 1;
        tally.kvm_instantiations += u64::from(isolation == Isolation::Kvm);
        let instance = match imports::instantiate(&mut store, module, &imports) {
            Ok(instance) => instance,
            // The store's GC heap limit reached by constant expressions is a clean error; and a
            // host function or tag of a type in a recursion group or with a declared supertype
            // cannot be made by the embedding API (only lone final function types), so such
            // imports do not link: both are outcomes, not failures.
            Err(Error::Limit(_)) => return Ok(()),
            Err(Error::Link(_)) if info.uses_gc_types() => return Ok(()),
            Err(e) => return outcome(tally, "instantiate", Err(e)),
        };
        let Some(&name) = funcs.get(round) else { break };
        let Some(Extern::Func(f)) = store.export(instance, name) else {
            return Err(format!("export {name:?} is not a function"));
        };
        let args: Vec<Val> = store.func_type(f).params.iter().map(|t| Val::null(*t)).collect();
        tally.calls += 1;
        let result = store.call(f, &args).map(|_| tally.returns += 1);
        outcome(tally, &format!("call {name:?}"), result)?;
    }
    Ok(())
}

/// Compile `wasm` (and run it, for the valid population), recording failures.
fn run_case(tally: &mut Tally, population: Population, index: u64, wasm: &[u8]) {
    if std::env::var_os("NO_PANIC_TRACE").is_some() {
        eprintln!("no_panic: {}-{index} ({} bytes)", population.name(), wasm.len());
    }
    match population {
        Population::Valid => tally.valid += 1,
        Population::Mutated => tally.mutated += 1,
        Population::Random => tally.random += 1,
    }
    let module = match guarded(|| wasce_engine::load(wasm, &Settings::default())) {
        Err(panic) => return tally.fail(population, index, wasm, &format!("compile panicked: {panic}")),
        Ok(Err(e)) => {
            tally.rejected += 1;
            if population == Population::Valid {
                tally.fail(population, index, wasm, &format!("valid module rejected: {e}"));
            }
            return;
        }
        Ok(Ok(module)) => module,
    };
    tally.compiled += 1;
    if population != Population::Valid {
        return;
    }
    let mut isolations = vec![Isolation::Process];
    if tally.kvm && index.is_multiple_of(KVM_EVERY) {
        isolations.push(Isolation::Kvm);
    }
    for isolation in isolations {
        match guarded(|| exercise(&module, isolation, tally)) {
            Err(panic) => {
                tally.fail(population, index, wasm, &format!("runtime ({isolation:?}) panicked: {panic}"))
            }
            Ok(Err(e)) => tally.fail(population, index, wasm, &format!("{isolation:?}: {e}")),
            Ok(Ok(())) => {}
        }
    }
}

/// `NO_PANIC_SCALE=n` multiplies the number of cases, for longer fuzzing runs by hand.
fn scale() -> u64 {
    std::env::var("NO_PANIC_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

fn fuzz() -> Tally {
    if let Err(e) = Store::new(StoreConfig { isolation: Isolation::Kvm, ..StoreConfig::default() }) {
        panic!("no_panic: KVM isolation is unusable ({e}); its KVM half never passes silently");
    }
    let mut tally = Tally { kvm: true, ..Tally::default() };
    let mut index = 0;
    while tally.valid < VALID * scale() {
        let mut rng = Rng::new(case_seed(Population::Valid, index));
        let Some(wasm) = smith_module(&mut rng) else {
            tally.smith_skipped += 1;
            index += 1;
            continue;
        };
        run_case(&mut tally, Population::Valid, index, &wasm);
        let mutant = mutate(&wasm, &mut Rng::new(case_seed(Population::Mutated, index)));
        run_case(&mut tally, Population::Mutated, index, &mutant);
        index += 1;
    }
    for index in 0..RANDOM * scale() {
        let wasm = random_module(&mut Rng::new(case_seed(Population::Random, index)));
        run_case(&mut tally, Population::Random, index, &wasm);
    }
    tally
}

#[test]
fn no_input_panics() {
    install_panic_hook();
    let start = Instant::now();
    // A thread of our own, with room for the compiler and a full wasm stack.
    let tally = std::thread::Builder::new().stack_size(16 << 20).spawn(fuzz).unwrap().join().unwrap();
    let total = tally.valid + tally.mutated + tally.random;
    println!(
        "no_panic: {total} modules ({} valid, {} mutated, {} random): {} compiled, {} rejected, {} traps",
        tally.valid, tally.mutated, tally.random, tally.compiled, tally.rejected, tally.traps
    );
    println!(
        "no_panic: {} instantiations ({} in KVM), {} calls ({} returned), {} wasm-smith inputs skipped, {:.1} s",
        tally.instantiations,
        tally.kvm_instantiations,
        tally.calls,
        tally.returns,
        tally.smith_skipped,
        start.elapsed().as_secs_f64()
    );
    assert!(total >= 10_000, "only {total} modules");
    assert!(tally.kvm_instantiations > 0, "no module ran in KVM isolation");
    assert!(
        tally.failures.is_empty(),
        "{} failing cases:\n{}",
        tally.failures.len(),
        tally.failures.join("\n")
    );
}
