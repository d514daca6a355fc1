//! The kernel's view of our inodes: inode number → gfid, with the kernel's
//! lookup count. Inode numbers come from `Gfid::ino()`, so they are the same
//! on every client and across restarts; the table only exists because FUSE
//! addresses objects by number and we need the gfid back.
//!
//! Every entry reply (lookup, create, mknod, mkdir, symlink, link, each
//! readdirplus entry) is one kernel reference; `forget` returns them. An
//! entry leaves the table when its count reaches zero, after which the
//! kernel never names that number again until the next entry reply.
//!
//! Bounded: the kernel forgets an inode only when its dentry cache lets go
//! of it, which on a machine with free memory is never, so listing a
//! million files would keep a million entries here. Past `limit` entries,
//! [`InodeTable::victims`] names the least recently used files that no
//! process here holds open; the mount asks the kernel to drop their names
//! (`FUSE_NOTIFY_INVAL_ENTRY`), the kernel evicts the unused inodes and
//! forgets them. Directories are never chosen: a dropped name would leave a
//! process whose working directory it is with a `getcwd` that fails. A file
//! renamed since its last entry reply is asked for by its old name, which
//! misses (or drops another file's name, which only costs it a lookup); it
//! stays until its next lookup records the new name.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use proto::Gfid;
use tracing::error;

struct Slot {
    gfid: Gfid,
    nlookup: u64,
    /// The table's clock at the slot's last use (an entry reply or a
    /// request naming the inode).
    used: AtomicU64,
    /// The name of the last entry reply, by which the kernel can be asked
    /// to drop it.
    parent: u64,
    name: Box<[u8]>,
    dir: bool,
    /// Already named by [`InodeTable::victims`] and not used since: asked
    /// once, the kernel keeps it only while it is busy.
    asked: AtomicBool,
}

/// A name the kernel is asked to drop.
pub(crate) struct Victim {
    pub parent: u64,
    pub name: Box<[u8]>,
}

pub(crate) struct InodeTable {
    map: DashMap<u64, Slot>,
    clock: AtomicU64,
    /// Most entries before names are dropped; 0: unbounded.
    limit: usize,
    /// Set while a prune is asked for or under way: one at a time.
    pruning: AtomicBool,
    /// After a prune that found too few files to drop (the rest
    /// directories or open), the size from which another one is worth it.
    next_prune_at: AtomicUsize,
    /// Entries now, shown in the mount's metrics.
    count: Arc<AtomicUsize>,
}

