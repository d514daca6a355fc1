//! The NFS gateway child of `brickfs dev`: `brickfs-nfs` (found next to
//! brickfs or on PATH) for the dev volume's bricks on a free loopback port,
//! logging to `logs/nfs.log`.
//!
//! It is started once the bricks and heald are up and before the FUSE
//! mount, stopped after the mount and before heald and the bricks, and
//! never restarted: if it exits, `brickfs dev` warns with its log tail and
//! the volume goes on without NFS.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use tracing::warn;

use super::children::{spawn_listening, store_command, terminate};
use super::Result;

/// Starts `brickfs-nfs [--log-level L] --store URL --listen 127.0.0.1:0
/// --state-dir DIR VOLUME` and waits for its `LISTENING` line. The gateway
/// finds its own way onto port 111 for the lock manager (the host's rpcbind,
/// or portmap on 127.0.0.1:111; its log says which, or why neither).
pub fn start(
    bin: &Path,
    store_url: &str,
    volume: &str,
    state_dir: &Path,
    log_level: Option<&str>,
    log: &Path,
    timeout: Duration,
) -> Result<(Child, SocketAddr)> {
    let mut cmd = store_command(bin, log_level, store_url);
    cmd.arg("--state-dir")
        .arg(state_dir)
        .args(["--listen", "127.0.0.1:0", volume])
        .args(super::children::metrics_args("nfs"));
    spawn_listening(&mut cmd, log, timeout)
}

/// SIGTERM, then SIGKILL after `grace`.
pub fn stop(child: &mut Child, grace: Duration) {
    if terminate(child, grace).is_none() {
        warn!(
            "brickfs-nfs (pid {}) ignored SIGTERM; killed it",
            child.id()
        );
    }
}

/// The kernel client's mount command for `volume` served at `addr`
/// (NFSv3 over TCP; MOUNT and NFS share the one port, given here, so only
/// the client's lockd asks port 111, where the gateway put NLM; MOUNT over
/// TCP too, as the gateway serves MOUNT over TCP only).
pub fn kernel_mount_command(addr: SocketAddr, volume: &str, target: &str) -> String {
    let port = addr.port();
    format!(
        "mount -t nfs -o vers=3,tcp,port={port},mountport={port},mountproto=tcp {}:/{volume} {target}",
        addr.ip()
    )
}

/// The libnfs URL of the volume root (`nfs-ls`, `nfs-cp`, …).
pub fn libnfs_url(addr: SocketAddr, volume: &str) -> String {
    let port = addr.port();
    format!(
        "nfs://{}/{volume}?version=3&nfsport={port}&mountport={port}",
        addr.ip()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_strings() {
        let addr: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        assert_eq!(
            kernel_mount_command(addr, "dev", "/mnt"),
            "mount -t nfs -o vers=3,tcp,port=40123,mountport=40123,mountproto=tcp 127.0.0.1:/dev /mnt"
        );
        assert_eq!(
            libnfs_url(addr, "dev"),
            "nfs://127.0.0.1/dev?version=3&nfsport=40123&mountport=40123"
        );
    }
}
