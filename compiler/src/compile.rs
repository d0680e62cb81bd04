//! The compile pipeline: parse → translate + codegen (parallel) → link into one code image.

use crate::module::ModuleInfo;
use crate::parse::{parse, ParsedModule};
use crate::translate::{self, ModuleEnv, TableContract};
use crate::trap::Trap;
use crate::vmctx::VmctxLayout;
use crate::{trampoline, CompileError, Settings};
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{self, ExternalName};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self as cl_settings, Configurable};
use cranelift_codegen::{Context, FinalizedRelocTarget};
use cranelift_frontend::FunctionBuilderContext;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Where one function lives in the code image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncLoc {
    pub offset: u32,
    pub len: u32,
}

/// A compiled module: its description and one position-independent code image.
#[derive(Clone, Debug)]
pub struct CompiledModule {
    pub info: ModuleInfo,
    pub layout: VmctxLayout,
    pub code: Vec<u8>,
    /// Location of each defined function (index minus imported functions).
    pub funcs: Vec<FuncLoc>,
    /// Entry trampoline of each module type.
    pub entry_trampolines: Vec<FuncLoc>,
    /// Host-call trampoline of each module type.
    pub host_trampolines: Vec<FuncLoc>,
    /// Faulting instructions: (code offset, trap), sorted by offset.
    pub traps: Vec<(u32, Trap)>,
    /// Compiled with fuel metering.
    pub consume_fuel: bool,
    /// What the code assumes of tables shared with other modules (the engine enforces it).
    pub tables: TableContract,
}

/// The trap recorded for the instruction at code offset `offset` in a sorted trap table.
pub fn trap_at(traps: &[(u32, Trap)], offset: u32) -> Option<Trap> {
    traps.binary_search_by_key(&offset, |(o, _)| *o).ok().map(|i| traps[i].1)
}

/// The defined function (as a function index) whose code contains `offset`, given the
/// functions' locations in order and the number of imported functions.
pub fn func_at(funcs: &[FuncLoc], num_imported: u32, offset: u32) -> Option<u32> {
    let i = funcs.partition_point(|f| f.offset <= offset).checked_sub(1)?;
    let f = funcs[i];
    (offset < f.offset + f.len).then_some(i as u32 + num_imported)
}

impl CompiledModule {
    /// The trap recorded for the instruction at `offset`, if any.
    pub fn trap_at(&self, offset: u32) -> Option<Trap> {
        trap_at(&self.traps, offset)
    }

    /// The defined function whose code contains `offset` (as a function index).
    pub fn func_at(&self, offset: u32) -> Option<u32> {
        func_at(&self.funcs, self.info.num_imported_funcs, offset)
    }
}

/// Build the code generator for this host: x86-64 with the host's ISA extensions except
/// AVX-512 (the guest's XSAVE state need not enable it), `opt_level=speed`.
fn build_isa() -> Result<OwnedTargetIsa, CompileError> {
    let mut flags = cl_settings::builder();
    let set = |f: &mut cl_settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| CompileError::Isa(format!("{k}: {e}")));
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "enable_verifier", if cfg!(debug_assertions) { "true" } else { "false" })?;
    set(&mut flags, "enable_probestack", "false")?;
    set(&mut flags, "preserve_frame_pointers", "true")?;
    set(&mut flags, "unwind_info", "false")?;
    set(&mut flags, "enable_multi_ret_implicit_sret", "true")?;
    set(&mut flags, "enable_nan_canonicalization", "false")?;
    // Block offsets and edges of the machine code, for `small_loops`.
    set(&mut flags, "machine_code_cfg_info", "true")?;
    let mut isa = cranelift_native::builder().map_err(|e| CompileError::Isa(e.to_string()))?;
    for flag in ["has_avx512bitalg", "has_avx512dq", "has_avx512vl", "has_avx512vbmi", "has_avx512f", "has_avx512vnni"] {
        let _ = isa.enable(&format!("{flag}=false")).or_else(|_| isa.set(flag, "false"));
    }
    isa.finish(cl_settings::Flags::new(flags)).map_err(|e| CompileError::Isa(e.to_string()))
}

/// A human-readable description of the code generator's settings (for artifact headers).
pub fn isa_description() -> Result<String, CompileError> {
    let isa = build_isa()?;
    let mut s = format!("{} ", isa.triple());
    for v in isa.isa_flags() {
        if let Some(true) = v.as_bool() {
            s.push_str(v.name);
            s.push(' ');
        }
    }
    Ok(s.trim_end().to_string())
}

