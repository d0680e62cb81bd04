//! Group 7, compile: seconds and peak memory of `wasce compile` next to `wasmtime compile` for
//! speedtest1.wasm and the largest Sightglass module, whole processes, interleaved.

use super::interleave;
use crate::report::{table, Section};
use crate::stats::{median, Spread};
use crate::svg::Bars;
use crate::{measure, progress, Ctx};
use std::path::PathBuf;

/// The largest `.wasm` under the Sightglass folder.
fn largest_sightglass(ctx: &Ctx) -> PathBuf {
    let root = ctx.shared.join("workloads/sightglass");
    let mut best = (0, PathBuf::new());
    for dir in std::fs::read_dir(root).unwrap().flatten() {
        for f in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            let len = f.metadata().map_or(0, |m| m.len());
            if f.path().extension().is_some_and(|e| e == "wasm") && len > best.0 {
                best = (len, f.path());
            }
        }
    }
    best.1
}

pub fn run(ctx: &Ctx) -> Section {
    let rounds = ctx.pick(1, 3);
    let inputs = [ctx.shared.join("workloads/sqlite/speedtest1.wasm"), largest_sightglass(ctx)];
    let mut rows = Vec::new();
    let mut chart = Vec::new();
    let mut headlines = Vec::new();
    for input in &inputs {
        let name = input.strip_prefix(ctx.shared.join("workloads")).unwrap_or(input).display().to_string();
        let mb = std::fs::metadata(input).unwrap().len() as f64 / 1e6;
        progress!("compile: {name} ({mb:.1} MB), {rounds} rounds");
        let out = ctx.scratch.join("compiled.cwasm").to_string_lossy().into_owned();
        let cmds = [
            vec![ctx.wasce(), "compile".into(), input.to_string_lossy().into(), "-o".into(), out.clone()],
            vec![ctx.wasmtime(), "compile".into(), input.to_string_lossy().into(), "-o".into(), out.clone()],
        ];
        let (mut secs, mut rss) = (vec![Vec::new(); 2], vec![Vec::new(); 2]);
        interleave(rounds, 2, |_, i| {
            let r = measure::run(&cmds[i], None, &ctx.scratch);
            secs[i].push(r.wall.as_secs_f64());
            rss[i].push(r.max_rss_kib as f64 / 1024.0);
        });
        let time = Spread::ratios(&secs[0], &secs[1]);
        let mem = Spread::ratios(&rss[0], &rss[1]);
        for (i, engine) in ["wasce compile", "wasmtime compile"].iter().enumerate() {
            rows.push(vec![
                format!("`{name}` ({mb:.1} MB)"),
                engine.to_string(),
                Spread::of(&secs[i]).fmt(2),
                format!("{:.1}", mb / median(&secs[i])),
                format!("{:.0}", median(&rss[i])),
                if i == 0 { format!("time {time}, memory {mem}") } else { "1".into() },
            ]);
        }
        chart.push((name.clone(), vec![median(&secs[0]), median(&secs[1])]));
        headlines.push((format!("compile {name}: wasce / wasmtime time"), time));
    }
    let mut body = format!(
        "Whole `compile` processes (all cores, {} here), {rounds} interleaved round(s): wall seconds \
         median [min–max], input MB per second, peak RSS (MiB, median).\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    body += &table(&["module", "command", "seconds", "MB/s", "peak RSS MiB", "wasce / wasmtime"], &rows);
    let plot = Bars {
        title: "compile time (s)".into(),
        unit: "seconds".into(),
        series: vec!["wasce compile".into(), "wasmtime compile".into()],
        rows: chart,
        reference: None,
        log: false,
    };
    let meaning = format!(
        "Both compile with Cranelift, function bodies in parallel. wasce takes {} of wasmtime's time on \
         speedtest1 and {} on the largest Sightglass module. Compilation happens once per module (AOT or the \
         compile cache), so it is off the startup path.",
        headlines[0].1, headlines[1].1
    );
    Section {
        title: "7. Compile".into(),
        body,
        meaning,
        plots: vec![("compile.svg".into(), plot.render())],
        headlines: headlines.into_iter().map(|(a, b)| (a, b.to_string())).collect(),
    }
}
