//! Group 1, startup: hello world from a precompiled artifact as a whole process (`wasce exec`
//! in each isolation mode next to `wasmtime run --allow-precompiled`), and instantiate-and-run
//! inside one process through the library API.

use super::{interleave, precompile, HELLO};
use crate::report::{table, Section};
use crate::stats::{percentile, Spread};
use crate::svg::Bars;
use crate::{measure, progress, Ctx};
use std::time::Instant;
use wasce_engine::wasi::{self, Stdio, WasiConfig};
use wasce_engine::{Isolation, Linker, Settings, Store, StoreConfig};

pub fn run(ctx: &Ctx) -> Section {
    let runs = ctx.pick(40, 200);
    progress!("startup: hello world, {runs} whole-process runs per engine");
    let wasm = ctx.scratch_file("hello.wasm", &wat::parse_str(HELLO).unwrap());
    let (ours, theirs) = precompile(ctx, &wasm, "hello");
    let engines: [(&str, Vec<String>); 3] = [
        ("wasce exec (KVM)", vec![ctx.wasce(), "exec".into(), ours.clone()]),
        ("wasce exec --isolation process", vec![ctx.wasce(), "exec".into(), "--isolation".into(), "process".into(), ours]),
        ("wasmtime run --allow-precompiled", vec![ctx.wasmtime(), "run".into(), "--allow-precompiled".into(), theirs]),
    ];
    let mut wall = vec![Vec::new(); 3];
    let mut rss = vec![Vec::new(); 3];
    interleave(runs, 3, |_, i| {
        let r = measure::run(&engines[i].1, None, &ctx.scratch);
        assert_eq!(r.stdout, "Hello, world!\n", "{}", engines[i].0);
        wall[i].push(r.wall.as_secs_f64() * 1e3);
        rss[i].push(r.max_rss_kib as f64 / 1024.0);
    });
    let rows: Vec<Vec<String>> = (0..3)
        .map(|i| {
            vec![
                format!("`{}`", engines[i].0),
                format!("{:.2}", percentile(&wall[i], 0.5)),
                format!("{:.2}", percentile(&wall[i], 0.99)),
                format!("{:.2}", percentile(&wall[i], 0.0)),
                format!("{:.1}", percentile(&rss[i], 0.5)),
                if i == 2 { "1".into() } else { Spread::ratios(&wall[i], &wall[2]).to_string() },
            ]
        })
        .collect();

    let lib_runs = ctx.pick(60, 300);
    progress!("startup: library API, {lib_runs} runs per mode");
    let lib = library_startup(lib_runs);

    let mut body = format!(
        "Whole process: `hello.cwasm` (one `fd_write` of \"Hello, world!\\n\") precompiled by each engine, \
         {runs} runs per engine, interleaved; wall time from spawn to exit, peak RSS from `wait4`. \
         The ratio is wasce / wasmtime per interleaved pair: median (min–max).\n\n"
    );
    body += &table(&["command", "p50 ms", "p99 ms", "min ms", "peak RSS MiB (median)", "wall ratio to wasmtime"], &rows);
    body += &format!(
        "\nInside one process (library API, {lib_runs} runs per mode, interleaved): create a store (in KVM mode \
         the VM, its vCPU, page tables and stack), link WASI, instantiate a precompiled hello module and \
         run `_start` to completion; the store is dropped after each run (teardown not timed). wasmtime is \
         measured only as a CLI here (no wasmtime library in the product), so this row has no baseline.\n\n"
    );
    body += &table(
        &["mode", "p50 µs", "p99 µs", "min µs"],
        &lib.iter().map(|(m, v)| vec![m.to_string(), format!("{:.0}", percentile(v, 0.5)), format!("{:.0}", percentile(v, 0.99)), format!("{:.0}", percentile(v, 0.0))]).collect::<Vec<_>>(),
    );
    let chart = Bars {
        title: "hello world, whole process (ms)".into(),
        unit: "milliseconds".into(),
        series: vec!["p50".into(), "p99".into()],
        rows: (0..3).map(|i| (engines[i].0.to_string(), vec![percentile(&wall[i], 0.5), percentile(&wall[i], 0.99)])).collect(),
        reference: None,
        log: false,
    };
    let (k50, k99, w50, w99) = (percentile(&wall[0], 0.5), percentile(&wall[0], 0.99), percentile(&wall[2], 0.5), percentile(&wall[2], 0.99));
    let meaning = format!(
        "A whole `wasce exec` of a precompiled hello world under KVM takes {k50:.1} ms at p50 and {k99:.1} ms at p99 \
         (the research system reports p99 15 ms); wasmtime takes {w50:.1} / {w99:.1} ms. {} \
         The KVM path pays for creating a VM and a vCPU, and on this nested (PVM) host every VM exit and \
         first touch of a guest page costs several times bare metal; process mode shows what is left \
         without the VM. In one process, a KVM instance is ready and done in {:.0} µs (p50).",
        if k50 > w50 { format!("wasce is behind wasmtime here by {:.0}% at p50.", (k50 / w50 - 1.0) * 100.0) } else { format!("wasce is ahead of wasmtime by {:.0}% at p50.", (1.0 - k50 / w50) * 100.0) },
        percentile(&lib[0].1, 0.5)
    );
    Section {
        title: "1. Startup".into(),
        body,
        meaning,
        plots: vec![("startup.svg".into(), chart.render())],
        headlines: vec![
            ("hello.cwasm whole process, wasce KVM p50 / p99".into(), format!("{k50:.2} / {k99:.2} ms")),
            ("hello.cwasm whole process, wasmtime p50 / p99".into(), format!("{w50:.2} / {w99:.2} ms")),
            ("startup ratio wasce KVM / wasmtime (p50 of pairs)".into(), Spread::ratios(&wall[0], &wall[2]).to_string()),
        ],
    }
}

/// Microseconds from "create store" to "`_start` returned", per isolation mode.
fn library_startup(runs: usize) -> Vec<(&'static str, Vec<f64>)> {
    let module = wasce_engine::load(&wat::parse_str(HELLO).unwrap(), &Settings::default()).expect("compile hello");
    let modes = [("KVM", Isolation::Kvm), ("process", Isolation::Process)];
    let mut out: Vec<(&str, Vec<f64>)> = modes.iter().map(|m| (m.0, Vec::new())).collect();
    interleave(runs, 2, |_, i| {
        let t = Instant::now();
        let mut store = Store::new(StoreConfig { isolation: modes[i].1, ..StoreConfig::default() }).expect("store");
        let mut linker = Linker::new();
        let config = WasiConfig { stdout: Stdio::Null, ..WasiConfig::default() };
        wasi::add_to_linker(&mut store, &mut linker, config).expect("wasi");
        assert_eq!(wasi::run_command(&mut store, &linker, &module).expect("_start"), 0);
        out[i].1.push(t.elapsed().as_secs_f64() * 1e6);
        drop(store);
    });
    out
}
