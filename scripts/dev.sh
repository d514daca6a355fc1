#!/usr/bin/env bash
# scripts/dev.sh [brickfs dev options] — the main job (README "Run") on a
# fresh machine: installs what building and running need when it is
# missing (Debian: fuse3 for fusermount3), builds the release
# binaries and runs `brickfs dev` in the foreground with the given options.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '==> %s\n' "$*" >&2; }
missing=()
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || { log "missing ${missing[*]} and no apt-get here: install them and re-run"; exit 1; }
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
log "cargo build --release --workspace"
cargo build --release --workspace
exec target/release/brickfs dev "$@"
