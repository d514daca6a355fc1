//! The NFS gateway (`brickfs-nfs`) in tests: a [`Gateway`] child of the
//! test on a loopback port in front of a [`TestCluster`]'s bricks, the
//! libnfs command-line tools (`nfs-cp`, `nfs-ls`, `nfs-cat` from Debian's
//! `libnfs-utils`; `scripts/test.sh` installs it) run with a timeout, and
//! [`rpc`], a hand-written ONC RPC client for protocol-level tests, and
//! [`nlm`], the lock manager's protocols by hand (a client host's calls and
//! its side of the callbacks).
//!
//! libnfs URLs (libnfs 4.0 `nfs_parse_url`): `nfs://server/path?k=v&k=v`
//! with `version=3`, `nfsport=P` and `mountport=P`, so the tools go
//! straight to the gateway's one port instead of asking a portmapper on
//! 111. `nfs-ls` mounts the whole path; `nfs-cp` and `nfs-cat` mount the
//! path up to the last `/` and open the rest as the file name.

pub mod nlm;
pub mod rpc;

use std::ffi::OsStr;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::cluster::{wait_until, TestCluster, OP_TIMEOUT_SECS, VOLUME};
use crate::proc::{self, Listening};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const LOOPBACK: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    0,
));
const RESTART_BIND_RETRY: Duration = Duration::from_secs(10);
/// How long one libnfs tool may run. libnfs reconnects forever by default,
/// so a gateway that drops connections would otherwise hang the test.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `brickfs-nfs` for a test cluster. Killed and reaped on drop;
/// its log tail goes to stderr when the test panicked.
pub struct Gateway {
    bin: PathBuf,
    /// Everything but `--listen`.
    args: Vec<String>,
    log: PathBuf,
    addr: SocketAddr,
    child: Mutex<Option<Child>>,
}

impl TestCluster {
    /// Starts `brickfs-nfs --bricks <bricks> --volume test --listen
    /// 127.0.0.1:0 --op-timeout 2 <extra>` (log `logs/nfs-N.log`, lock
    /// manager state in `nfs-state-N`, `--no-portmap` unless `extra` asks
    /// for portmap), waits for its `LISTENING` line and until it serves the
    /// volume root.
    pub fn start_gateway(&self, extra: &[&str]) -> Gateway {
        self.start_gateway_on(LOOPBACK, extra)
    }

