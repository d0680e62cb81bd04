//! Group 8, warm starts: a run in a warm instance (snapshot restore + run, `wasce_engine::warm`)
//! next to a fresh store per run, in one process; and `wasce serve` over localhost (one client,
//! then 8 concurrent clients) next to spawning `wasmtime run` per request.

use super::{interleave, precompile, HELLO};
use crate::report::{table, Section};
use crate::stats::percentile;
use crate::svg::Bars;
use crate::{progress, Ctx};
use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};
use wasce_engine::warm::{Prelinked, RunRequest, WarmConfig};
use wasce_engine::wasi::{self, Stdio, WasiConfig};
use wasce_engine::{HostcallTransport, Isolation, Linker, Settings, Store, StoreConfig};

pub fn run(ctx: &Ctx) -> Section {
    let runs = ctx.pick(200, 1000);
    progress!("warm: in-process, {runs} runs per row");
    let lib = in_process(runs);

    let wasm = ctx.scratch_file("hello-warm.wasm", &wat::parse_str(HELLO).unwrap());
    let (ours, theirs) = precompile(ctx, &wasm, "hello-warm");
    let requests = ctx.pick(300, 1000);
    progress!("warm: wasce serve, {requests} sequential requests, then 8 clients");
    let server = Server::start(ctx, &ours);
    let sequential = server.sequential(requests);
    let (concurrent, serve_secs) = server.concurrent(8, requests);
    drop(server);
    let spawns = ctx.pick(80, 400);
    progress!("warm: wasmtime run per request, 8 clients, {spawns} requests");
    let wasmtime_cmd = vec![ctx.wasmtime(), "run".into(), "--allow-precompiled".into(), theirs];
    let (spawned, spawn_secs) = spawn_concurrent(&wasmtime_cmd, 8, spawns);

    let us = |v: &[f64], q: f64| format!("{:.0}", percentile(v, q));
    let mut body = format!(
        "In one process ({runs} runs per row, interleaved): hello world (`_start`, one `fd_write`) with stdout captured. \
         *Warm* is `WarmInstance::run`: the WASI context reset with the run's streams, the call, then the restore of the \
         post-initialisation snapshot (memories, globals, tables, vmctx, the guest stack and FPU state) — what one \
         request costs a pooled VM. *Fresh* creates a store (in KVM mode a VM), links WASI, instantiates and runs, \
         as `wasce exec` does in-process (teardown not timed).\n\n"
    );
    body += &table(&["what", "p50 µs", "p99 µs", "min µs"], &lib.iter().map(|(m, v)| vec![m.to_string(), us(v, 0.5), us(v, 0.99), us(v, 0.0)]).collect::<Vec<_>>());
    let ms = |v: &[f64], q: f64| format!("{:.3}", percentile(v, q) / 1e3);
    body += &format!(
        "\n`wasce serve --module hello=hello.cwasm --quiet` (KVM, 2 workers, host calls as exits: `serve`'s default) on 127.0.0.1, driven by HTTP/1.1 keep-alive \
         clients in this process: `POST /run/hello` with `{{}}`, the JSON answer read whole. One client, {requests} requests \
         in a row; then 8 clients, {requests} requests in all. The baseline spawns `wasmtime run --allow-precompiled` \
         per request from 8 threads ({spawns} in all), the cost a server built on the CLI would pay.\n\n"
    );
    body += &table(
        &["what", "p50 ms", "p99 ms", "throughput (req/s)"],
        &[
            vec!["`wasce serve`, 1 client".into(), ms(&sequential, 0.5), ms(&sequential, 0.99), format!("{:.0}", sequential.len() as f64 / (sequential.iter().sum::<f64>() / 1e6))],
            vec!["`wasce serve`, 8 clients".into(), ms(&concurrent, 0.5), ms(&concurrent, 0.99), format!("{:.0}", concurrent.len() as f64 / serve_secs)],
            vec!["`wasmtime run` per request, 8 at once".into(), ms(&spawned, 0.5), ms(&spawned, 0.99), format!("{:.0}", spawned.len() as f64 / spawn_secs)],
        ],
    );
    let warm_kvm = &lib[0].1;
    let warm_exit = &lib[1].1;
    let fresh_kvm = &lib[3].1;
    let meaning = format!(
        "A warm KVM run of hello world takes {:.0} µs at p50 and {:.0} µs at p99 with host calls over the ring ({:.0} / {:.0} µs \
         with host calls as exits; goal: under 100 / 300 µs) against {:.0} µs for a fresh VM: {:.0}x. Over HTTP, `wasce serve` answers in {:.2} ms at p50 and {:.2} ms at p99 with one client (goal: \
         under 1 / 5 ms) and serves {:.0} requests/s with 8 clients, against {:.0}/s spawning wasmtime per request. \
         On this host every VM exit costs tens of µs (nested PVM): a warm run makes at least one (the call's end), plus \
         one for the host call unless the ring server thread is awake (it sleeps after 200 µs without requests, and on \
         2 busy cores it is often descheduled: the ring's tail). The restore itself (WASI reset, snapshot compare, stack \
         and FPU scrub) is about 20 µs of it.",
        percentile(warm_kvm, 0.5),
        percentile(warm_kvm, 0.99),
        percentile(warm_exit, 0.5),
        percentile(warm_exit, 0.99),
        percentile(fresh_kvm, 0.5),
        percentile(fresh_kvm, 0.5) / percentile(warm_kvm, 0.5),
        percentile(&sequential, 0.5) / 1e3,
        percentile(&sequential, 0.99) / 1e3,
        concurrent.len() as f64 / serve_secs,
        spawned.len() as f64 / spawn_secs,
    );
    let chart = Bars {
        title: "hello world per run / request (µs, log scale)".into(),
        unit: "microseconds".into(),
        series: vec!["p50".into(), "p99".into()],
        rows: lib
            .iter()
            .map(|(m, v)| (m.to_string(), vec![percentile(v, 0.5), percentile(v, 0.99)]))
            .chain([
                ("wasce serve, 1 client".to_string(), vec![percentile(&sequential, 0.5), percentile(&sequential, 0.99)]),
                ("wasce serve, 8 clients".to_string(), vec![percentile(&concurrent, 0.5), percentile(&concurrent, 0.99)]),
                ("wasmtime run per request".to_string(), vec![percentile(&spawned, 0.5), percentile(&spawned, 0.99)]),
            ])
            .collect(),
        reference: None,
        log: true,
    };
    Section {
        title: "8. Warm starts and `wasce serve`".into(),
        body,
        meaning,
        plots: vec![("warm.svg".into(), chart.render())],
        headlines: vec![
            ("hello, warm KVM instance p50 / p99 (ring; exits)".into(), format!("{:.0} / {:.0} µs; {:.0} / {:.0} µs", percentile(warm_kvm, 0.5), percentile(warm_kvm, 0.99), percentile(warm_exit, 0.5), percentile(warm_exit, 0.99))),
            ("hello over `wasce serve` p50 / p99 (1 client)".into(), format!("{:.2} / {:.2} ms", percentile(&sequential, 0.5) / 1e3, percentile(&sequential, 0.99) / 1e3)),
            ("`wasce serve` / wasmtime-per-request throughput, 8 clients".into(), format!("{:.0} / {:.0} req/s", concurrent.len() as f64 / serve_secs, spawned.len() as f64 / spawn_secs)),
        ],
    }
}

