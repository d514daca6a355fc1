#!/bin/sh
# Runs INSIDE the qemu guest of nlm-check.sh (busybox ash), after /init
# brought up eth0, rpcbind and rpc.statd. Mounts the gateway WITHOUT nolock
# and checks that the kernel's NLM locks and a FUSE client's fcntl locks on
# the host exclude each other, both ways, and that a blocked lock is granted
# by the gateway's GRANTED callback once the FUSE client unlocks.
#
# The host side is driven over the serial console: the guest prints
# "KNC: ASK <action>", the host does it and types one line back (its
# outcome). Every result line starts with "KNC: "; the last is
# "KNC: RESULT PASS|FAIL pass=N fail=N".
#
# Parameters (kernel command line knc.NAME=VALUE, exported by /init):
# KNC_HOST (the gateway's address), KNC_PORT, KNC_PATH (the export).

PASS=0; FAIL=0
M=/mnt
now_ms() { awk '{printf "%d", $1*1000}' /proc/uptime; }
pass() { PASS=$((PASS+1)); echo "KNC: PASS $*"; }
fail() { FAIL=$((FAIL+1)); echo "KNC: FAIL $*"; }
info() { echo "KNC: INFO $*"; }
# ask ACTION: the host's one-line answer in $ANSWER
ask() {
    echo "KNC: ASK $1"
    ANSWER=
    read -r -t 60 ANSWER < /dev/console || ANSWER=timeout
    ANSWER=$(echo "$ANSWER" | tr -d '\r')
    info "host: $1 -> $ANSWER"
}
finish() {
    if [ $FAIL -ne 0 ]; then
        # What the guest's own daemons and kernel said, for the failure.
        tail -30 /tmp/rpcbind.log 2>/dev/null | sed 's/^/KNC: RPCBIND /'
        tail -30 /tmp/statd.log 2>/dev/null | sed 's/^/KNC: STATD /'
        tail -30 /tmp/messages 2>/dev/null | sed 's/^/KNC: SYSLOG /'
        dmesg | grep -i -E 'lockd|nlm|nsm|statd|rpc' | tail -20 | sed 's/^/KNC: DMESG /'
    fi
    if [ $FAIL -eq 0 ] && [ $PASS -gt 0 ]; then r=PASS; else r=FAIL; fi
    echo "KNC: RESULT $r pass=$PASS fail=$FAIL"
    exit 0
}

H=${KNC_HOST:?}
P=${KNC_PORT:?}
EXPORT=${KNC_PATH:-/test}
F=$M/nlm-target
OPTS="vers=3,proto=tcp,mountproto=tcp,port=$P,mountport=$P,addr=$H,mountaddr=$H"
info "kernel $(uname -r), hostname $(hostname), server $H:$P export $EXPORT opts $OPTS (no nolock)"
rpcinfo -p 2>&1 | sed 's/^/KNC: RPCINFO /'

t0=$(now_ms)
if ! out=$(timeout 60 mount -t nfs -o "$OPTS" "$H:$EXPORT" $M 2>&1); then
    fail "mount without nolock: $out"
    finish
fi
pass "mount without nolock ($(( $(now_ms) - t0 )) ms)"
grep " $M " /proc/mounts | sed 's/^/KNC: MOUNT /'
[ -e "$F" ] || { fail "$F missing (the host creates it)"; finish; }

# 1. The FUSE client holds a write lock: F_SETLK fails, F_GETLK sees it.
ask fuse-lock
[ "$ANSWER" = ok ] || fail "host could not take the FUSE lock: $ANSWER"
t0=$(now_ms)
out=$(timeout 20 knc-nlm try $F 2>&1); rc=$?
if [ $rc -eq 1 ]; then pass "F_SETLK while FUSE holds the lock -> $out ($(( $(now_ms) - t0 )) ms)"
else fail "F_SETLK while FUSE holds the lock: rc=$rc $out"; finish; fi
out=$(timeout 60 knc-nlm test $F 2>&1); rc=$?
if [ $rc -eq 0 ]; then pass "F_GETLK names the FUSE lock: $out"; else fail "F_GETLK: rc=$rc $out"; fi

# 2. F_SETLKW waits, and is granted (by the gateway's callback) once the
# FUSE client unlocks: well before the client's own 30 s re-poll.
rm -f /tmp/wait.out
knc-nlm wait $F > /tmp/wait.out 2>&1 &
WPID=$!
sleep 3
if [ -s /tmp/wait.out ]; then fail "F_SETLKW returned while FUSE holds the lock: $(cat /tmp/wait.out)"
else pass "F_SETLKW blocks while FUSE holds the lock"; fi
ask fuse-unlock
t0=$(now_ms)
i=0
while [ ! -s /tmp/wait.out ] && [ $i -lt 400 ]; do sleep 0.1; i=$((i+1)); done
waited=$(( $(now_ms) - t0 ))
out=$(cat /tmp/wait.out 2>/dev/null)
case "$out" in
    "granted after"*)
        if [ $waited -lt 20000 ]; then pass "F_SETLKW granted ${waited} ms after the FUSE unlock (GRANTED callback; $out)"
        else fail "F_SETLKW granted only after ${waited} ms (the client's re-poll, not the callback?)"; fi;;
    *) fail "F_SETLKW not granted within 40 s of the FUSE unlock: '$out'"; kill $WPID 2>/dev/null;;
esac
wait $WPID 2>/dev/null

# 3. The guest holds the lock: the FUSE client's F_SETLK gets EAGAIN, and
# the lock once released.
rm -f /tmp/hold.in /tmp/hold.out
mkfifo /tmp/hold.in
knc-nlm hold $F < /tmp/hold.in > /tmp/hold.out 2>&1 &
HPID=$!
exec 7> /tmp/hold.in
i=0
while ! grep -q held /tmp/hold.out 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
if grep -q held /tmp/hold.out; then
    pass "guest holds the lock"
    ask fuse-try
    [ "$ANSWER" = EAGAIN ] && pass "FUSE F_SETLK while the guest holds the lock -> EAGAIN" ||
        fail "FUSE F_SETLK while the guest holds the lock -> $ANSWER"
else
    fail "guest could not take the lock: $(cat /tmp/hold.out)"
fi
echo release >&7
exec 7>&-
wait $HPID 2>/dev/null
grep -q released /tmp/hold.out && pass "guest released the lock" || fail "release: $(cat /tmp/hold.out)"
ask fuse-try
[ "$ANSWER" = granted ] && pass "FUSE F_SETLK after the guest unlocked -> granted" ||
    fail "FUSE F_SETLK after the guest unlocked -> $ANSWER"

cd /
timeout 30 umount $M && pass umount || fail "umount"
finish
