//! The kernel's view of our inodes: inode number → gfid, with the kernel's
//! lookup count. Inode numbers come from `Gfid::ino()`, so they are the same
//! on every client and across restarts; the table only exists because FUSE
//! addresses objects by number and we need the gfid back.
//!
//! Every entry reply (lookup, create, mknod, mkdir, symlink, link, each
//! readdirplus entry) is one kernel reference; `forget` returns them. An
//! entry leaves the table when its count reaches zero, after which the
//! kernel never names that number again until the next entry reply.

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use proto::Gfid;
use tracing::error;

struct Slot {
    gfid: Gfid,
    nlookup: u64,
}

pub(crate) struct InodeTable {
    map: DashMap<u64, Slot>,
}

impl InodeTable {
    pub(crate) fn new() -> InodeTable {
        InodeTable {
            map: DashMap::new(),
        }
    }

    /// The gfid behind an inode number, `None` if the kernel names one it
    /// was never given or has forgotten (→ ESTALE). The root needs no entry:
    /// the kernel holds it without a lookup.
    pub(crate) fn gfid(&self, ino: u64) -> Option<Gfid> {
        if ino == fuser::INodeNo::ROOT.0 {
            return Some(Gfid::ROOT);
        }
        self.map.get(&ino).map(|s| s.gfid)
    }

    /// Counts one kernel reference to `gfid`; call just before the entry
    /// reply is sent, so that the kernel never holds an unknown number.
    pub(crate) fn remember(&self, gfid: Gfid) -> u64 {
        let ino = gfid.ino();
        if gfid.is_root() {
            return ino;
        }
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
            }
            Entry::Vacant(v) => {
                v.insert(Slot { gfid, nlookup: 1 });
            }
        }
        ino
    }

    pub(crate) fn forget(&self, ino: u64, nlookup: u64) {
        if let Entry::Occupied(mut o) = self.map.entry(ino) {
            let slot = o.get_mut();
            slot.nlookup = slot.nlookup.saturating_sub(nlookup);
            if slot.nlookup == 0 {
                o.remove();
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_count_and_forget_removes_at_zero() {
        let t = InodeTable::new();
        let g = Gfid::random();
        let ino = t.remember(g);
        assert_eq!(ino, g.ino());
        t.remember(g);
        t.remember(g);
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
        let t = InodeTable::new();
        assert_eq!(t.gfid(1), Some(Gfid::ROOT));
        assert_eq!(t.remember(Gfid::ROOT), 1);
        t.forget(1, 10);
        assert_eq!(t.gfid(1), Some(Gfid::ROOT));
        assert_eq!(t.len(), 0);
        assert_eq!(t.gfid(2), None);
    }
}
