#!/usr/bin/env bash
# scripts/soak-files.sh [DIRS] [PER_DIR] [OUT_DIR] — the million-file soak
# (issue 14, "Memory"): DIRS directories of PER_DIR small files (default
# 10000 × 100, 1 KiB each; SIZE= to change) created, listed, stat'ed and
# read through a FUSE mount, then listed, stat'ed and read through the NFS
# gateway, which then creates and reads a tree of its own (NFS_DIRS
# directories, default DIRS/10). The RSS of every brickfs process is
# sampled every 5 s into OUT_DIR/rss.tsv ("seconds phase process pid
# rss_kib"); the end prints each phase's rate and, per process, its peak
# RSS and its mean RSS in the first and last quarter of the run (flat:
# about equal).
#
# One fresh `brickfs dev` (release binaries, TLS on) under /srv/gbench,
# removed afterwards. scripts/soak-files.py is the workload (through the
# mount with ordinary system calls; through the gateway with its own
# NFSv3 client, no kernel NFS needed). Needs root and python3. The full
# size takes about an hour and ~15 GB of disk on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
DIRS=${1:-10000}
PER_DIR=${2:-100}
OUT=${3:-$(mktemp -d /tmp/brickfs-soak-files.XXXXXX)}
SIZE=${SIZE:-1024}
NFS_DIRS=${NFS_DIRS:-$((DIRS / 10))}
WORKERS=${WORKERS:-4}
bin=target/release/brickfs
[ -x "$bin" ] || { echo "soak-files.sh: build first: cargo build --release --workspace" >&2; exit 1; }
mkdir -p "$OUT" /srv/gbench
dev="" sampler="" state=""
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
  if [ -n "$dev" ]; then kill -TERM "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true; fi
  [ -n "$state" ] && rm -rf -- "$state"
  return 0
}
trap cleanup EXIT

state=$(mktemp -d /srv/gbench/brickfs-soak.XXXXXX)
"$bin" dev --state-dir "$state/dev" --mount "$state/mnt" >"$OUT/dev.log" 2>&1 &
dev=$!
for _ in $(seq 120); do mountpoint -q "$state/mnt" && break; sleep 0.5; done
mountpoint -q "$state/mnt" || { echo "soak-files.sh: brickfs dev did not come up" >&2; cat "$OUT/dev.log" >&2; exit 1; }
nfs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nfs"])' "$state/dev/cluster.json")

echo start >"$OUT/phase"
start=$(date +%s)
(
  while sleep 5; do
    now=$(( $(date +%s) - start ))
    ph=$(cat "$OUT/phase")
    for p in $(pgrep -P "$dev"); do
      rss=$(awk '/VmRSS/ {print $2}' /proc/"$p"/status 2>/dev/null) || continue
      printf '%s\t%s\t%s\t%s\t%s\n' "$now" "$ph" "$(cat /proc/"$p"/comm)" "$p" "$rss"
    done
  done
) >"$OUT/rss.tsv" &
sampler=$!

run() {
  local kind=$1 target=$2 tree=$3 phase=$4 dirs=$5
  echo "$kind-$phase" >"$OUT/phase"
  echo "== $kind $phase $tree ($dirs × $PER_DIR) $(date -Is)" >&2
  printf '%s\t' "$kind" | tee -a "$OUT/rates.tsv"
  python3 scripts/soak-files.py "$kind" "$target" "$tree" "$phase" "$dirs" "$PER_DIR" "$SIZE" "$WORKERS" \
    | tee -a "$OUT/rates.tsv"
}
for phase in create list stat read; do run fs "$state/mnt" soak "$phase" "$DIRS"; done
for phase in list stat read; do run nfs "$nfs/dev" soak "$phase" "$DIRS"; done
for phase in create list read; do run nfs "$nfs/dev" soak-nfs "$phase" "$NFS_DIRS"; done
echo end >"$OUT/phase"
sleep 6
for p in $(pgrep -P "$dev"); do
  printf '%s\t%s\t%s\n' "$(cat /proc/"$p"/comm)" "$p" "$(awk '/VmHWM/ {print $2}' /proc/"$p"/status)"
done >"$OUT/peak.tsv"

python3 - "$OUT" <<'EOF'
import collections, sys
out = sys.argv[1]
print("phase\tfiles\tseconds\tfiles/s\terrors")
for line in open(f"{out}/rates.tsv"):
    kind, phase, files, secs, rate, errors = line.split()
    print(f"{kind} {phase}\t{files}\t{secs}\t{rate}\t{errors}")
samples = collections.defaultdict(list)
for line in open(f"{out}/rss.tsv"):
    t, phase, name, pid, rss = line.split("\t")
    samples[(name, pid)].append((int(t), int(rss)))
peak = {(n, p): int(k) for n, p, k in (l.split() for l in open(f"{out}/peak.tsv"))}
print("\nprocess\tpid\tpeak MiB (VmHWM)\tfirst quarter MiB\tlast quarter MiB")
for (name, pid), s in sorted(samples.items()):
    end = s[-1][0]
    first = [r for t, r in s if t <= end / 4] or [s[0][1]]
    last = [r for t, r in s if t >= end * 3 / 4] or [s[-1][1]]
    mean = lambda xs: sum(xs) / len(xs) / 1024
    hwm = peak.get((name, pid), max(r for _, r in s)) / 1024
    print(f"{name}\t{pid}\t{hwm:.1f}\t{mean(first):.1f}\t{mean(last):.1f}")
EOF
echo "raw: $OUT" >&2
