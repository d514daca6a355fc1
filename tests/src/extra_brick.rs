//! A brickd a test starts itself, outside the cluster's bricks (a brick to
//! add or to replace with); killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::cluster::{wait_until, Binaries, TestCluster};
use crate::proc::{self, Listening};
use crate::tls::Security;

pub struct ExtraBrick {
    child: Child,
    /// `127.0.0.1:PORT`, from the brick's `LISTENING` line.
    pub addr: String,
    pub log: PathBuf,
}

impl ExtraBrick {
    /// Starts `brickd --dir DIR --listen 127.0.0.1:0`, bound to `volume` at
    /// start when given; its log is `logs/extra-<name of DIR>.log`.
    pub fn start(cluster: &TestCluster, dir: &Path, volume: Option<&str>) -> ExtraBrick {
        let name = dir
            .file_name()
            .map_or_else(|| "brick".to_string(), |n| n.to_string_lossy().into_owned());
        let log = cluster
            .root()
            .join("logs")
            .join(format!("extra-{name}.log"));
        ExtraBrick::start_with(cluster.binaries(), dir, &log, volume, &Security::Harness)
    }

    /// As [`ExtraBrick::start`], outside a test cluster: `log` is its log.
    pub fn start_with(
        bins: &Binaries,
        dir: &Path,
        log: &Path,
        volume: Option<&str>,
        security: &Security,
    ) -> ExtraBrick {
        std::fs::create_dir_all(dir).expect("brick dir");
        let log = log.to_path_buf();
        let mut cmd = Command::new(&bins.brickd);
        security.apply(&mut cmd);
        cmd.arg("--dir").arg(dir).args(["--listen", "127.0.0.1:0"]);
        if let Some(v) = volume {
            cmd.args(["--volume", v]);
        }
        match proc::spawn_listening(cmd, &log, Duration::from_secs(20)) {
            Listening::Up(child, addr) => {
                let brick = ExtraBrick {
                    child,
                    addr: addr.to_string(),
                    log,
                };
                // As the cluster's bricks: LISTENING may come a moment
                // before brickd has opened its store.
                let id = dir.join(proto::PRIVATE_DIR).join("brick-id");
                assert!(
                    wait_until(Duration::from_secs(20), || id.exists()),
                    "brickd --dir {} never wrote {}",
                    dir.display(),
                    id.display()
                );
                brick
            }
            Listening::Exited(status) => panic!(
                "brickd --dir {} exited ({status:?}) before LISTENING; log {}:\n{}",
                dir.display(),
                log.display(),
                proc::log_tail(&log, 30)
            ),
        }
    }
}

impl Drop for ExtraBrick {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- extra brick {} {}\n{}",
                self.addr,
                self.log.display(),
                proc::log_tail(&self.log, 40)
            );
        }
        proc::kill_and_reap(&mut self.child);
    }
}
