//! Attributes an open just fetched from the bricks (close-to-open), kept
//! for the GETATTR the kernel sends next: the open dropped the kernel's
//! cached attributes, and the first read to the end of the file or `fstat`
//! asks again at once. Answering that from the open's own answer saves one
//! round trip per open; an answer older than [`FRESH`] is not used, and the
//! table is bounded.

use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Counts forgets: an open's answer asked before one may predate a
    /// write of this mount (another descriptor's open racing the write).
    forgets: AtomicU64,
}

impl OpenedAttrs {
    /// What [`OpenedAttrs::put`] is given: read before the open asks.
    pub(crate) fn epoch(&self) -> u64 {
        self.forgets.load(Ordering::Acquire)
    }

    /// Keeps the answer of an open that asked at `asked`, unless a forget
    /// came in between (checked again after the insert, so a forget racing
    /// it cannot be lost).
    pub(crate) fn put(&self, asked: u64, ino: u64, attr: Attr) {
        if self.map.len() >= MAX {
            self.map.retain(|_, (_, at)| at.elapsed() < FRESH);
        }
        if self.map.len() < MAX && self.epoch() == asked {
            self.map.insert(ino, (attr, Instant::now()));
            if self.epoch() != asked {
                self.map.remove(&ino);
            }
        }
    }

    /// `ino` changed through this mount: the open's answer is old.
    pub(crate) fn forget(&self, ino: u64) {
        self.forgets.fetch_add(1, Ordering::AcqRel);
        self.map.remove(&ino);
    }

    /// A name operation changed links or times of objects not named here.
    pub(crate) fn forget_all(&self) {
        self.forgets.fetch_add(1, Ordering::AcqRel);
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
        t.put(t.epoch(), 7, Attr::bare(Gfid::ROOT, FileKind::File, 0o644));
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

    #[test]
    fn an_answer_asked_before_a_write_is_not_kept() {
        let t = OpenedAttrs::default();
        let asked = t.epoch();
        t.forget(7);
        t.put(asked, 7, Attr::bare(Gfid::ROOT, FileKind::File, 0o644));
        assert!(t.take(7).is_none());
    }
}
