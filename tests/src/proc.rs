//! Process plumbing shared by the harness: spawning children that die with
//! the test process, waiting for `LISTENING <addr>`, mount detection, log tails.
//!
//! Signals only ever go to our own children, by pid, while they are unreaped.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

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
    supervise::children::open_log(path)
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
    let rx = supervise::children::watch_listening(&mut child, log_file)
        .unwrap_or_else(|e| panic!("reading the output of {program}: {e}"));
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

/// Whether process `pid` runs, for processes the test did not spawn itself
/// (a daemon a command started): a zombie that nobody reaps has ended.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which may hold ") ".
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A loopback port nobody listens on at the moment (the kernel's pick,
/// closed again): for an address that must refuse connections.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    l.local_addr().expect("local address").port()
}

/// Whether the log at `path` holds `what` (false while it does not exist).
pub fn log_has(path: &Path, what: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|l| l.contains(what))
}

/// Lines of the log at `path` that hold every one of `parts`.
pub fn log_lines(path: &Path, parts: &[&str]) -> usize {
    std::fs::read_to_string(path).map_or(0, |l| {
        l.lines()
            .filter(|line| parts.iter().all(|p| line.contains(p)))
            .count()
    })
}

pub use supervise::children::{kill_and_reap, log_tail, signal, wait_until_exit};
pub use supervise::mounts::{has_mounts_under, is_mounted, umount_detach};
