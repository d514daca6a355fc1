#!/usr/bin/env bash
# scripts/bench-distribute.sh OUTDIR — brickfs and GlusterFS side by side,
# both 2 x 3 Distributed-Replicate on this host (6 bricks each):
#   1. ../shared/bench/fsbench.sh on each mount, one after the other, with
#      the peak RSS of every process of each system afterwards;
#   2. the same tree written to each (20 dirs x 100 files x 64 KiB and
#      20 x 8 MiB), a third replica set added and a rebalance run to the
#      end: time, files moved, and every file's md5 before and after.
# Needs a release build (cargo build --release --workspace) and root; uses
# /srv/gbench/bfd (brickfs) and /srv/gbench/gd (GlusterFS volume gd0 at
# /mnt/gd0), removed at the end. Takes ~15 minutes.
set -euo pipefail
OUT=${1:?usage: bench-distribute.sh OUTDIR}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$(cd "$HERE/../shared/bench" && pwd)}
BIN=$HERE/target/release
BFD=/srv/gbench/bfd
GD=/srv/gbench/gd
GMNT=/mnt/gd0
HOST=${GHOST:-$(hostname)}
SKIP_FSBENCH=${SKIP_FSBENCH:-0}
mkdir -p "$OUT"
stamp=$(date -u +%Y%m%d-%H%M%S)
log() { printf '== %s %s\n' "$(date -u +%H:%M:%S)" "$*"; }

dev_pid=""
extra_pids=()
cleanup() {
  set +e
  for p in "${extra_pids[@]}"; do kill "$p" 2>/dev/null; done
  if [ -n "$dev_pid" ]; then kill -INT "$dev_pid" 2>/dev/null; wait "$dev_pid" 2>/dev/null; fi
  if mountpoint -q "$GMNT"; then umount "$GMNT"; fi
  if gluster --mode=script volume info gd0 >/dev/null 2>&1; then
    gluster --mode=script volume stop gd0 force >/dev/null
    gluster --mode=script volume delete gd0 >/dev/null
  fi
  rm -rf "$BFD" "$GD"
}
trap cleanup EXIT

rss() {  # rss LABEL PATTERN: peak RSS (VmHWM) of our processes matching PATTERN
  for p in $(pgrep -f "$2"); do
    printf '%s pid=%s %s %s\n' "$1" "$p" "$(tr '\0' ' ' < "/proc/$p/cmdline" | cut -c1-60)" \
      "$(grep VmHWM "/proc/$p/status" | tr -s ' ')"
  done
}

# --- start both systems --------------------------------------------------------------------------
rm -rf "$BFD" "$GD"
mkdir -p "$BFD" "$GD"/b{1..9} "$GMNT"
log "GlusterFS: glusterd and volume gd0 (2 x 3)"
"$BENCH/gluster-up.sh" >/dev/null
gluster --mode=script volume create gd0 replica 3 $(for i in 1 2 3 4 5 6; do echo "$HOST:$GD/b$i/brick"; done) force
gluster --mode=script volume start gd0
mount -t glusterfs "$HOST:/gd0" "$GMNT"
log "brickfs: dev --replica-sets 2"
"$BIN/brickfs" dev --state-dir "$BFD" --replica-sets 2 > "$BFD.dev.log" 2>&1 &
dev_pid=$!
for _ in $(seq 100); do mountpoint -q "$BFD/mnt" && break; sleep 0.3; done
mountpoint -q "$BFD/mnt"

# --- 1. fsbench -----------------------------------------------------------------------------------
if [ "$SKIP_FSBENCH" != 1 ]; then
  log "fsbench brickfs"
  "$BENCH/fsbench.sh" "$BFD/mnt" brickfs-2x3 > "$OUT/fsbench-brickfs-2x3-$stamp.txt"
  rss brickfs "brickd|brickfs-mount|brickfs heald|brickfs-nfs" > "$OUT/rss-brickfs-2x3-$stamp.txt"
  sync; sleep 20
  log "fsbench GlusterFS"
  "$BENCH/fsbench.sh" "$GMNT" gluster-2x3 > "$OUT/fsbench-gluster-2x3-$stamp.txt"
  rss gluster "glusterfsd|glusterfs " > "$OUT/rss-gluster-2x3-$stamp.txt"
