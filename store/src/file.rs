//! The `file` backend: a directory on one host (`file:///var/lib/brickfs`
//! or just `/var/lib/brickfs`).
//!
//! Layout of `DIR` (created 0700 on the first write, not by `open`):
//!
//! - `lock`: every write holds an exclusive `flock` on it, so writers in
//!   different processes (two CLI runs) are serialised and a compare-and-swap
//!   reads and writes the key with nobody in between.
//! - `revision`: the store-wide revision counter (decimal), bumped under the
//!   lock by every put. Like etcd's, revisions only grow: a key deleted and
//!   created again never gets an old revision back, so a stale
//!   compare-and-swap cannot succeed by accident.
//! - `kv/<key>,v`: one file per key (`volumes/gv0` is `kv/volumes/gv0,v`),
//!   holding a header line `rev N\n` and then the value's bytes. The `,v`
//!   suffix (as RCS files) cannot occur in a key name, so the key `a` (file
//!   `kv/a,v`) and the key `a/b` (directory `kv/a`) coexist as they do in
//!   etcd, and temporary files (`…,v,tmp`) are never mistaken for keys.
//!
//! Every file is replaced atomically (temp file in the same directory, fsync,
//! rename, fsync of the directory), so readers take no lock: they see the
//! old file or the new one, never a mix.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};

use proto::backoff::Backoff;

use crate::key::{check_key, check_prefix};
use crate::{Entry, Revision, Store, StoreError};

/// How long a writer waits for another process's write before giving up.
/// Writes take milliseconds; a lock held this long means a hung process.
const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Marks a key's file, see the module doc.
const KEY_SUFFIX: &str = ",v";

#[derive(Clone)]
pub struct FileStore {
    url: String,
    dir: PathBuf,
}

impl FileStore {
    /// `file:///abs/dir` or `/abs/dir`, with the grammar of the `brickfs`
    /// CLI's store URLs (volgen's `file_url` writes them): percent-escapes
    /// in a `file:` URL are decoded, `file://localhost/abs` and `file:/abs`
    /// are accepted, the scheme's case is not significant. Relative paths
    /// are refused: the same URL must mean the same store whatever directory
    /// a command runs in.
    pub fn open(url: &str) -> Result<FileStore, StoreError> {
        let dir = dir_of_url(url).ok_or_else(|| StoreError::BadUrl(url.to_string()))?;
        Ok(FileStore {
            url: url.to_string(),
            dir,
        })
    }

    fn kv_dir(&self) -> PathBuf {
        self.dir.join("kv")
    }

    fn key_path(&self, key: &str) -> PathBuf {
        // `key` is checked: its `/`-separated names join to a path below kv/.
        self.kv_dir().join(format!("{key}{KEY_SUFFIX}"))
    }

    fn get_blocking(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        check_key(key)?;
        read_entry(&self.key_path(key), key)
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        check_prefix(prefix)?;
        // Start at the deepest directory the prefix names whole (`volumes/g`
        // → kv/volumes) instead of walking the whole store.
        let (dir_key, start) = match prefix.rfind('/') {
            Some(i) => (&prefix[..=i], self.kv_dir().join(&prefix[..i])),
            None => ("", self.kv_dir()),
        };
        let mut out = Vec::new();
        walk(&start, dir_key, prefix, &mut out)?;
        // Sorted as strings (bytes), as etcd does: a tree walk would put
        // `a/b` before `a.b`, bytewise `.` < `/`.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn put_blocking(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Revision>,
    ) -> Result<Revision, StoreError> {
        check_key(key)?;
        make_dirs(&self.dir)?;
        let _lock = lock(&self.dir)?;
        let path = self.key_path(key);
        let found = read_entry(&path, key)?.map(|e| e.revision);
        if found != expected {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected,
                found,
            });
        }
        let revision = self.bump_revision(found.unwrap_or(0))?;
        if let Some(parent) = path.parent() {
            make_dirs(parent)?;
        }
        let mut bytes = format!("rev {revision}\n").into_bytes();
        bytes.extend_from_slice(value);
        write_atomic(&path, &bytes)?;
        tracing::debug!(store = %self.url, key, revision, "put");
        Ok(revision)
    }

    fn delete_blocking(&self, key: &str, expected: Revision) -> Result<(), StoreError> {
        check_key(key)?;
        let conflict = |found| StoreError::Conflict {
            key: key.to_string(),
            expected: Some(expected),
            found,
        };
        if !self.dir.is_dir() {
            // Never written to: nothing to delete, and no reason to create it.
            return Err(conflict(None));
        }
        let _lock = lock(&self.dir)?;
        let path = self.key_path(key);
        let found = read_entry(&path, key)?.map(|e| e.revision);
        if found != Some(expected) {
            return Err(conflict(found));
        }
        fs::remove_file(&path).map_err(|e| io_err(format!("removing {}", path.display()), e))?;
        let kv = self.kv_dir();
        let mut dir = path.parent();
        if let Some(d) = dir {
            fsync_dir(d)?;
        }
        // Drop directories the delete left empty, so the tree (and the walk
        // of `list`) does not keep every key that ever existed. Under the
        // lock: no put is creating a key in them meanwhile.
        while let Some(d) = dir.filter(|d| *d != kv.as_path()) {
            if fs::remove_dir(d).is_err() {
                break; // not empty (or already gone): the rest is needed
            }
            dir = d.parent();
        }
        tracing::debug!(store = %self.url, key, revision = expected, "delete");
        Ok(())
    }

    /// Next store revision; called under the lock. Also above the key's
    /// current revision, so even a lost or reset counter file cannot hand
    /// out a revision that a stale compare-and-swap would match.
    fn bump_revision(&self, current: Revision) -> Result<Revision, StoreError> {
        let path = self.dir.join("revision");
        let last = match fs::read_to_string(&path) {
            Ok(s) => s
                .trim()
                .parse::<Revision>()
                .map_err(|e| StoreError::Corrupt {
                    key: path.display().to_string(),
                    why: format!("not a revision number: {e}"),
                })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_err(format!("reading {}", path.display()), e)),
        };
        let next = last.max(current) + 1;
        write_atomic(&path, format!("{next}\n").as_bytes())?;
        Ok(next)
    }
}