    /// [`start_gateway`](Self::start_gateway) listening on `listen`
    /// instead of 127.0.0.1:0 (an address of a test network namespace).
    pub fn start_gateway_on(&self, listen: SocketAddr, extra: &[&str]) -> Gateway {
        let mut args = vec![
            "--bricks".to_string(),
            self.bricks_arg(),
            "--volume".into(),
            VOLUME.into(),
            "--op-timeout".into(),
            OP_TIMEOUT_SECS.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.gateway_with(args, listen)
    }

    /// A gateway serving the volume as the cluster store at `url` describes
    /// it (`brickfs-nfs --store URL --volume test`).
    pub fn start_gateway_from_store(&self, url: &str) -> Gateway {
        self.start_gateway_from_store_on(url, LOOPBACK, &[])
    }

    /// [`start_gateway_from_store`](Self::start_gateway_from_store) on
    /// `listen`, with `extra` arguments.
    pub fn start_gateway_from_store_on(
        &self,
        url: &str,
        listen: SocketAddr,
        extra: &[&str],
    ) -> Gateway {
        let mut args: Vec<String> = ["--store", url, "--volume", VOLUME]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        self.gateway_with(args, listen)
    }

    fn gateway_with(&self, mut args: Vec<String>, listen: SocketAddr) -> Gateway {
        let n = self.next_gateway.fetch_add(1, Ordering::SeqCst);
        let log = self.root().join("logs").join(format!("nfs-{n}.log"));
        // Each gateway its own lock-manager state (kept across restart()),
        // and no portmap on port 111 unless the test asks: tests run side
        // by side on one host.
        let state = self.root().join(format!("nfs-state-{n}"));
        let mut own = vec!["--state-dir".to_string(), state.display().to_string()];
        if !args
            .iter()
            .any(|a| a == "--portmap-listen" || a.starts_with("--rpcbind-register"))
        {
            own.push("--no-portmap".into());
        }
        own.append(&mut args);
        let args = own;
        let bin = self.binaries().brickfs_nfs.clone();
        let (child, addr) = spawn_gateway(&bin, &args, listen, &log, Duration::ZERO);
        let gw = Gateway {
            bin,
            args,
            log,
            addr,
            child: Mutex::new(Some(child)),
        };
        gw.wait_serving();
        gw
    }
}

fn spawn_gateway(
    bin: &Path,
    args: &[String],
    listen: SocketAddr,
    log: &Path,
    bind_retry: Duration,
) -> (Child, SocketAddr) {
    let deadline = Instant::now() + bind_retry;
    loop {
        let mut cmd = crate::tls::command(bin);
        cmd.args(args).arg("--listen").arg(listen.to_string());
        match proc::spawn_listening(cmd, log, START_TIMEOUT) {
            Listening::Up(child, addr) => return (child, addr),
            Listening::Exited(status) => {
                // Typically EADDRINUSE right after a kill: retry for a while.
                if Instant::now() >= deadline {
                    panic!(
                        "brickfs-nfs --listen {listen} exited ({status:?}) before LISTENING; log {}:\n{}",
                        log.display(),
                        proc::log_tail(log, 30)
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Gateway {
    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where it listens (127.0.0.1:PORT); the same after [`restart`](Self::restart).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Its `--state-dir` (lock-manager state, the handle key without a
    /// store).
    pub fn state_dir(&self) -> PathBuf {
        let at = self
            .args
            .iter()
            .position(|a| a == "--state-dir")
            .expect("the harness always gives --state-dir");
        PathBuf::from(&self.args[at + 1])
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> Option<u32> {
        self.lock_child().as_ref().map(Child::id)
    }

    /// Whether the process is alive (not killed, not exited).
    pub fn is_running(&self) -> bool {
        matches!(
            self.lock_child().as_mut().map(Child::try_wait),
            Some(Ok(None))
        )
    }

    /// The libnfs URL of `path` (`test/dir/file`, a leading `/` is
    /// optional): `nfs://127.0.0.1/<path>?version=3&nfsport=P&mountport=P`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "nfs://127.0.0.1/{}?version=3&nfsport={p}&mountport={p}",
            path.trim_start_matches('/'),
            p = self.port()
        )
    }

    /// SIGKILLs the gateway and reaps it.
    pub fn kill(&self) {
        if let Some(mut child) = self.lock_child().take() {
            proc::kill_and_reap(&mut child);
        }
    }

    /// SIGTERMs the gateway (a clean stop) and waits up to `within` for it
    /// to exit: its exit status, or None if it did not (then it is killed)
    /// or was not running.
    pub fn terminate(&self, within: Duration) -> Option<ExitStatus> {
        let mut child = self.lock_child().take()?;
        supervise::children::terminate(&mut child, within)
    }

    /// Kills the gateway and starts it again with the same arguments on the
    /// same port (retrying the bind for a few seconds), then waits until it
    /// serves the volume root.
    pub fn restart(&self) {
        self.kill();
        let (child, addr) = spawn_gateway(
            &self.bin,
            &self.args,
            self.addr,
            &self.log,
            RESTART_BIND_RETRY,
        );
        assert_eq!(
            addr, self.addr,
            "restarted gateway listens on another address"
        );
        *self.lock_child() = Some(child);
        self.wait_serving();
    }

    /// Waits until MOUNT of `/test` and GETATTR of its root answer OK (the
    /// gateway has reached the bricks), or MOUNT is refused (an export rule
    /// the test asked for). Panics with the log tail otherwise.
    fn wait_serving(&self) {
        let mut last = String::new();
        let ok = wait_until(START_TIMEOUT, || {
            let attempt = (|| -> std::io::Result<Result<(), String>> {
                let mut c = rpc::Nfs3Client::connect(self.addr)?;
                let root = match c.mnt(&format!("/{VOLUME}"))? {
                    Ok(fh) => fh,
                    Err(stat) => {
                        eprintln!(
                            "brickfs-nfs: MNT /{VOLUME} refused ({stat}); not checking GETATTR"
                        );
                        return Ok(Ok(()));
                    }
                };
                Ok(c.getattr(&root)?
                    .map(drop)
                    .map_err(|s| format!("GETATTR root: nfsstat3 {s}")))
            })();
            match attempt {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    last = e;
                    false
                }
                Err(e) => {
                    last = e.to_string();
                    !self.is_running()
                }
            }
        });
        if !ok || !self.is_running() {
            panic!(
                "brickfs-nfs on {} does not serve /{VOLUME} within {START_TIMEOUT:?} \
                 (running: {}, last: {last}); log {}:\n{}",
                self.addr,
                self.is_running(),
                self.log.display(),
                proc::log_tail(&self.log, 30)
            );
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- nfs gateway {} {}\n{}",
                self.addr,
                self.log.display(),
                proc::log_tail(&self.log, 60)
            );
        }
        self.kill();
    }
}

/// What one run of a command-line tool did.
pub struct ToolRun {
    pub cmdline: String,
    /// `None`: killed after the timeout.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl ToolRun {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics (with everything it printed) unless it exited 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &ToolRun {
        assert!(self.success(), "{self:?}");
        self
    }

    /// Panics unless it exited non-zero (not killed by the timeout).
    #[track_caller]
    pub fn assert_failed(&self) -> &ToolRun {
        assert!(
            self.status.is_some_and(|s| !s.success()),
            "expected a failure exit: {self:?}"
        );
        self
    }
}

impl std::fmt::Debug for ToolRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let out = self.stdout_text();
        let shown: String = out.chars().take(2000).collect();
        write!(
            f,
            "`{}` → {}\n  stdout: {}{}\n  stderr: {}",
            self.cmdline,
            match self.status {
                Some(s) => s.to_string(),
                None => format!("killed after {TOOL_TIMEOUT:?}"),
            },
            shown,
            if shown.len() < out.len() { " …" } else { "" },
            self.stderr.trim_end()
        )
    }
}

/// MNT of the test volume's root (`/test`) over `c`: the root's handle.
pub fn mount_root(c: &mut rpc::Nfs3Client) -> Vec<u8> {
    c.mnt("/test")
        .expect("MNT call")
        .unwrap_or_else(|s| panic!("MNT /test refused: mountstat3 {s}"))
}

/// Panics with an install hint unless the libnfs tools are on PATH.
pub fn require_libnfs_tools() {
    for tool in ["nfs-cp", "nfs-ls", "nfs-cat"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        assert!(
            found,
            "{tool} not found: install libnfs-utils (apt-get install libnfs-utils; scripts/test.sh does)"
        );
    }
}

/// Runs `program args…` (stdin null) to completion or `timeout` (then it is
/// killed); captures stdout and stderr.
pub fn run_tool<S: AsRef<OsStr>>(program: &str, args: &[S], timeout: Duration) -> ToolRun {
    let cmdline = std::iter::once(program.to_string())
        .chain(
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        )
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child =
        proc::spawn(cmd, libc::SIGKILL).unwrap_or_else(|e| panic!("starting {cmdline}: {e}"));
    let mut out_pipe = child.stdout.take().expect("stdout piped");
    let mut err_pipe = child.stderr.take().expect("stderr piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let status = proc::wait_until_exit(&mut child, timeout);
    if status.is_none() {
        proc::kill_and_reap(&mut child);
    }
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    ToolRun {
        cmdline,
        status,
        stdout,
        stderr,
    }
}

/// `nfs-cp SRC DST`; either side may be a local path or an `nfs://` URL.
pub fn nfs_cp(src: impl AsRef<OsStr>, dst: impl AsRef<OsStr>) -> ToolRun {
    run_tool("nfs-cp", &[src.as_ref(), dst.as_ref()], TOOL_TIMEOUT)
}

/// `nfs-ls URL` (a directory: the whole path is mounted).
pub fn nfs_ls(url: &str) -> ToolRun {
    run_tool("nfs-ls", &[url], TOOL_TIMEOUT)
}

/// `nfs-cat URL` (a file): its content on stdout.
pub fn nfs_cat(url: &str) -> ToolRun {
    run_tool("nfs-cat", &[url], TOOL_TIMEOUT)
}

/// The names `nfs-ls` printed (its last column), without `.` and `..`.
pub fn ls_names(run: &ToolRun) -> Vec<String> {
    run.stdout_text()
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|n| n.trim_start_matches('/').to_string())
        .filter(|n| n != "." && n != "..")
        .collect()
}
