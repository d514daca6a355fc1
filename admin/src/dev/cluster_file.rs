//! `D/cluster.json`: what `brickfs dev` is running, for people and tests.
//!
//! ```json
//! {"volume":"dev","replica":3,"mount":"/abs/mnt","mount_pid":42,"heald_pid":41,
//!  "store":"file:///abs","nfs":"127.0.0.1:40123","nfs_pid":43,
//!  "bricks":[{"name":"brick1","id":"<uuid>","pid":40,"addr":"127.0.0.1:41234",
//!             "dir":"/abs/brick1","state":"up",
//!             "cmd":["/abs/brickd","--dir","/abs/brick1","--listen","127.0.0.1:41234","--volume","dev"]}]}
//! ```
//!
//! The bricks form replica sets of `replica` in order (`brickfs dev
//! --replica-sets N`: 3N bricks). `cmd` restarts the brick on the same port. `state` is `up`, `down` (died;
//! brickfs dev does not restart it) or `stopped` (brickfs dev exited).
//! `heald_pid` is the self-heal daemon (`null` once it exited); `store` is
//! the URL `brickfs --store` takes to find this volume (this directory).
//! `nfs` is where the NFS gateway serves NFSv3 and MOUNT (one port) and
//! `nfs_pid` its pid; both `null` once it exited (it is not restarted).
//! `metrics` maps each child (`brick1`, `mount`, `nfs`, `heald`, `api`) to
//! the address of its Prometheus `/metrics`.
//! Built with `serde_json::json!` rather than derived types: only `proto`
//! types derive `Serialize`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{IoContext, Result};

pub struct BrickEntry {
    pub name: String,
    pub id: String,
    pub pid: u32,
    pub addr: String,
    pub dir: PathBuf,
    pub cmd: Vec<String>,
    pub state: &'static str,
}

pub struct ClusterFile<'a> {
    pub volume: &'a str,
    /// Bricks per replica set (the bricks form sets in order).
    pub replica: usize,
    pub mount: &'a Path,
    pub mount_pid: Option<u32>,
    pub heald_pid: Option<u32>,
    pub store: String,
    /// The CA and certificates (`--tls-dir`); `None` with --insecure.
    pub tls_dir: Option<&'a Path>,
    /// The NFS gateway's address (`127.0.0.1:PORT`) while it runs.
    pub nfs: Option<String>,
    pub nfs_pid: Option<u32>,
    /// The management API's address (`127.0.0.1:PORT`) while it runs.
    pub api: Option<String>,
    pub api_pid: Option<u32>,
    pub bricks: Vec<BrickEntry>,
    /// Each child's `/metrics` address, by child (`brick1`, `mount`, ...).
    pub metrics: Vec<(String, std::net::SocketAddr)>,
}

impl ClusterFile<'_> {
    pub fn to_json(&self) -> Value {
        let bricks: Vec<Value> = self
            .bricks
            .iter()
            .map(|b| {
                json!({
                    "name": b.name,
                    "id": b.id,
                    "pid": b.pid,
                    "addr": b.addr,
                    "dir": b.dir.to_string_lossy(),
                    "cmd": b.cmd,
                    "state": b.state,
                })
            })
            .collect();
        json!({
            "volume": self.volume,
            "replica": self.replica,
            "mount": self.mount.to_string_lossy(),
            "bricks": bricks,
            "metrics": self.metrics.iter().map(|(n, a)| (n.clone(), Value::from(a.to_string()))).collect::<serde_json::Map<String, Value>>(),
            "mount_pid": self.mount_pid,
            "heald_pid": self.heald_pid,
            "store": self.store,
            "tls_dir": self.tls_dir.map(|d| d.to_string_lossy()),
            "nfs": self.nfs,
            "nfs_pid": self.nfs_pid,
            "api": self.api,
            "api_pid": self.api_pid,
        })
    }

    /// Writes `path` atomically: a reader sees the old or the new file, never
    /// a partial one.
    pub fn write_atomic(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut text =
            serde_json::to_string_pretty(&self.to_json()).expect("json values serialize");
        text.push('\n');
        let mut f = File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .ctx(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .ctx(|| format!("renaming {} to {}", tmp.display(), path.display()))
    }
}
