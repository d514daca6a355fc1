//! The AFR changelog kept by this brick: pending counters (blame held
//! against other bricks, one xattr `trusted.brickfs.pending.<replica-index>`
//! per blamed brick on the object, as AFR's `trusted.afr.<vol>-client-<i>`), the heal
//! index (`indices/xattrop/<gfid>`) and the dirty set (`indices/dirty/<gfid>`,
//! transactions started here and not yet confirmed by `unlock_batch`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

use proto::{FsError, FsResult, Gfid, PendingCounts, PendingKind, ReplicaIndex};

use crate::store::{xget, xlist, xset, Target};

const PENDING_PREFIX: &str = "trusted.brickfs.pending.";

pub struct Changelog {
    xattrop: PathBuf,
    dirty_dir: PathBuf,
    dirty: Mutex<HashSet<Gfid>>,
    /// Serialises read-modify-write of pending counters.
    bump: Mutex<()>,
}

impl Changelog {
    /// Loads the dirty set left by a previous run.
    pub fn open(private: &std::path::Path) -> std::io::Result<Changelog> {
        let xattrop = private.join("indices/xattrop");
        let dirty_dir = private.join("indices/dirty");
        let mut dirty = HashSet::new();
        for entry in std::fs::read_dir(&dirty_dir)? {
            let entry = entry?;
            match entry.file_name().to_str().and_then(Gfid::from_hex) {
                Some(g) => {
                    dirty.insert(g);
                }
                None => {
                    tracing::warn!(name = ?entry.file_name(), "ignoring stray file in dirty index")
                }
            }
        }
        if !dirty.is_empty() {
            tracing::info!(count = dirty.len(), "loaded dirty set");
        }
        Ok(Changelog {
            xattrop,
            dirty_dir,
            dirty: Mutex::new(dirty),
            bump: Mutex::new(()),
        })
    }

    fn dirty_set(&self) -> std::sync::MutexGuard<'_, HashSet<Gfid>> {
        self.dirty
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn is_dirty(&self, gfid: Gfid) -> bool {
        self.dirty_set().contains(&gfid)
    }

    /// Marks a transaction as started here; persisted before the operation so
    /// that a crash in between still leaves a trace for heal.
    pub fn mark_dirty(&self, gfid: Gfid) -> FsResult<()> {
        if self.is_dirty(gfid) {
            return Ok(());
        }
        std::fs::File::create(self.dirty_dir.join(gfid.to_hex()))?;
        self.dirty_set().insert(gfid);
        Ok(())
    }

    pub fn clear_dirty(&self, gfid: Gfid) -> FsResult<()> {
        if !self.dirty_set().remove(&gfid) {
            return Ok(());
        }
        match std::fs::remove_file(self.dirty_dir.join(gfid.to_hex())) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Records that `blamed` bricks miss one operation of `kind` on `gfid`
    /// (reachable through `target`), and lists `gfid` for heal.
    pub fn blame(
        &self,
        gfid: Gfid,
        target: &Target,
        blamed: &[ReplicaIndex],
        kind: PendingKind,
    ) -> FsResult<()> {
        if blamed.is_empty() {
            return Ok(());
        }
        {
            let _g = self
                .bump
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for brick in blamed {
                let name = format!("{PENDING_PREFIX}{brick}");
                let mut counts = match xget(target, name.as_bytes()) {
                    Ok(v) => decode(&v).unwrap_or_default(),
                    Err(FsError::NoAttr) => PendingCounts::default(),
                    Err(e) => return Err(e),
                };
                let slot = match kind {
                    PendingKind::Data => &mut counts.data,
                    PendingKind::Metadata => &mut counts.metadata,
                    PendingKind::Entry => &mut counts.entry,
                };
                *slot = slot.saturating_add(1);
                xset(target, name.as_bytes(), &encode(&counts), 0)?;
            }
        }
        std::fs::File::create(self.xattrop.join(gfid.to_hex()))?;
        tracing::debug!(%gfid, ?kind, ?blamed, "blame recorded");
        Ok(())
    }

    /// The blame this brick holds against others for an object.
    pub fn pending(&self, target: &Target) -> FsResult<Vec<(ReplicaIndex, PendingCounts)>> {
        let mut out = Vec::new();
        for name in xlist(target)? {
            let Some(index) = name.strip_prefix(PENDING_PREFIX.as_bytes()) else {
                continue;
            };
            let Some(brick) = std::str::from_utf8(index)
                .ok()
                .and_then(|s| s.parse::<ReplicaIndex>().ok())
            else {
                continue;
            };
            match xget(target, &name) {
                Ok(v) => {
                    if let Some(c) = decode(&v) {
                        out.push((brick, c));
                    }
                }
                // Removed by a concurrent heal between list and get.
                Err(FsError::NoAttr) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Three big-endian u32 counters: data | metadata | entry.
pub fn encode(c: &PendingCounts) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0..4].copy_from_slice(&c.data.to_be_bytes());
    b[4..8].copy_from_slice(&c.metadata.to_be_bytes());
    b[8..12].copy_from_slice(&c.entry.to_be_bytes());
    b
}

pub fn decode(b: &[u8]) -> Option<PendingCounts> {
    let b: &[u8; 12] = b.try_into().ok()?;
    let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Some(PendingCounts {
        data: word(0),
        metadata: word(4),
        entry: word(8),
    })
}
