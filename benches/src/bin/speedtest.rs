//! SQLite speedtest1 (`../shared/workloads/sqlite`) through whole `wasce exec` / `wasmtime run`
//! processes: on disk (a fresh temporary directory preopened as `.`) and `--memdb`, in the VM
//! with each host-call transport, in process mode, and in wasmtime; rounds interleaved. Reports
//! speedtest1's own TOTAL seconds (median [min-max]) and the ratio to wasmtime.
//!
//! Usage: `speedtest [--rounds R] [--size N] [--wasce PATH] [--wasmtime PATH] [--dotlock]`.

use std::process::Command;

fn total(output: &str) -> Option<f64> {
    let line = output.lines().find(|l| l.trim_start().starts_with("TOTAL"))?;
    line.trim_end().trim_end_matches('s').rsplit(|c: char| c == '.' && false || c == ' ').next()?.parse().ok()
}

fn run(cmd: &[String], dir: &std::path::Path) -> f64 {
    let out = Command::new(&cmd[0]).args(&cmd[1..]).current_dir(dir).output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    total(&String::from_utf8_lossy(&out.stdout)).unwrap_or_else(|| panic!("{cmd:?}: no TOTAL line"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let rounds: usize = opt("--rounds").map_or(3, |r| r.parse().unwrap());
    let size = opt("--size").unwrap_or_else(|| "10".into());
    let wasce = std::fs::canonicalize(opt("--wasce").unwrap_or_else(|| "target/release/wasce".into())).expect("wasce binary");
    let wasmtime = opt("--wasmtime").or_else(|| std::env::var("WASMTIME").ok());
    let root = std::env::current_dir().unwrap();
    let wasm_name = if args.iter().any(|a| a == "--dotlock") { "speedtest1-dotlock.wasm" } else { "speedtest1.wasm" };
    let wasm = std::fs::canonicalize(root.join("../shared/workloads/sqlite").join(wasm_name)).expect("speedtest1 wasm");
    let (w, wasm) = (wasce.to_string_lossy().into_owned(), wasm.to_string_lossy().into_owned());
    let engines: Vec<(&str, Vec<String>)> = {
        let mut e = vec![
            ("wasce kvm, ring", vec![w.clone(), "exec".into(), "--hostcall".into(), "ring".into()]),
            ("wasce kvm, exit", vec![w.clone(), "exec".into(), "--hostcall".into(), "exit".into()]),
            ("wasce process", vec![w.clone(), "exec".into(), "--isolation".into(), "process".into()]),
        ];
        if let Some(wt) = &wasmtime {
            e.push(("wasmtime", vec![wt.clone(), "run".into()]));
        }
        e
    };
    println!("{wasm_name} --size {size}: TOTAL seconds, median [min-max] of {rounds} rounds, interleaved");
    println!();
    println!("| engine | on disk | ratio to wasmtime | --memdb | ratio to wasmtime |");
    println!("|---|---|---|---|---|");
    let mut results: Vec<[Vec<f64>; 2]> = engines.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..engines.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            for (slot, memdb) in [(0, false), (1, true)] {
                let dir = std::env::temp_dir().join(format!("wasce-speedtest-{}-{i}-{slot}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                let mut cmd = engines[i].1.clone();
                cmd.extend(["--dir".into(), format!("{}::.", dir.display()), wasm.clone()]);
                if memdb {
                    cmd.push("--memdb".into());
                }
                cmd.extend(["--size".into(), size.clone()]);
                if !memdb {
                    cmd.push("test.db".into());
                }
                results[i][slot].push(run(&cmd, &dir));
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    let med = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let base = wasmtime.as_ref().map(|_| [med(&results[engines.len() - 1][0]).0, med(&results[engines.len() - 1][1]).0]);
    for (i, (name, _)) in engines.iter().enumerate() {
        let cells: Vec<String> = (0..2)
            .map(|slot| {
                let (m, lo, hi) = med(&results[i][slot]);
                let ratio = base.map_or("n/a".to_string(), |b| format!("{:.2}x", m / b[slot]));
                format!("{m:.3} [{lo:.3}-{hi:.3}] | {ratio}")
            })
            .collect();
        println!("| {name} | {} | {} |", cells[0], cells[1]);
    }
}
