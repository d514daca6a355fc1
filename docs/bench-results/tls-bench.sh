#!/bin/bash
# docs/bench-results/tls-bench.sh SYSTEM MODE — one fsbench run of one system, with the
# CPU seconds and peak RSS of its daemons; writes docs/bench-results/tls-YYYYMMDD-HHMM-LABEL.txt.
#   SYSTEM MODE: brickfs tls | brickfs plain | gluster plain | gluster ssl
# brickfs: starts `target/release/brickfs dev [--insecure] --state-dir /srv/gbench/bfs-MODE`,
#   measures, stops it (SIGINT to its pid) and checks its children are gone.
# gluster: needs ../shared/bench/gluster-up.sh done; switches client.ssl/server.ssl to MODE
#   (volume stop/start + remount of /mnt/gv0 when it changes), measures, leaves it running.
# Before fsbench: `sync; sleep 20`. Knobs: RAND_RUNTIME SEQ_SIZE NFILES NDIRS (exported).
# CPU: utime+stime of /proc/PID/stat, sampled every second (tls-cpu-sampler.py) and at the
# start and end; the time of each fsbench line marks the end of its phase.
set -u
SYS=${1:?system}; MODE=${2:?mode}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
BENCH=${BENCH:-/work/shared/bench}
export RAND_RUNTIME=${RAND_RUNTIME:-10} SEQ_SIZE=${SEQ_SIZE:-512M} NFILES=${NFILES:-2000} NDIRS=${NDIRS:-1000}
LABEL="$SYS-$MODE"
OUT="$HERE/tls-$(date -u +%Y%m%d-%H%M)-$LABEL.txt"
SCR=$(mktemp -d /tmp/tlsbench.XXXX)
G="gluster --mode=script"
log() { echo "# $*" | tee -a "$SCR/head" >&2; }

ticks() { awk '{sub(/^.*\) /,""); print $12+$13}' "/proc/$1/stat" 2>/dev/null || echo NaN; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo NaN; }
comm() { tr -d '\n' <"/proc/$1/comm" 2>/dev/null; }

: >"$SCR/head"
log "tls-bench system=$SYS mode=$MODE commit=$(git -C "$ROOT" rev-parse --short HEAD) date=$(date -u -Is)"
log "knobs RAND_RUNTIME=$RAND_RUNTIME SEQ_SIZE=$SEQ_SIZE NFILES=$NFILES NDIRS=$NDIRS"

DEVPID=
if [ "$SYS" = brickfs ]; then
  SD=/srv/gbench/bfs-$MODE; MNT=$SD/mnt
  flag=(); [ "$MODE" = plain ] && flag=(--insecure)
  mkdir -p "$SD"
  log "start: $ROOT/target/release/brickfs dev ${flag[*]} --state-dir $SD"
  "$ROOT/target/release/brickfs" dev "${flag[@]}" --state-dir "$SD" >"$SD/dev.out" 2>&1 </dev/null &
  DEVPID=$!
  for i in $(seq 1 60); do grep -q " $MNT fuse" /proc/mounts && [ -s "$SD/cluster.json" ] && break; sleep 0.5; done
  sleep 2
  grep " $MNT " /proc/mounts | sed 's/^/# mount: /' | tee -a "$SCR/head"
  kids=$(ps -o pid= --ppid "$DEVPID" | tr -s ' \n' ' ')
  CORE=() EXTRA=()
  for p in $kids; do
    case "$(tr '\0' ' ' </proc/$p/cmdline)" in
      *brickd*|*brickfs-mount*|*" heald "*) CORE+=("$p") ;;
      *) EXTRA+=("$p") ;;
    esac
  done
  EXTRA+=("$DEVPID")
  for p in "${CORE[@]}" "${EXTRA[@]}"; do log "proc $p $(tr '\0' ' ' </proc/$p/cmdline | cut -c1-220)"; done
  # what is on the wire: a TLS client's handshake against brick 1 (fails when it is plaintext)
  B1=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['bricks'][0]['addr'])" "$SD/cluster.json")
  if [ -d "$SD/tls" ]; then
    log "tls dir: $(ls "$SD/tls" | tr '\n' ' ')"
    timeout 5 openssl s_client -connect "$B1" -cert "$SD/tls/client.pem" -key "$SD/tls/client.key" \
      -CAfile "$SD/tls/ca.pem" </dev/null 2>&1 | grep -E '^New,|Verify return code|Server Temp Key|Peer signature type' | sort -u | sed 's/^/# s_client brick1: /' | tee -a "$SCR/head"
  else
    timeout 5 openssl s_client -connect "$B1" </dev/null 2>&1 | grep -E '^New,|error|errno' | head -3 | sed 's/^/# s_client brick1 (expect no TLS): /' | tee -a "$SCR/head"
  fi
