#!/bin/sh
# Runs INSIDE the qemu guest of nlm-check.sh when booted with knc.mode=pv
# (busybox ash). Stands in for kubelet: mounts a PersistentVolume's nfs
# source as kubelet does (`mount -t nfs -o <the PV's mountOptions>
# server:path`, without nolock), then checks what a pod would see of the
# sub-volume behind it: df shows its limit as the size, writing past the
# limit fails with EDQUOT, a lock works, and removing the data frees it.
#
# Result lines start with "KNC: "; the last is
# "KNC: RESULT PASS|FAIL pass=N fail=N".
# Parameters (kernel command line knc.NAME=VALUE, exported by /init):
# KNC_SERVER, KNC_PATH (the PV's nfs server and path), KNC_OPTS (its
# mountOptions joined by commas), KNC_LIMIT (the sub-volume's limit, bytes).

PASS=0; FAIL=0
M=/mnt
pass() { PASS=$((PASS+1)); echo "KNC: PASS $*"; }
fail() { FAIL=$((FAIL+1)); echo "KNC: FAIL $*"; }
info() { echo "KNC: INFO $*"; }
finish() {
    if [ $FAIL -eq 0 ] && [ $PASS -gt 0 ]; then r=PASS; else r=FAIL; fi
    echo "KNC: RESULT $r pass=$PASS fail=$FAIL"
    exit 0
}
# df of $M: "SIZE_KB USED_KB AVAIL_KB"
df_kb() { df -P -k $M | tail -1 | awk '{print $2, $3, $4}'; }

S=${KNC_SERVER:?}
P=${KNC_PATH:?}
O=${KNC_OPTS:?}
LIMIT=${KNC_LIMIT:?}
LIMIT_KB=$((LIMIT / 1024))
info "kernel $(uname -r): mount -t nfs -o $O $S:$P $M (limit $LIMIT bytes)"

if ! out=$(timeout 60 mount -t nfs -o "$O" "$S:$P" $M 2>&1); then
    fail "mount of the PV's source: $out"
    finish
fi
pass "mount -t nfs -o $O $S:$P"
grep " $M " /proc/mounts | sed 's/^/KNC: MOUNT /'

set -- $(df_kb)
if [ "$1" = "$LIMIT_KB" ]; then pass "df size = the limit ($1 KiB)"
else fail "df size $1 KiB, the limit is $LIMIT_KB KiB"; fi
[ "$3" -le "$LIMIT_KB" ] && pass "df available $3 KiB within the limit" ||
    fail "df available $3 KiB beyond the limit $LIMIT_KB KiB"

# Twice the limit, in 64 KiB blocks, synced: the kernel client reports the
# server's NFS3ERR_DQUOT at write-back, as EDQUOT from write or fsync.
n=$((2 * LIMIT / 65536))
dd if=/dev/zero of=$M/fill bs=65536 count=$n conv=fsync >/tmp/dd.out 2>&1; rc=$?
if [ $rc -ne 0 ] && grep -qi "quota" /tmp/dd.out; then
    pass "writing past the limit fails with EDQUOT: $(grep -i quota /tmp/dd.out | head -1)"
else
    fail "writing twice the limit: rc=$rc $(cat /tmp/dd.out)"
fi
sync
set -- $(df_kb)
info "df after the fill: size $1 used $2 avail $3 (KiB)"
[ "$2" -le "$LIMIT_KB" ] && pass "usage $2 KiB never passed the limit" ||
    fail "usage $2 KiB passed the limit $LIMIT_KB KiB"

# The lock manager works on the PV (no nolock needed).
if timeout 30 knc-nlm try $M/fill >/tmp/lock.out 2>&1; then pass "fcntl lock on the PV: $(cat /tmp/lock.out)"
else fail "fcntl lock on the PV: $(cat /tmp/lock.out)"; fi

rm -f $M/fill
sync
i=0
while [ $i -lt 50 ]; do
    set -- $(df_kb)
    [ "$2" -lt 1024 ] && break
    sleep 0.2; i=$((i+1))
done
[ "$2" -lt 1024 ] && pass "removing the data frees it (used $2 KiB)" ||
    fail "used $2 KiB after removing the data"
echo "written by the guest" > $M/kept && pass "a small write after freeing" || fail "write after freeing"

cd /
timeout 30 umount $M && pass umount || fail umount
finish
