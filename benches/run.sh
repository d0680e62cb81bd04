#!/usr/bin/env bash
# The benchmark command: builds wasce and the benchmark driver in release mode, installs the
# wasmtime baseline (benches/scripts/setup-wasmtime.sh), runs every group and writes
# benches/RESULTS.md and benches/plots/*.svg.
#
#   benches/run.sh            full run (about 15-30 minutes)
#   benches/run.sh --quick    smoke run (under 3 minutes once built): fewer runs, fewer workloads
#   benches/run.sh --only wasi,compile [--quick]
#
# Run it from anywhere; the workloads are read from ../shared beside the repository.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
cargo build --release --quiet -p wasce-engine --bin wasce -p wasce-benches --bin wasce-bench
wasmtime="$(benches/scripts/setup-wasmtime.sh)"
exec target/release/wasce-bench --wasce target/release/wasce --wasmtime "$wasmtime" \
    --shared "$repo/../shared" --out "$repo/benches" "$@"
