#!/usr/bin/env bash
# Copied unchanged from the shared qemu-nfs kit (../shared/qemu-nfs next to
# the repository); nlm-check.sh extends it for the lock manager.
# kernel-nfs-check.sh PORT [EXPORT_PATH]
#
# Test an NFSv3 server listening on the host's 127.0.0.1:PORT with the REAL
# Linux kernel NFS client, by booting Debian's stock kernel in a tiny qemu VM
# (initramfs = busybox + nfs/sunrpc/lockd/virtio modules + guest-test.sh).
# The guest reaches the host's 127.0.0.1 as 10.0.2.2 through qemu's user-mode
# (slirp) network; nothing else on the network is touched.
#
# Environment (all optional):
#   KNC_MB=64            size of the dd throughput/integrity file in MiB
#   KNC_MOUNTPORT=PORT   MOUNT protocol port if different from PORT
#   KNC_OPTS=...         extra mount options, comma separated (no spaces)
#   KNC_RESTART_CMD=...  host shell command that restarts the server; when set
#                        the guest keeps files open, asks for a restart, and
#                        checks what the kernel sees afterwards (ESTALE or not)
#   KNC_LOCKTEST=1       also try NLM locking on a second mount without nolock
#   KNC_ACCEL=auto       auto|kvm|tcg
#   KNC_MEM=512 KNC_SMP=2 KNC_TIMEOUT=240 (seconds for the whole VM run)
#   KNC_CACHE=/var/tmp/kernel-nfs-check   where the initramfs is cached
#   KNC_LOG=FILE         console log (default $KNC_CACHE/last-console.log)
#   KNC_QUIET=1          don't stream the console to stdout
# Exit: 0 all guest checks passed, 1 some check failed, 2 VM/infra problem.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PORT=${1:?usage: $0 PORT [EXPORT_PATH]}
EXPORT=${2:-/}
MB=${KNC_MB:-64}
CACHE=${KNC_CACHE:-/var/tmp/kernel-nfs-check}
TIMEOUT=${KNC_TIMEOUT:-240}
MEM=${KNC_MEM:-512}
SMP=${KNC_SMP:-2}
ACCEL=${KNC_ACCEL:-auto}
LOG=${KNC_LOG:-$CACHE/last-console.log}
mkdir -p "$CACHE"

say() { echo "[knc] $*" >&2; }

