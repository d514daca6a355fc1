//! Files open through this mount, so that unlinking one keeps its data
//! until the last close (POSIX), as a local filesystem does.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use proto::Gfid;

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

    /// Returns the gfid to purge when this was the last close of a file
    /// that lost its last name while open.
    pub fn closed(&self, gfid: Gfid) -> Option<Gfid> {
        let last = match self.counts.get_mut(&gfid) {
            Some(mut n) => {
                *n = n.saturating_sub(1);
                self.total.fetch_sub(1, Ordering::AcqRel);
                *n == 0
            }
            None => return None,
        };
        if !last {
            return None;
        }
        self.counts.remove_if(&gfid, |_, n| *n == 0);
        self.unlinked.remove(&gfid).map(|_| gfid)
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
        assert_eq!(f.closed(g), None);
        assert_eq!(f.closed(g), Some(g));
        assert!(!f.any());
        assert!(!f.keep_until_closed(g), "nothing open: purge at once");
    }
}
