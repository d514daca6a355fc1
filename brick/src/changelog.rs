//! The AFR changelog kept by this brick: pending counters (blame held
//! against other bricks, one xattr `trusted.brickfs.pending.<replica-index>`
//! per blamed brick on the object, as AFR's `trusted.afr.<vol>-client-<i>`), the heal
//! index (`indices/xattrop/<gfid>`) and the dirty set (`indices/dirty.log`,
//! transactions started here and not yet confirmed by `unlock_batch`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use proto::{FsError, FsResult, Gfid, PendingCounts, PendingKind, ReplicaIndex};

use crate::dirty::DirtySet;
use crate::locks::ConnId;
use crate::store::{xget, xlist, xremove, xset, Target};

const PENDING_PREFIX: &str = "trusted.brickfs.pending.";
/// Longest heal note kept (a healer's reason, not a log).
const NOTE_MAX: usize = 1024;

pub struct Changelog {
    xattrop: PathBuf,
    dirty: DirtySet,
    /// Entries in the heal index: clients skip replica validation while
    /// every brick reports zero (nothing anywhere is blamed).
    heal_entries: AtomicU64,
    /// Additions to and removals from the heal index since this process
    /// started: monotonic, so clients notice any change of blame.
    index_changes: AtomicU64,
    /// Serialises read-modify-write of pending counters.
    bump: Mutex<()>,
    /// Why the last heal of an entry did not finish (`heal_note`).
    notes: Mutex<HashMap<Gfid, String>>,
}

impl Changelog {
    /// Loads the dirty set left by a previous run.
    pub fn open(private: &std::path::Path) -> std::io::Result<Changelog> {
        let xattrop = private.join("indices/xattrop");
        let dirty = DirtySet::open(&private.join("indices/dirty.log"))?;
        let heal_entries = std::fs::read_dir(&xattrop)?.count() as u64;
        Ok(Changelog {
            xattrop,
            dirty,
            heal_entries: AtomicU64::new(heal_entries),
            index_changes: AtomicU64::new(0),
            bump: Mutex::new(()),
            notes: Mutex::new(HashMap::new()),
        })
    }

    pub fn is_dirty(&self, gfid: Gfid) -> bool {
        self.dirty.contains(gfid)
    }

    /// Marks a transaction as started here; persisted before the operation so
    /// that a crash in between still leaves a trace for heal.
    pub fn mark_dirty(&self, gfid: Gfid, owner: Option<ConnId>) -> FsResult<()> {
        self.dirty.mark(gfid, owner)
    }

    pub fn clear_dirty(&self, gfid: Gfid, conn: ConnId) -> FsResult<()> {
        self.dirty.clear(gfid, conn)
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
        self.count(target, blamed, kind, |n| n.saturating_add(1))?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.xattrop.join(gfid.to_hex()))
        {
            Ok(_) => {
                self.heal_entries.fetch_add(1, Ordering::Relaxed);
                self.index_changes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        tracing::debug!(%gfid, ?kind, ?blamed, "blame recorded");
        Ok(())
    }

    /// Takes back one operation of `kind` from the blame of each of
    /// `blamed` (its transaction failed). The heal index entry stays: heal
    /// drops it once it finds nothing to do.
    pub fn unblame(
        &self,
        gfid: Gfid,
        target: &Target,
        blamed: &[ReplicaIndex],
        kind: PendingKind,
    ) -> FsResult<()> {
        self.count(target, blamed, kind, |n| n.saturating_sub(1))?;
        tracing::debug!(%gfid, ?kind, ?blamed, "blame retracted");
        Ok(())
    }

    /// Changes the counter of `kind` this copy keeps against each of
    /// `blamed` by `step`; a set of counters left at zero goes.
    fn count(
        &self,
        target: &Target,
        blamed: &[ReplicaIndex],
        kind: PendingKind,
        step: impl Fn(u32) -> u32,
    ) -> FsResult<()> {
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
            let slot = counts.of_mut(kind);
            *slot = step(*slot);
            if counts.is_zero() {
                match xremove(target, name.as_bytes()) {
                    Ok(()) | Err(FsError::NoAttr) => {}
                    Err(e) => return Err(e),
                }
            } else {
                xset(target, name.as_bytes(), &encode(&counts), 0)?;
            }
        }
        Ok(())
    }

