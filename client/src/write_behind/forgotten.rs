//! What the records of files forgotten lately last heard from the layer
//! below, for attributes asked before they were forgotten.
//!
//! Why: a record goes at a close once its writes are all answered, and any
//! close does that, including the one a program started meanwhile makes
//! when its exec closes the descriptor it inherited (a FUSE FLUSH). A
//! `stat` asked of a brick while a write sent behind was still on its way
//! there can come back without that write; the record would have patched
//! the answer (the write was answered after the stat asked), but once the
//! record is gone nothing would, and the kernel would keep a size smaller
//! than what the writer had written.
//!
//! Bounded: the oldest go first; an answer about a file this table no
//! longer knows, asked before the newest answer it dropped, is
//! [`Certainty::Unknown`] and the caller asks the layer below again.

use std::collections::{HashMap, VecDeque};

use proto::{Attr, FileKind, Gfid};

/// Most forgotten files remembered.
pub(super) const KEPT: usize = 1024;

#[derive(Default)]
pub(super) struct Forgotten {
    last: HashMap<Gfid, (Attr, u64)>,
    /// Insertion order, with the tick each was kept with (a file forgotten
    /// twice is here twice; only the entry matching `last` counts).
    order: VecDeque<(Gfid, u64)>,
    /// The newest tick of an answer dropped to stay within [`KEPT`].
    dropped_upto: u64,
}

/// Whether an answer could be brought up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Certainty {
    Known,
    /// A forgotten file's last answer may have been dropped: ask again.
    Unknown,
}

impl Forgotten {
    /// Keeps the last answer (`attr`, given at tick `answered`) of a file
    /// whose record is going; 0 means none came.
    pub(super) fn keep(&mut self, gfid: Gfid, attr: &Attr, answered: u64) {
        if answered == 0 {
            return;
        }
        self.last.insert(gfid, (attr.clone(), answered));
        self.order.push_back((gfid, answered));
        while self.order.len() > KEPT {
            let Some((old, tick)) = self.order.pop_front() else {
                break;
            };
            if self.last.get(&old).is_some_and(|(_, t)| *t == tick) {
                self.last.remove(&old);
            }
            self.dropped_upto = self.dropped_upto.max(tick);
        }
    }

    /// Brings `a`, asked of the layer below at tick `asked`, up to the last
    /// answer of a forgotten record that came after it.
    pub(super) fn patch(&self, a: &mut Attr, asked: u64) -> Certainty {
        match self.last.get(&a.gfid) {
            Some((attr, answered)) => {
                if *answered > asked {
                    apply_newer(a, attr);
                }
                Certainty::Known
            }
            // Only files are written behind.
            None if a.kind == FileKind::File && asked < self.dropped_upto => Certainty::Unknown,
            None => Certainty::Known,
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.last.len()
    }
}

/// `a` as an answer the layer below gave after it (`newer`) shows: sizes
/// only grow by writes, and the later mtime wins.
pub(super) fn apply_newer(a: &mut Attr, newer: &Attr) {
    a.size = a.size.max(newer.size);
    if newer.mtime > a.mtime {
        a.mtime = newer.mtime;
        a.ctime = a.ctime.max(newer.ctime);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(gfid: Gfid, size: u64) -> Attr {
        let mut a = Attr::bare(gfid, FileKind::File, 0o644);
        a.size = size;
        a
    }

    #[test]
    fn an_answer_asked_before_the_last_write_was_answered_is_raised() {
        let g = Gfid([7; 16]);
        let mut f = Forgotten::default();
        f.keep(g, &attr(g, 200), 10);
        let mut asked_before = attr(g, 100);
        assert_eq!(f.patch(&mut asked_before, 9), Certainty::Known);
        assert_eq!(asked_before.size, 200);
        let mut asked_after = attr(g, 50);
        assert_eq!(f.patch(&mut asked_after, 10), Certainty::Known);
        assert_eq!(
            asked_after.size, 50,
            "asked after the answer: the bricks' word stands"
        );
    }

    #[test]
    fn past_its_bound_a_file_it_no_longer_knows_is_unknown() {
        let mut f = Forgotten::default();
        for i in 0..(KEPT as u64 + 10) {
            let g = Gfid::random();
            f.keep(g, &attr(g, i), i + 1);
        }
        assert_eq!(f.len(), KEPT);
        let g = Gfid::random();
        assert_eq!(f.patch(&mut attr(g, 0), 5), Certainty::Unknown);
        assert_eq!(f.patch(&mut attr(g, 0), 11), Certainty::Known);
    }

    #[test]
    fn a_file_forgotten_twice_keeps_its_later_answer() {
        let g = Gfid([3; 16]);
        let mut f = Forgotten::default();
        f.keep(g, &attr(g, 10), 1);
        f.keep(g, &attr(g, 20), 2);
        let mut a = attr(g, 0);
        f.patch(&mut a, 0);
        assert_eq!(a.size, 20);
    }
}
