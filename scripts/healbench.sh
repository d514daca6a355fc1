#!/bin/bash
# healbench.sh STATE_DIR — runs ../shared/bench/healbench.sh (the replica-3
# self-heal scenario) against a running `brickfs dev --state-dir STATE_DIR`.
#
# The shared script keeps everything system-specific in one marked block of
# sys_* functions; this wrapper swaps in brickfs's versions of them (below)
# and runs the rest unchanged, so both systems go through the same steps.
# Bricks that the scenario restarts are started here from the `cmd` that
# brickfs dev recorded in cluster.json and are stopped again on exit.
set -euo pipefail
STATE=$(cd "${1:?usage: healbench.sh STATE_DIR (of a running brickfs dev)}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=${SHARED:-$HERE/../../shared/bench}
BIN=${BIN:-$HERE/../target/release}
MNT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mount"])' "$STATE/cluster.json")
export STATE BIN
RUNDIR=$(mktemp -d /tmp/brickfs-healbench.XXXXXX)
export RUNDIR

cat > "$RUNDIR/sys.sh" <<'SYS'
########################## SYSTEM-SPECIFIC (brickfs) #####################################
cluster_field() {  # cluster_field FIELD -> from cluster.json
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$STATE/cluster.json" "$1"
}
brick_field() {  # brick_field N FIELD -> from cluster.json (bricks 1..3)
  python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))["bricks"][int(sys.argv[2])-1]; v=b[sys.argv[3]]; print(" ".join(v) if isinstance(v,list) else v)' "$STATE/cluster.json" "$1" "$2"
}
brick_pid() {  # a brick this script restarted, else the one brickfs dev started
  if [ -s "$RUNDIR/brick$1.pid" ]; then cat "$RUNDIR/brick$1.pid"; else brick_field "$1" pid; fi
}
sys_down() {
  local p; p=$(brick_pid "$1")
  echo "# killing brick $1 pid $p"
  kill -9 "$p" 2>/dev/null || true
  sleep 1
}
sys_up() {     # restart every brick whose process is gone, from its recorded cmd
  local i p
  for i in 1 2 3; do
    p=$(brick_pid "$i")
    if ! kill -0 "$p" 2>/dev/null; then
      # shellcheck disable=SC2046
      setsid $(brick_field "$i" cmd) > "$RUNDIR/brick$i.log" 2>&1 &
      echo $! > "$RUNDIR/brick$i.pid"
      for _ in $(seq 1 100); do grep -qs LISTENING "$RUNDIR/brick$i.log" && break; sleep 0.1; done
    fi
  done
}
heal_cli() {  # with the dev cluster's admin certificate, or plaintext for `brickfs dev --insecure`
  local tls=(--insecure)
  [ -d "$STATE/tls" ] && tls=(--tls-dir "$STATE/tls")
  "$BIN/brickfs" --store "$(cluster_field store)" "${tls[@]}" volume heal dev "$@"
}
sys_connected() { [ "$(heal_cli info 2>/dev/null | grep -c 'Status: Connected')" = 3 ]; }
sys_heal_trigger() { echo "# brickfs heald heals on its own when a brick returns; no trigger sent"; }
sys_heal_pending_fast() {
  local n=0 i d
  for i in 1 2 3; do
    d=$(brick_field "$i" dir)
    n=$((n + $(find "$d/.brickfs/indices/xattrop" -mindepth 1 2>/dev/null | wc -l)))
  done
  echo $n
}
sys_heal_pending() { heal_cli info 2>/dev/null | awk '/^Number of entries:/ {s+=$4} END{print s+0}'; }
sys_replica_paths() { for i in 1 2 3; do brick_field "$i" dir; done; }
sys_replica_find_excl() { echo ".brickfs"; }
sys_info() { "$BIN/brickfs" --version; echo "volume dev: replica 3 on $(brick_field 1 addr) $(brick_field 2 addr) $(brick_field 3 addr)"; }
##########################################################################################
SYS

cleanup() {
  local f
  for f in "$RUNDIR"/brick*.pid; do
    [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
}
trap cleanup EXIT

# The shared scenario with its GlusterFS block replaced by ours.
awk -v sys="$RUNDIR/sys.sh" '
  /^#+ SYSTEM-SPECIFIC/ { while ((getline line < sys) > 0) print line; skip = 1; next }
  skip && /^#+$/ { skip = 0; next }
  !skip { print }
' "$SHARED/healbench.sh" > "$RUNDIR/healbench.sh"
OUT=${OUT:-$HERE/../docs/bench-results/heal-brickfs-$(date +%Y%m%d-%H%M%S).txt} \
  bash "$RUNDIR/healbench.sh" "$MNT"
