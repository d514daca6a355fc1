#!/usr/bin/env bash
# scripts/bench-coherence.sh MOUNT... — the price of coherence, side by side:
# per mount, alternating, ROUNDS times (default 2):
#   create_per_s / read_per_s   5000 small files (4 KiB), smallfiles.py
#   lock_rounds_per_s           one client: lock, read 4 KiB, write it, unlock
#                               (1000 rounds on one open file, fcntl F_SETLKW)
#   sqlite_commits_per_s        one client: 300 single-row commits (SQLite,
#                               journal_mode=delete: open, lock, read, write, fsync)
# Give the brickfs mounts before and after a change and a GlusterFS mount in
# one run; compare ratios (the machine is noisy).
set -euo pipefail
BENCH=${BENCH:-$(cd "$(dirname "$0")/../../shared/bench" && pwd)}
ROUNDS=${ROUNDS:-2}
lockloop() {
  python3 - "$1" <<'PY'
import fcntl, os, sys, time
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"0" * 4096, 0)
n = 1000
t = time.perf_counter()
for i in range(n):
    fcntl.lockf(fd, fcntl.LOCK_EX)
    os.pread(fd, 4096, 0)
    os.pwrite(fd, str(i).encode().ljust(4096), 0)
    fcntl.lockf(fd, fcntl.LOCK_UN)
print("%.1f" % (n / (time.perf_counter() - t)))
PY
}
sqlite_commits() {
  python3 - "$1" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("pragma journal_mode=delete")
db.execute("create table t (i int, s text)")
n = 300
t = time.perf_counter()
for i in range(n):
    db.execute("begin immediate"); db.execute("insert into t values (?, ?)", (i, "x" * 100)); db.execute("commit")
print("%.1f" % (n / (time.perf_counter() - t)))
PY
}
for r in $(seq "$ROUNDS"); do
  for m in "$@"; do
    d="$m/coh.$$.$r"
    mkdir -p "$d"
    c=$(python3 "$BENCH/smallfiles.py" create "$d/f" 5000 4096 | awk '/^create_per_s/ {print $2}')
    sync; echo 3 > /proc/sys/vm/drop_caches
    rd=$(python3 "$BENCH/smallfiles.py" read "$d/f" | awk '/^read_per_s/ {print $2}')
    l=$(lockloop "$d/counter")
    q=$(sqlite_commits "$d/db")
    echo "$m round=$r create_per_s=$c read_per_s=$rd lock_rounds_per_s=$l sqlite_commits_per_s=$q"
    rm -rf "$d"; sync; sleep 5
  done
done
