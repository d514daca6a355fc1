#!/usr/bin/env bash
# nlm-check.sh: the real Linux kernel NFS client, WITH its lock manager,
# against brickfs-nfs. Boots Debian's stock kernel in qemu with a busybox
# initramfs that also holds Debian's rpcbind and rpc.statd (the kernel's
# lockd needs a local statd, registered with a local rpcbind, before it
# sends a lock), on a tap device inside a network namespace of our own, so
# the gateway can call the guest back (GRANTED, probes) and the guest's
# lockd finds the gateway's NLM through port 111 of the host address.
#
# Built on ../../shared/qemu-nfs/kernel-nfs-check.sh (busybox initramfs,
# module list, KVM probe, caching), which boots with qemu's user-mode
# network: there the guest's connections arrive from 127.0.0.1 and nothing
# can connect back into the guest, so NLM cannot work.
#
# Driven by tests/tests/nlm_kernel.rs, in steps:
#   nlm-check.sh prepare               install what is missing, build (or
#                                      reuse) the initramfs; prints its path
#   nlm-check.sh net-up NS IDX         netns NS, veth bfnlIDXh (host side,
#                                      10.77.IDX.1/24) <-> bfnlIDXn in NS on
#                                      bridge br0 with tap0; prints
#                                      "HOST_IP GUEST_IP"
#   nlm-check.sh boot NS IDX PORT EXPORT [KEY=VALUE...]
#                                      (KEY=VALUE: knc.KEY=VALUE for the
#                                      guest; mode=pv runs pv-guest.sh,
#                                      kubelet's mount of a PV, instead)
#                                      runs qemu in NS on tap0, its serial
#                                      console on our stdin/stdout (the
#                                      guest asks the host side over it:
#                                      nlm-guest.sh), qemu's pid in
#                                      $KNC_PIDFILE when set
#   nlm-check.sh net-down NS IDX       removes NS and the veth (idempotent)
# Environment: KNC_CACHE (default /var/tmp/brickfs-nlm-check), KNC_ACCEL
# (auto|kvm|tcg), KNC_MEM (512), KNC_SMP (2), KNC_TIMEOUT (300 s for the VM).
# Exit: 0 done, 2 infrastructure problem (packages, kernel, network).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${KNC_CACHE:-/var/tmp/brickfs-nlm-check}
mkdir -p "$CACHE"
say() { echo "[nlm-check] $*" >&2; }

