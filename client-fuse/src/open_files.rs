//! Files open through this mount, so that unlinking one keeps its data
//! until the last close (POSIX), as a local filesystem does.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use proto::Gfid;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Closed {
    pub last: bool,
    pub purge: bool,
}

#[derive(Default)]
pub struct OpenFiles {
    counts: DashMap<Gfid, u64>,
    total: AtomicU64,
    /// Open files whose last name was removed: purged on their last close.
    unlinked: DashMap<Gfid, ()>,
}

impl OpenFiles {
    pub fn opened(&self, gfid: Gfid) {
        *self.counts.entry(gfid).or_insert(0) += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether this was the file's last close here, and whether the file
    /// is to be purged (it lost its last name while open).
    pub fn closed(&self, gfid: Gfid) -> Closed {
        let last = match self.counts.get_mut(&gfid) {
            Some(mut n) => {
                *n = n.saturating_sub(1);
                self.total.fetch_sub(1, Ordering::AcqRel);
                *n == 0
            }
            None => false,
        };
        if !last {
            return Closed::default();
        }
        self.counts.remove_if(&gfid, |_, n| *n == 0);
        Closed {
            last: true,
            purge: self.unlinked.remove(&gfid).is_some(),
        }
    }

    /// Whether a process here holds `gfid` open.
    pub fn is_open(&self, gfid: Gfid) -> bool {
        self.counts.get(&gfid).is_some_and(|n| *n > 0)
    }

    /// Whether anything is open: only then does an unlink ask the bricks to
    /// keep a file that loses its last name.
    pub fn any(&self) -> bool {
        self.total.load(Ordering::Acquire) > 0
    }

    /// Records an unlinked file the bricks kept; false when nothing here has
    /// it open any more (the caller purges it at once).
    pub fn keep_until_closed(&self, gfid: Gfid) -> bool {
        if self.counts.get(&gfid).is_some_and(|n| *n > 0) {
            self.unlinked.insert(gfid, ());
            // A close may have raced in between: check again.
            if self.counts.get(&gfid).is_some_and(|n| *n > 0) {
                return true;
            }
            return self.unlinked.remove(&gfid).is_none();
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_close_of_an_unlinked_file_purges_it() {
        let f = OpenFiles::default();
        let g = Gfid::random();
        f.opened(g);
        f.opened(g);
        assert!(f.any());
        assert!(f.keep_until_closed(g));
        assert_eq!(f.closed(g), Closed::default());
        assert_eq!(
            f.closed(g),
            Closed {
                last: true,
                purge: true
            }
        );
        assert!(!f.any());
        assert!(!f.keep_until_closed(g), "nothing open: purge at once");
    }
}
