//! A brickd a test starts itself, outside the cluster's bricks (a brick to
//! add or to replace with); killed when dropped.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::cluster::TestCluster;

pub struct ExtraBrick {
    child: Child,
    /// `127.0.0.1:PORT`, from the brick's `LISTENING` line.
    pub addr: String,
}

impl ExtraBrick {
    /// Starts `brickd --dir DIR --listen 127.0.0.1:0`, bound to `volume` at
    /// start when given.
    pub fn start(cluster: &TestCluster, dir: &Path, volume: Option<&str>) -> ExtraBrick {
        std::fs::create_dir_all(dir).expect("brick dir");
        let mut cmd = Command::new(&cluster.binaries().brickd);
        cmd.arg("--dir").arg(dir).args(["--listen", "127.0.0.1:0"]);
        if let Some(v) = volume {
            cmd.args(["--volume", v]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting brickd");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .expect("LISTENING line");
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("brickd said {line:?}"))
            .to_string();
        ExtraBrick { child, addr }
    }
}

impl Drop for ExtraBrick {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