/// A developer's aid, like wasmtime's `--emit-clif`: with `WASCE_EMIT_CLIF=DIR` in the
/// environment, the Cranelift IR of every function compiled in this process (before
/// optimisation) is written to `DIR/function[N].clif`. Only where the compiler runs unconfined
/// (an embedder, `cargo test`); the confined compile worker of the CLI cannot write files.
fn emit_clif(func: &ir::Function, index: u32) {
    let Some(dir) = std::env::var_os("WASCE_EMIT_CLIF") else { return };
    if index == u32::MAX {
        return; // a trampoline
    }
    let _ = std::fs::write(std::path::Path::new(&dir).join(format!("function[{index}].clif")), func.display().to_string());
}

struct CompiledFunc {
    code: Vec<u8>,
    /// (offset in function, target function index, addend)
    calls: Vec<(u32, u32, i64)>,
    traps: Vec<(u32, Trap)>,
    /// The function's small loops, `[start, end)` offsets (see `small_loops`).
    loops: Vec<(u32, u32)>,
}

/// A cache line, and the block from which x86 front ends decode and cache instructions
/// (Intel's decoded-icache and AMD's op cache both map 64-byte aligned code).
const FETCH_LINE: u32 = 64;

/// The loops of a function's machine code small enough to fit in one fetch line, as `[start,
/// end)` code offsets: a back edge from the block at `from` to an earlier block at `to` spans
/// from `to` to the end of `from`'s block. A tight loop that straddles two lines runs up to twice
/// as slow on current x86 front ends as the same loop inside one, so `link` places a function
/// where most of its small loops fit in a line (Cranelift itself does not align loops).
fn small_loops(bb_starts: &[u32], bb_edges: &[(u32, u32)], len: u32) -> Vec<(u32, u32)> {
    let end_of = |block: u32| bb_starts.iter().copied().find(|&s| s > block).unwrap_or(len);
    let mut loops: Vec<(u32, u32)> = bb_edges
        .iter()
        .filter(|&&(from, to)| to <= from)
        .map(|&(from, to)| (to, end_of(from)))
        .filter(|&(start, end)| end > start && end - start <= FETCH_LINE)
        .collect();
    loops.sort_unstable();
    loops.dedup();
    loops
}

/// Where to place a function with `loops` at or after `at`: the first of the offsets `at`
/// aligned to `align`, then the following 16-byte aligned offsets within one fetch line, that
/// fits the most of its small loops each within one line (and then within one 32-byte half).
fn placement(at: u32, align: u32, loops: &[(u32, u32)]) -> u32 {
    let first = at.div_ceil(align) * align;
    if loops.is_empty() {
        return first;
    }
    let fits = |start: u32, line: u32| loops.iter().filter(|&&(s, e)| (start + s) / line == (start + e - 1) / line).count();
    (0..FETCH_LINE / 16).map(|k| first + 16 * k).max_by_key(|&start| (fits(start, FETCH_LINE), fits(start, 32), std::cmp::Reverse(start))).unwrap_or(first)
}

fn codegen(isa: &OwnedTargetIsa, func: ir::Function, index: u32) -> Result<CompiledFunc, CompileError> {
    emit_clif(&func, index);
    let names = func.params.user_named_funcs().clone();
    let mut ctx = Context::for_function(func);
    let err = |message: String| CompileError::Codegen { func: index, message };
    let compiled = ctx
        .compile(&**isa, &mut ControlPlane::default())
        .map_err(|e| err(format!("{:?}", e.inner)))?;
    let code = compiled.code_buffer().to_vec();
    let loops = small_loops(&compiled.bb_starts, &compiled.bb_edges, code.len() as u32);
    let mut calls = Vec::new();
    for reloc in compiled.buffer.relocs() {
        let target = match (&reloc.kind, &reloc.target) {
            (Reloc::X86CallPCRel4, FinalizedRelocTarget::ExternalName(ExternalName::User(name))) => {
                names[*name].index
            }
            other => return Err(err(format!("unexpected relocation {other:?}"))),
        };
        calls.push((reloc.offset, target, reloc.addend));
    }
    let mut traps = Vec::new();
    for t in compiled.buffer.traps() {
        let trap = Trap::from_clif(t.code).ok_or_else(|| err(format!("unknown trap code {}", t.code)))?;
        traps.push((t.offset, trap));
    }
    Ok(CompiledFunc { code, calls, traps, loops })
}

