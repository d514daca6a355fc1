//! Process plumbing shared by the harness: spawning children that die with
//! the test process, waiting for `LISTENING <addr>`, mount detection, log tails.
//!
//! Signals only ever go to our own children, by pid, while they are unreaped.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Signal a child gets when the test process dies: bricks SIGKILL, mounts
/// SIGTERM (so they unmount instead of leaving a dead FUSE mount).
pub type DeathSignal = libc::c_int;

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from one long-lived thread. PR_SET_PDEATHSIG fires when the
/// *thread* that forked the child exits, so children are forked from a
/// thread that lives as long as the test process: they then die with the
/// process even if it is SIGKILLed, but not when a test's helper thread ends.
pub fn spawn(mut cmd: Command, on_parent_death: DeathSignal) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("brickfs-test-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the spawner thread");
        tx
    });
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl, getppid and raise are async-signal-safe; nothing is
    // allocated between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, on_parent_death) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::raise(on_parent_death);
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.send((cmd, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

pub fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening log {}: {e}", path.display()))
}

/// Outcome of waiting for `LISTENING <addr>`.
pub enum Listening {
    Up(Child, SocketAddr),
    /// The child exited first (e.g. the port was still taken).
    Exited(Option<ExitStatus>),
}

/// Spawns `cmd` (stdout piped, stderr appended to `log`) and waits for its
/// `LISTENING <addr>` line. The rest of stdout keeps going to the log.
/// Panics (after killing the child) when nothing comes within `timeout`.
pub fn spawn_listening(mut cmd: Command, log: &Path, timeout: Duration) -> Listening {
    let log_file = open_log(log);
    let stderr = log_file.try_clone().expect("cloning log fd");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let program = format!("{:?}", cmd.get_program());
    let mut child = spawn(cmd, libc::SIGKILL).unwrap_or_else(|e| panic!("starting {program}: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || forward_stdout(stdout, log_file, tx));
    match rx.recv_timeout(timeout) {
        Ok(line) => match line.parse() {
            Ok(addr) => Listening::Up(child, addr),
            Err(_) => {
                kill_and_reap(&mut child);
                panic!("{program} printed LISTENING with a bad address {line:?}");
            }
        },
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Listening::Exited(wait_until_exit(&mut child, Duration::from_secs(5)))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            kill_and_reap(&mut child);
            panic!(
                "{program} did not print LISTENING within {:?}; log {}:\n{}",
                timeout,
                log.display(),
                log_tail(log, 30)
            );
        }
    }
}

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

/// True when `path` is a mount point (per /proc/self/mountinfo; never stats
/// the path, which could block on a hung FUSE daemon).
pub fn is_mounted(path: &Path) -> bool {
    mount_points()
        .iter()
        .any(|mp| mp.as_slice() == path.as_os_str().as_bytes())
}

/// True when anything is mounted at or below `dir`.
pub fn has_mounts_under(dir: &Path) -> bool {
    let dir = dir.as_os_str().as_bytes();
    mount_points()
        .iter()
        .any(|mp| mp.starts_with(dir) && (mp.len() == dir.len() || mp[dir.len()] == b'/'))
}

fn mount_points() -> Vec<Vec<u8>> {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4).map(unescape_mountinfo))
        .collect()
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

/// Lazy unmount (MNT_DETACH). Errors are returned, not fatal: this is a fallback.
pub fn umount_detach(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `sig` to `child` unless it was already reaped (so never to a
/// recycled pid). Returns whether the signal was sent.
pub fn signal(child: &mut Child, sig: libc::c_int) -> bool {
    if !matches!(child.try_wait(), Ok(None)) {
        return false;
    }
    // SAFETY: plain syscall on our own unreaped child.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) == 0 }
}

pub fn wait_until_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

pub fn kill_and_reap(child: &mut Child) {
    // A stopped process dies of SIGKILL too; no SIGCONT needed.
    signal(child, libc::SIGKILL);
    let _ = child.wait();
}

/// The last `lines` lines of a log (reads at most its last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("  (no log at {})\n", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        return "  (empty)\n".into();
    }
    tail.iter().map(|l| format!("  | {l}\n")).collect()
}
