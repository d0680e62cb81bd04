#!/usr/bin/env bash
# The containerd shim (shim/, `containerd-shim-wasce-v1`) under a real containerd.
#
# Installs what it needs from Debian if missing (containerd, protoc, libseccomp), builds the shim
# (its own crate, lockfile and target dir: shim/target), starts a private containerd (its own
# root, state dir, sockets and namespace under a temporary directory; nothing shared with a
# system containerd), builds OCI images holding WebAssembly modules without any registry
# (scripts/shim-test-image.py), imports them with `ctr image import` and runs them with
# `ctr run --runtime io.containerd.wasce.v1`. Checks: output, exit codes (proc_exit, trap),
# args and env, the memory limit, `ctr task kill`, that the guest ran in a KVM VM, and the
# precompile cache of a WASM OCI layer. Prints `ctr run` latency at the end.
#
# Environment: SHIM_JOBS (cargo -j for the shim build, default: all cores), SHIM_NICE=1 (build
# under nice -n 19), SHIM_RUNS (latency samples, default 10), KEEP=1 (keep the temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

pass=0
fail=0
ok() { echo "  ok: $*"; pass=$((pass + 1)); }
bad() { echo "  FAIL: $*"; fail=$((fail + 1)); }

# ---- Dependencies ---------------------------------------------------------------------------
missing=()
command -v containerd >/dev/null && command -v ctr >/dev/null || missing+=(containerd)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
[ -e /usr/include/seccomp.h ] || missing+=(libseccomp-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing from Debian: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "== $(containerd --version)"
[ -e /dev/kvm ] || { echo "shim-test: /dev/kvm missing: the shim runs guests in KVM VMs" >&2; exit 1; }

# ---- Build ----------------------------------------------------------------------------------
echo "== building the shim (shim/, its own target dir)"
build=(cargo build --release --locked)
[ -n "${SHIM_JOBS:-}" ] && build+=(-j "$SHIM_JOBS")
[ "${SHIM_NICE:-0}" = 1 ] && build=(nice -n 19 "${build[@]}")
t0=$(date +%s)
(cd shim && "${build[@]}")
echo "== shim build: $(($(date +%s) - t0)) s (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
SHIM="$REPO/shim/target/x86_64-unknown-linux-gnu/release/containerd-shim-wasce-v1"
# Static (shim/.cargo/config.toml): it re-executes itself inside containers that hold no libc.
ldd "$SHIM" 2>&1 | grep -Eq "statically linked|not a dynamic executable" || { echo "shim-test: $SHIM is dynamically linked" >&2; exit 1; }

# ---- A private containerd -------------------------------------------------------------------
T=$(mktemp -d /tmp/wasce-shim-test.XXXXXX)
CONTAINERD_PID=
cleanup() {
    if [ -n "$CONTAINERD_PID" ]; then
        for c in $(ctr_ containers ls -q 2>/dev/null); do
            ctr_ task kill -s SIGKILL "$c" >/dev/null 2>&1 || true
            ctr_ task delete "$c" >/dev/null 2>&1 || true
            ctr_ containers delete "$c" >/dev/null 2>&1 || true
        done
        kill "$CONTAINERD_PID" 2>/dev/null || true
        wait "$CONTAINERD_PID" 2>/dev/null || true
    fi
    # The snapshots of the native snapshotter are plain directories; nothing stays mounted.
    if [ "${KEEP:-0}" = 1 ]; then echo "== kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
mkdir -p "$T/bin" "$T/root" "$T/state" "$T/key"
chmod 700 "$T/key"
ln -s "$SHIM" "$T/bin/containerd-shim-wasce-v1"
cat >"$T/config.toml" <<EOF
version = 2
root = "$T/root"
state = "$T/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$T/containerd.sock"
[ttrpc]
  address = "$T/containerd.sock.ttrpc"
[debug]
  address = "$T/debug.sock"
  level = "info"
EOF
# The shim finds its key and settings in containerd's environment (it inherits it).
PATH="$T/bin:$PATH" WASCE_SHIM_KEY_FILE="$T/key/artifact.key" WASCE_SHIM_STATS=1 \
    containerd --config "$T/config.toml" >"$T/containerd.log" 2>&1 &
CONTAINERD_PID=$!
ctr_() { ctr --address "$T/containerd.sock" --namespace wasce-test "$@"; }
for _ in $(seq 100); do [ -S "$T/containerd.sock" ] && ctr_ version >/dev/null 2>&1 && break; sleep 0.1; done
ctr_ version >/dev/null || { cat "$T/containerd.log"; echo "containerd did not start" >&2; exit 1; }
echo "== private containerd (pid $CONTAINERD_PID) on $T"

# ---- Images, without a registry -------------------------------------------------------------
IMG=docker.io/library/wasce-test:latest
OCI=docker.io/library/wasce-hello-oci:latest
python3 scripts/shim-test-image.py "$T/rootfs.tar" "$IMG" rootfs hello hello exit7 trap spin args_env grow
ctr_ images import --snapshotter native "$T/rootfs.tar" >/dev/null
# WASM OCI images (runwasi's format). containerd >= 1.6.25/1.7.7 imports and unpacks them as
# they are (no diff IDs, nothing to unpack); older ones (Debian 12's 1.6.20) refuse them, so
# there the image lists its layer's digest as diff ID, is imported without unpacking, and an
# empty snapshot committed under that chain ID is its root filesystem.
import_wasm_image() { # import_wasm_image REF MODULE
    python3 scripts/shim-test-image.py "$T/$2.tar" "$1" wasm "$2"
    if ! ctr_ images import --snapshotter native --all-platforms "$T/$2.tar" >/dev/null 2>"$T/import.err"; then
        echo "  ($1: this containerd refuses WASM OCI images as they are: $(cat "$T/import.err"); committing an empty rootfs snapshot instead)"
        python3 scripts/shim-test-image.py --diff-id "$T/$2.tar" "$1" wasm "$2"
        ctr_ images import --snapshotter native --all-platforms --no-unpack "$T/$2.tar" >/dev/null
        # The layer is the module itself: its digest is the diff ID, and the chain ID of one layer.
        python3 scripts/shim-test-image.py --module "$2" "$T/$2.wasm"
        local chain="sha256:$(sha256sum "$T/$2.wasm" | cut -d' ' -f1)"
        ctr_ snapshots --snapshotter native prepare "$T-empty-$2" >/dev/null
        ctr_ snapshots --snapshotter native commit "$chain" "$T-empty-$2"
        ctr_ snapshots --snapshotter native label "$chain" containerd.io/gc.root=shim-test >/dev/null
    fi
}
FAKE=docker.io/library/wasce-fake-artifact:latest
import_wasm_image "$OCI" hello
import_wasm_image "$FAKE" artifact

RUN=(run --rm --snapshotter native --runtime io.containerd.wasce.v1)
n=0
run() { # run ARGS...: stdout to $T/out, stderr to $T/err, exit status in $rc
    n=$((n + 1))
    set +e
    ctr_ "${RUN[@]}" "$@" >"$T/out" 2>"$T/err"
    rc=$?
    set -e
}

echo "== checks"
# 1. hello: the output arrives through ctr run; the guest ran in a KVM VM (the runner's stats
#    line: VM exits counted by the KVM run loop, or host calls served over the VM's exit-less
#    ring; both exist only in a VM).
run "$IMG" "t$n"
if [ $rc = 0 ] && grep -qx "hello from wasce" "$T/out"; then ok "hello: output through ctr run, exit 0"; else bad "hello: rc=$rc out=$(cat "$T/out") err=$(cat "$T/err")"; fi
if grep -Eq "isolation=kvm (vm-exits=[1-9]|vm-exits=[0-9]+ ring-calls=[1-9])" "$T/err"; then ok "hello ran in a KVM VM ($(grep -o 'isolation=.*' "$T/err"))"; else bad "no KVM evidence: $(cat "$T/err")"; fi

# 2. proc_exit(7) -> ctr run exits 7.
run "$IMG" "t$n" /exit7.wasm
[ $rc = 7 ] && ok "proc_exit(7): ctr run exits 7" || bad "proc_exit(7): rc=$rc $(cat "$T/err")"

# 3. A trap -> 134, the trap in the log (the container's stderr).
run "$IMG" "t$n" /trap.wasm
if [ $rc = 134 ] && grep -q "wasm trap: unreachable" "$T/err"; then ok "trap: exit 134, '$(grep -m1 'wasm trap' "$T/err")'"; else bad "trap: rc=$rc err=$(cat "$T/err")"; fi

# 4. args and env from the spec.
run --env GREETING=hi "$IMG" "t$n" /args_env.wasm one two
got=$(tr '\0' '|' <"$T/out")
if [ $rc = 0 ] && [[ "$got" == "/args_env.wasm|one|two|"* ]] && [[ "$got" == *"|GREETING=hi|"* ]]; then ok "args and env: $got"; else bad "args/env: rc=$rc out=$got err=$(cat "$T/err")"; fi

# 5. The memory limit bounds linear memory: growing by 125 MiB fails under 64 MiB (exit 3).
run "$IMG" "t$n" /grow.wasm
r1=$rc
run --memory-limit 67108864 "$IMG" "t$n" /grow.wasm
if [ $r1 = 0 ] && [ $rc = 3 ]; then ok "memory limit: grow by 125 MiB succeeds unlimited, fails under --memory-limit 64MiB ($(grep -o 'max-memory-pages=[0-9]*' "$T/err"))"; else bad "memory limit: unlimited rc=$r1, limited rc=$rc $(cat "$T/err")"; fi

# 6. A spinning guest stopped by ctr task kill (SIGTERM, then SIGKILL); while it runs, its
#    process holds KVM VM and vCPU descriptors (a fact seen from outside the shim).
for sig in SIGTERM SIGKILL; do
    id="spin-$sig"
    set +e
    ctr_ "${RUN[@]}" "$IMG" "$id" /spin.wasm >"$T/spin.out" 2>"$T/spin.err" &
    cpid=$!
    set -e
    pid=
    for _ in $(seq 100); do
        pid=$(ctr_ task ls 2>/dev/null | awk -v id="$id" '$1 == id && $3 == "RUNNING" {print $2}')
        [ -n "$pid" ] && break
        sleep 0.1
    done
    if [ -z "$pid" ]; then bad "spin ($sig): never running: $(cat "$T/spin.err")"; kill $cpid 2>/dev/null; continue; fi
    sleep 0.5
    fds=$(ls -l /proc/"$pid"/fd 2>/dev/null | grep -o 'anon_inode:kvm-[a-z]*' | sort -u | tr '\n' ' ')
    comm=$(cat /proc/"$pid"/comm 2>/dev/null || true)
    if [[ "$fds" == *kvm-vcpu* ]]; then ok "spin ($sig): running as pid $pid ($comm) with $fds"; else bad "spin: no KVM fds in pid $pid ($comm): $fds"; fi
    ctr_ task kill -s "$sig" "$id"
    set +e
    timeout 20 tail --pid=$cpid -f /dev/null
    wait $cpid
    rc=$?
    set -e
    want=$((128 + $(kill -l "$sig")))
    [ $rc = $want ] && ok "spin: ctr task kill -s $sig ended it, ctr run exits $rc" || bad "spin: ctr task kill -s $sig: rc=$rc (want $want) $(cat "$T/spin.err")"
done

# 7. A WASM OCI layer (application/wasm): the first run precompiles it into a wasce artifact
#    that containerd keeps in its content store; the second run loads that, compiling nothing.
run --platform wasip1/wasm "$OCI" "t$n"
first=$(grep -o 'module=[a-z]*' "$T/err" || true)
if [ $rc = 0 ] && grep -qx "hello from wasce" "$T/out"; then ok "WASM OCI layer: hello"; else bad "WASM OCI layer: rc=$rc out=$(cat "$T/out") err=$(cat "$T/err")"; fi
run --platform wasip1/wasm "$OCI" "t$n"
second=$(grep -o 'module=[a-z]*' "$T/err" || true)
compiles=$(grep -c "wasce: precompiled layer" "$T/containerd.log" || true)
labels=$(ctr_ content ls 2>/dev/null | grep -c "runwasi.io/precompiled/wasce" || true)
if [ $rc = 0 ] && [ "$compiles" = 1 ] && [ "$first" = module=precompiled ] && [ "$second" = module=precompiled ] && [ "$labels" -ge 1 ]; then
    ok "precompile: compiled once by the shim, kept in the content store ($labels blobs with the runwasi.io/precompiled/wasce label), both runs loaded the artifact"
else
    bad "precompile: rc=$rc compiles=$compiles first=$first second=$second labels=$labels"
fi

# 8. A layer holding what claims to be a wasce artifact is not loaded as code.
run --platform wasip1/wasm "$FAKE" "t$n"
if [ $rc != 0 ] && grep -q "holds a wasce artifact" "$T/err"; then ok "an artifact in an image is refused (exit $rc): $(grep -m1 -o 'the image holds a wasce artifact[^;]*' "$T/err")"; else bad "artifact in an image: rc=$rc err=$(cat "$T/err")"; fi

# ---- Latency --------------------------------------------------------------------------------
runs=${SHIM_RUNS:-10}
after=() # the command line after the container ID, if any
latency() { # latency LABEL ARGS...: ms per `ctr run --rm ARGS ID ${after[@]}` over $runs runs
    local label=$1; shift
    local ms=()
    for i in $(seq "$runs"); do
        local s=$(date +%s%N)
        ctr_ "${RUN[@]}" "$@" "lat$i" "${after[@]}" >/dev/null 2>&1
        ms+=($((($(date +%s%N) - s) / 1000000)))
    done
    local sorted=($(printf '%s\n' "${ms[@]}" | sort -n))
    echo "  ctr run --rm latency, $label: median ${sorted[$((runs / 2))]} ms, min ${sorted[0]} ms, max ${sorted[$((runs - 1))]} ms ($runs runs)"
}
echo "== latency (load average $(cut -d' ' -f1-3 /proc/loadavg))"
latency "hello from the rootfs (compiled at each run)" "$IMG"
latency "hello as a WASM OCI layer (precompiled, from the content store)" --platform wasip1/wasm "$OCI"
# Context: the same `ctr run --rm` of a Linux container under runc (static busybox `true`), when
# Debian's busybox-static is installed.
if [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; then
    python3 scripts/shim-test-image.py "$T/busybox.tar" docker.io/library/wasce-busybox:latest rootfs /busybox busybox=/bin/busybox
    ctr_ images import --snapshotter native "$T/busybox.tar" >/dev/null
    RUN=(run --rm --snapshotter native --runtime io.containerd.runc.v2)
    after=(/busybox true)
    latency "runc, busybox true (a Linux container, for comparison)" docker.io/library/wasce-busybox:latest
    after=()
    RUN=(run --rm --snapshotter native --runtime io.containerd.wasce.v1)
fi
if command -v containerd-shim-wasmtime-v1 >/dev/null; then
    latency "containerd-shim-wasmtime-v1, same image" --runtime io.containerd.wasmtime.v1 "$IMG"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