#[async_trait::async_trait]
impl Store for FileStore {
    fn url(&self) -> &str {
        &self.url
    }

    // spawn_blocking needs owned data: the store is two strings, cloned.
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.get_blocking(&key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let (this, prefix) = (self.clone(), prefix.to_string());
        blocking(move || this.list_blocking(&prefix)).await
    }

    async fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Revision>,
    ) -> Result<Revision, StoreError> {
        let (this, key, value) = (self.clone(), key.to_string(), value.to_vec());
        blocking(move || this.put_blocking(&key, &value, expected)).await
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<(), StoreError> {
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.delete_blocking(&key, expected)).await
    }

    /// One host, no events to subscribe to: the key's file is read again
    /// every 100 ms (a read of one small file).
    async fn watch(
        &self,
        key: &str,
        seen: Option<Revision>,
        timeout: std::time::Duration,
    ) -> Result<Option<Entry>, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = self.get(key).await?;
            if now.as_ref().map(|e| e.revision) != seen || tokio::time::Instant::now() >= deadline {
                return Ok(now);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// The directory a `file:` URL or plain absolute path names, if any.
pub fn dir_of_url(url: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    if url.starts_with('/') {
        return Some(PathBuf::from(url)); // a path, not a URL: no decoding
    }
    let (scheme, rest) = url.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("file") {
        return None;
    }
    let path = match rest.strip_prefix("//") {
        Some(after) => {
            let i = after.find('/')?;
            let host = &after[..i];
            if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                return None; // another host's directory is not ours to open
            }
            &after[i..]
        }
        None => rest,
    };
    let bytes = percent_decode(path)?;
    (bytes.first() == Some(&b'/')).then(|| PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

/// The `file://` URL of absolute directory `dir`, with the bytes a URL
/// could misread (space, `%`, `#`, `?`, non-ASCII, …) percent-escaped;
/// [`FileStore::open`] takes it back to `dir`.
pub fn file_url(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut url = String::from("file://");
    for &b in dir.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~+,=:@".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// Runs file I/O off the async runtime's worker threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io_err("file store task".to_string(), io::Error::other(e)))?
}

fn io_err(context: String, source: io::Error) -> StoreError {
    StoreError::Io { context, source }
}

/// Reads a key's file; `None` if there is none.
fn read_entry(path: &Path, key: &str) -> Result<Option<Entry>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(format!("reading {}", path.display()), e)),
    };
    let corrupt = |why: &str| StoreError::Corrupt {
        key: key.to_string(),
        why: format!("{}: {why}", path.display()),
    };
    let nl = bytes
        .iter()
        .take(32)
        .position(|&b| b == b'\n')
        .ok_or_else(|| corrupt("no `rev N` header line"))?;
    let revision = std::str::from_utf8(&bytes[..nl])
        .ok()
        .and_then(|line| line.strip_prefix("rev "))
        .and_then(|n| n.parse::<Revision>().ok())
        .ok_or_else(|| corrupt("bad `rev N` header line"))?;
    Ok(Some(Entry {
        key: key.to_string(),
        value: bytes[nl + 1..].to_vec(),
        revision,
    }))
}

