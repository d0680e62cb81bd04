//! Groups 2 and 3, memory and density: peak RSS of hello world; host memory per live idle
//! instance with N = 1, 100, 1000 instances in one process; how many idle instances fit in a
//! fixed memory budget, next to the figure Firecracker's published overhead gives.
//!
//! Instances are counted in a fresh child process (this binary with `--internal-instances`), so
//! that each count starts from the same baseline. An instance is a store (in KVM mode: its own
//! VM and vCPU) with WASI linked and hello world instantiated and run once, then kept alive,
//! idle. User memory is the child's VmRSS delta; kernel memory is the delta of /proc/meminfo's
//! Slab + KernelStack + PageTables + SecPageTables (system-wide, so other activity on the
//! machine adds noise; the run's load average is in the header).

use super::HELLO;
use crate::report::{table, Section};
use crate::svg::Bars;
use crate::{measure, progress, Ctx};
use std::process::Command;
use wasce_engine::wasi::{self, Stdio, WasiConfig};
use wasce_engine::{Isolation, Linker, Settings, Store, StoreConfig};

/// Firecracker's published figure: "Firecracker's virtual machine manager threads always have a
/// memory overhead <= 5 MiB" (SPECIFICATION.md, for a microVM with 2 vCPUs and 256 MiB of RAM).
/// That excludes the guest: a function in a microVM also needs a guest kernel and user space.
const FIRECRACKER_VMM_MIB: f64 = 5.0;
/// Firecracker's README: microVMs "have a footprint of less than 32 MiB of memory" (guest
/// included): the figure that counts a running function.
const FIRECRACKER_FOOTPRINT_MIB: f64 = 32.0;

/// What a child reports: instances created, user and kernel KiB they added, and why it
/// stopped early (if it did).
struct Count {
    n: u64,
    rss_kib: f64,
    kernel_kib: f64,
    stopped: Option<String>,
}

fn count(ctx: &Ctx, mode: &str, n: u64, budget_mib: u64) -> Count {
    let out = Command::new(&ctx.self_exe)
        .args(["--internal-instances", mode, &n.to_string(), &budget_mib.to_string()])
        .output()
        .expect("run the instance counter");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "instance counter failed: {}", String::from_utf8_lossy(&out.stderr));
    let f: Vec<f64> = text.split_whitespace().map(|w| w.parse().unwrap()).collect();
    let stopped = String::from_utf8_lossy(&out.stderr).lines().find(|l| l.starts_with("stopped at")).map(str::to_string);
    Count { n: f[0] as u64, rss_kib: f[1], kernel_kib: f[2], stopped }
}

