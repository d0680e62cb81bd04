#!/usr/bin/env bash
# Set up a fresh machine for wasce: check the toolchain and /dev/kvm, build the release binary.
# Idempotent; everything it installs lives under this repository or the user's cargo cache.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    echo "setup: /dev/kvm is usable"
else
    echo "setup: WARNING: /dev/kvm is missing or not accessible; only --isolation process will work" >&2
fi
cargo build --release --bin wasce
echo "setup: built $(pwd)/target/release/wasce"
