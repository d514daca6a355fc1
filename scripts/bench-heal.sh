#!/usr/bin/env bash
# scripts/bench-heal.sh [ROUNDS] [OUT_DIR] — ../shared/bench/healbench.sh on
# GlusterFS and brickfs, alternating, ROUNDS times (default 3), then the
# median of each figure per system.
#
# GlusterFS runs the shared script as it is against /mnt/gv0 (start it first
# with ../shared/bench/gluster-up.sh); brickfs runs it through
# scripts/healbench.sh against a fresh `brickfs dev` (release binaries, TLS
# on) per round, stopped after. Raw output per run in OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
OUT=${2:-$(mktemp -d /tmp/brickfs-bench-heal.XXXXXX)}
BENCH=${BENCH:-$(cd ../shared/bench && pwd)}
GLUSTER=${GLUSTER_MOUNT:-/mnt/gv0}
ME=bench-heal.sh
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
mkdir -p "$OUT"
for r in $(seq "$ROUNDS"); do
  (cd "$BENCH" && ./healbench.sh "$GLUSTER") >"$OUT/gluster-r$r.txt" 2>&1 || true
  state=$(mktemp -d /srv/gbench/brickfs-heal.XXXXXX)
  "$bin" dev --state-dir "$state/dev" --mount "$state/mnt" >"$OUT/dev-r$r.log" 2>&1 &
  dev=$!
  for _ in $(seq 120); do mountpoint -q "$state/mnt" && break; sleep 0.5; done
  mountpoint -q "$state/mnt" || { echo "bench-heal.sh: brickfs dev did not come up" >&2; cat "$OUT/dev-r$r.log" >&2; exit 1; }
  scripts/healbench.sh "$state/dev" >"$OUT/brickfs-r$r.txt" 2>&1 || true
  stop_dev
  echo "round $r done: $(grep -h heal_s_from_restart "$OUT/gluster-r$r.txt" "$OUT/brickfs-r$r.txt" | tr '\n' ' ')"
done
# Median of each "name value unit" figure, per system.
python3 - "$OUT" "$ROUNDS" <<'PY'
import statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def figures(path):
    got = {}
    for line in open(path, errors="replace"):
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            try:
                got[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return got
runs = {s: [figures(f"{out}/{s}-r{r}.txt") for r in range(1, rounds + 1)] for s in ("gluster", "brickfs")}
names = [n for n in runs["gluster"][0] if all(n in r for s in runs for r in runs[s])]
print(f"{'figure':40} {'GlusterFS':>12} {'brickfs':>12}")
for n in names:
    g = statistics.median(r[n] for r in runs["gluster"])
    b = statistics.median(r[n] for r in runs["brickfs"])
    print(f"{n:40} {g:12.2f} {b:12.2f}")
PY
