//! Open directory handles. opendir reads the whole listing once into a
//! snapshot, so that readdir offsets stay valid however the directory
//! changes meanwhile (POSIX lets a stream miss or repeat concurrent changes,
//! but never skip unchanged entries), and so that readdir itself needs no
//! round trip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use proto::DirEntry;

pub(crate) struct DirHandles {
    next: AtomicU64,
    open: DashMap<u64, Arc<Vec<DirEntry>>>,
}

impl DirHandles {
    pub(crate) fn new() -> DirHandles {
        DirHandles {
            // 0 is what the kernel sends when no handle was set; never hand it out.
            next: AtomicU64::new(1),
            open: DashMap::new(),
        }
    }

    pub(crate) fn insert(&self, entries: Vec<DirEntry>) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.insert(fh, Arc::new(entries));
        fh
    }

    pub(crate) fn get(&self, fh: u64) -> Option<Arc<Vec<DirEntry>>> {
        self.open.get(&fh).map(|e| Arc::clone(&e))
    }

    pub(crate) fn remove(&self, fh: u64) {
        self.open.remove(&fh);
    }
}

/// One position of a directory stream: "." and ".." first, then the
/// snapshot. The offset the kernel gets back for position `i` is `i + 1`,
/// the position to resume at.
pub(crate) enum Slot<'a> {
    Dot,
    DotDot,
    Entry(&'a DirEntry),
}

pub(crate) fn slots(entries: &[DirEntry], offset: u64) -> impl Iterator<Item = (u64, Slot<'_>)> {
    let dots = [Slot::Dot, Slot::DotDot].into_iter();
    dots.chain(entries.iter().map(Slot::Entry))
        .enumerate()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .map(|(i, s)| (i as u64 + 1, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{Attr, FileKind, Gfid, Name};

    fn entry(name: &str) -> DirEntry {
        DirEntry {
            name: Name::from(name),
            attr: Attr::bare(Gfid::random(), FileKind::File, 0o644),
        }
    }

    fn names(entries: &[DirEntry], offset: u64) -> Vec<(u64, String)> {
        slots(entries, offset)
            .map(|(off, s)| {
                let n = match s {
                    Slot::Dot => ".".to_string(),
                    Slot::DotDot => "..".to_string(),
                    Slot::Entry(e) => e.name.to_string(),
                };
                (off, n)
            })
            .collect()
    }

    #[test]
    fn offsets_resume_after_the_last_returned_entry() {
        let e = vec![entry("a"), entry("b")];
        assert_eq!(
            names(&e, 0),
            vec![
                (1, ".".into()),
                (2, "..".into()),
                (3, "a".into()),
                (4, "b".into())
            ]
        );
        assert_eq!(names(&e, 3), vec![(4, "b".into())]);
        assert!(names(&e, 4).is_empty());
        assert!(names(&e, u64::MAX).is_empty());
    }

    #[test]
    fn handles_are_nonzero_and_released() {
        let d = DirHandles::new();
        let fh = d.insert(vec![entry("x")]);
        assert_ne!(fh, 0);
        assert_eq!(d.get(fh).map(|e| e.len()), Some(1));
        d.remove(fh);
        assert!(d.get(fh).is_none());
    }
}
