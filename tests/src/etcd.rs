//! A real etcd for tests of the cluster store and of volumes kept in it:
//! Debian's `etcd` binary (package etcd-server, installed by scripts/test.sh;
//! `BRICKFS_ETCD` may name another), on 127.0.0.1 with free ports and its
//! own data directory, killed by pid when dropped (also on panic, after its
//! log tail went to stderr). The store's own tests (store/tests) use it too.
//!
//! Its methods block (etcd is a process to wait for); an async test that
//! needs a task to run meanwhile gives its runtime a second worker.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cluster::wait_until;
use crate::proc;

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// For one request of the harness's own: etcd answers at once or is not up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Etcd {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    /// Mutual TLS on the client URL with the harness's `store`
    /// certificate; health and metrics then on this plain port.
    tls_metrics_port: Option<u16>,
    dir: PathBuf,
    log: PathBuf,
    /// Set by [`Etcd::start_in_temp_dir`]; removed after the process is gone.
    _temp: Option<tempfile::TempDir>,
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
        .unwrap_or_else(|| {
            panic!("no etcd binary: install Debian's etcd-server (scripts/test.sh does) or set BRICKFS_ETCD")
        })
}

impl Etcd {
    /// Starts etcd with its data and log in `dir` and waits until it serves.
    pub fn start(dir: &Path) -> Etcd {
        Etcd::start_with(dir.to_path_buf(), None, false)
    }

    /// As [`start`](Self::start), serving clients over mutual TLS only
    /// (`--client-cert-auth`, the harness's CA and `store` certificate):
    /// its URL is `etcds://`.
    pub fn start_tls(dir: &Path) -> Etcd {
        Etcd::start_with(dir.to_path_buf(), None, true)
    }

    /// As [`start`](Self::start), in a temp dir of its own (for tests
    /// without a cluster).
    pub fn start_in_temp_dir() -> Etcd {
        let temp = tempfile::Builder::new()
            .prefix("brickfs-etcd-")
            .tempdir()
            .expect("creating etcd's temp dir");
        Etcd::start_with(temp.path().to_path_buf(), Some(temp), false)
    }

    fn start_with(dir: PathBuf, temp: Option<tempfile::TempDir>, tls: bool) -> Etcd {
        // All ports taken before any is freed, so they differ.
        let (c, p, m) = (
            TcpListener::bind("127.0.0.1:0").expect("port"),
            TcpListener::bind("127.0.0.1:0").expect("port"),
            TcpListener::bind("127.0.0.1:0").expect("port"),
        );
        let client_port = c.local_addr().expect("addr").port();
        let peer_port = p.local_addr().expect("addr").port();
        let metrics_port = m.local_addr().expect("addr").port();
        drop((c, p, m));
        std::fs::create_dir_all(&dir).expect("etcd dir");
        let mut etcd = Etcd {
            child: None,
            client_port,
            peer_port,
            tls_metrics_port: tls.then_some(metrics_port),
            log: dir.join("etcd.log"),
            dir,
            _temp: temp,
        };
        etcd.spawn();
        etcd
    }

    /// `etcd://127.0.0.1:PORT`, the store URL of this etcd.
    pub fn url(&self) -> String {
        let scheme = if self.tls_metrics_port.is_some() {
            "etcds"
        } else {
            "etcd"
        };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// SIGKILLs it (a crash, not a clean shutdown) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            proc::kill_and_reap(&mut child);
        }
    }

    /// Starts it again (after [`kill`](Self::kill)) on the same ports and
    /// data, and waits until it serves.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "etcd still runs: kill it first");
        self.spawn();
    }

    fn spawn(&mut self) {
        let scheme = if self.tls_metrics_port.is_some() {
            "https"
        } else {
            "http"
        };
        let client = format!("{scheme}://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(binary());
        if let Some(m) = self.tls_metrics_port {
            let creds = crate::tls::dir();
            cmd.arg("--cert-file")
                .arg(creds.join("store.pem"))
                .arg("--key-file")
                .arg(creds.join("store.key"))
                .arg("--trusted-ca-file")
                .arg(creds.join(tls::ca::BUNDLE))
                .arg("--client-cert-auth")
                .args(["--listen-metrics-urls", &format!("http://127.0.0.1:{m}")]);
        }
        cmd.arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdin(Stdio::null())
            .stdout(proc::open_log(&self.log))
            .stderr(proc::open_log(&self.log));
        self.child = Some(proc::spawn(cmd, libc::SIGKILL).expect("starting etcd"));
        let mut exited = None;
        let up = wait_until(START_TIMEOUT, || {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                exited = Some(status);
                return true;
            }
            self.healthy()
        });
        if let Some(status) = exited {
            self.child = None;
            panic!("etcd exited ({status}):\n{}", proc::log_tail(&self.log, 30));
        }
        assert!(
            up,
            "etcd did not serve within {START_TIMEOUT:?}:\n{}",
            proc::log_tail(&self.log, 30)
        );
    }

    /// Whether etcd answers its health check (it has a leader and serves).
    fn healthy(&self) -> bool {
        self.http("GET", "/health", "")
            .is_ok_and(|(status, body)| status == 200 && body.contains(r#""health":"true""#))
    }

    /// How many watches etcd serves now (its watcher gauge); `None` if it
    /// does not answer. For a test to know that a watch is in place.
    pub fn watchers(&self) -> Option<u64> {
        let (status, body) = self.http("GET", "/metrics", "").ok()?;
        if status != 200 {
            return None;
        }
        body.lines()
            .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .map(|n| n as u64)
    }

    /// `key`'s value, read past the store (by etcd's JSON gateway, on a
    /// connection of its own), to see what the store really wrote.
    pub fn raw_get(&self, key: &str) -> Option<Vec<u8>> {
        let answer = self.raw(
            "/v3/kv/range",
            serde_json::json!({ "key": b64(key.as_bytes()) }),
        );
        let value = answer["kvs"].get(0)?;
        Some(unb64(value["value"].as_str().unwrap_or("")))
    }

    /// Writes a key directly, bypassing the store (and its `/brickfs/`).
    pub fn raw_put(&self, key: &str, value: &[u8]) {
        let answer = self.raw(
            "/v3/kv/put",
            serde_json::json!({ "key": b64(key.as_bytes()), "value": b64(value) }),
        );
        assert!(answer["header"]["revision"].is_string(), "{answer}");
    }

    /// Compacts etcd's history up to `revision`.
    pub fn raw_compact(&self, revision: u64) {
        let answer = self.raw(
            "/v3/kv/compaction",
            serde_json::json!({ "revision": revision.to_string(), "physical": true }),
        );
        assert!(answer["header"]["revision"].is_string(), "{answer}");
    }

    fn raw(&self, path: &str, request: serde_json::Value) -> serde_json::Value {
        let (status, body) = self
            .http("POST", path, &request.to_string())
            .unwrap_or_else(|e| panic!("POST {path} to etcd: {e}"));
        assert_eq!(status, 200, "POST {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("POST {path}: {e}: {body}"))
    }

    /// One HTTP/1.1 request on a connection of its own: status and body.
    fn http(&self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        let port = self.tls_metrics_port.unwrap_or(self.client_port);
        let mut conn = TcpStream::connect(("127.0.0.1", port))?;
        conn.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        conn.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        conn.read_to_string(&mut answer)?;
        let bad = || std::io::Error::other(format!("not an HTTP answer: {answer:?}"));
        let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(bad)?;
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(bad)?;
        Ok((status, body.to_string()))
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("etcd sent bad base64 {text:?}: {e}"))
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
        self.kill();
    }
}