/// The child: create up to `cap` idle instances, stopping early once they use `budget_mib`
/// (0 = no budget) or when one cannot be created (e.g. address space runs out: each memory
/// reserves 8 GiB); print `count rss_kib kernel_kib`, and the reason on stderr if it stopped.
pub fn child(mode: &str, cap: u64, budget_mib: u64) {
    let isolation = if mode == "kvm" { Isolation::Kvm } else { Isolation::Process };
    let module = wasce_engine::load(&wat::parse_str(HELLO).unwrap(), &Settings::default()).expect("compile");
    let instance = || -> Result<Store, wasce_engine::Error> {
        let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() })?;
        let mut linker = Linker::new();
        wasi::add_to_linker(&mut store, &mut linker, WasiConfig { stdout: Stdio::Null, ..WasiConfig::default() })?;
        wasi::run_command(&mut store, &linker, &module)?;
        Ok(store)
    };
    drop(instance().expect("one instance")); // the first one pays for one-time setup
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (rss0, kern0) = (measure::self_rss_kib(), measure::kernel_kib());
    let mut live = Vec::new();
    while (live.len() as u64) < cap {
        match instance() {
            Ok(store) => live.push(store),
            Err(e) => {
                eprintln!("stopped at {} instances: {e}", live.len());
                break;
            }
        }
        if budget_mib > 0 && live.len() % 16 == 0 {
            let used = measure::self_rss_kib().saturating_sub(rss0) + measure::kernel_kib().saturating_sub(kern0);
            if used >= budget_mib * 1024 {
                break;
            }
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    let rss = measure::self_rss_kib() as f64 - rss0 as f64;
    let kern = measure::kernel_kib() as f64 - kern0 as f64;
    println!("{} {rss} {kern}", live.len());
}

pub fn run(ctx: &Ctx) -> Section {
    progress!("memory: peak RSS of hello, 20 runs per engine");
    let wasm = ctx.scratch_file("hello-mem.wasm", &wat::parse_str(HELLO).unwrap());
    let (ours, theirs) = super::precompile(ctx, &wasm, "hello-mem");
    let engines = [
        ("wasce exec (KVM)", vec![ctx.wasce(), "exec".into(), ours.clone()]),
        ("wasce exec --isolation process", vec![ctx.wasce(), "exec".into(), "--isolation".into(), "process".into(), ours]),
        ("wasmtime run --allow-precompiled", vec![ctx.wasmtime(), "run".into(), "--allow-precompiled".into(), theirs]),
    ];
    let mut peak = vec![Vec::new(); 3];
    super::interleave(20, 3, |_, i| peak[i].push(measure::run(&engines[i].1, None, &ctx.scratch).max_rss_kib as f64 / 1024.0));
    let peak: Vec<f64> = peak.iter().map(|v| crate::stats::median(v)).collect();
    let floor = measure::rss_floor_kib(&ctx.scratch) as f64 / 1024.0;

    let ns: &[u64] = if ctx.quick { &[1, 100] } else { &[1, 100, 1000] };
    let mut rows = Vec::new();
    let mut per_instance = Vec::new();
    for &n in ns {
        for mode in ["kvm", "process"] {
            progress!("memory: {n} idle {mode} instances");
            let c = count(ctx, mode, n, 0);
            let (user, kern) = (c.rss_kib / n as f64, c.kernel_kib / n as f64);
            rows.push(vec![n.to_string(), mode.into(), format!("{user:.0}"), format!("{kern:.0}"), format!("{:.0}", user + kern)]);
            if n == *ns.last().unwrap() {
                per_instance.push((mode, user, kern));
            }
        }
    }

    let budget = ctx.pick(256u64, 1024);
    // Process-mode memories reserve 8 GiB of address space each: 128 TiB holds under 16,000.
    let caps = [("kvm", ctx.pick(300u64, 3000)), ("process", ctx.pick(2000, 10000))];
    let mut density = Vec::new();
    for (mode, cap) in caps {
        progress!("density: idle {mode} instances in {budget} MiB (at most {cap})");
        let c = count(ctx, mode, cap, budget);
        let used_mib = (c.rss_kib + c.kernel_kib) / 1024.0;
        // Reaching the cap first: the budget would hold proportionally more.
        let fits = if used_mib >= budget as f64 { c.n as f64 } else { c.n as f64 * budget as f64 / used_mib.max(1e-9) };
        if let Some(why) = &c.stopped {
            progress!("density: {mode}: {why}");
        }
        density.push((mode, c.n, used_mib, fits));
    }
    let fc_vmm = budget as f64 / FIRECRACKER_VMM_MIB;
    let fc_footprint = budget as f64 / FIRECRACKER_FOOTPRINT_MIB;

    let mut body = format!(
        "Peak RSS of one whole process running `hello.cwasm` (median of 20 runs): wasce KVM **{:.1} MiB**, \
         wasce process **{:.1} MiB**, wasmtime **{:.1} MiB** (measured from a small launcher \
         process: `/bin/true` measured the same way shows {floor:.1} MiB, the floor of this method).\n\n\
         Host memory per live idle instance (a store with WASI linked and hello world instantiated and run \
         once, kept alive; in KVM mode each has its own VM and vCPU), N instances in one fresh process; \
         user = VmRSS delta / N, kernel = delta of Slab + KernelStack + PageTables + SecPageTables / N \
         (system-wide /proc/meminfo):\n\n",
        peak[0], peak[1], peak[2]
    );
    body += &table(&["N", "mode", "user KiB / instance", "kernel KiB / instance", "total KiB / instance"], &rows);
    body += &format!(
        "\nDensity: idle instances one process holds in a **{budget} MiB** budget (user + kernel as above), \
         counting until the budget is used or a cap is reached (then extrapolated linearly):\n\n"
    );
    let mut drows: Vec<Vec<String>> = density
        .iter()
        .map(|(mode, n, used, fits)| vec![format!("wasce {mode}"), format!("{n} instances used {used:.0} MiB"), format!("{fits:.0}"), format!("{:.1}×", fits / fc_footprint)])
        .collect();
    drows.push(vec!["Firecracker, VMM overhead only (≤ 5 MiB per microVM, SPECIFICATION.md; guest memory not counted)".into(), "published".into(), format!("{fc_vmm:.0}"), format!("{:.1}×", fc_vmm / fc_footprint)]);
    drows.push(vec!["Firecracker, footprint with guest (< 32 MiB per microVM, README.md)".into(), "published".into(), format!("{fc_footprint:.0}"), "1×".into()]);
    body += &table(&["runtime", "measured", &format!("instances in {budget} MiB"), "vs Firecracker footprint"], &drows);

    let (kvm_user, kvm_kern) = per_instance.iter().find(|p| p.0 == "kvm").map(|p| (p.1, p.2)).unwrap();
    let kvm_fits = density[0].3;
    let chart = Bars {
        title: format!("host memory per idle instance, N = {} (KiB)", ns.last().unwrap()),
        unit: "KiB per instance".into(),
        series: vec!["user".into(), "kernel".into()],
        rows: per_instance.iter().map(|(m, u, k)| (format!("wasce {m}"), vec![*u, *k])).collect(),
        reference: None,
        log: false,
    };
    let dchart = Bars {
        title: format!("idle instances in {budget} MiB"),
        unit: "instances (log scale)".into(),
        series: vec!["instances".into()],
        rows: density
            .iter()
            .map(|(m, _, _, f)| (format!("wasce {m}"), vec![*f]))
            .chain([("Firecracker (VMM only)".to_string(), vec![fc_vmm]), ("Firecracker (footprint)".to_string(), vec![fc_footprint])])
            .collect(),
        reference: None,
        log: true,
    };
    let meaning = format!(
        "An idle KVM instance costs about {:.0} KiB of host memory ({kvm_user:.0} KiB user, {kvm_kern:.0} KiB \
         kernel: the VM, vCPU and KVM's page tables), against the research system's ~10 MB. The kernel part \
         dominates and is outside our control beyond using fewer guest pages and VM objects; a process-mode \
         instance costs {:.0} KiB. In {budget} MiB a process holds about {kvm_fits:.0} KVM instances: \
         {:.0}× Firecracker's best case (its VMM overhead alone, 5 MiB, with no guest at all) and {:.0}× its \
         published footprint (32 MiB) (the research system claims 3×). Peak RSS of a whole hello-world process \
         is {:.1} MiB for wasce KVM against {:.1} MiB for wasmtime.",
        kvm_user + kvm_kern,
        per_instance.iter().find(|p| p.0 == "process").map_or(0.0, |p| p.1 + p.2),
        kvm_fits / fc_vmm,
        kvm_fits / fc_footprint,
        peak[0],
        peak[2]
    );
    Section {
        title: "2–3. Memory and density".into(),
        body,
        meaning,
        plots: vec![("memory.svg".into(), chart.render()), ("density.svg".into(), dchart.render())],
        headlines: vec![
            ("host memory per idle KVM instance (user + kernel)".into(), format!("{:.0} KiB", kvm_user + kvm_kern)),
            (format!("idle KVM instances in {budget} MiB / vs Firecracker footprint"), format!("{kvm_fits:.0} / {:.0}×", kvm_fits / fc_footprint)),
            ("peak RSS of hello, wasce KVM vs wasmtime".into(), format!("{:.1} vs {:.1} MiB", peak[0], peak[2])),
        ],
    }
}
