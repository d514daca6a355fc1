#!/usr/bin/env bash
# scripts/bench-nfs.sh NFS_URL [QUERY] [LOCAL_VIEW] — the libnfs figures of
# ../shared/bench/nfsbench.sh (256 MiB nfs-cp in/out, nfs-cat, 200 small
# files, nfs-ls) plus creating 1,000 small files (one nfs-cp each) on one
# export, so brickfs-nfs and NFS-Ganesha over GlusterFS are measured with
# the same commands. QUERY is what the URL needs after each file name, e.g.
# "?version=3&nfsport=P&mountport=P" for brickfs-nfs (no rpcbind needed).
set -euo pipefail
URL=${1:?usage: bench-nfs.sh NFS_URL [QUERY] [LOCAL_VIEW]}
QS=${2:-}
VIEW=${3:-}
BENCH=${BENCH:-$(cd "$(dirname "$0")/../../shared/bench" && pwd)}
NFS_QS="$QS" bash "$BENCH/nfsbench.sh" "$URL" "$VIEW"
N=nfs1k.$$
mkdir -p "/tmp/$N"
for i in $(seq 1 1000); do head -c 4096 /dev/urandom > "/tmp/$N/s$i"; done
t0=$(date +%s.%N)
for i in $(seq 1 1000); do
  nfs-cp "/tmp/$N/s$i" "$URL/$N.s$i$QS" >/dev/null || { echo "# nfs-cp $i failed"; break; }
done
t1=$(date +%s.%N)
echo "nfs_cp_1000_small_files_per_s $(python3 -c "print('%.1f' % (1000/($t1-$t0)))") files/s"
rm -rf "/tmp/$N"
if [ -n "$VIEW" ]; then rm -f "$VIEW"/$N.s*; fi
