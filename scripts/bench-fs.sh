#!/usr/bin/env bash
# scripts/bench-fs.sh [ROUNDS] [OUT_DIR] — ../shared/bench/fsbench.sh on
# brickfs and GlusterFS, alternating, ROUNDS times (default 3), so both see
# the same machine; then one table of medians and ratios.
#
# Each round: a fresh `brickfs dev` (release binaries, TLS on) is started,
# benchmarked and stopped (its peak RSS per process recorded from
# /proc/PID/status VmHWM just before), then GlusterFS at /mnt/gv0 (start it
# first with ../shared/bench/gluster-up.sh). With BRICKFS_WRITE_BEHIND_MIB=0
# in the environment the brickfs mount writes through (the figure before
# write-behind). fsbench's own knobs (RAND_RUNTIME, SEQ_SIZE, NFILES, ...)
# pass through. Needs root, fio and python3 (gluster-up.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
OUT=${2:-$(mktemp -d /tmp/brickfs-bench-fs.XXXXXX)}
BENCH=${BENCH:-$(cd ../shared/bench && pwd)}
GLUSTER=${GLUSTER_MOUNT:-/mnt/gv0}
ME=bench-fs.sh
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
mkdir -p "$OUT"

# Peak RSS in MiB of every process of the `brickfs dev` tree, "name=MiB".
peak_rss() {
  local p
  for p in $(pgrep -P "$dev"); do
    printf '%s=%s ' "$(cat /proc/"$p"/comm)" \
      "$(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/"$p"/status)"
  done
  echo
}

for r in $(seq "$ROUNDS"); do
  state=$(mktemp -d /srv/gbench/brickfs-bench.XXXXXX)
  "$bin" dev --state-dir "$state/dev" --mount "$state/mnt" >"$OUT/dev-r$r.log" 2>&1 &
  dev=$!
  for _ in $(seq 120); do mountpoint -q "$state/mnt" && break; sleep 0.5; done
  mountpoint -q "$state/mnt" || { echo "bench-fs.sh: brickfs dev did not come up" >&2; cat "$OUT/dev-r$r.log" >&2; exit 1; }
  echo "== round $r: brickfs $(date -Is)" >&2
  "$BENCH/fsbench.sh" "$state/mnt" brickfs >"$OUT/brickfs-r$r.txt"
  echo "# peak_rss_mib $(peak_rss)" >>"$OUT/brickfs-r$r.txt"
  stop_dev
  sync; sleep 10
  echo "== round $r: gluster $(date -Is)" >&2
  "$BENCH/fsbench.sh" "$GLUSTER" gluster >"$OUT/gluster-r$r.txt"
  sync; sleep 10
done

python3 - "$OUT" "$ROUNDS" <<'EOF'
import statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def read(name):
    figs = {}
    with open(f"{out}/{name}") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and not line.startswith("#"):
                try:
                    figs[parts[0]] = (float(parts[1]), parts[2])
                except ValueError:
                    pass
    return figs
b = [read(f"brickfs-r{r}.txt") for r in range(1, rounds + 1)]
g = [read(f"gluster-r{r}.txt") for r in range(1, rounds + 1)]
print("| figure | brickfs (rounds) | GlusterFS (rounds) | brickfs / GlusterFS, medians |")
print("|---|---|---|---|")
for k in b[0]:
    if k.endswith("_rc") or k.startswith("untar_entries") or k.startswith("untar_file") or k == "untar_du_k":
        continue
    bs = [x.get(k, (float("nan"), ""))[0] for x in b]
    gs = [x.get(k, (float("nan"), ""))[0] for x in g]
    mb, mg = statistics.median(bs), statistics.median(gs)
    if b[0][k][1] == "s":
        ratio = f"{mg / mb:.2f}x faster" if mb else "-"
    else:
        ratio = f"{mb / mg:.2f}x" if mg else "-"
    fmt = lambda xs: " / ".join(f"{x:g}" for x in xs)
    print(f"| {k} | {fmt(bs)} | {fmt(gs)} | {ratio} |")
EOF
echo "raw results: $OUT" >&2
