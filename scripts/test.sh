#!/usr/bin/env bash
# scripts/test.sh — the brickfs test command (README "Test"; .ci/run runs it).
#
# 1. installs what the tests need when it is missing (Debian: fuse3 for
#    fusermount3, python3 (its sqlite3: the SQLite tests), libnfs-utils for
#    nfs-cp/nfs-ls/nfs-cat, the NFS client
#    of tests/tests/it/nfs.rs; git and make for tests/tests/it/build_tools.rs;
#    etcd-server for the etcd the store tests start;
#    for tests/tests/nlm_kernel.rs, the Linux kernel NFS client in qemu:
#    qemu-system-x86, linux-image-amd64, busybox-static, cpio, kmod,
#    iproute2, gcc, libc6-dev, file and the libraries of rpcbind/rpc.statd,
#    which tests/qemu-nfs/nlm-check.sh unpacks into its cache without
#    installing them; rustfmt/clippy via rustup), 2. checks /dev/fuse,
# 3. builds every binary (the integration tests run target/debug/brickd,
#    brickfs-mount, brickfs and brickfs-nfs as real processes) and
#    brickd-failpoints (brickd with the `failpoints` feature, which only the
#    crash tests run; the harness would build it on first use otherwise)
#    and brickfs-provisioner-failpoints (the same for the provisioner),
#    Meanwhile scripts/k8s-bins.sh builds (or finds cached) the real
#    kube-apiserver and kube-controller-manager of the Kubernetes tests.
# 4. fmt and clippy (also of brick with failpoints),
# 5. runs all tests, and brick's unit tests once more with failpoints (they
#    kill every operation at each failpoint, in process), then every fuzz
#    target for a few seconds (scripts/fuzz.sh; FUZZ_SECONDS). Extra arguments go
#    to `cargo test`, e.g. scripts/test.sh -p tests --test it smoke::
# Env: TEST_THREADS (default 2: each FUSE test runs 3 bricks + mounts; the
# machine has 2 cores), BRICKFS_TEST_KEEP=1 keeps a failed test's temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# --- 1. system packages (only when missing) ------------------------------
missing=()
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
command -v nfs-cp >/dev/null 2>&1 || missing+=(libnfs-utils)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
python3 -c "import sqlite3" >/dev/null 2>&1 || missing+=(python3)
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
ls /lib/modules/*/kernel/fs/nfs/nfsv3.ko* >/dev/null 2>&1 || missing+=(linux-image-amd64)
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || missing+=(busybox-static)
for tool in cpio:cpio modprobe:kmod ip:iproute2 gcc:gcc file:file git:git make:make; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)
[ -e /lib/x86_64-linux-gnu/libwrap.so.0 ] || missing+=(libwrap0)
[ -e /lib/x86_64-linux-gnu/libtirpc.so.3 ] || missing+=(libtirpc3)
[ -e /etc/netconfig ] || missing+=(libtirpc-common)
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    log "missing ${missing[*]} and no apt-get here: install them and re-run"; exit 1
  fi
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The package also enables a system etcd on port 2379; the tests start
  # their own on free ports, so do not leave one running because of us.
  if [[ " ${missing[*]} " == *" etcd-server "* ]] && [ -d /run/systemd/system ]; then
    log "stopping and disabling the etcd service the etcd-server package started"
    $SUDO systemctl disable --now etcd.service >/dev/null 2>&1 || true
  fi
fi
for comp in fmt clippy; do
  if ! cargo "$comp" --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    log "installing rustup component $comp"; rustup component add "${comp/fmt/rustfmt}"
  fi
done

# --- 2. FUSE device -------------------------------------------------------
if [ ! -c /dev/fuse ]; then
  log "/dev/fuse is missing: load the fuse module (modprobe fuse) or, in a container, run with --device /dev/fuse --cap-add SYS_ADMIN"
  exit 1
fi
if [ ! -r /dev/fuse ] || [ ! -w /dev/fuse ]; then
  log "/dev/fuse is not readable and writable by $(id -un): FUSE mounts will fail"; exit 1
fi

# --- 3-5. build, lint, test ------------------------------------------------
# The real kube-apiserver and kube-controller-manager of the Kubernetes
# tests (scripts/k8s-bins.sh: built from Debian's source package once, ~6
# minutes, then cached) build beside the Rust build; waited for before the
# tests.
k8s_log=$(mktemp)
out=$(mktemp)
log "scripts/k8s-bins.sh (in the background; log $k8s_log)"
scripts/k8s-bins.sh >"$k8s_log" 2>&1 &
k8s_pid=$!
# A failed build stops here; the background build must not outlive us.
trap 'kill "$k8s_pid" 2>/dev/null || true; rm -f "$out" "$k8s_log"' EXIT
log "cargo build --workspace"
cargo build --workspace
log "cargo build -p brick --features failpoints --bin brickd-failpoints"
cargo build -p brick --features failpoints --bin brickd-failpoints
log "cargo build -p k8s --features failpoints --bin brickfs-provisioner-failpoints"
cargo build -p k8s --features failpoints --bin brickfs-provisioner-failpoints
log "cargo fmt --all -- --check"
cargo fmt --all -- --check
log "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
log "cargo clippy -p brick --all-targets --features failpoints -- -D warnings"
cargo clippy -p brick --all-targets --features failpoints -- -D warnings
log "cargo clippy -p k8s --all-targets --features failpoints -- -D warnings"
cargo clippy -p k8s --all-targets --features failpoints -- -D warnings
log "waiting for scripts/k8s-bins.sh"
if ! wait "$k8s_pid"; then
  tail -40 "$k8s_log" >&2
  log "scripts/k8s-bins.sh failed (log above): the Kubernetes tests cannot run"; exit 1
fi
log "Kubernetes binaries in $(tail -1 "$k8s_log")"
log "cargo test --workspace"
# No doctests in the workspace: leaving them out keeps the runner's last
# lines about tests that ran. The totals line at the end sums every binary.
set +e
cargo test --workspace --no-fail-fast --lib --bins --tests "$@" -- --test-threads="${TEST_THREADS:-2}" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
if [ $# -eq 0 ]; then
  log "cargo test -p brick --lib --features failpoints"
  cargo test -p brick --lib --features failpoints -- --test-threads="${TEST_THREADS:-2}" 2>&1 | tee -a "$out"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
  # Every fuzz target for a few seconds (fuzz/README.md): a crash, panic,
  # leak or allocation over a target's bound fails the run. Unoptimised
  # (compiles in about half the time of the optimised build), in a target
  # directory kept outside the clone, so runs after the first rebuild only
  # the project's own crates.
  log "scripts/fuzz.sh --dev --seconds ${FUZZ_SECONDS:-4}"
  FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-${BRICKFS_CACHE:-$HOME/.cache/brickfs}/fuzz-target}" \
    scripts/fuzz.sh --dev --seconds "${FUZZ_SECONDS:-4}" || rc=1
fi
set -e
passed=$(grep -E '^test result:' "$out" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
failed=$(grep -E '^test result:' "$out" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
echo "tests: $passed passed, $failed failed"
exit "$rc"