/// Collects the entries below `dir` (whose keys start with `dir_key`, e.g.
/// `volumes/`) that start with `prefix`.
fn walk(dir: &Path, dir_key: &str, prefix: &str, out: &mut Vec<Entry>) -> Result<(), StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(it) => it,
        // Not there (no such keys, or removed by a concurrent delete).
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(())
        }
        Err(e) => return Err(io_err(format!("listing {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err(format!("listing {}", dir.display()), e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not ours: keys are ASCII
        };
        let Ok(file_type) = entry.file_type() else {
            continue; // vanished meanwhile
        };
        if file_type.is_dir() {
            let sub_key = format!("{dir_key}{name}/");
            // Only where keys can still start with the prefix (or the
            // prefix goes on below this directory).
            if (sub_key.starts_with(prefix) || prefix.starts_with(&sub_key))
                && check_key(&sub_key[..sub_key.len() - 1]).is_ok()
            {
                walk(&entry.path(), &sub_key, prefix, out)?;
            }
        } else if let Some(stem) = name.strip_suffix(KEY_SUFFIX) {
            let key = format!("{dir_key}{stem}");
            if key.starts_with(prefix) && check_key(&key).is_ok() {
                // None: deleted since the directory was read.
                if let Some(e) = read_entry(&entry.path(), &key)? {
                    out.push(e);
                }
            }
        }
    }
    Ok(())
}

/// Creates `path` and any missing parents (mode 0700: specs may name hosts
/// and secrets one day), making each new directory durable in its parent.
fn make_dirs(path: &Path) -> Result<(), StoreError> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(io_err(
                format!("{} is not a directory", path.display()),
                io::Error::from(io::ErrorKind::NotADirectory),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("checking {}", path.display()), e)),
    }
    let Some(parent) = path.parent() else {
        return Ok(()); // "/" exists
    };
    make_dirs(parent)?;
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {
            tracing::debug!(dir = %path.display(), "created store directory");
            fsync_dir(parent)
        }
        // Another process made it meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(format!("creating {}", path.display()), e)),
    }
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(format!("syncing directory {}", dir.display()), e))
}

/// Replaces `path` with `bytes` atomically and durably. Only called under
/// the store lock, so one fixed temp name per file is enough (a crashed
/// writer's leftover is simply truncated and reused).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(",tmp");
    let tmp = PathBuf::from(tmp_name);
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| io_err(format!("writing {}", path.display()), e))?;
    match path.parent() {
        Some(parent) => fsync_dir(parent),
        None => Ok(()),
    }
}

/// Held while writing; the `flock` goes with the descriptor when dropped.
struct DirLock {
    _file: File,
}

/// Takes the store's write lock, waiting up to [`LOCK_TIMEOUT`]. A `flock`
/// belongs to the open file description, so each call (even in the same
/// process, from two `open`s or two tasks) excludes every other.
fn lock(dir: &Path) -> Result<DirLock, StoreError> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io_err(format!("opening {}", path.display()), e))?;
    // flock(2) has no timeout: poll the non-blocking form instead, with a
    // short back-off (writers hold the lock for a few fsyncs).
    let deadline = Instant::now() + LOCK_TIMEOUT;
    let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(20));
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(DirLock { _file: file }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {}
            Err(e) => return Err(io_err(format!("locking {}", path.display()), e.into())),
        }
        if Instant::now() >= deadline {
            tracing::warn!(lock = %path.display(), "store lock still held after {LOCK_TIMEOUT:?}");
            return Err(io_err(
                format!(
                    "waiting {LOCK_TIMEOUT:?} for {} (held by another brickfs process?)",
                    path.display()
                ),
                io::Error::from(io::ErrorKind::TimedOut),
            ));
        }
        std::thread::sleep(backoff.next_pause());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for (url, dir) in [
            ("/var/lib/brickfs", "/var/lib/brickfs"),
            ("/a%20b", "/a%20b"),
            ("file:///var/lib/brickfs", "/var/lib/brickfs"),
            ("FILE:///x", "/x"),
            ("file://localhost/x/y", "/x/y"),
            ("file:/x", "/x"),
            ("file:///tmp/a%20b%25", "/tmp/a b%"),
        ] {
            assert_eq!(dir_of_url(url), Some(PathBuf::from(dir)), "{url}");
        }
        for bad in [
            "",
            "rel/dir",
            "file://rel",
            "file://host/x",
            "file:rel",
            "file:///x%2",
            "file:///x%zz",
            "file://%2Fx",
            "http:///x",
            "etcd://h:1",
        ] {
            assert_eq!(dir_of_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn file_urls_round_trip() {
        for p in ["/tmp/healcli-dev", "/a b/c%d/é#?x", "/"] {
            let url = file_url(Path::new(p));
            assert!(url.starts_with("file:///"), "{url}");
            assert_eq!(dir_of_url(&url), Some(PathBuf::from(p)), "{url}");
        }
        assert_eq!(file_url(Path::new("/tmp/x y")), "file:///tmp/x%20y");
    }
}
