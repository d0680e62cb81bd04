//! The benchmark groups, one module each, and what they share: the interleaving and the
//! programs every group runs.

pub mod compile;
pub mod compute;
pub mod memory;
pub mod speedtest;
pub mod startup;
pub mod throughput;
pub mod warm;
pub mod wasi;

/// Run `rounds` rounds of `n` measurements, calling `f(round, which)`; the order alternates
/// (0 1 2, 2 1 0, ...) so that drift in the machine's load falls on every engine alike.
pub fn interleave(rounds: usize, n: usize, mut f: impl FnMut(usize, usize)) {
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 { (0..n).collect() } else { (0..n).rev().collect() };
        for which in order {
            f(round, which);
        }
    }
}

/// Hello world as a WASI command: one `fd_write` of 14 bytes to stdout.
pub const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Hello, world!\n")
  (data (i32.const 0) "\10\00\00\00\0e\00\00\00")
  (func (export "_start") (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// Compile `wasm` (a path) to `out` with `wasce compile` and `wasmtime compile`; the paths of
/// the two artifacts.
/// With `--wasce-before`: the module compiled by the earlier wasce build.
pub fn precompile_before(ctx: &crate::Ctx, wasm: &str, stem: &str) -> Option<String> {
    let before = ctx.before()?;
    let out = ctx.scratch.join("artifacts").join(format!("{stem}.before.cwasm")).to_string_lossy().into_owned();
    crate::measure::run(&[before, "compile".into(), wasm.into(), "-o".into(), out.clone()], None, &ctx.scratch);
    Some(out)
}

/// The command that runs an artifact in compute engine `engine` (`compute::ENGINES`):
/// `ours`, `theirs` and `before` are its artifacts for wasce, wasmtime and the earlier wasce.
pub fn engine_cmd(ctx: &crate::Ctx, engine: usize, ours: &str, theirs: &str, before: Option<&str>) -> (Vec<String>, String) {
    let before_bin = || ctx.before().expect("--wasce-before");
    let before_art = || before.expect("an artifact of the earlier build").to_string();
    match engine {
        0 => (vec![ctx.wasce(), "exec".into()], ours.into()),
        1 => (vec![ctx.wasce(), "exec".into(), "--isolation".into(), "process".into()], ours.into()),
        2 => (vec![ctx.wasmtime(), "run".into(), "--allow-precompiled".into()], theirs.into()),
        3 => (vec![before_bin(), "exec".into()], before_art()),
        _ => (vec![before_bin(), "exec".into(), "--isolation".into(), "process".into()], before_art()),
    }
}

pub fn precompile(ctx: &crate::Ctx, wasm: &str, stem: &str) -> (String, String) {
    let dir = ctx.scratch.join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let ours = dir.join(format!("{stem}.wasce.cwasm")).to_string_lossy().into_owned();
    let theirs = dir.join(format!("{stem}.wasmtime.cwasm")).to_string_lossy().into_owned();
    crate::measure::run(&[ctx.wasce(), "compile".into(), wasm.into(), "-o".into(), ours.clone()], None, &ctx.scratch);
    crate::measure::run(&[ctx.wasmtime(), "compile".into(), wasm.into(), "-o".into(), theirs.clone()], None, &ctx.scratch);
    (ours, theirs)
}
