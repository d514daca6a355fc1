//! Self-heal in tests: the heal daemon (`brickfs heald`) as a child of the
//! test, the heal CLI (`brickfs volume heal`), and what the bricks say is
//! left to heal (their ping answer, straight from each brick).

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::cluster::{TestCluster, VOLUME};
use crate::proc;

/// A running `brickfs heald` for a test cluster; killed on drop.
pub struct Heald {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Heald {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            proc::kill_and_reap(&mut child);
        }
    }
}

impl Drop for Heald {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- heald {}\n{}",
                self.log.display(),
                proc::log_tail(&self.log, 60)
            );
        }
        self.stop();
    }
}

/// What one `brickfs volume heal` run printed.
#[derive(Debug)]
pub struct HealRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl TestCluster {
    /// Starts `brickfs heald` on this cluster's bricks (retrying what it
    /// cannot heal every `retry_secs`).
    pub fn start_heald(&self, retry_secs: u32) -> Heald {
        self.start_heald_with_args(retry_secs, &[])
    }

    /// As [`TestCluster::start_heald`], with more arguments.
    pub fn start_heald_with_args(&self, retry_secs: u32, extra: &[&str]) -> Heald {
        let bricks = self.bricks_arg();
        let mut args = vec!["--bricks", bricks.as_str(), "--op-timeout", "2"];
        args.extend(extra);
        self.spawn_heald("heald.log", &args, retry_secs)
    }

    /// Starts `brickfs heald --store URL --volume test`: the daemon that
    /// finds its volume (bricks, options) in the cluster store.
    pub fn start_heald_from_store(&self, url: &str, retry_secs: u32) -> Heald {
        self.spawn_heald("heald-store.log", &["--store", url], retry_secs)
    }

    /// `brickfs heald` for the test volume, told where its bricks are by
    /// `source`, logging to `logs/<log>`.
    fn spawn_heald(&self, log: &str, source: &[&str], retry_secs: u32) -> Heald {
        let log = self.root().join("logs").join(log);
        let mut cmd = crate::tls::command(&self.binaries().brickfs);
        cmd.args(["--log-level", "info", "heald"])
            .args(source)
            .args(["--volume", VOLUME, "--retry"])
            .arg(retry_secs.to_string())
            .stdin(Stdio::null())
            .stdout(proc::open_log(&log))
            .stderr(proc::open_log(&log));
        let child = proc::spawn(cmd, libc::SIGKILL).expect("starting brickfs heald");
        Heald {
            child: Some(child),
            log,
        }
    }

    /// Runs `brickfs volume heal test --bricks ... ARGS` to completion.
    pub fn heal_cli(&self, args: &[&str]) -> HealRun {
        let out = crate::tls::command(&self.binaries().brickfs)
            .args(["volume", "heal", VOLUME, "--bricks"])
            .arg(self.bricks_arg())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running brickfs volume heal");
        HealRun {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Objects the running bricks say may need heal (heal index plus dirty
    /// marks nobody will confirm), summed; `None` if a brick did not answer.
    pub fn heal_pending(&self) -> Option<u64> {
        let addrs: Vec<_> = (0..self.brick_count())
            .filter(|i| self.brick_running(*i))
            .map(|i| self.brick_addr(i))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let mut total = 0;
            for addr in addrs {
                let client = crate::raw::connect(addr).await.ok()?;
                let pong = client
                    .ping(crate::raw::context(Duration::from_secs(5)))
                    .await
                    .ok()?;
                total += pong.heal_entries;
            }
            Some(total)
        })
    }

    /// Waits until nothing is left to heal on any running brick.
    pub fn wait_healed(&self, timeout: Duration) -> bool {
        crate::wait_until(timeout, || self.heal_pending() == Some(0))
    }
}
