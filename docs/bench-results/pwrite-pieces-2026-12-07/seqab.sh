#!/usr/bin/env bash
# seqab.sh ROUNDS DIR... : alternate a 1 GiB write + fsync through a fresh `brickfs dev` of each
# DIR/target/release, CPU of all its processes summed
set -u
n=$1; shift
for r in $(seq $n); do
  for root in "$@"; do
    st=/srv/gbench/ab-$$; rm -rf $st; mkdir -p $st
    $root/target/release/brickfs dev --state-dir $st/dev --mount $st/mnt > $st.log 2>&1 &
    dev=$!
    for i in $(seq 60); do mountpoint -q $st/mnt && [ -f $st/dev/cluster.json ] && break; sleep 0.5; done
    sleep 2
    pids=$(pgrep -P $dev | tr '\n' ' ')
    sync; sleep 5
    c0=0; for p in $pids; do c0=$((c0 + $(awk '{print $14+$15}' /proc/$p/stat))); done
    out=$(python3 /tmp/wt.py $st/mnt/seq.dat)
    c1=0; for p in $pids; do c1=$((c1 + $(awk '{print $14+$15}' /proc/$p/stat))); done
    echo "round $r $root: $out cpu-s $(( c1 - c0 ))e-2"
    kill -INT $dev; wait $dev
    rm -rf $st $st.log
  done
done
