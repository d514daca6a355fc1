//! Attributes this client just learned from the bricks' answers to its own
//! operations: the object's after a write/setattr/create, the parents'
//! after an entry operation. The kernel invalidates a directory's
//! attributes after every create in it and asks for them again at once; the
//! answer is already here, exact, so that GETATTR costs no round trip.
//!
//! Entries live for [`TTL`] only, so what another client changed is seen
//! at most that much later than the kernel's own attribute timeout allows.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use proto::{Attr, Gfid};

pub const TTL: Duration = Duration::from_millis(200);
const MAX_ENTRIES: usize = 8192;

#[derive(Default)]
pub struct AttrCache {
    map: Mutex<HashMap<Gfid, (Attr, Instant)>>,
}

impl AttrCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<Gfid, (Attr, Instant)>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn put(&self, attrs: impl IntoIterator<Item = Attr>) {
        let now = Instant::now();
        let mut map = self.lock();
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

    /// Before removing or renaming a name: the object behind it (whose gfid
    /// the caller does not know) changes its link count or ctime.
    pub fn clear(&self) {
        self.lock().clear();
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
