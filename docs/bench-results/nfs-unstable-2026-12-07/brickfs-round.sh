#!/usr/bin/env bash
# one brickfs-nfs bench run with a fresh brickfs dev (release)
set -u
cd /work/main
out=$1
st=$(mktemp -d /srv/gbench/bfs-nfs.XXXXXX)
target/release/brickfs dev --state-dir "$st/dev" --mount "$st/mnt" > "$st/dev.log" 2>&1 &
dev=$!
for i in $(seq 90); do
  a=$(jq -r '.nfs // empty' "$st/dev/cluster.json" 2>/dev/null)
  [ -n "$a" ] && [ "$a" != null ] && mountpoint -q "$st/mnt" && break; sleep 1
done
p=${a##*:}
echo "# brickfs-nfs at $a" > "$out"
scripts/bench-nfs.sh "nfs://127.0.0.1/dev" "?version=3&nfsport=$p&mountport=$p" "$st/mnt" >> "$out" 2>&1
nfspid=$(jq -r .nfs_pid "$st/dev/cluster.json")
echo "brickfs_nfs_peak_rss $(grep VmHWM /proc/$nfspid/status)" >> "$out"
for b in $(jq -r '.bricks[].pid' "$st/dev/cluster.json"); do echo "brick_peak_rss $(grep VmHWM /proc/$b/status)" >> "$out"; done
kill -TERM $dev; wait $dev
rm -rf "$st"
