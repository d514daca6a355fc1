//! Integration-test harness: real `brickd` processes and real FUSE mounts.
//!
//! - [`cluster::TestCluster`]: N bricks, each a `brickd` child in a temp dir on
//!   127.0.0.1 port 0; [`cluster::Mount`]s of it (several = several clients);
//!   kill/stop/continue/restart a brick; compare brick trees.
//! - [`raw`]: a tarpc client straight to one brick, and raw bytes on its port,
//!   for bad-input tests.
//! - [`heal`]: the heal daemon and heal CLI run against a test cluster.
//! - [`tree`]: a digest of the user-visible tree of a brick directory.
//! - [`failpoints`]: bricks that die at a chosen failpoint
//!   (`brickd-failpoints`), and a consistency check of a brick directory.
//! - [`nfs`]: the NFS gateway (`brickfs-nfs`) in front of a test cluster,
//!   the libnfs command-line tools, and a hand-written ONC RPC client.
//! - [`volume`]: volumes in a cluster store, made and changed with the
//!   `brickfs` CLI, and what their bricks hold.
//! - [`k8s`]: a real Kubernetes control plane (apiserver, PV controllers)
//!   and `brickfs-provisioner` processes against it.
//! - [`etcd`]: a real etcd, for the store's tests and volumes kept in etcd.
//! - [`xattr`], [`data`]: extended attributes of a path; test data.
//!
//! The binaries are not built here: run `cargo build --workspace` first
//! (`scripts/test.sh` does). Everything started is stopped on drop, also
//! when a test panics; then the logs' tails go to stderr.

pub mod api;
pub mod cluster;
pub mod data;
pub mod etcd;
pub mod extra_brick;
pub mod failpoints;
pub mod heal;
pub mod http;
pub mod k8s;
pub mod kernel_nfs;
pub mod nfs;
mod proc;
pub mod raw;
pub mod tls;
pub mod tree;
pub mod volume;
pub mod xattr;

pub use cluster::{wait_until, Mount, TestCluster, NO_CACHE};
pub use proc::{free_port, is_mounted, log_has, log_lines, pid_alive};

/// Runs `cmd` to its end and returns what it printed; panics with its
/// output unless it succeeded.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panics unless python3 with its sqlite3 module runs here (the SQLite
/// tests drive real SQLite through it; scripts/test.sh installs it).
pub fn require_python3_sqlite() {
    let check = std::process::Command::new("python3")
        .args(["-c", "import sqlite3"])
        .status();
    assert!(
        matches!(check, Ok(s) if s.success()),
        "python3 with its sqlite3 module is needed (Debian: python3)"
    );
}