else
  MNT=/mnt/gv0
  want=off; [ "$MODE" = ssl ] && want=on
  cur=$($G volume get gv0 client.ssl | awk '$1=="client.ssl" {print $2}')
  curs=$($G volume get gv0 server.ssl | awk '$1=="server.ssl" {print $2}')
  if [ "$cur" != "$want" ] || [ "$curs" != "$want" ]; then
    log "gluster: client.ssl $cur -> $want, server.ssl $curs -> $want; volume stop/start; remount"
    $G volume set gv0 client.ssl "$want" >/dev/null; $G volume set gv0 server.ssl "$want" >/dev/null
    $G volume stop gv0 force >/dev/null; $G volume start gv0 >/dev/null
    /srv/gbench/remount-gv0.sh >/dev/null
  fi
  if ! grep -q " $MNT fuse" /proc/mounts || ! stat "$MNT" >/dev/null 2>&1; then /srv/gbench/remount-gv0.sh >/dev/null; fi
  sleep 3
  $G volume get gv0 all | grep -E '^(client|server)\.ssl|^ssl\.(own-cert|private-key|ca-list)|^auth\.ssl-allow' | sed 's/  */ /g; s/^/# option: /' | tee -a "$SCR/head"
  grep " $MNT " /proc/mounts | sed 's/^/# mount: /' | tee -a "$SCR/head"
  FUSE=$(ps -eo pid,args | awk -v m="$MNT" '$2 ~ /glusterfs$/ && $NF==m {print $1}')
  CORE=($(cat /var/run/gluster/vols/gv0/*.pid) "$FUSE" $(cat /var/run/gluster/shd/gv0/*.pid))
  EXTRA=($(cat /srv/gbench/run/glusterd.pid))
  for p in "${CORE[@]}" "${EXTRA[@]}"; do log "proc $p $(tr '\0' ' ' </proc/$p/cmdline | cut -c1-160)"; done
  # evidence: the FUSE client's connections to the bricks, and what the bricks logged for them
  ss -tnp | awk -v f="pid=$FUSE," 'index($0,f)' | awk '{print $4, "->", $5}' | sed 's/^/# fuse conn: /' | tee -a "$SCR/head"
  for b in 1 2 3; do
    l=$(grep -E 'SSL support|SSL verification|ssl-enabled' /var/log/glusterfs/bricks/srv-gbench-b$b-brick.log | tail -1)
    echo "# brick$b log (last SSL line): ${l:-none (no SSL line)}" | tee -a "$SCR/head"
  done
  grep -E 'SSL support' /var/log/glusterfs/mnt-gv0.log | tail -1 | sed 's/^/# fuse log (last SSL line): /' | tee -a "$SCR/head"
  P1=$($G volume status gv0 | awk '/b1\/brick/ {print $3}')
  if [ "$MODE" = ssl ]; then
    timeout 5 openssl s_client -connect 127.0.0.1:$P1 -cert /etc/ssl/glusterfs.pem -key /etc/ssl/glusterfs.key \
      -CAfile /etc/ssl/glusterfs.ca </dev/null 2>&1 | grep -E '^New,|Verify return code|Server Temp Key|Peer signature type' | sort -u | sed 's/^/# s_client brick1: /' | tee -a "$SCR/head"
  else
    timeout 5 openssl s_client -connect 127.0.0.1:$P1 </dev/null 2>&1 | grep -E '^New,|error|errno' | head -3 | sed 's/^/# s_client brick1 (expect no TLS): /' | tee -a "$SCR/head"
  fi
fi
echo "${CORE[@]}" >"$SCR/core"

# wait (at most QUIET_MAX s) until no compiler has run for 15 s: another build shares the 2 cores
waited=0 quiet=0
while [ $quiet -lt 15 ] && [ $waited -lt "${QUIET_MAX:-300}" ]; do
  if ps -eo comm= | grep -qxE 'rustc|cargo|rust-lld|cc1|cc|ld|collect2'; then quiet=0; else quiet=$((quiet+1)); fi
  sleep 1; waited=$((waited+1))
done
log "waited ${waited}s for no compiler for 15 s (got $quiet s)"
log "sync; sleep 20"
sync; sleep 20
for p in "${CORE[@]}" "${EXTRA[@]}"; do echo "$p $(comm $p) $(ticks $p)"; done >"$SCR/before"
python3 "$HERE/tls-cpu-sampler.py" "$SCR/samples" 1 "${CORE[@]}" &
SAMPLER=$!
sleep 0.2
T0=$(date +%s.%N)
/usr/bin/time -o "$SCR/time" -f "%U %S %e" "$BENCH/fsbench.sh" "$MNT" "$LABEL" 2>"$SCR/fsbench.err" |
  while IFS= read -r l; do printf '%s %s\n' "$(date +%s.%N)" "$l"; done >"$SCR/ts"
T1=$(date +%s.%N)
sleep 1
kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null
for p in "${CORE[@]}" "${EXTRA[@]}"; do echo "$p $(comm $p) $(ticks $p) $(hwm $p)"; done >"$SCR/after"

{
  cat "$SCR/head"
  cut -d' ' -f2- "$SCR/ts"
  sed 's/^/# fsbench stderr: /' "$SCR/fsbench.err" | head -20
  python3 - "$SCR" "$T0" "$T1" <<'EOF'
import sys, os
scr, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
HZ = os.sysconf("SC_CLK_TCK")
core = open(f"{scr}/core").read().split()
before = {l.split()[0]: l.split() for l in open(f"{scr}/before")}
after = {l.split()[0]: l.split() for l in open(f"{scr}/after")}
print("# cpu: pid comm cpu_s_during_fsbench peak_rss_kib(VmHWM) [core=counted in the sum]")
tot = 0.0
for p, a in after.items():
    b = before.get(p)
    d = (int(a[2]) - int(b[2])) / HZ if b and a[2] != "NaN" and b[2] != "NaN" else float("nan")
    c = p in core
    if c: tot += d
    print(f"# cpu: {p} {a[1]} {d:.2f} {a[3]}{' core' if c else ''}")
print(f"cpu_core_s {tot:.2f} s")
u, s, e = open(f"{scr}/time").read().split()
print(f"# fsbench itself (fio, python, tar, find; children included): user {u} s sys {s} s wall {e} s")
sm = [tuple(float(x) for x in l.split()) for l in open(f"{scr}/samples") if len(l.split()) == 4]
def at(t, k):  # interpolate column k at time t
    prev = sm[0]
    for r in sm:
        if r[0] >= t:
            if r[0] == prev[0]: return r[k]
            return prev[k] + (r[k] - prev[k]) * (t - prev[0]) / (r[0] - prev[0])
        prev = r
    return sm[-1][k]
busy = (at(t1, 2) - at(t0, 2)) / HZ
print(f"# machine: busy cpu {busy:.1f} s over {t1-t0:.1f} s wall (2 cores = {2*(t1-t0):.0f} cpu-s); "
      f"daemons {tot:.1f} s + fsbench {float(u)+float(s):.1f} s -> other {busy-tot-float(u)-float(s):.1f} s "
      f"(kernel threads, other users); samples with a compiler/cargo process: "
      f"{sum(1 for r in sm if r[3] > 0)}/{len(sm)}")
print("# phase: figure wall_s daemon_cpu_s (phase = from the previous line to this one)")
prev = t0
for l in open(f"{scr}/ts"):
    t, rest = l.split(" ", 1)
    t = float(t)
    if rest.startswith("#") or rest.split()[0] in ("untar_rc", "untar_entries_expected", "untar_entries_found",
            "untar_file_bytes_expected", "untar_file_bytes_found", "untar_du_k", "drop_caches"):
        continue
    print(f"# phase: {rest.split()[0]} {t-prev:.2f} {(at(t,1)-at(prev,1))/HZ:.2f}")
    prev = t
EOF
} >"$OUT"

if [ -n "$DEVPID" ]; then
  kill -INT "$DEVPID"
  for i in $(seq 1 60); do kill -0 "$DEVPID" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$DEVPID" 2>/dev/null && echo "WARNING: brickfs dev $DEVPID still running" >&2
  for p in "${CORE[@]}" "${EXTRA[@]}"; do kill -0 "$p" 2>/dev/null && echo "WARNING: child $p still running" >&2; done
  grep -q " $MNT fuse" /proc/mounts && echo "WARNING: $MNT still mounted" >&2
  echo "# stopped brickfs dev $DEVPID" >>"$OUT"
fi
rm -rf "$SCR"
echo "$OUT"
