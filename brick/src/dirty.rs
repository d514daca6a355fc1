//! The dirty set: transactions started on this brick whose post-op (the
//! client's batched unlock) has not been seen yet. Heal must look at these
//! objects even when no brick blames another (a client died mid-transaction).
//!
//! Kept in memory and persisted as an append-only journal of 17-byte records
//! (`D` or `C`, then the gfid). One `write` per change costs far less than
//! creating and deleting an index file per gfid, which doubled the metadata
//! work of every create. The journal is compacted when mostly garbage.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use proto::{FsResult, Gfid};

use crate::locks::ConnId;

const RECORD: usize = 17;
const MARK: u8 = b'D';
const CLEAR: u8 = b'C';
/// Compaction happens once the journal is this big and mostly clears.
const COMPACT_AT: u64 = 1 << 20;

struct Journal {
    file: File,
    len: u64,
    /// Dirty gfids and the connection whose transaction marked them (the
    /// replication-lock holder then). Only that connection's post-op clears
    /// a mark; a mark of a connection that died, or from before a restart,
    /// stays for heal.
    set: HashMap<Gfid, Option<ConnId>>,
}

pub struct DirtySet {
    path: PathBuf,
    inner: Mutex<Journal>,
}

impl DirtySet {
    /// Replays the journal left by a previous run.
    pub fn open(path: &Path) -> std::io::Result<DirtySet> {
        let mut set = HashMap::new();
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
                            set.insert(Gfid(g), None);
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
        self.lock().set.contains_key(&gfid)
    }

    /// Persisted before the operation it guards. An existing mark keeps its
    /// owner: whoever left it has not confirmed its own transaction yet.
    pub fn mark(&self, gfid: Gfid, owner: Option<ConnId>) -> FsResult<()> {
        let mut j = self.lock();
        if j.set.contains_key(&gfid) {
            return Ok(());
        }
        append(&mut j, MARK, gfid)?;
        j.set.insert(gfid, owner);
        Ok(())
    }

    /// The post-op of `conn`: clears the mark only if `conn` made it.
    pub fn clear(&self, gfid: Gfid, conn: ConnId) -> FsResult<()> {
        let mut j = self.lock();
        match j.set.get(&gfid) {
            Some(Some(owner)) if *owner == conn => {
                j.set.remove(&gfid);
            }
            _ => return Ok(()),
        }
        append(&mut j, CLEAR, gfid)?;
        let live = (j.set.len() * RECORD) as u64;
        if j.len >= COMPACT_AT && j.len > live * 8 {
            j.file = rewrite(&self.path, &j.set)?;
            j.len = live;
        }
        Ok(())
    }

    /// Heal's clear: whoever made the mark, the object has been repaired.
    pub fn clear_any(&self, gfid: Gfid) -> FsResult<()> {
        let mut j = self.lock();
        if j.set.remove(&gfid).is_none() {
            return Ok(());
        }
        append(&mut j, CLEAR, gfid)?;
        Ok(())
    }

    /// Hands the marks of `conn` (only the one on `gfid`, if given) to heal.
    pub fn disown(&self, gfid: Option<Gfid>, conn: ConnId) {
        let mut j = self.lock();
        for (g, owner) in j.set.iter_mut() {
            if *owner == Some(conn) && gfid.is_none_or(|want| want == *g) {
                *owner = None;
            }
        }
    }

    pub fn unowned_count(&self) -> u64 {
        self.lock().set.values().filter(|o| o.is_none()).count() as u64
    }

    pub fn unowned(&self) -> Vec<Gfid> {
        self.lock()
            .set
            .iter()
            .filter(|(_, owner)| owner.is_none())
            .map(|(g, _)| *g)
            .collect()
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
fn rewrite(path: &Path, set: &HashMap<Gfid, Option<ConnId>>) -> std::io::Result<File> {
    let tmp = path.with_extension("tmp");
    let mut buf = Vec::with_capacity(set.len() * RECORD);
    for g in set.keys() {
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
        d.mark(keep, Some(1)).expect("mark");
        for _ in 0..70_000 {
            let g = Gfid::random();
            d.mark(g, Some(1)).expect("mark");
            d.clear(g, 1).expect("clear");
        }
        // Another connection cannot confirm a transaction it did not make.
        d.clear(keep, 2).expect("clear");
        assert!(d.contains(keep));
        assert!(std::fs::metadata(&path).expect("stat").len() < COMPACT_AT + 64);
        drop(d);
        let d = DirtySet::open(&path).expect("reopen");
        assert!(d.contains(keep));
        assert_eq!(d.len(), 1);
        // After a restart nobody owns it: only heal clears it.
        d.clear(keep, 1).expect("clear");
        assert!(d.contains(keep));
    }
}
