# Sourced by scripts/bench-fs.sh and scripts/bench-heal.sh (after `cd` to the
# repository): the checks both need before alternating a fresh `brickfs dev`
# with GlusterFS, and stopping that dev cluster however the script ends.
# Expects ME (the script's name, for messages), BENCH and GLUSTER.
bin=target/release/brickfs
[ -x "$bin" ] || { echo "$ME: build first: cargo build --release --workspace" >&2; exit 1; }
mountpoint -q "$GLUSTER" || { echo "$ME: no GlusterFS at $GLUSTER (run $BENCH/gluster-up.sh)" >&2; exit 1; }
dev=""
state=""
stop_dev() {
  if [ -n "$dev" ]; then
    kill -TERM "$dev" 2>/dev/null || true
    wait "$dev" 2>/dev/null || true
    dev=""
  fi
  if [ -n "$state" ]; then rm -rf -- "$state"; state=""; fi
}
trap stop_dev EXIT
