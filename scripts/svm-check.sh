#!/usr/bin/env bash
# Run wasce on standard KVM (kvm_amd) without such a host: boot a stock Debian kernel under
# QEMU with software emulation (TCG, `-cpu max`, which emulates AMD SVM), load kvm_amd inside
# it, and run commands against its /dev/kvm. Packages come from Debian only (qemu-system-x86,
# linux-image-amd64, busybox-static); they are installed if missing.
#
#   scripts/svm-check.sh [--carry PATH]... [--timeout SECONDS] -- 'COMMAND' ['COMMAND'...]
#
# Inside the guest the repository's files named with --carry (relative to the repository root;
# binaries are stripped of debug info) are under /w, which is also the working directory and is
# linked from the repository's own path (test binaries find `wasce` where cargo built it), and
# ../shared/testsuite is at /shared/testsuite (so `../shared/testsuite/x.wast` works from /w).
# target/debug/wasce is always carried (build it first). Each COMMAND runs with `sh -c`; its
# output is shown, and the script exits non-zero unless every command exits 0. Guest code runs
# about 10x slower than natively; booting takes 5-10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

carry=(target/debug/wasce)
timeout=900
while [ $# -gt 0 ]; do
    case "$1" in
        --carry) carry+=("$2"); shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "svm-check: unknown option $1 (commands come after --)" >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: scripts/svm-check.sh [--carry PATH]... [--timeout S] -- 'COMMAND'..." >&2; exit 2; }

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] || command -v busybox >/dev/null || need+=(busybox-static)
ls /lib/modules/*/kernel/arch/x86/kvm/kvm-amd.ko* >/dev/null 2>&1 || need+=(linux-image-amd64)
command -v cpio >/dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
    echo "svm-check: installing ${need[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

kver=$(ls -d /lib/modules/*/kernel/arch/x86/kvm | sed 's|/lib/modules/||; s|/kernel/.*||' | sort -V | tail -n 1)
kernel=/boot/vmlinuz-$kver
[ -r "$kernel" ] || { echo "svm-check: no kernel $kernel" >&2; exit 1; }
for f in "${carry[@]}"; do [ -e "$f" ] || { echo "svm-check: $f does not exist (build it first)" >&2; exit 1; }; done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,w,shared,modules}
# A root file system like a normal one, as far as the tests look at it.
echo 'root:x:0:0:root:/tmp:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
cp "$(command -v busybox)" "$root/bin/busybox"

# kvm-amd and what it depends on (modinfo), decompressed (busybox insmod reads plain .ko),
# listed in load order.
order=()
add_module() {
    local name=$1 dep src
    for dep in "${order[@]}"; do [ "$dep" = "$name" ] && return; done
    src=$(modinfo -k "$kver" -n "$name")
    for dep in $(modinfo -k "$kver" -F depends "$name" | tr ',' ' '); do add_module "$dep"; done
    case "$src" in
        *.xz) xz -dc "$src" > "$root/modules/$name.ko" ;;
        *.zst) zstd -qdc "$src" > "$root/modules/$name.ko" ;;
        *) cp "$src" "$root/modules/$name.ko" ;;
    esac
    order+=("$name")
}
add_module kvm-amd

# Carried files, and the shared libraries of every carried executable.
for f in "${carry[@]}"; do
    mkdir -p "$root/w/$(dirname "$f")"
    cp -r "$f" "$root/w/$f"
    if [ -f "$f" ] && head -c 4 "$f" | grep -q ELF; then
        strip --strip-debug "$root/w/$f" 2>/dev/null || true
        ldd "$f" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done
    fi
done
if [ -d ../shared/testsuite ]; then
    mkdir -p "$root/shared/testsuite"
    cp ../shared/testsuite/*.wast "$root/shared/testsuite/"
fi

{
    echo 'set -u'
    echo 'cd /w'
    i=0
    for c in "$@"; do
        i=$((i + 1))
        printf 'echo "svm-check: [%d] %s"\n' "$i" "$(printf '%s' "$c" | sed 's/["\\$`]/\\&/g')"
        printf '( %s ); echo "svm-check: [%d] exit $?"\n' "$c" "$i"
    done
} > "$root/commands.sh"

cat > "$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin HOME=/tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mkdir -p /dev/pts /sys/fs/cgroup
mount -t devpts devpts /dev/pts
mount -t cgroup2 cgroup2 /sys/fs/cgroup
repo=$(cat /repo-path)
mkdir -p "$(dirname "$repo")"
ln -s /w "$repo"
[ -e "$(dirname "$repo")/shared" ] || ln -s /shared "$(dirname "$repo")/shared"
for m in $(cat /modules/order); do
    [ "$m" = kvm-amd ] || insmod /modules/$m.ko
done
if insmod /modules/kvm-amd.ko && [ -c /dev/kvm ]; then
    echo "svm-check: kvm_amd loaded, /dev/kvm ready ($(grep -c svm /proc/cpuinfo) cpus with svm)"
    sh /commands.sh
else
    echo "svm-check: kvm_amd did not load"
fi
echo "svm-check: done"
poweroff -f
EOF
chmod +x "$root/init"
echo "$repo" > "$root/repo-path"
echo "${order[*]}" > "$root/modules/order"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.gz"

log=$work/console.log
set +e
# One vCPU: TCG runs it at a steady pace (two vCPUs under multi-threaded TCG were far slower
# here with nested SVM); the tests that need a second core are left out by the caller.
timeout "$timeout" qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m 4G -nographic -no-reboot -monitor none \
    -kernel "$kernel" -initrd "$work/initrd.gz" -append "console=ttyS0 quiet panic=-1 mitigations=off" \
    < /dev/null 2>&1 | sed -u 's/\r$//' | tee "$log" | grep --line-buffered -av '^\['
qemu=${PIPESTATUS[0]}
set -e
[ "$qemu" = 124 ] && { echo "svm-check: timed out after ${timeout}s" >&2; exit 1; }
grep -q 'svm-check: kvm_amd loaded' "$log" || { echo "svm-check: kvm_amd did not come up" >&2; exit 1; }
grep -q '^svm-check: done' "$log" || { echo "svm-check: the guest did not finish" >&2; exit 1; }
failed=$(grep -E '^svm-check: \[[0-9]+\] exit [1-9]' "$log" || true)
ran=$(grep -cE '^svm-check: \[[0-9]+\] exit' "$log")
[ "$ran" = $# ] || { echo "svm-check: ran $ran of $# commands" >&2; exit 1; }
if [ -n "$failed" ]; then echo "$failed" >&2; exit 1; fi
echo "svm-check: all $# commands passed under kvm_amd (nested SVM in QEMU TCG)"