    fn notes(&self) -> std::sync::MutexGuard<'_, HashMap<Gfid, String>> {
        self.notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps the healer's reason for not finishing `gfid`.
    pub fn note(&self, gfid: Gfid, mut why: String) {
        if why.len() > NOTE_MAX {
            let mut end = NOTE_MAX;
            while !why.is_char_boundary(end) {
                end -= 1;
            }
            why.truncate(end);
        }
        self.notes().insert(gfid, why);
    }

    /// The notes of `listed` (the entries heal still owes); drops the rest.
    pub fn notes_of(&self, listed: &[Gfid]) -> HashMap<Gfid, String> {
        let mut notes = self.notes();
        notes.retain(|g, _| listed.binary_search(g).is_ok());
        notes.clone()
    }

    /// How many objects this brick's heal index lists.
    pub fn heal_entries(&self) -> u64 {
        self.heal_entries.load(Ordering::Relaxed)
    }

    pub fn index_changes(&self) -> u64 {
        self.index_changes.load(Ordering::Relaxed)
    }

    /// Gfids in the heal index, unsorted.
    pub fn indexed(&self) -> FsResult<Vec<Gfid>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.xattrop)? {
            let entry = entry?;
            if let Some(g) = entry.file_name().to_str().and_then(Gfid::from_hex) {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// Dirty marks whose transaction nobody will confirm: the connection
    /// that made them is gone, gave up on them, or the brick restarted.
    pub fn unowned_dirty(&self) -> Vec<Gfid> {
        self.dirty.unowned()
    }

    pub fn unowned_dirty_count(&self) -> u64 {
        self.dirty.unowned_count()
    }

    /// `conn` lets go of its mark on `gfid` without confirming it (the op
    /// behind it failed): heal decides what the object should be.
    pub fn disown_dirty(&self, gfid: Gfid, conn: ConnId) {
        self.dirty.disown(Some(gfid), conn);
    }

    /// A connection ended: its unconfirmed marks are heal's now.
    pub fn disown_all_dirty(&self, conn: ConnId) {
        self.dirty.disown(None, conn);
    }

    /// The end of a heal of `gfid`: takes the counters the healer saw from
    /// the blame held here (blame added since stays), clears the dirty
    /// mark, and drops the index entry once nothing is pending. `target` is
    /// `None` when the object no longer exists here.
    pub fn healed(
        &self,
        gfid: Gfid,
        target: Option<&Target>,
        seen: &[(ReplicaIndex, PendingCounts)],
    ) -> FsResult<()> {
        let mut left = false;
        if let Some(target) = target {
            let _g = self
                .bump
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (brick, now) in self.pending(target)? {
                let before = seen
                    .iter()
                    .find(|(b, _)| *b == brick)
                    .map(|(_, c)| *c)
                    .unwrap_or_default();
                let rest = PendingCounts {
                    data: now.data.saturating_sub(before.data),
                    metadata: now.metadata.saturating_sub(before.metadata),
                    entry: now.entry.saturating_sub(before.entry),
                };
                let name = format!("{PENDING_PREFIX}{brick}");
                if rest.is_zero() {
                    match xremove(target, name.as_bytes()) {
                        Ok(()) | Err(FsError::NoAttr) => {}
                        Err(e) => return Err(e),
                    }
                } else {
                    left = true;
                    if rest != now {
                        xset(target, name.as_bytes(), &encode(&rest), 0)?;
                    }
                }
            }
        }
        self.dirty.clear_any(gfid)?;
        if !left {
            self.notes().remove(&gfid);
            match std::fs::remove_file(self.xattrop.join(gfid.to_hex())) {
                Ok(()) => {
                    self.heal_entries.fetch_sub(1, Ordering::Relaxed);
                    self.index_changes.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        tracing::debug!(%gfid, still_pending = left, "heal recorded");
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