/// Microseconds per run: warm (KVM over the ring, KVM with exits, process), then fresh (KVM,
/// process). The warm rows are interleaved with each other and the fresh rows with each other:
/// creating and destroying a VM between two warm runs would measure its aftermath (RCU grace
/// periods, TLB shootdowns) as part of the warm run.
fn in_process(runs: usize) -> Vec<(&'static str, Vec<f64>)> {
    let module = wasce_engine::load(&wat::parse_str(HELLO).unwrap(), &Settings::default()).expect("compile hello");
    let warm = |isolation, hostcall| {
        let config = WarmConfig { store: StoreConfig { isolation, hostcall, ..StoreConfig::default() }, ..WarmConfig::default() };
        Prelinked::new(module.clone(), config).expect("prelink").instantiate().expect("warm instance")
    };
    let mut instances = [warm(Isolation::Kvm, HostcallTransport::Auto), warm(Isolation::Kvm, HostcallTransport::Exit), warm(Isolation::Process, HostcallTransport::Auto)];
    let names = ["warm instance (KVM, host calls over the ring)", "warm instance (KVM, host calls as exits)", "warm instance (process)", "fresh store (KVM)", "fresh store (process)"];
    let mut out: Vec<(&str, Vec<f64>)> = names.iter().map(|n| (*n, Vec::new())).collect();
    let req = RunRequest::default();
    // Let the warm instances settle (first touches of their pages).
    for i in &mut instances {
        for _ in 0..20 {
            i.run(&req).expect("warm run");
        }
    }
    interleave(runs, 3, |_, i| {
        let t = Instant::now();
        let r = instances[i].run(&req).expect("warm run");
        out[i].1.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(r.stdout, b"Hello, world!\n");
    });
    interleave(runs, 2, |_, i| {
        let isolation = if i == 0 { Isolation::Kvm } else { Isolation::Process };
        let t = Instant::now();
        let out_buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut store = Store::new(StoreConfig { isolation, ..StoreConfig::default() }).expect("store");
        let mut linker = Linker::new();
        wasi::add_to_linker(&mut store, &mut linker, WasiConfig { stdout: Stdio::Capture(out_buf.clone()), ..WasiConfig::default() }).expect("wasi");
        assert_eq!(wasi::run_command(&mut store, &linker, &module).expect("_start"), 0);
        out[3 + i].1.push(t.elapsed().as_secs_f64() * 1e6);
        drop(store);
    });
    out
}

