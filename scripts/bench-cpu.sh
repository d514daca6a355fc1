#!/usr/bin/env bash
# scripts/bench-cpu.sh [N] [ROUNDS] — CPU seconds per 1,000 small files,
# summed over every brickfs process, with the peak RSS of each: the figure
# the speed issue tracks before and after each lever (steadier than wall
# time on a noisy machine).
#
# Runs `brickfs dev` (release binaries, TLS on, a state dir in /tmp) with
# every child's /metrics, then per round: N files of 4 KiB created through
# the FUSE mount (../shared/bench/smallfiles.py), read back cold, stat'ed,
# and removed. Each phase's CPU is the difference of the children's
# process_cpu_seconds_total (bricks, mount, heald, NFS gateway, API) before
# and after it. Needs `cargo build --release --workspace` first, root (for
# the FUSE mount and drop_caches) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
ROUNDS=${2:-3}
BENCH=${BENCH:-$(cd ../shared/bench && pwd)}
bin=target/release/brickfs
[ -x "$bin" ] || { echo "bench-cpu.sh: build first: cargo build --release --workspace" >&2; exit 1; }
state=$(mktemp -d /tmp/brickfs-bench-cpu.XXXXXX)
mnt="$state/mnt"
"$bin" dev --state-dir "$state/dev" --mount "$mnt" >"$state/dev.out" 2>&1 &
dev=$!
cleanup() {
  kill -TERM "$dev" 2>/dev/null || true
  wait "$dev" 2>/dev/null || true
  rm -rf -- "$state"
}
trap cleanup EXIT
for _ in $(seq 120); do
  [ -f "$state/dev/cluster.json" ] && grep -q metrics "$state/dev/cluster.json" && mountpoint -q "$mnt" && break
  sleep 0.5
done
mountpoint -q "$mnt" || { echo "bench-cpu.sh: brickfs dev did not come up:" >&2; cat "$state/dev.out" >&2; exit 1; }

# "NAME ADDR" per child.
children=$(python3 -c 'import json,sys; [print(k, v) for k, v in json.load(open(sys.argv[1]))["metrics"].items()]' "$state/dev/cluster.json")

# One figure of every child: CPU seconds total, or peak RSS in MiB.
scrape() { # $1: series name
  while read -r name addr; do
    v=$(curl -fsS "http://$addr/metrics" | awk -v s="$1" '$1 == s {print $2}')
    echo "$name ${v:-0}"
  done <<<"$children"
}

echo "# brickfs bench-cpu: $N files of 4 KiB, $ROUNDS rounds, $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# phase  round  wall_s  files_per_s  cpu_s_per_1000_files   (by process)"
for r in $(seq "$ROUNDS"); do
  d="$mnt/r$r"
  phase() { # $1: name, rest: command printing "<op>_seconds S"
    local name=$1; shift
    local before after secs
    before=$(scrape process_cpu_seconds_total)
    secs=$("$@" | awk '/_seconds/ {print $2}')
    after=$(scrape process_cpu_seconds_total)
    python3 - "$name" "$r" "$N" "$secs" "$before" "$after" <<'PY'
import sys
name, r, n, secs, before, after = sys.argv[1:]
n, secs = int(n), float(secs)
b = dict(l.split() for l in before.splitlines())
a = dict(l.split() for l in after.splitlines())
per = {k: (float(a[k]) - float(b.get(k, 0))) * 1000 / n for k in a}
total = sum(per.values())
by = " ".join(f"{k}={v:.3f}" for k, v in sorted(per.items()))
print(f"{name:<7} {r:>5}  {secs:>6.2f}  {n/secs:>11.0f}  {total:>20.3f}   {by}")
PY
  }
  phase create python3 "$BENCH/smallfiles.py" create "$d" "$N" 4096
  sync; echo 3 >/proc/sys/vm/drop_caches
  phase read python3 "$BENCH/smallfiles.py" read "$d"
  phase stat python3 "$BENCH/smallfiles.py" stat "$d"
  phase rm python3 "$BENCH/smallfiles.py" rm "$d"
  rmdir "$d"
done
echo "# peak RSS (MiB) of each process over the run"
scrape process_resident_memory_max_bytes | awk '{printf "#   %-7s %7.1f\n", $1, $2 / 1048576}'
