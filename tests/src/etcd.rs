//! A real etcd for tests of the cluster store: Debian's `etcd` binary
//! (package etcd-server, installed by scripts/test.sh), on 127.0.0.1 with
//! free ports and a data directory under the test cluster's temp dir,
//! killed by pid when dropped (also on panic).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::proc;

pub struct Etcd {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("BRICKFS_ETCD") {
        return p.into();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no etcd binary: install etcd-server (scripts/test.sh does)"))
}

impl Etcd {
    /// Starts etcd with its data in `dir` and waits until its client port
    /// accepts connections.
    pub fn start(dir: &Path) -> Etcd {
        let (c, p) = (
            TcpListener::bind("127.0.0.1:0").expect("port"),
            TcpListener::bind("127.0.0.1:0").expect("port"),
        );
        let port = c.local_addr().expect("addr").port();
        let peer_port = p.local_addr().expect("addr").port();
        drop((c, p));
        std::fs::create_dir_all(dir).expect("etcd dir");
        let log = dir.join("etcd.log");
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut cmd = Command::new(binary());
        cmd.arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdin(Stdio::null())
            .stdout(proc::open_log(&log))
            .stderr(proc::open_log(&log));
        let child = proc::spawn(cmd, libc::SIGKILL).expect("starting etcd");
        let etcd = Etcd {
            child: Some(child),
            port,
            log,
        };
        let up = crate::wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up,
            "etcd did not listen within 30 s:\n{}",
            proc::log_tail(&etcd.log, 30)
        );
        etcd
    }

    pub fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.port)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- etcd {}\n{}",
                self.log.display(),
                proc::log_tail(&self.log, 30)
            );
        }
        if let Some(mut child) = self.child.take() {
            proc::kill_and_reap(&mut child);
        }
    }
}
