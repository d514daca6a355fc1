#!/usr/bin/env bash
# nfsab.sh ROUNDS DIR... : alternate an nfs-cp of 256 MiB into a gateway with 4 MiB write-behind calls
# on a fresh `brickfs dev` of each DIR/target/release; CPU of the gateway and the bricks
set -u
n=$1; shift
for r in $(seq $n); do
  for root in "$@"; do
    st=/srv/gbench/ab-$$; rm -rf $st; mkdir -p $st
    $root/target/release/brickfs dev --state-dir $st/dev --mount $st/mnt > $st.log 2>&1 &
    dev=$!
    for i in $(seq 60); do mountpoint -q $st/mnt && [ -f $st/dev/cluster.json ] && break; sleep 0.5; done
    sleep 1
    WB_CALL_KIB=4096 $root/target/release/brickfs-nfs --store file://$st/dev/store --tls-dir $st/dev/tls --state-dir $st/nfs --listen 127.0.0.1:20493 --no-portmap --write-behind-mib 32 dev > $st.gw.log 2>&1 &
    gw=$!
    sleep 3
    B=$(jq -r '.bricks[].pid' $st/dev/cluster.json | tr '\n' ' ')
    sync; sleep 4
    c0=0; for p in $gw $B; do c0=$((c0 + $(awk '{print $14+$15}' /proc/$p/stat))); done
    s=$(date +%s.%N)
    nfs-cp /srv/gbench/f256 "nfs://127.0.0.1/dev/ab.f256?version=3&nfsport=20493&mountport=20493" >/dev/null || echo FAIL
    e=$(date +%s.%N)
    c1=0; for p in $gw $B; do c1=$((c1 + $(awk '{print $14+$15}' /proc/$p/stat))); done
    cmp -s /srv/gbench/f256 $st/mnt/ab.f256 || echo MISMATCH
    python3 -c "print('round $r $root', 'MiB/s %.0f' % (256/($e-$s)), 'cpu-s %.2f' % (($c1-$c0)/100))"
    kill $gw; wait $gw
    kill -INT $dev; wait $dev
    rm -rf $st $st.log $st.gw.log
  done
done
