//! Attributes this client just learned from the bricks' answers to its own
//! operations: the object's after a write/setattr/create, the parents'
//! after an entry operation. The kernel invalidates a directory's
//! attributes after every create in it and asks for them again at once; the
//! answer is already here, exact, so that GETATTR costs no round trip.
//!
//! Entries live for [`TTL`] only, so what another client changed is seen
//! at most that much later than the kernel's own attribute timeout allows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use proto::{Attr, Gfid};

pub const TTL: Duration = Duration::from_millis(200);
const MAX_ENTRIES: usize = 8192;

#[derive(Default)]
pub struct AttrCache {
    map: Mutex<HashMap<Gfid, (Attr, Instant)>>,
    /// Counts [`AttrCache::clear`]s: an answer to an operation that began
    /// before one may predate the unlink or rename that caused it (a write
    /// sent behind, answered with the link count it had), so it is not kept.
    clears: AtomicU64,
}

impl AttrCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<Gfid, (Attr, Instant)>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What [`AttrCache::put`] is given: read before the operation starts.
    pub fn epoch(&self) -> u64 {
        self.clears.load(Ordering::Acquire)
    }

    /// Keeps `attrs`, the answer to an operation that began at `epoch`,
    /// unless a clear came in between.
    pub fn put(&self, epoch: u64, attrs: impl IntoIterator<Item = Attr>) {
        let now = Instant::now();
        let mut map = self.lock();
        if self.clears.load(Ordering::Acquire) != epoch {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (_, at)| now.duration_since(*at) < TTL);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        for a in attrs {
            map.insert(a.gfid, (a, now));
        }
    }

    pub fn get(&self, gfid: Gfid) -> Option<Attr> {
        let map = self.lock();
        let (attr, at) = map.get(&gfid)?;
        (at.elapsed() < TTL).then(|| attr.clone())
    }

    /// Before and after removing or renaming a name: the object behind it
    /// (whose gfid the caller does not know) changes its link count or
    /// ctime, and an answer about it sent meanwhile may be from before.
    pub fn clear(&self) {
        let mut map = self.lock();
        self.clears.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }

    /// After removing or renaming a name: what was learned meanwhile of
    /// files may be from before it; directories' answers come from the
    /// operation itself and stay (the kernel asks for them next).
    pub fn clear_files(&self) {
        let mut map = self.lock();
        self.clears.fetch_add(1, Ordering::AcqRel);
        map.retain(|_, (a, _)| a.kind == proto::FileKind::Dir);
    }

    /// Before an operation that changes `gfid`: its cached attributes are
    /// about to be wrong.
    pub fn forget(&self, gfids: &[Gfid]) {
        let mut map = self.lock();
        for g in gfids {
            map.remove(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::FileKind;

    #[test]
    fn an_answer_to_an_operation_older_than_an_unlink_is_not_kept() {
        let cache = AttrCache::default();
        let file = Attr::bare(Gfid([9; 16]), FileKind::File, 0o644);
        let dir = Attr::bare(Gfid([8; 16]), FileKind::Dir, 0o755);
        let write_began = cache.epoch();
        cache.clear();
        cache.put(write_began, [file.clone()]);
        assert!(
            cache.get(file.gfid).is_none(),
            "kept a link count from before"
        );

        let unlink_began = cache.epoch();
        cache.put(unlink_began, [dir.clone(), file.clone()]);
        cache.clear_files();
        assert!(cache.get(file.gfid).is_none());
        assert!(cache.get(dir.gfid).is_some(), "the parent's answer stays");
    }
}