/// Compile a WebAssembly binary.
pub fn compile(wasm: &[u8], settings: &Settings) -> Result<CompiledModule, CompileError> {
    let ParsedModule { info, bodies } = parse(wasm, settings.features)?;
    let isa = build_isa()?;
    // Wasm functions use Cranelift's `tail` convention (the only one with `return_call`); what the
    // host calls (entry trampolines) and what compiled code calls in the host (builtins) is System V.
    let call_conv = translate::WASM_CALL_CONV;
    let layout = VmctxLayout::new(&info);
    let frontend = isa.frontend_config();
    let has_fma = isa.isa_flags().iter().any(|f| f.name == "has_fma" && f.as_bool() == Some(true));
    let throws = translate::ThrowAnalysis::new(&info, bodies.iter().map(|(_, body)| body));
    let env = ModuleEnv { module: &info, layout, settings, call_conv, frontend, has_fma, throws: &throws };

    // Function bodies: validated, translated and compiled by a pool of workers.
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<CompiledFunc, CompileError>>>> =
        Mutex::new((0..bodies.len()).map(|_| None).collect());
    let bodies = Mutex::new(bodies.into_iter().map(Some).collect::<Vec<_>>());
    let workers = if settings.parallel {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        1
    };
    let nbodies = results.lock().unwrap().len();
    let work = || {
        let mut fctx = FunctionBuilderContext::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= nbodies {
                break;
            }
            let (validator, body) = bodies.lock().unwrap()[i].take().unwrap();
            let index = info.num_imported_funcs + i as u32;
            let result = (|| {
                let mut validator = validator.into_validator(Default::default());
                validator.validate(&body).map_err(|e| CompileError::Invalid(e.to_string()))?;
                let mut func = ir::Function::new();
                translate::translate_function(&env, index, &body, &mut func, &mut fctx)?;
                codegen(&isa, func, index)
            })();
            let failed = result.is_err();
            results.lock().unwrap()[i] = Some(result);
            if failed {
                // Stop early: the first error (in function order) is reported below.
                next.store(nbodies, Ordering::Relaxed);
            }
        }
    };
    if workers > 1 && nbodies > 1 {
        std::thread::scope(|s| {
            for _ in 0..workers.min(nbodies) {
                s.spawn(work);
            }
        });
    } else {
        work();
    }
    let mut compiled = Vec::with_capacity(nbodies);
    for r in results.into_inner().unwrap() {
        match r {
            Some(Ok(f)) => compiled.push(f),
            Some(Err(e)) => return Err(e),
            None => {} // skipped after an earlier error
        }
    }
    if compiled.len() != nbodies {
        return Err(CompileError::Invalid("function body validation stopped early".into()));
    }

    // Trampolines, one pair per type.
    let mut fctx = FunctionBuilderContext::new();
    let mut entries = Vec::new();
    let mut hosts = Vec::new();
    for ty in &info.types {
        entries.push(codegen(&isa, trampoline::build_entry(ty, trampoline::ENTRY_CALL_CONV, call_conv, frontend, &mut fctx), u32::MAX)?);
        hosts.push(codegen(&isa, trampoline::build_host_call(ty, call_conv, crate::builtins::BUILTIN_CALL_CONV, frontend, &mut fctx), u32::MAX)?);
    }

    // Link: lay functions out at the ISA's preferred alignment (32 bytes on x86-64), moved on
    // by 16-byte steps where that puts more of the function's small loops each inside one
    // fetch line (`placement`), then patch PC-relative calls.
    let align = isa.function_alignment().preferred.max(16);
    let mut code = Vec::new();
    let mut traps = Vec::new();
    let mut place = |f: &CompiledFunc, code: &mut Vec<u8>| {
        let start = placement(code.len() as u32, align, &f.loops) as usize;
        code.resize(start, 0xcc);
        let offset = code.len() as u32;
        code.extend_from_slice(&f.code);
        traps.extend(f.traps.iter().map(|(o, t)| (offset + o, *t)));
        FuncLoc { offset, len: f.code.len() as u32 }
    };
    let funcs: Vec<FuncLoc> = compiled.iter().map(|f| place(f, &mut code)).collect();
    let entry_trampolines: Vec<FuncLoc> = entries.iter().map(|f| place(f, &mut code)).collect();
    let host_trampolines: Vec<FuncLoc> = hosts.iter().map(|f| place(f, &mut code)).collect();
    for (f, loc) in compiled.iter().zip(&funcs) {
        for &(off, target, addend) in &f.calls {
            let target = funcs[(target - info.num_imported_funcs) as usize].offset as i64;
            let at = (loc.offset + off) as i64;
            let rel = i32::try_from(target - at + addend)
                .map_err(|_| CompileError::Unsupported("code image larger than 2 GiB".into()))?;
            code[at as usize..at as usize + 4].copy_from_slice(&rel.to_le_bytes());
        }
    }
    traps.sort_by_key(|(o, _)| *o);
    Ok(CompiledModule { info, layout, code, funcs, entry_trampolines, host_trampolines, traps, consume_fuel: settings.consume_fuel, tables: throws.tables.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every access to linear memory (the instructions that trap as out of bounds) is in the
    /// linear-memory alias region, and no other memory access is: Cranelift takes accesses in
    /// different regions as disjoint, so one access left out, or one host structure put in,
    /// would let it reorder or forward across a real dependency.
    #[test]
    fn linear_memory_accesses_and_only_they_are_in_the_heap_alias_region() {
        let wasm = wat::parse_str(
            r#"(module
              (memory 1 1 shared) (global $g (mut i32) (i32.const 0)) (table 1 funcref)
              (func (param i32) (result i32)
                (i32.store (local.get 0) (i32.const 7))
                (global.set $g (i32.load offset=8 (local.get 0)))
                (v128.store (local.get 0) (v128.load (local.get 0)))
                (i64.store32 (local.get 0) (i64.load8_s (local.get 0)))
                (drop (i32.atomic.rmw.add (local.get 0) (i32.const 1)))
                (drop (table.get (i32.const 0)))
                (i32.add (global.get $g) (i32.load16_u (local.get 0)))))"#,
        )
        .unwrap();
        let settings = Settings::default();
        let ParsedModule { info, bodies } = parse(&wasm, settings.features).unwrap();
        let isa = build_isa().unwrap();
        let throws = translate::ThrowAnalysis::new(&info, bodies.iter().map(|(_, body)| body));
        let env = ModuleEnv {
            module: &info,
            layout: VmctxLayout::new(&info),
            settings: &settings,
            call_conv: translate::WASM_CALL_CONV,
            frontend: isa.frontend_config(),
            has_fma: false,
            throws: &throws,
        };
        let (_, body) = &bodies[0];
        let mut func = ir::Function::new();
        translate::translate_function(&env, info.num_imported_funcs, body, &mut func, &mut FunctionBuilderContext::new()).unwrap();
        let (mut heap, mut other) = (0, 0);
        for block in func.layout.blocks() {
            for inst in func.layout.block_insts(block) {
                let Some(flags) = func.dfg.insts[inst].memflags_data(&func.dfg) else { continue };
                let out_of_bounds = flags.trap_code() == Some(Trap::MemoryOutOfBounds.to_clif());
                let region = flags.alias_region().map(|r| func.dfg.alias_regions[r].description.to_string());
                if out_of_bounds {
                    heap += 1;
                    assert_eq!(region.as_deref(), Some("linear memory"), "{}", func.dfg.display_inst(inst));
                } else {
                    other += 1;
                    assert_eq!(region, None, "{}", func.dfg.display_inst(inst));
                }
            }
        }
        assert_eq!(heap, 8, "every access to linear memory was seen");
        assert!(other > 0, "vmctx, global and table accesses were seen");
    }

    #[test]
    fn small_loops_are_back_edges_within_a_line() {
        // Blocks at 0, 16, 40, 100, 200; code 260 bytes long.
        let starts = [0, 16, 40, 100, 200];
        // 40 -> 16: a loop [16, 100), too long; 16 -> 16: a self loop [16, 40); 0 -> 40: forward;
        // 200 -> 100: [100, 260), too long; 100 -> 40 twice: [40, 200) too long.
        let edges = [(40, 16), (16, 16), (0, 40), (200, 100), (100, 40), (100, 40)];
        assert_eq!(small_loops(&starts, &edges, 260), vec![(16, 40)]);
        // The last block's loop ends at the end of the code.
        assert_eq!(small_loops(&starts, &[(200, 200)], 230), vec![(200, 230)]);
        assert!(small_loops(&starts, &[], 260).is_empty());
    }

    #[test]
    fn placement_puts_small_loops_inside_one_line() {
        // No loops: the preferred alignment.
        assert_eq!(placement(100, 32, &[]), 128);
        // The loop of shootout-sieve: 26 bytes at 0xdc in the function. At 0 (mod 64) it
        // straddles a line (0xdc..0xf6 crosses 0xc0 + 64); 16 bytes on it fits.
        let sieve = [(0xdc, 0xf6)];
        let at = placement(0, 32, &sieve);
        assert!(at < 64 && at.is_multiple_of(16));
        assert_eq!((at + 0xdc) / 64, (at + 0xf6 - 1) / 64, "placed at {at}");
        // Already inside a line at the aligned offset: no padding.
        assert_eq!(placement(64, 32, &[(4, 30)]), 64);
        // Where no offset fits every loop, the most of them.
        let at = placement(0, 32, &[(0, 40), (50, 90), (100, 140)]);
        let fit = |s: u32, e: u32| (at + s) / 64 == (at + e - 1) / 64;
        assert!([fit(0, 40), fit(50, 90), fit(100, 140)].iter().filter(|&&f| f).count() >= 2, "placed at {at}");
    }
}
