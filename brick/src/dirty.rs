//! The dirty set: transactions started on this brick whose post-op (the
//! client's batched unlock) has not been seen yet. Heal must look at these
//! objects even when no brick blames another (a client died mid-transaction).
//!
//! Kept in memory and persisted as an append-only journal of 17-byte records
//! (`D` or `C`, then the gfid). One `write` per change costs far less than
//! creating and deleting an index file per gfid, which doubled the metadata
//! work of every create. The journal is compacted when mostly garbage.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use proto::{FsResult, Gfid};

const RECORD: usize = 17;
const MARK: u8 = b'D';
const CLEAR: u8 = b'C';
/// Compaction happens once the journal is this big and mostly clears.
const COMPACT_AT: u64 = 1 << 20;

struct Journal {
    file: File,
    len: u64,
    set: HashSet<Gfid>,
}

pub struct DirtySet {
    path: PathBuf,
    inner: Mutex<Journal>,
}

impl DirtySet {
    /// Replays the journal left by a previous run.
    pub fn open(path: &Path) -> std::io::Result<DirtySet> {
        let mut set = HashSet::new();
        match File::open(path) {
            Ok(mut f) => {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                // A torn final record (crash mid-write) is ignored.
                for rec in buf.chunks_exact(RECORD) {
                    let mut g = [0u8; 16];
                    g.copy_from_slice(&rec[1..]);
                    match rec[0] {
                        MARK => {
                            set.insert(Gfid(g));
                        }
                        CLEAR => {
                            set.remove(&Gfid(g));
                        }
                        other => tracing::warn!(byte = other, "bad record in dirty journal"),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if !set.is_empty() {
            tracing::info!(count = set.len(), "loaded dirty set");
        }
        let file = rewrite(path, &set)?;
        let len = (set.len() * RECORD) as u64;
        Ok(DirtySet {
            path: path.to_path_buf(),
            inner: Mutex::new(Journal { file, len, set }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Journal> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn contains(&self, gfid: Gfid) -> bool {
        self.lock().set.contains(&gfid)
    }

    /// Persisted before the operation it guards.
    pub fn mark(&self, gfid: Gfid) -> FsResult<()> {
        let mut j = self.lock();
        if j.set.contains(&gfid) {
            return Ok(());
        }
        append(&mut j, MARK, gfid)?;
        j.set.insert(gfid);
        Ok(())
    }

    pub fn clear(&self, gfid: Gfid) -> FsResult<()> {
        let mut j = self.lock();
        if !j.set.remove(&gfid) {
            return Ok(());
        }
        append(&mut j, CLEAR, gfid)?;
        let live = (j.set.len() * RECORD) as u64;
        if j.len >= COMPACT_AT && j.len > live * 8 {
            j.file = rewrite(&self.path, &j.set)?;
            j.len = live;
        }
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().set.len()
    }
}

fn append(j: &mut Journal, op: u8, gfid: Gfid) -> std::io::Result<()> {
    let mut rec = [0u8; RECORD];
    rec[0] = op;
    rec[1..].copy_from_slice(&gfid.0);
    j.file.write_all(&rec)?;
    j.len += RECORD as u64;
    Ok(())
}

/// Writes the live set to a fresh journal and atomically puts it in place.
fn rewrite(path: &Path, set: &HashSet<Gfid>) -> std::io::Result<File> {
    let tmp = path.with_extension("tmp");
    let mut buf = Vec::with_capacity(set.len() * RECORD);
    for g in set {
        buf.push(MARK);
        buf.extend_from_slice(&g.0);
    }
    std::fs::write(&tmp, &buf)?;
    std::fs::rename(&tmp, path)?;
    OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_compacts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dirty.log");
        let d = DirtySet::open(&path).expect("open");
        let keep = Gfid::random();
        d.mark(keep).expect("mark");
        for _ in 0..70_000 {
            let g = Gfid::random();
            d.mark(g).expect("mark");
            d.clear(g).expect("clear");
        }
        assert!(std::fs::metadata(&path).expect("stat").len() < COMPACT_AT + 64);
        drop(d);
        let d = DirtySet::open(&path).expect("reopen");
        assert!(d.contains(keep));
        assert_eq!(d.len(), 1);
    }
}
