#!/usr/bin/env bash
# scripts/bench-small.sh MOUNT... — fsbench.sh's small-file and untar figures
# only (smallfiles.py create/mkdir, cold untar of the same tarball), for a
# quick side-by-side of several mounts, alternating them, ROUNDS times.
set -euo pipefail
BENCH=${BENCH:-$(cd "$(dirname "$0")/../../shared/bench" && pwd)}
TARBALL=${TARBALL:-/srv/gbench/include.tar}
ROUNDS=${ROUNDS:-2}
for r in $(seq "$ROUNDS"); do
  for m in "$@"; do
    d="$m/small.$$.$r"
    c=$(python3 "$BENCH/smallfiles.py" create "$d/f" 5000 4096 | awk '/^create_per_s/ {print $2}')
    k=$(python3 "$BENCH/smallfiles.py" mkdir "$d/d" 2000 | awk '/^mkdir_per_s/ {print $2}')
    mkdir -p "$d/u"; sync; echo 3 > /proc/sys/vm/drop_caches
    t0=$(date +%s.%N); tar -C "$d/u" -xf "$TARBALL"; t1=$(date +%s.%N)
    echo "$m round=$r create_per_s=$c mkdir_per_s=$k untar_s=$(python3 -c "print('%.2f' % ($t1-$t0))")"
    rm -rf "$d"; sync; sleep 10
  done
done
