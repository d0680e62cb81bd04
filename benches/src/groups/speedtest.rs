//! Group 6, SQLite speedtest1 on disk (`speedtest1.wasm` with the default POSIX locking and
//! `speedtest1-dotlock.wasm`): each engine runs its own precompiled artifact in a fresh
//! directory preopened as `.`; speedtest1's own TOTAL seconds are compared. Also the `--memdb`
//! run that the compute group includes (`memdb`).

use super::{interleave, precompile};
use crate::report::{table, Section};
use crate::stats::Spread;
use crate::svg::Bars;
use crate::{measure, progress, Ctx};

pub const ENGINES: [&str; 3] = ["wasce KVM", "wasce process", "wasmtime"];

/// speedtest1's TOTAL seconds per engine (wasce KVM, wasce process, wasmtime), one sample per
/// interleaved round.
/// speedtest1's TOTAL seconds per engine (wasce KVM, wasce process, wasmtime, and with
/// `with_before` and `--wasce-before` the earlier build in both modes) and round.
pub fn totals(ctx: &Ctx, wasm_name: &str, memdb: bool, size: u32, rounds: usize, with_before: bool) -> Vec<Vec<f64>> {
    let wasm = ctx.shared.join("workloads/sqlite").join(wasm_name);
    let stem = wasm_name.trim_end_matches(".wasm");
    let (ours, theirs) = precompile(ctx, &wasm.to_string_lossy(), stem);
    let before = if with_before { super::precompile_before(ctx, &wasm.to_string_lossy(), stem) } else { None };
    let engines = if before.is_some() { 5 } else { 3 };
    let mut out = vec![Vec::new(); engines];
    interleave(rounds, engines, |_, i| {
        let dir = ctx.fresh_dir("speedtest");
        let (mut cmd, artifact) = super::engine_cmd(ctx, i, &ours, &theirs, before.as_deref());
        cmd.extend(["--dir".into(), format!("{}::.", dir.display()), "--argv0".into(), wasm_name.into()]);
        cmd.push(artifact);
        if memdb {
            cmd.push("--memdb".into());
        }
        cmd.extend(["--size".into(), size.to_string()]);
        if !memdb {
            cmd.push("speedtest1.db".into());
        }
        let r = measure::run(&cmd, Some(&dir), &ctx.scratch);
        out[i].push(total(&r.stdout).unwrap_or_else(|| panic!("{cmd:?}: no TOTAL line in\n{}", r.stdout)));
        let _ = std::fs::remove_dir_all(&dir);
    });
    out
}

/// The seconds of speedtest1's `TOTAL....  1.234s` line.
fn total(stdout: &str) -> Option<f64> {
    let line = stdout.lines().find(|l| l.trim_start().starts_with("TOTAL"))?;
    line.split_whitespace().last()?.trim_end_matches('s').parse().ok()
}

pub fn run(ctx: &Ctx) -> Section {
    let (size, rounds) = (ctx.pick(5, 20), ctx.pick(1, 3));
    let mut rows = Vec::new();
    let mut chart = Vec::new();
    let mut headlines = Vec::new();
    for wasm in ["speedtest1.wasm", "speedtest1-dotlock.wasm"] {
        progress!("speedtest: {wasm} on disk, --size {size}, {rounds} rounds");
        let t = totals(ctx, wasm, false, size, rounds, false);
        for i in 0..3 {
            let ratio = if i == 2 { "1".to_string() } else { Spread::ratios(&t[i], &t[2]).to_string() };
            rows.push(vec![format!("`{wasm}`"), ENGINES[i].into(), Spread::of(&t[i]).fmt(3), ratio]);
        }
        let r = Spread::ratios(&t[0], &t[2]);
        chart.push((wasm.to_string(), vec![r.median, Spread::ratios(&t[1], &t[2]).median]));
        headlines.push((format!("{wasm} on disk: wasce KVM / wasmtime"), r));
    }
    let mut body = format!(
        "speedtest1 `--size {size}` on disk (a fresh directory preopened as `.`, database `speedtest1.db`), each \
         engine running its own precompiled artifact, {rounds} interleaved rounds; speedtest1's own TOTAL \
         seconds, median [min–max], and the ratio to wasmtime per pair.\n\n"
    );
    body += &table(&["program", "engine", "TOTAL s", "ratio to wasmtime"], &rows);
    let plot = Bars {
        title: "speedtest1 on disk: time relative to wasmtime".into(),
        unit: "ratio to wasmtime (1 = as fast)".into(),
        series: vec!["wasce KVM".into(), "wasce process".into()],
        rows: chart,
        reference: Some(1.0),
        log: false,
    };
    let meaning = format!(
        "On disk, every SQLite page read, write, sync and lock is a WASI call that leaves the VM over the ring. \
         speedtest1 takes {} of wasmtime's time (POSIX locks) and {} with dot-file locking; the research \
         system reports +80% (1.8×). Process mode separates what the VM boundary costs from what our compiled \
         code costs (see the compute group).",
        headlines[0].1, headlines[1].1
    );
    Section {
        title: "6. SQLite speedtest1 on disk".into(),
        body,
        meaning,
        plots: vec![("speedtest-disk.svg".into(), plot.render())],
        headlines: headlines.into_iter().map(|(a, b)| (a, b.to_string())).collect(),
    }
}
