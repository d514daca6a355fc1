#!/usr/bin/env bash
# cpab2.sh ROUNDS NAME:PORT:PIDFILE...  alternate nfs-cp 256 MiB into gateways
M=/srv/gbench/prof/mnt
B=$(jq -r '.bricks[].pid' /srv/gbench/prof/cluster.json | tr '\n' ' ')
cpu() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
n=$1; shift
for r in $(seq $n); do
  for spec in "$@"; do
    IFS=: read name p pf <<< "$spec"
    rm -f $M/*.f256 $M/*.dat; sync; sleep 6
    g=$(cat $pf)
    c0=$(cpu $g $B); s=$(date +%s.%N)
    nfs-cp /srv/gbench/f256 "nfs://127.0.0.1/dev/ab.f256?version=3&nfsport=$p&mountport=$p" >/dev/null || echo FAIL
    e=$(date +%s.%N); c1=$(cpu $g $B)
    cmp -s /srv/gbench/f256 $M/ab.f256 || echo MISMATCH
    python3 -c "print('round $r', '$name', 'MiB/s %.0f' % (256/($e-$s)), 'cpu-s %.2f' % (($c1-$c0)/100))"
  done
done
