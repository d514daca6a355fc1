//! The management API (`brickfs-api`) of a [`StoreVolume`]'s store, and
//! tenants made with `brickfs tenant create`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::http::{self, Answer, Target};
use crate::proc::{self, Listening};
use crate::volume::StoreVolume;

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct Api {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl StoreVolume<'_> {
    /// `brickfs-api --store URL --listen 127.0.0.1:0`, stopped on drop.
    pub fn start_api(&self) -> Api {
        self.try_start_api(&[])
            .unwrap_or_else(|why| panic!("brickfs-api did not start: {why}"))
    }

    /// As [`StoreVolume::start_api`] with more arguments; the exit status
    /// and the log's tail if it exits instead of serving.
    pub fn try_start_api(&self, extra: &[&std::ffi::OsStr]) -> Result<Api, String> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let log = self
            .cluster
            .root()
            .join("logs")
            .join(format!("api-{n}.log"));
        let mut cmd = crate::tls::command(&self.cluster.binaries().brickfs_api);
        cmd.args(["--store", &self.url, "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("BRICKFS_LOG_LEVEL", "info");
        match proc::spawn_listening(cmd, &log, Duration::from_secs(20)) {
            Listening::Up(child, addr) => Ok(Api {
                child: Some(child),
                addr,
                log,
            }),
            Listening::Exited(status) => Err(format!(
                "exited ({status:?}); log {}:\n{}",
                log.display(),
                proc::log_tail(&log, 30)
            )),
        }
    }

    /// `brickfs tenant create NAME --network N…`; returns its token.
    pub fn tenant(&self, name: &str, networks: &[&str], admin: bool) -> String {
        let mut args = vec!["tenant", "create", name];
        for n in networks {
            args.extend(["--network", n]);
        }
        if admin {
            args.push("--admin");
        }
        self.ok(&args).trim().to_string()
    }
}

impl Api {
    /// A request over TLS with the harness's admin certificate.
    pub fn call(&self, method: &str, path: &str, token: &str, body: Option<&Value>) -> Answer {
        http::request(&self.target(), method, path, Some(token), body)
    }

    /// This API as the harness's admin certificate reaches it.
    pub fn target(&self) -> Target {
        Target::as_role(self.addr, tls::Role::Admin)
    }

    /// `https://ADDR`, for processes given the harness's credentials.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- brickfs-api {}\n{}",
                self.log.display(),
                proc::log_tail(&self.log, 60)
            );
        }
        if let Some(mut c) = self.child.take() {
            proc::kill_and_reap(&mut c);
        }
    }
}