# ------------------------------------------------------------------ packages
ensure_pkgs() {
    local need=()
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || need+=(busybox-static)
    command -v cpio >/dev/null || need+=(cpio)
    command -v modprobe >/dev/null || need+=(kmod)
    ls /lib/modules/*/kernel/fs/nfs/nfsv3.ko* >/dev/null 2>&1 || need+=(linux-image-amd64)
    command -v file >/dev/null || need+=(file)
    if [ ${#need[@]} -gt 0 ]; then
        say "installing ${need[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >"$CACHE/apt.log" 2>&1 ||
            { apt-get update >>"$CACHE/apt.log" 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >>"$CACHE/apt.log" 2>&1; } ||
            { say "apt-get install failed, see $CACHE/apt.log"; exit 2; }
    fi
}

# ------------------------------------------------------------------ kernel
find_kernel() {
    local v
    for v in $(ls /lib/modules | sort -V -r); do
        if [ -f "/boot/vmlinuz-$v" ] && ls /lib/modules/$v/kernel/fs/nfs/nfsv3.ko* >/dev/null 2>&1; then
            KVER=$v; VMLINUZ=/boot/vmlinuz-$v; return 0
        fi
    done
    say "no /boot/vmlinuz-* with an NFSv3 client module found"; exit 2
}

# ------------------------------------------------------------------ initramfs
write_init() {
cat >"$1" <<'EOF'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /mnt /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for w in $(cat /proc/cmdline); do
    case "$w" in knc.*=*) k=${w%%=*}; k=${k#knc.}; export "KNC_$(echo "$k" | tr a-z A-Z)=${w#*=}";; esac
done
echo "KNC: BOOT userspace at $(cut -d' ' -f1 /proc/uptime)s"
[ "${KNC_PROBE:-0}" = 1 ] && poweroff -f
while read -r m; do insmod "/modules/$m" || echo "KNC: FAIL insmod $m"; done < /modules/order
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up && ip route add default via 10.0.2.2 ||
    echo "KNC: FAIL network setup"
echo "KNC: BOOT modules+net ready at $(cut -d' ' -f1 /proc/uptime)s"
sh /test.sh
echo "KNC: BOOT test done at $(cut -d' ' -f1 /proc/uptime)s"
poweroff -f
EOF
}

build_initramfs() {
    local key stage mods
    key=$( { echo "$KVER"; cat "$0" "$HERE/guest-test.sh" "$HERE/knc-lock.c" 2>/dev/null; sha256sum /bin/busybox; } | sha256sum | cut -c1-16)
    INITRD=$CACHE/initrd-$KVER-$key.cpio.gz
    [ -s "$INITRD" ] && return 0
    say "building initramfs for $KVER -> $INITRD"
    stage=$(mktemp -d "$CACHE/stage.XXXX")
    mkdir -p "$stage"/{bin,modules,proc,sys,dev,mnt,tmp}
    cp /bin/busybox "$stage/bin/busybox"
    write_init "$stage/init"; chmod 755 "$stage/init"
    cp "$HERE/guest-test.sh" "$stage/test.sh"
    if command -v gcc >/dev/null && [ -f /usr/lib/x86_64-linux-gnu/libc.a ] && [ -f "$HERE/knc-lock.c" ]; then
        gcc -static -O2 -o "$stage/bin/knc-lock" "$HERE/knc-lock.c" || say "knc-lock helper not built (lock test skipped)"
    fi
    # modules in dependency order (modprobe prints insmod lines deps-first)
    mods=$(for m in virtio_pci virtio_net nfsv3; do modprobe -S "$KVER" --show-depends "$m"; done |
           awk '$1=="insmod"{print $2}' | awk '!seen[$0]++')
    : >"$stage/modules/order"
    for m in $mods; do
        local b; b=$(basename "$m")
        case "$m" in
            *.ko) cp "$m" "$stage/modules/$b";;
            *.ko.xz) xz -dc "$m" >"$stage/modules/${b%.xz}"; b=${b%.xz};;
            *.ko.zst) zstd -qdc "$m" >"$stage/modules/${b%.zst}"; b=${b%.zst};;
            *.ko.gz) gzip -dc "$m" >"$stage/modules/${b%.gz}"; b=${b%.gz};;
        esac
        echo "$b" >>"$stage/modules/order"
    done
    (cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) >"$INITRD.tmp" && mv "$INITRD.tmp" "$INITRD"
    rm -rf "$stage"
    ls "$CACHE"/initrd-*.cpio.gz | grep -v -F "$INITRD" | xargs -r rm -f
}

# ------------------------------------------------------------------ run
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
listener_pids() { ss -Hltnp "sport = :$PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | sort -u | tr '\n' ' '; }

# Does KVM actually run this (stock, non-PVM) kernel? Some hosts expose a
# /dev/kvm that only runs paravirtualised (PVM) guests: a stock kernel then
# hangs right after "Probing EDD". Probe once with a short timeout, cache it.
kvm_works() {
    local f=$CACHE/kvm-probe-$KVER
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
    if [ ! -f "$f" ]; then
        say "probing whether KVM can boot $KVER (cached in $f)"
        timeout -k 2 "${KNC_KVM_PROBE_TIMEOUT:-25}" qemu-system-x86_64 -enable-kvm -cpu host -m 256 \
            -nodefaults -no-user-config -display none -serial stdio -no-reboot \
            -kernel "$VMLINUZ" -initrd "$INITRD" -append "console=ttyS0 quiet panic=-1 knc.probe=1" \
            </dev/null >"$f.log" 2>&1
        if tr -d '\r' <"$f.log" | grep -q '^KNC: BOOT'; then echo yes >"$f"; else echo no >"$f"; fi
    fi
    [ "$(cat "$f")" = yes ]
}

pick_accel() {
    case "$ACCEL" in
        kvm) ACCEL_ARGS=(-enable-kvm -cpu host);;
        tcg) ACCEL_ARGS=(-accel tcg -cpu max);;
        *) if kvm_works; then ACCEL_ARGS=(-enable-kvm -cpu host)
           else say "KVM unusable for this kernel here; using TCG (software emulation)"; ACCEL_ARGS=(-accel tcg -cpu max); fi;;
    esac
}

boot() {
    local append fifo qpid spid wpid=0 rc t0 t1
    append="console=ttyS0 quiet loglevel=4 panic=-1 knc.port=$PORT knc.path=$EXPORT knc.mb=$MB knc.locktest=${KNC_LOCKTEST:-0} knc.nfiles=${KNC_NFILES:-1000} knc.strict=${KNC_STRICT:-0}"
    [ -n "${KNC_MOUNTPORT:-}" ] && append+=" knc.mountport=$KNC_MOUNTPORT"
    [ -n "${KNC_OPTS:-}" ] && append+=" knc.opts=$KNC_OPTS"
    [ -n "${KNC_RESTART_CMD:-}" ] && append+=" knc.restart=1"
    fifo=$(mktemp -u "$CACHE/console-in.XXXX"); mkfifo "$fifo"
    exec 7<>"$fifo"   # keep the fifo open so qemu never sees EOF on stdin
    : >"$LOG"
    say "booting $VMLINUZ (${ACCEL_ARGS[*]}), server 127.0.0.1:$PORT export $EXPORT, console log $LOG"
    rm -f "$CACHE/t-userspace" "$CACHE/t-netup"
    t0=$EPOCHREALTIME
    timeout -k 5 "$TIMEOUT" qemu-system-x86_64 "${ACCEL_ARGS[@]}" -m "$MEM" -smp "$SMP" \
        -nodefaults -no-user-config -display none -serial stdio -no-reboot \
        -kernel "$VMLINUZ" -initrd "$INITRD" -append "$append" \
        -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
        <"$fifo" >"$LOG" 2>&1 &
    qpid=$!
    # stream the console (prefixed with host seconds since qemu start) and
    # remember when the guest reached userspace / had the network up
    tail -n +1 -f --pid=$qpid "$LOG" 2>/dev/null | while IFS= read -r line; do
        line=${line%$'\r'}
        el=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')
        case "$line" in "KNC: BOOT userspace"*) echo "$el" >"$CACHE/t-userspace";;
                        "KNC: BOOT modules+net"*) echo "$el" >"$CACHE/t-netup";; esac
        [ "${KNC_QUIET:-0}" != 1 ] && case "$line" in KNC*|*"Kernel panic"*|*rror*) printf '[%6ss] %s\n' "$el" "$line";; esac
    done &
    spid=$!
    if [ -n "${KNC_RESTART_CMD:-}" ]; then
        (
            while kill -0 $qpid 2>/dev/null; do
                if grep -q KNC_RESTART_REQUEST "$LOG"; then
                    say "guest asked for a server restart: $KNC_RESTART_CMD"
                    before=$(listener_pids)
                    bash -c "$KNC_RESTART_CMD" >"$CACHE/restart.log" 2>&1 || say "restart command failed"
                    for _ in $(seq 100); do port_open "$PORT" && break; sleep 0.1; done
                    after=$(listener_pids)
                    say "server is back (port open: $(port_open "$PORT" && echo yes || echo no), listener pid ${before:-?} -> ${after:-?}), telling the guest"
                    if [ -n "$before" ] && [ "$before" = "$after" ]; then
                        say "WARNING: the same process still listens on :$PORT - the restart command did not restart the server"
                        echo "KNC_RESTART_NOT_DONE" >>"$CACHE/restart.log"
                    fi
                    echo go >&7
                    break
                fi
                sleep 0.2
            done
        ) & wpid=$!
    fi
    wait $qpid; rc=$?
    wait $spid 2>/dev/null
    t1=$EPOCHREALTIME
    [ $wpid -ne 0 ] && kill $wpid 2>/dev/null
    exec 7>&-; rm -f "$fifo"
    BOOT_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
    QEMU_RC=$rc
}

# ------------------------------------------------------------------ main
ensure_pkgs
find_kernel
build_initramfs
if ! port_open "$PORT"; then say "nothing listens on 127.0.0.1:$PORT"; exit 2; fi
pick_accel
boot
if [ "$ACCEL" = auto ] && [ "${ACCEL_ARGS[0]}" = -enable-kvm ] && ! grep -q 'KNC: BOOT' "$LOG"; then
    say "KVM boot produced no guest output (qemu rc=$QEMU_RC); retrying with TCG"
    sed 's/^/[knc]   qemu: /' "$LOG" | head -20 >&2
    ACCEL_ARGS=(-accel tcg -cpu max); boot
fi
say "VM wall time ${BOOT_SECS}s (userspace after $(cat "$CACHE/t-userspace" 2>/dev/null || echo ?)s, network+modules ready after $(cat "$CACHE/t-netup" 2>/dev/null || echo ?)s), qemu rc=$QEMU_RC, accel ${ACCEL_ARGS[*]}"
res=$(tr -d '\r' <"$LOG" | grep -E '^KNC: RESULT' | tail -1)
if [ -z "$res" ]; then
    say "no RESULT line from the guest (timeout or crash); last console lines:"
    tr -d '\r' <"$LOG" | tail -30 >&2
    exit 2
fi
say "$res"
tr -d '\r' <"$LOG" | grep -E '^KNC: (FAIL|WARN|NOTSUPP)' >&2
if [ -n "${KNC_RESTART_CMD:-}" ] && grep -q KNC_RESTART_NOT_DONE "$CACHE/restart.log" 2>/dev/null; then
    say "restart test is not meaningful: the server was not restarted"; exit 2
fi
case "$res" in *"RESULT PASS"*) exit 0;; *) exit 1;; esac
