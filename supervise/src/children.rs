//! Child daemons: the `LISTENING <addr>` handshake, signals, reaping, logs.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Opens a log for appending (children write their stderr there).
pub fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Takes the child's piped stdout: the address of its first
/// `LISTENING <addr>` line arrives on the returned channel, every other line
/// goes to `log`. The channel closes when the child closes its stdout.
pub fn watch_listening(child: &mut Child, log: File) -> io::Result<mpsc::Receiver<String>> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("the child's stdout is not piped"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || forward_stdout(stdout, log, tx));
    Ok(rx)
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

/// Sends `sig` to `child` unless it was already reaped. Returns whether the
/// signal was sent.
pub fn signal(child: &mut Child, sig: libc::c_int) -> bool {
    if !matches!(child.try_wait(), Ok(None)) {
        return false;
    }
    // SAFETY: plain syscall on our own unreaped child.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) == 0 }
}

/// Polls `child` until it exits or `timeout` passes.
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
        return "  (log is empty)\n".into();
    }
    tail.iter().map(|l| format!("  | {l}\n")).collect()
}
