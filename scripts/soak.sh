#!/usr/bin/env bash
# scripts/soak.sh [SECS] — the crash soak (README "Soak"): writers on two FUSE
# clients (fsync'd appends, temp-file + rename, lock-protected overwrites)
# while bricks are SIGKILLed/restarted or SIGSTOPped/continued at random;
# then heal, and a check that no acknowledged write was lost. Prints a
# `SOAK:` line with the figures. BRICKFS_SOAK_SEED picks the fault sequence.
set -euo pipefail
cd "$(dirname "$0")/.."
export BRICKFS_SOAK_SECS="${1:-${BRICKFS_SOAK_SECS:-180}}"
cargo build --workspace
exec cargo test -p tests --test it soak:: -- --ignored --nocapture --test-threads=1
