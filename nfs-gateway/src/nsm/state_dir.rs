//! What the gateway keeps on local disk for the lock manager (`--state-dir`,
//! default `/var/lib/brickfs/nfs/<volume>`), as a host's statd keeps
//! `/var/lib/nfs/sm`:
//!
//! ```text
//! DIR/.lock            flock held while a gateway uses the directory
//! DIR/state            our NSM state number (odd: up), +2 at every start
//! DIR/hosts/<hash>     one client host that took a lock: its address,
//!                      its caller_name, and our address as it knows us
//! ```
//!
//! Local disk rather than the cluster store: the hosts to notify are this
//! gateway's clients (another gateway of the volume has others), the
//! notification must name the address they reached this gateway by, and a
//! gateway started with `--bricks` has no store at all.
//!
//! A host is written (and fsynced) before its first lock is granted, so a
//! crash right after a grant still finds it; it is removed once it has held
//! nothing for a while, or when it was freed.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use crate::nlm::hosts::HostKey;
use crate::GatewayError;

const MAGIC: &str = "brickfs-nlm-host 1";
/// A host file is a few short lines; anything longer is not ours.
const MAX_FILE: u64 = 8 * 1024;

/// One host to tell of our restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: HostKey,
    pub server: IpAddr,
}

pub struct StateDir {
    dir: PathBuf,
    /// The flock lives as long as this descriptor.
    _lock: File,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> GatewayError {
    move |source| GatewayError::Io { context, source }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The file name of a host: a hash, since names are arbitrary bytes.
fn file_name(key: &HostKey) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"brickfs nlm host\0");
    h.update(key.addr.to_string().as_bytes());
    h.update(b"\0");
    h.update(&key.name);
    hex(&h.finalize().as_bytes()[..16])
}

fn encode(r: &Record) -> String {
    format!(
        "{MAGIC}\naddr {}\nserver {}\nname {}\n",
        r.key.addr,
        r.server,
        hex(&r.key.name)
    )
}

fn decode(text: &str) -> Option<Record> {
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let mut field = |name: &str| {
        lines
            .next()
            .and_then(|l| l.strip_prefix(name))
            .and_then(|v| v.strip_prefix(' '))
            .map(str::to_string)
    };
    let addr: IpAddr = field("addr")?.parse().ok()?;
    let server: IpAddr = field("server")?.parse().ok()?;
    let name = unhex(&field("name")?)?;
    (name.len() <= crate::nlm::xdr::MAX_STR).then(|| Record {
        key: HostKey::new(addr, &name),
        server,
    })
}

/// Writes `path` whole or not at all: a temporary file, fsync, rename,
/// fsync of the directory.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

impl StateDir {
    /// Creates the directory if needed and takes its lock: two gateways
    /// sharing one would notify each other's clients and lose each other's
    /// hosts.
    pub fn open(dir: &Path) -> Result<StateDir, GatewayError> {
        let hosts = dir.join("hosts");
        fs::create_dir_all(&hosts).map_err(io(format!(
            "cannot create the state directory {} (give another with --state-dir)",
            hosts.display()
        )))?;
        let lock_path = dir.join(".lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io(format!("cannot open {}", lock_path.display())))?;
        flock(&lock, FlockOperation::NonBlockingLockExclusive).map_err(|e| GatewayError::Io {
            context: format!(
                "the state directory {} is in use by another brickfs-nfs",
                dir.display()
            ),
            source: e.into(),
        })?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Our NSM state number for this run, one step past the last run's
    /// (odd means up; a client's statd acts on a number it has not seen).
    pub fn next_state(&self) -> Result<i32, GatewayError> {
        let path = self.dir.join("state");
        let last = match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<i32>().unwrap_or(-1),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => -1,
            Err(e) => return Err(io(format!("cannot read {}", path.display()))(e)),
        };
        let next = match last {
            // Wraps to 1 rather than going negative.
            l if !(1..=i32::MAX - 2).contains(&l) => 1,
            l if l % 2 == 1 => l + 2,
            l => l + 1,
        };
        write_atomic(&path, format!("{next}\n").as_bytes())
            .map_err(io(format!("cannot write {}", path.display())))?;
        Ok(next)
    }

    /// The hosts recorded by earlier runs, at most `max`; files that are
    /// not ours are skipped with a warning.
    pub fn load(&self, max: usize) -> Result<Vec<Record>, GatewayError> {
        let dir = self.dir.join("hosts");
        let entries = fs::read_dir(&dir).map_err(io(format!("cannot list {}", dir.display())))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                let _ = fs::remove_file(&path);
                continue;
            }
            if out.len() >= max {
                tracing::warn!(
                    max,
                    "more recorded NLM hosts than the table holds; ignoring the rest"
                );
                break;
            }
            let text = match fs::metadata(&path) {
                Ok(m) if m.len() <= MAX_FILE => fs::read_to_string(&path).ok(),
                _ => None,
            };
            match text.as_deref().and_then(decode) {
                Some(r) => out.push(r),
                None => tracing::warn!(path = %path.display(), "not an NLM host record; ignored"),
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub fn record(&self, r: &Record) -> Result<(), GatewayError> {
        let path = self.dir.join("hosts").join(file_name(&r.key));
        write_atomic(&path, encode(r).as_bytes())
            .map_err(io(format!("cannot write {}", path.display())))
    }

    pub fn forget(&self, key: &HostKey) -> Result<(), GatewayError> {
        let path = self.dir.join("hosts").join(file_name(key));
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("cannot remove {}", path.display()))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &[u8]) -> Record {
        Record {
            key: HostKey::new("10.1.2.3".parse().expect("ip"), name),
            server: "10.1.2.254".parse().expect("ip"),
        }
    }

    #[test]
    fn records_survive_and_state_moves_on() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("nfs");
        {
            let s = StateDir::open(&dir).expect("open");
            assert_eq!(s.next_state().expect("state"), 1);
            assert_eq!(s.next_state().expect("state"), 3);
            s.record(&record(b"client1")).expect("record");
            s.record(&record(b"odd \n name\0")).expect("record");
            s.record(&record(b"gone")).expect("record");
            s.forget(&record(b"gone").key).expect("forget");
            s.forget(&record(b"never").key).expect("forget absent");
            assert!(
                StateDir::open(&dir).is_err(),
                "a second gateway cannot share it"
            );
        }
        std::fs::write(dir.join("hosts").join("junk"), "hello").expect("junk");
        let s = StateDir::open(&dir).expect("reopen");
        assert_eq!(s.next_state().expect("state"), 5);
        let loaded = s.load(10).expect("load");
        let mut want = vec![record(b"client1"), record(b"odd \n name\0")];
        want.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(loaded, want);
        assert_eq!(s.load(1).expect("load").len(), 1);
    }

    #[test]
    fn state_numbers() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = StateDir::open(tmp.path()).expect("open");
        for (last, next) in [("4", 5), ("garbage", 1), ("2147483647", 1), ("-7", 1)] {
            std::fs::write(tmp.path().join("state"), last).expect("write");
            assert_eq!(s.next_state().expect("state"), next, "after {last}");
        }
    }

    #[test]
    fn decoding_is_strict() {
        assert_eq!(decode(&encode(&record(b"x"))), Some(record(b"x")));
        assert_eq!(decode("brickfs-nlm-host 1\naddr nonsense\n"), None);
        assert_eq!(decode(""), None);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
