//! A real etcd for the tests: the `etcd` binary (Debian: etcd-server;
//! scripts/test.sh installs it, BRICKFS_ETCD may name another), on
//! 127.0.0.1 with free ports and its own data directory, killed when the
//! guard is dropped, even when the test panics.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
}

/// A port nobody listens on now (the kernel's choice; closed again).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("BRICKFS_ETCD") {
        return p.into();
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("no etcd binary: install Debian's etcd-server (scripts/test.sh does) or set BRICKFS_ETCD")
    })
}

impl Etcd {
    pub async fn start() -> Etcd {
        // Both ports taken before either is freed, so they differ.
        let (c, p) = (
            TcpListener::bind("127.0.0.1:0").unwrap(),
            TcpListener::bind("127.0.0.1:0").unwrap(),
        );
        let (client_port, peer_port) = (
            c.local_addr().unwrap().port(),
            p.local_addr().unwrap().port(),
        );
        drop((c, p));
        let mut etcd = Etcd {
            child: None,
            client_port,
            peer_port,
            dir: tempfile::tempdir().unwrap(),
        };
        etcd.spawn().await;
        etcd
    }

    pub fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.client_port)
    }

    /// Starts (again) on the same ports and data, and waits until it serves.
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none());
        let log_path = self.dir.path().join("etcd.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(binary())
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("etcd exited ({status}):\n{}", self.log_tail());
            }
            // Cheap check first: `open` waits its whole timeout on a port
            // that is not listening yet.
            if std::net::TcpStream::connect(("127.0.0.1", self.client_port)).is_ok()
                && store::open(&self.url()).await.is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not answer within 30 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills it (SIGKILL by pid: a crash, not a clean shutdown).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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
        use std::io::{Read, Write};
        let body = request.to_string();
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.client_port)).unwrap();
        write!(
            conn,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        let (_, body) = answer.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(body).unwrap()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
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
        .unwrap()
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
