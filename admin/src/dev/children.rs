//! Child processes of `brickfs dev`: finding the binaries, starting a daemon
//! and waiting for its `LISTENING <addr>` line, waiting for a FUSE mount,
//! signalling and reaping.
//!
//! Every signal goes to a pid we spawned and have not reaped yet
//! (`try_wait()` is `None`), so it can never hit a recycled pid.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{stop_requested, Error, IoContext, Result};

/// Finds `name` next to the running executable, else on PATH.
pub fn find_binary(name: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(Error::Msg(format!(
        "cannot find `{name}` next to brickfs or on PATH; build them with \
         `cargo build --release --workspace` and run target/release/brickfs"
    )))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Puts the child in its own process group (so the terminal's Ctrl-C reaches
/// only brickfs, which then stops the children in order) and asks the kernel
/// to SIGTERM it if brickfs dies without cleaning up.
/// `BIN [--log-level L] --store URL`: the flags every child of `brickfs
/// dev` starts with (the dev store names the volume and its bricks).
pub fn store_command(bin: &Path, log_level: Option<&str>, store_url: &str) -> Command {
    let mut cmd = Command::new(bin);
    if let Some(level) = log_level {
        cmd.arg("--log-level").arg(level);
    }
    cmd.arg("--store").arg(store_url);
    cmd.args(security_args());
    cmd
}

static SECURITY: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Sets, once, the TLS flags every child gets: `--tls-dir DIR` (each finds
/// its role's certificate there) or `--insecure`.
pub fn set_security(args: Vec<String>) {
    let _ = SECURITY.set(args);
}

pub fn security_args() -> Vec<String> {
    SECURITY.get().cloned().unwrap_or_default()
}

pub fn detach_from_terminal(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: prctl, getppid and raise are async-signal-safe; nothing is
    // allocated between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::raise(libc::SIGTERM);
            }
            Ok(())
        });
    }
}

pub fn open_log(path: &Path) -> Result<File> {
    supervise::children::open_log(path).ctx(|| format!("opening log {}", path.display()))
}

/// Spawns `cmd` with stderr appended to `log` and waits (until `timeout`) for
/// the line `LISTENING <addr>` on its stdout. The rest of stdout keeps going
/// to the log. On failure the child is killed and the error carries the log tail.
pub fn spawn_listening(
    cmd: &mut Command,
    log: &Path,
    timeout: Duration,
) -> Result<(Child, SocketAddr)> {
    let log_file = open_log(log)?;
    let stderr = log_file
        .try_clone()
        .ctx(|| format!("cloning {}", log.display()))?;
    detach_from_terminal(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut child = cmd
        .spawn()
        .ctx(|| format!("starting {:?}", cmd.get_program()))?;
    let rx = supervise::children::watch_listening(&mut child, log_file)
        .ctx(|| format!("reading the output of {:?}", cmd.get_program()))?;

    let deadline = Instant::now() + timeout;
    let failure = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => match line.parse::<SocketAddr>() {
                Ok(addr) => return Ok((child, addr)),
                Err(_) => break format!("printed an unparsable address {line:?}"),
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = wait_until_exit(&mut child, Duration::from_secs(2));
                break format!(
                    "exited before printing LISTENING ({})",
                    status.map_or("still running".into(), |s| s.to_string())
                );
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if stop_requested() {
                    break "was interrupted (signal) while starting".into();
                }
                if Instant::now() >= deadline {
                    break format!("did not print LISTENING within {}s", timeout.as_secs());
                }
            }
        }
    };
    kill_and_reap(&mut child);
    Err(Error::Msg(format!(
        "{:?} {failure}; last lines of {}:\n{}",
        cmd.get_program(),
        log.display(),
        log_tail(log, 20)
    )))
}

/// Lazy unmount: detaches `path` now, the kernel finishes when it is unused.
pub fn umount_detach(path: &Path) -> Result<()> {
    supervise::mounts::umount_detach(path)
        .ctx(|| format!("umount2({}, MNT_DETACH)", path.display()))
}

/// Waits until `path` is mounted, failing early if `child` (the mount
/// process) exits or a stop signal arrives.
pub fn wait_mounted(child: &mut Child, path: &Path, log: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if is_mounted(path) {
            return Ok(());
        }
        let failure = if let Ok(Some(status)) = child.try_wait() {
            format!("exited ({status}) before {} was mounted", path.display())
        } else if stop_requested() {
            "was interrupted (signal) while mounting".to_string()
        } else if Instant::now() >= deadline {
            format!(
                "did not mount {} within {}s",
                path.display(),
                timeout.as_secs()
            )
        } else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        return Err(Error::Msg(format!(
            "brickfs-mount {failure}; last lines of {}:\n{}",
            log.display(),
            log_tail(log, 20)
        )));
    }
}

pub use supervise::children::{kill_and_reap, log_tail, signal, terminate, wait_until_exit};
pub use supervise::mounts::is_mounted;

static METRICS: std::sync::Mutex<Vec<(String, std::net::SocketAddr)>> =
    std::sync::Mutex::new(Vec::new());

/// `--metrics-listen 127.0.0.1:PORT` for the child `name`, on a port free
/// now (bound and let go: the child binds it a moment later), noted for
/// the summary and cluster.json.
pub fn metrics_args(name: &str) -> Vec<String> {
    let Ok(port) = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) else {
        return Vec::new();
    };
    let mut all = METRICS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    all.retain(|(n, _)| n != name);
    all.push((name.to_string(), port));
    vec!["--metrics-listen".into(), port.to_string()]
}

/// Every child's metrics address, in the order they started.
pub fn metrics_addrs() -> Vec<(String, std::net::SocketAddr)> {
    METRICS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}