struct Server {
    child: std::process::Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(ctx: &Ctx, module: &str) -> Server {
        let mut child = std::process::Command::new(ctx.wasce())
            .args(["serve", "--listen", "127.0.0.1:0", "--quiet", "--module", &format!("hello={module}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start wasce serve");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        // Warnings may come first.
        while !line.contains("listening on") {
            line.clear();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("wasce serve ended before listening");
            }
        }
        let addr = line.split("http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_else(|| panic!("wasce serve: {line}")).to_string();
        std::thread::spawn(move || for _ in stderr.lines() {});
        Server { child, addr }
    }

    /// Microseconds per request, one keep-alive client.
    fn sequential(&self, n: usize) -> Vec<f64> {
        let mut c = Client::new(&self.addr);
        for _ in 0..50 {
            c.hello();
        }
        (0..n)
            .map(|_| {
                let t = Instant::now();
                c.hello();
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect()
    }

    /// Microseconds per request and the total seconds, `clients` keep-alive clients sharing `n`.
    fn concurrent(&self, clients: usize, n: usize) -> (Vec<f64>, f64) {
        let t = Instant::now();
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                let addr = self.addr.clone();
                let each = n / clients;
                std::thread::spawn(move || {
                    let mut c = Client::new(&addr);
                    (0..each)
                        .map(|_| {
                            let t = Instant::now();
                            c.hello();
                            t.elapsed().as_secs_f64() * 1e6
                        })
                        .collect::<Vec<f64>>()
                })
            })
            .collect();
        let lat: Vec<f64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        (lat, t.elapsed().as_secs_f64())
    }
}

/// A keep-alive HTTP/1.1 client for `POST /run/hello`.
struct Client {
    reader: BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl Client {
    fn new(addr: &str) -> Client {
        let s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client { reader: BufReader::new(s.try_clone().unwrap()), writer: s }
    }

    fn hello(&mut self) {
        self.writer.write_all(b"POST /run/hello HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        let mut len = 0;
        let mut status = String::new();
        self.reader.read_line(&mut status).unwrap();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).unwrap();
        assert!(status.contains(" 200 ") && body.windows(13).any(|w| w == b"Hello, world!"), "{status} {}", String::from_utf8_lossy(&body));
    }
}

/// Spawn `cmd` `n` times from `clients` threads: microseconds per spawn, total seconds.
fn spawn_concurrent(cmd: &[String], clients: usize, n: usize) -> (Vec<f64>, f64) {
    let t = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let cmd = cmd.to_vec();
            let each = n / clients;
            std::thread::spawn(move || {
                (0..each)
                    .map(|_| {
                        let t = Instant::now();
                        let o = std::process::Command::new(&cmd[0]).args(&cmd[1..]).stdin(std::process::Stdio::null()).output().expect("spawn");
                        assert_eq!(o.stdout, b"Hello, world!\n");
                        t.elapsed().as_secs_f64() * 1e6
                    })
                    .collect::<Vec<f64>>()
            })
        })
        .collect();
    let lat: Vec<f64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    (lat, t.elapsed().as_secs_f64())
}
