//! Child processes of `brickfs dev`: finding the binaries, starting a daemon
//! and waiting for its `LISTENING <addr>` line, waiting for a FUSE mount,
//! signalling and reaping.
//!
//! Every signal goes to a pid we spawned and have not reaped yet
//! (`try_wait()` is `None`), so it can never hit a recycled pid.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{stop_requested, DevError, IoContext, Result};

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
    Err(DevError::Msg(format!(
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
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ctx(|| format!("opening log {}", path.display()))
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
    let stdout = child.stdout.take().expect("stdout is piped");

    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || forward_stdout(stdout, log_file, tx));

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
    Err(DevError::Msg(format!(
        "{:?} {failure}; last lines of {}:\n{}",
        cmd.get_program(),
        log.display(),
        log_tail(log, 20)
    )))
}

/// Sends the address from the first `LISTENING <addr>` line to `tx`; every
/// other line goes to the log. Runs until the child closes stdout.
fn forward_stdout(stdout: impl Read, mut log: File, tx: mpsc::Sender<String>) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    let mut found = false;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !found {
            let text = String::from_utf8_lossy(&line);
            if let Some(addr) = text.trim_end().strip_prefix("LISTENING ") {
                found = true;
                let _ = tx.send(addr.trim().to_string());
                continue;
            }
        }
        let _ = log.write_all(&line);
    }
}

/// True when `path` (absolute, canonical) is a mount point in this namespace.
/// Reads /proc/self/mountinfo instead of stat()ing the path, which could
/// block on a FUSE daemon that is not answering.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.as_os_str().as_bytes();
    info.split(|&b| b == b'\n').any(|line| {
        line.split(|&b| b == b' ')
            .nth(4)
            .is_some_and(|mp| unescape_mountinfo(mp) == want)
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() {
            let oct = &field[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// Lazy unmount: detaches `path` now, the kernel finishes when it is unused.
pub fn umount_detach(path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| DevError::Msg(format!("mount path {} contains NUL", path.display())))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(DevError::Io {
            context: format!("umount2({}, MNT_DETACH)", path.display()),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
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
        return Err(DevError::Msg(format!(
            "brickfs-mount {failure}; last lines of {}:\n{}",
            log.display(),
            log_tail(log, 20)
        )));
    }
}

/// Sends `sig` to `child` if it has not been reaped. Returns whether it was
/// still running.
pub fn signal(child: &mut Child, sig: libc::c_int) -> bool {
    if !matches!(child.try_wait(), Ok(None)) {
        return false;
    }
    // SAFETY: plain syscall; the pid is our unreaped child, so not recycled.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) == 0 }
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_until_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => return None,
            Err(_) => return None,
        }
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    signal(child, libc::SIGTERM);
    if let Some(status) = wait_until_exit(child, grace) {
        return Some(status);
    }
    kill_and_reap(child);
    None
}

pub fn kill_and_reap(child: &mut Child) {
    signal(child, libc::SIGKILL);
    let _ = child.wait();
}

/// The last `lines` lines of a log file (reads at most the last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("  (no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        return "  (log is empty)".into();
    }
    tail.iter().map(|l| format!("  | {l}\n")).collect()
}
