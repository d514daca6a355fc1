//! Attributes an open just fetched from the bricks (close-to-open), kept
//! for the GETATTR the kernel sends next: the open dropped the kernel's
//! cached attributes, and the first read to the end of the file or `fstat`
//! asks again at once. Answering that from the open's own answer saves one
//! round trip per open; an answer older than [`FRESH`] is not used, and the
//! table is bounded.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use proto::Attr;

/// How long an open's answer stands in for a GETATTR.
const FRESH: Duration = Duration::from_millis(100);
/// Most answers kept; past it, the stale ones go.
const MAX: usize = 4096;

#[derive(Default)]
pub(crate) struct OpenedAttrs {
    map: DashMap<u64, (Attr, Instant)>,
}

impl OpenedAttrs {
    pub(crate) fn put(&self, ino: u64, attr: Attr) {
        if self.map.len() >= MAX {
            self.map.retain(|_, (_, at)| at.elapsed() < FRESH);
        }
        if self.map.len() < MAX {
            self.map.insert(ino, (attr, Instant::now()));
        }
    }

    /// `ino` changed through this mount: the open's answer is old.
    pub(crate) fn forget(&self, ino: u64) {
        self.map.remove(&ino);
    }

    /// A name operation changed links or times of objects not named here.
    pub(crate) fn forget_all(&self) {
        if !self.map.is_empty() {
            self.map.clear();
        }
    }

    /// The open's answer for `ino`, once, if still fresh.
    pub(crate) fn take(&self, ino: u64) -> Option<Attr> {
        let (_, (attr, at)) = self.map.remove(&ino)?;
        (at.elapsed() < FRESH).then_some(attr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{FileKind, Gfid};

    #[test]
    fn an_answer_is_used_once_and_only_while_fresh() {
        let t = OpenedAttrs::default();
        t.put(7, Attr::bare(Gfid::ROOT, FileKind::File, 0o644));
        assert!(t.take(7).is_some());
        assert!(t.take(7).is_none());
        let t = OpenedAttrs::default();
        t.map.insert(
            8,
            (
                Attr::bare(Gfid::ROOT, FileKind::File, 0o644),
                Instant::now() - FRESH,
            ),
        );
        assert!(t.take(8).is_none());
    }
}