fi

# --- 2. add a set and rebalance -------------------------------------------------------------------
populate() {  # populate ROOT
  python3 - "$1" <<'EOF'
import os, sys
root = sys.argv[1]
for d in range(20):
    p = os.path.join(root, "tree", "d%02d" % d)
    os.makedirs(p, exist_ok=True)
    for f in range(100):
        with open(os.path.join(p, "f%03d" % f), "wb") as fh:
            fh.write(os.urandom(64 * 1024))
    with open(os.path.join(p, "big"), "wb") as fh:
        for _ in range(8):
            fh.write(os.urandom(1 << 20))
EOF
}
sums() { (cd "$1/tree" && find . -type f | sort | xargs md5sum); }

R="$OUT/rebalance-$stamp.txt"
: > "$R"
log "populating both volumes"
populate "$BFD/mnt"; sums "$BFD/mnt" > "$BFD.before"
populate "$GMNT"; sums "$GMNT" > "$GD.before"
sync; sleep 10

log "GlusterFS: add-brick + rebalance"
gluster --mode=script volume add-brick gd0 replica 3 $(for i in 7 8 9; do echo "$HOST:$GD/b$i/brick"; done) force
t0=$(date +%s.%N)
gluster --mode=script volume rebalance gd0 start
while gluster --mode=script volume rebalance gd0 status | grep -qE 'in progress|not started'; do sleep 0.5; done
t1=$(date +%s.%N)
{ echo "# GlusterFS 2 x 3 -> 3 x 3"; gluster --mode=script volume rebalance gd0 status
  echo "gluster_rebalance_s $(python3 -c "print('%.2f' % ($t1-$t0))")"; } >> "$R"
sums "$GMNT" > "$GD.after"
if cmp -s "$GD.before" "$GD.after"; then echo "gluster_content_match 1" >> "$R"; else echo "gluster_content_match 0" >> "$R"; fi
for i in 1 4 7; do echo "gluster_files_on_set_$(( (i+2)/3 )) $(find "$GD/b$i/brick/tree" -type f ! -perm 1000 | wc -l)" >> "$R"; done
rss gluster "glusterfs.*rebalance" >> "$R" || true

log "brickfs: add-brick + rebalance"
sync; sleep 10
addrs=()
for i in 1 2 3; do
  fifo="$BFD/extra$i.out"
  "$BIN/brickd" --dir "$BFD/extra$i" --listen 127.0.0.1:0 > "$fifo" 2> "$BFD/extra$i.log" &
  extra_pids+=($!)
  for _ in $(seq 50); do grep -q '^LISTENING' "$fifo" && break; sleep 0.1; done
  addrs+=("$(awk '/^LISTENING/ {print $2; exit}' "$fifo")")
done
store="file://$BFD/store"
"$BIN/brickfs" --store "$store" volume add-brick dev "${addrs[@]}"
sleep 3   # the mount and the gateway switch graphs (watching the store)
t0=$(date +%s.%N)
"$BIN/brickfs" --store "$store" volume rebalance dev start
while ! "$BIN/brickfs" --store "$store" volume rebalance dev status | grep -qE 'completed|failed|stopped'; do sleep 0.5; done
t1=$(date +%s.%N)
{ echo "# brickfs 2 x 3 -> 3 x 3"; "$BIN/brickfs" --store "$store" volume rebalance dev status
  echo "brickfs_rebalance_s $(python3 -c "print('%.2f' % ($t1-$t0))")"; } >> "$R"
sums "$BFD/mnt" > "$BFD.after"
if cmp -s "$BFD.before" "$BFD.after"; then echo "brickfs_content_match 1" >> "$R"; else echo "brickfs_content_match 0" >> "$R"; fi
echo "brickfs_files_on_set_1 $(find "$BFD/brick1/tree" -type f ! -perm 1000 | wc -l)" >> "$R"
echo "brickfs_files_on_set_2 $(find "$BFD/brick4/tree" -type f ! -perm 1000 | wc -l)" >> "$R"
echo "brickfs_files_on_set_3 $(find "$BFD/extra1/tree" -type f ! -perm 1000 | wc -l)" >> "$R"
rss brickfs "brickd|brickfs-mount|brickfs rebalance-run" >> "$R"
cat "$R"
log "done: $OUT"