impl InodeTable {
    /// A table of at most `limit` entries (0: unbounded) that keeps
    /// `count` at its size.
    pub(crate) fn new(limit: usize, count: Arc<AtomicUsize>) -> InodeTable {
        InodeTable {
            map: DashMap::new(),
            clock: AtomicU64::new(0),
            limit,
            pruning: AtomicBool::new(false),
            next_prune_at: AtomicUsize::new(0),
            count,
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// The gfid behind an inode number, `None` if the kernel names one it
    /// was never given or has forgotten (→ ESTALE). The root needs no entry:
    /// the kernel holds it without a lookup.
    pub(crate) fn gfid(&self, ino: u64) -> Option<Gfid> {
        if ino == fuser::INodeNo::ROOT.0 {
            return Some(Gfid::ROOT);
        }
        let slot = self.map.get(&ino)?;
        slot.used.store(self.tick(), Ordering::Relaxed);
        slot.asked.store(false, Ordering::Relaxed);
        Some(slot.gfid)
    }

    /// Counts one kernel reference to `gfid`, known to the kernel as `name`
    /// in directory `parent`; call just before the entry reply is sent, so
    /// that the kernel never holds an unknown number. True when the table
    /// is past its limit and no prune is under way: the caller starts one.
    pub(crate) fn remember(&self, gfid: Gfid, dir: bool, parent: u64, name: &[u8]) -> bool {
        if gfid.is_root() {
            return false;
        }
        let ino = gfid.ino();
        let used = self.tick();
        match self.map.entry(ino) {
            Entry::Occupied(mut o) => {
                let slot = o.get_mut();
                if slot.gfid != gfid {
                    // Two gfids hashed to one 64-bit number: the kernel cannot
                    // tell them apart, the newer one wins.
                    error!(ino, old = %slot.gfid, new = %gfid, "inode number collision");
                    slot.gfid = gfid;
                }
                slot.nlookup += 1;
                *slot.used.get_mut() = used;
                *slot.asked.get_mut() = false;
                slot.dir = dir;
                if slot.parent != parent || *slot.name != *name {
                    slot.parent = parent;
                    slot.name = name.into();
                }
            }
            Entry::Vacant(v) => {
                v.insert(Slot {
                    gfid,
                    nlookup: 1,
                    used: AtomicU64::new(used),
                    parent,
                    name: name.into(),
                    dir,
                    asked: AtomicBool::new(false),
                });
                self.count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.over_limit() && !self.pruning.swap(true, Ordering::AcqRel)
    }

    fn over_limit(&self) -> bool {
        let len = self.len();
        self.limit > 0 && len > self.limit && len >= self.next_prune_at.load(Ordering::Relaxed)
    }

    pub(crate) fn forget(&self, ino: u64, nlookup: u64) {
        if let Entry::Occupied(mut o) = self.map.entry(ino) {
            let slot = o.get_mut();
            slot.nlookup = slot.nlookup.saturating_sub(nlookup);
            if slot.nlookup == 0 {
                o.remove();
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The least recently used files to drop to bring the table to an
    /// eighth below its limit, skipping those `open` says a process here
    /// holds open; each is named once until used again. Ends the prune
    /// [`InodeTable::remember`] asked for.
    pub(crate) fn victims(&self, open: impl Fn(Gfid) -> bool) -> Vec<Victim> {
        let len = self.len();
        let target = self.limit - self.limit / 8;
        let excess = len.saturating_sub(target);
        let mut candidates: Vec<(u64, u64)> = Vec::new();
        if excess > 0 {
            for r in self.map.iter() {
                let s = r.value();
                if !s.dir && !s.asked.load(Ordering::Relaxed) && !open(s.gfid) {
                    candidates.push((s.used.load(Ordering::Relaxed), *r.key()));
                }
            }
        }
        if candidates.len() > excess {
            candidates.select_nth_unstable(excess);
            candidates.truncate(excess);
        }
        let mut out = Vec::with_capacity(candidates.len());
        for (_, ino) in candidates {
            if let Some(s) = self.map.get(&ino) {
                s.asked.store(true, Ordering::Relaxed);
                out.push(Victim {
                    parent: s.parent,
                    name: s.name.clone(),
                });
            }
        }
        // Too few to drop: the rest is busy. Look again only once the table
        // grew by another eighth, not at every new entry.
        let short = out.len() < excess;
        self.next_prune_at.store(
            if short { len + self.limit / 8 } else { 0 },
            Ordering::Relaxed,
        );
        self.pruning.store(false, Ordering::Release);
        out
    }

    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(t: &InodeTable, g: Gfid) -> bool {
        t.remember(g, false, 1, b"f")
    }

    #[test]
    fn lookups_count_and_forget_removes_at_zero() {
        let t = InodeTable::new(0, Arc::default());
        let g = Gfid::random();
        file(&t, g);
        let ino = g.ino();
        file(&t, g);
        file(&t, g);
        assert_eq!(t.gfid(ino), Some(g));
        t.forget(ino, 2);
        assert_eq!(t.gfid(ino), Some(g));
        t.forget(ino, 1);
        assert_eq!(t.gfid(ino), None);
        assert_eq!(t.len(), 0);
        // A forget for an unknown number is ignored.
        t.forget(ino, 5);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn root_is_always_known_and_never_counted() {
        let t = InodeTable::new(0, Arc::default());
        assert_eq!(t.gfid(1), Some(Gfid::ROOT));
        assert!(!t.remember(Gfid::ROOT, true, 1, b"."));
        t.forget(1, 10);
        assert_eq!(t.gfid(1), Some(Gfid::ROOT));
        assert_eq!(t.len(), 0);
        assert_eq!(t.gfid(2), None);
    }

    #[test]
    fn past_the_limit_the_least_recently_used_closed_files_are_named() {
        let t = InodeTable::new(16, Arc::default());
        let dir = Gfid::random();
        t.remember(dir, true, 1, b"d");
        let files: Vec<Gfid> = (0..20).map(|_| Gfid::random()).collect();
        let open = files[0];
        let mut asked = false;
        for (i, g) in files.iter().enumerate() {
            let started = t.remember(*g, false, dir.ino(), format!("f{i}").as_bytes());
            asked |= started;
        }
        assert!(asked, "21 entries past a limit of 16 start a prune");
        // Used again: the most recent, so not dropped.
        t.gfid(files[1].ino());
        let v = t.victims(|g| g == open);
        // Down to 14 of 21: seven names, none of them the directory, the
        // open file or the one just used.
        assert_eq!(v.len(), 7);
        let names: Vec<&[u8]> = v.iter().map(|v| &*v.name).collect();
        for never in [&b"d"[..], b"f0", b"f1"] {
            assert!(
                !names.contains(&never),
                "{:?} named",
                String::from_utf8_lossy(never)
            );
        }
        assert!(v.iter().all(|v| v.parent == dir.ino()));
        assert!(
            names.contains(&&b"f2"[..]),
            "the oldest closed file goes first"
        );
        // Named once: the next prune picks others.
        let again = t.victims(|g| g == open);
        assert!(again.iter().all(|v| !names.contains(&&*v.name)));
    }

    #[test]
    fn a_table_of_busy_entries_is_not_scanned_at_every_entry() {
        let t = InodeTable::new(64, Arc::default());
        let mut prunes = Vec::new();
        for i in 0..80 {
            if t.remember(Gfid::random(), true, 1, format!("d{i}").as_bytes()) {
                prunes.push(i + 1);
                assert!(
                    t.victims(|_| false).is_empty(),
                    "directories are never named"
                );
            }
        }
        // Nothing to drop at 65 entries: the next look waits until the table
        // grew by another eighth of the limit.
        assert_eq!(prunes, [65, 73]);
        assert!(
            t.remember(Gfid::random(), false, 1, b"f"),
            "81 entries: a look again"
        );
    }
}