# ------------------------------------------------------------------ packages
ensure_pkgs() {
    local need=()
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || need+=(busybox-static)
    command -v cpio >/dev/null || need+=(cpio)
    command -v modprobe >/dev/null || need+=(kmod)
    command -v ip >/dev/null || need+=(iproute2)
    command -v gcc >/dev/null || need+=(gcc)
    [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
    ls /lib/modules/*/kernel/fs/nfs/nfsv3.ko* >/dev/null 2>&1 || need+=(linux-image-amd64)
    command -v file >/dev/null || need+=(file)
    # Libraries rpcbind and rpc.statd link against (the daemons themselves
    # are only unpacked, below: installing them would start them here).
    [ -e /lib/x86_64-linux-gnu/libwrap.so.0 ] || need+=(libwrap0)
    [ -e /lib/x86_64-linux-gnu/libtirpc.so.3 ] || need+=(libtirpc3)
    [ -e /etc/netconfig ] || need+=(libtirpc-common)
    if [ ${#need[@]} -gt 0 ]; then
        say "installing ${need[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >"$CACHE/apt.log" 2>&1 ||
            { apt-get update >>"$CACHE/apt.log" 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >>"$CACHE/apt.log" 2>&1; } ||
            { say "apt-get install failed, see $CACHE/apt.log"; exit 2; }
    fi
}

# rpcbind and nfs-common unpacked into $CACHE/debroot (downloaded once).
unpack_daemons() {
    local root=$CACHE/debroot
    [ -x "$root/sbin/rpcbind" ] && [ -x "$root/sbin/rpc.statd" ] && return 0
    say "downloading rpcbind and nfs-common (unpacked only, not installed)"
    local dl=$CACHE/debs
    rm -rf "$dl" "$root"; mkdir -p "$dl" "$root"
    (cd "$dl" && apt-get download rpcbind nfs-common >"$CACHE/download.log" 2>&1) ||
        { apt-get update >>"$CACHE/download.log" 2>&1 && (cd "$dl" && apt-get download rpcbind nfs-common >>"$CACHE/download.log" 2>&1); } ||
        { say "apt-get download failed, see $CACHE/download.log"; exit 2; }
    for d in "$dl"/*.deb; do dpkg-deb -x "$d" "$root" || { say "cannot unpack $d"; exit 2; }; done
}

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
/bin/busybox mkdir -p /proc /sys /dev /mnt /tmp /sbin /usr/bin /usr/sbin /run /var/lib/nfs/sm /var/lib/nfs/sm.bak
/bin/busybox --install -s /bin
ln -s /run /var/run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
for w in $(cat /proc/cmdline); do
    case "$w" in knc.*=*) k=${w%%=*}; k=${k#knc.}; export "KNC_$(echo "$k" | tr a-z A-Z)=${w#*=}";; esac
done
echo "KNC: BOOT userspace at $(cut -d' ' -f1 /proc/uptime)s"
[ "${KNC_PROBE:-0}" = 1 ] && poweroff -f
while read -r m; do insmod "/modules/$m" || echo "KNC: FAIL insmod $m"; done < /modules/order
hostname knc-guest
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
ip link set lo up
ip addr add "$KNC_GUEST/24" dev eth0 && ip link set eth0 up || echo "KNC: FAIL network setup"
echo "KNC: BOOT modules+net ready at $(cut -d' ' -f1 /proc/uptime)s"
# The kernel's lockd registers with rpcbind when the first mount without
# nolock starts it, and asks rpc.statd (through rpcbind) to monitor the
# server before its first lock. --no-notify: nothing to tell at boot.
# Their logs (and syslog: libwrap's refusals) are shown if a check fails.
syslogd -O /tmp/messages
rpcbind -f -d >/tmp/rpcbind.log 2>&1 &
i=0; while ! rpcinfo -p >/dev/null 2>&1 && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
rpc.statd --no-notify -F -d >/tmp/statd.log 2>&1 &
i=0; while ! rpcinfo -T tcp 127.0.0.1 100024 1 >/dev/null 2>&1 && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
if [ "${KNC_MODE:-nlm}" = pv ]; then sh /pv-test.sh; else sh /test.sh; fi
echo "KNC: BOOT test done at $(cut -d' ' -f1 /proc/uptime)s"
poweroff -f
EOF
}

# Copies BIN and every shared library ldd names into the stage, same paths.
copy_with_libs() {
    local stage=$1 bin=$2 dest=$3 lib
    cp "$bin" "$stage$dest"
    for lib in $(LD_LIBRARY_PATH=$CACHE/debroot/lib/x86_64-linux-gnu ldd "$bin" | awk '/=>/ {print $3} /^\t\// {print $1}'); do
        [ -e "$lib" ] || { say "library $lib of $bin not found"; exit 2; }
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done
}

build_initramfs() {
    local key stage mods m b
    key=$( { echo "$KVER"; cat "$0" "$HERE/nlm-guest.sh" "$HERE/pv-guest.sh" "$HERE/knc-nlm.c"; sha256sum /bin/busybox "$CACHE/debroot/sbin/rpcbind" "$CACHE/debroot/sbin/rpc.statd"; } | sha256sum | cut -c1-16)
    INITRD=$CACHE/initrd-$KVER-$key.cpio.gz
    [ -s "$INITRD" ] && return 0
    say "building initramfs for $KVER -> $INITRD"
    stage=$(mktemp -d "$CACHE/stage.XXXX")
    # The root of the image is the guest's /: mktemp's 0700 would keep
    # rpcbind, once it dropped to user _rpc, out of /etc.
    chmod 755 "$stage"
    mkdir -p "$stage"/{bin,sbin,usr/sbin,etc,modules,proc,sys,dev,mnt,tmp,lib64}
    cp /bin/busybox "$stage/bin/busybox"
    write_init "$stage/init"; chmod 755 "$stage/init"
    cp "$HERE/nlm-guest.sh" "$stage/test.sh"
    cp "$HERE/pv-guest.sh" "$stage/pv-test.sh"
    gcc -static -O2 -o "$stage/bin/knc-nlm" "$HERE/knc-nlm.c" || { say "cannot build knc-nlm"; exit 2; }
    copy_with_libs "$stage" "$CACHE/debroot/sbin/rpcbind" /sbin/rpcbind
    copy_with_libs "$stage" "$CACHE/debroot/sbin/rpc.statd" /sbin/rpc.statd
    copy_with_libs "$stage" "$CACHE/debroot/usr/sbin/rpcinfo" /usr/sbin/rpcinfo
    cp /etc/netconfig /etc/services /etc/protocols "$stage/etc/"
    [ -f /etc/rpc ] && cp /etc/rpc "$stage/etc/"
    cat >"$stage/etc/passwd" <<'EOF'
root:x:0:0:root:/:/bin/sh
_rpc:x:100:65534::/run/rpcbind:/bin/false
statd:x:101:65534::/var/lib/nfs:/bin/false
nobody:x:65534:65534:nobody:/:/bin/false
EOF
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"
    printf 'passwd: files\ngroup: files\nhosts: files\nservices: files\nprotocols: files\nrpc: files\n' >"$stage/etc/nsswitch.conf"
    printf '127.0.0.1 localhost\n' >"$stage/etc/hosts"
    # modules in dependency order (modprobe prints insmod lines deps-first)
    mods=$(for m in virtio_pci virtio_net nfsv3; do modprobe -S "$KVER" --show-depends "$m"; done |
           awk '$1=="insmod"{print $2}' | awk '!seen[$0]++')
    : >"$stage/modules/order"
    for m in $mods; do
        b=$(basename "$m")
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

# Does KVM run this (stock, non-PVM) kernel? Probed once, cached (as the
# shared script does: some hosts expose a /dev/kvm that hangs stock guests).
pick_accel() {
    local f=$CACHE/kvm-probe-$KVER
    case "${KNC_ACCEL:-auto}" in
        kvm) ACCEL_ARGS=(-enable-kvm -cpu host); return;;
        tcg) ACCEL_ARGS=(-accel tcg -cpu max); return;;
    esac
    ACCEL_ARGS=(-accel tcg -cpu max)
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 0
    if [ ! -f "$f" ]; then
        say "probing whether KVM can boot $KVER (cached in $f)"
        timeout -k 2 25 qemu-system-x86_64 -enable-kvm -cpu host -m 256 -nodefaults -no-user-config \
            -display none -serial stdio -no-reboot -kernel "$VMLINUZ" -initrd "$INITRD" \
            -append "console=ttyS0 quiet panic=-1 knc.probe=1" </dev/null >"$f.log" 2>&1
        if tr -d '\r' <"$f.log" | grep -q '^KNC: BOOT'; then echo yes >"$f"; else echo no >"$f"; fi
    fi
    [ "$(cat "$f")" = yes ] && ACCEL_ARGS=(-enable-kvm -cpu host)
    return 0
}

names() { VH=bfnl${2}h; VN=bfnl${2}n; HOST_IP=10.77.$2.1; GUEST_IP=10.77.$2.2; }

net_up() {
    local ns=$1
    names "$@"
    ip netns add "$ns" || { say "cannot create netns $ns"; exit 2; }
    if ! { ip link add "$VH" type veth peer name "$VN" &&
           ip link set "$VN" netns "$ns" &&
           ip addr add "$HOST_IP/24" dev "$VH" && ip link set "$VH" up &&
           ip netns exec "$ns" sh -c "ip link set lo up && ip link add br0 type bridge &&
               ip link set $VN master br0 && ip tuntap add tap0 mode tap && ip link set tap0 master br0 &&
               ip link set $VN up && ip link set tap0 up && ip link set br0 up"; }; then
        say "network setup failed"; net_down "$@"; exit 2
    fi
    echo "$HOST_IP $GUEST_IP"
}

net_down() {
    local ns=$1
    names "$@"
    ip netns del "$ns" 2>/dev/null
    ip link del "$VH" 2>/dev/null
    return 0
}

boot() {
    local ns=$1 port=$3 export=$4 append kv
    names "$@"
    find_kernel
    build_initramfs
    pick_accel
    append="console=ttyS0 quiet loglevel=4 panic=-1 knc.host=$HOST_IP knc.guest=$GUEST_IP knc.port=$port knc.path=$export"
    # Extra KEY=VALUE pairs become knc.KEY=VALUE (e.g. mode=pv opts=…).
    shift 4
    for kv in "$@"; do
        case "$kv" in *[[:space:]]*|"") say "bad guest parameter '$kv'"; exit 2;; esac
        append="$append knc.$kv"
    done
    say "booting $VMLINUZ (${ACCEL_ARGS[*]}) in netns $ns, guest $GUEST_IP, server $HOST_IP:$port$export"
    exec timeout -k 5 "${KNC_TIMEOUT:-300}" ip netns exec "$ns" qemu-system-x86_64 "${ACCEL_ARGS[@]}" \
        -m "${KNC_MEM:-512}" -smp "${KNC_SMP:-2}" -nodefaults -no-user-config -display none \
        -serial stdio -no-reboot ${KNC_PIDFILE:+-pidfile "$KNC_PIDFILE"} \
        -kernel "$VMLINUZ" -initrd "$INITRD" -append "$append" \
        -netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=n0
}

case "${1:-}" in
    prepare) ensure_pkgs; unpack_daemons; find_kernel; build_initramfs; echo "$INITRD";;
    net-up) [ $# -eq 3 ] || { say "usage: $0 net-up NS IDX"; exit 2; }; net_up "$2" "$3";;
    net-down) [ $# -eq 3 ] || { say "usage: $0 net-down NS IDX"; exit 2; }; net_down "$2" "$3";;
    boot) [ $# -ge 5 ] || { say "usage: $0 boot NS IDX PORT EXPORT [KEY=VALUE...]"; exit 2; }; shift; boot "$@";;
    *) say "usage: $0 prepare | net-up NS IDX | boot NS IDX PORT EXPORT | net-down NS IDX"; exit 2;;
esac
