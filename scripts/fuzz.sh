#!/usr/bin/env bash
# Long fuzzing runs of wasce's cargo-fuzz targets (fuzz/), with libFuzzer.
#
#   scripts/fuzz.sh TARGET [SECONDS] [LIBFUZZER_ARGS...]
#
# TARGET is `differential` (wasm-smith modules in wasmi and in wasce, which must agree) or
# `compile_no_panic` (arbitrary bytes through validation, compilation and instantiation, which
# must never panic). SECONDS defaults to 600. The corpus lives in fuzz/corpus/TARGET and crashes
# in fuzz/artifacts/TARGET; replay one with `fuzz/target/x86_64-unknown-linux-gnu/release/TARGET
# FILE`. A differential crash also leaves its module in $TMPDIR/wasce-differential-crash.wasm;
# `cargo run -p wasce-spec-tests --example diff_repro -- FILE --wat` explains it.
#
# Installs cargo-fuzz from crates.io if it is missing. cargo-fuzz passes nightly-only flags to
# rustc: on a stable toolchain this script sets RUSTC_BOOTSTRAP=1 for the fuzz build only. No
# sanitizer (`--sanitizer none`): wasce reserves 8 GiB of address space per linear memory and
# handles SIGSEGV itself in process isolation, which AddressSanitizer does not tolerate. Debug
# assertions and overflow checks are on. Set CARGO_LOCK=/path to serialise the build with other
# cargo users through flock (the fuzzing itself runs outside the lock).
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: scripts/fuzz.sh differential|compile_no_panic [SECONDS] [LIBFUZZER_ARGS...]"
target=${1:?$usage}
seconds=${2:-600}
shift $(( $# < 2 ? $# : 2 ))
case "$target" in
    differential|compile_no_panic) ;;
    *) echo "$usage" >&2; exit 2 ;;
esac

locked() {
    if [ -n "${CARGO_LOCK:-}" ]; then flock "$CARGO_LOCK" "$@"; else "$@"; fi
}

if ! command -v cargo-fuzz >/dev/null; then
    locked cargo install cargo-fuzz
fi
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

locked cargo fuzz build --sanitizer none --debug-assertions "$target"

corpus=fuzz/corpus/$target
artifacts=fuzz/artifacts/$target
mkdir -p "$corpus" "$artifacts"
if [ "$target" = compile_no_panic ] && [ -z "$(ls -A "$corpus")" ]; then
    # Seeds, so libFuzzer starts past the header: an empty module, and `(module (func))`.
    printf '\0asm\1\0\0\0' > "$corpus/empty-module"
    printf '\0asm\1\0\0\0\1\4\1\140\0\0\3\2\1\0\12\4\1\2\0\13' > "$corpus/one-function"
fi

# wasm-smith needs kilobytes of input for a module of some size: let inputs be that long at once
# (libFuzzer otherwise grows them from a few bytes over many minutes).
extra=()
if [ "$target" = differential ]; then
    extra=(-max_len=16384 -len_control=0)
fi

exec fuzz/target/x86_64-unknown-linux-gnu/release/"$target" "$corpus" \
    -artifact_prefix="$artifacts/" -max_total_time="$seconds" -timeout=60 -rss_limit_mb=4096 \
    -print_final_stats=1 "${extra[@]}" "$@"
