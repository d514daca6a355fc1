#!/usr/bin/env bash
# scripts/bench-seq-write.sh BRICKFS_MOUNT GLUSTER_MOUNT [ROUNDS]
# fsbench.sh's sequential-write job (1 GiB, 1 MiB blocks, psync, end fsync),
# alternating the two systems, with the disk left to settle before each run:
# the figure is otherwise dominated by whatever the previous test deleted.
set -euo pipefail
a=${1:?usage: bench-seq-write.sh BRICKFS_MOUNT GLUSTER_MOUNT [ROUNDS]}
b=${2:?usage: bench-seq-write.sh BRICKFS_MOUNT GLUSTER_MOUNT [ROUNDS]}
rounds=${3:-3}
for _ in $(seq "$rounds"); do
  for m in "$a" "$b"; do
    sync; sleep 20
    v=$(fio --name=seqw --filename="$m/seq.dat" --rw=write --bs=1M --size=1G --end_fsync=1 \
          --ioengine=psync --direct=0 --fallocate=none --iodepth=1 --thread=0 --output-format=json 2>/dev/null |
        python3 -c "import json,sys; j=json.load(sys.stdin); print('%.1f' % (j['jobs'][0]['write']['bw_bytes']/1048576))")
    echo "$m seq_write_MiBps $v"
    rm -f "$m/seq.dat"
  done
done
