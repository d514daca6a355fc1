//! The distribute layer's two memories, both bounded: where each file
//! lives (gfid → set) and each directory's layout (for a second, so a
//! rebalance's new layout reaches every client before files move).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto::Gfid;

use super::layout::Layout;

/// How long a client trusts a layout it read; rebalance waits twice this
/// between writing new layouts and moving the first file.
pub const LAYOUT_TTL: Duration = Duration::from_secs(1);

const MAX_LOCATIONS: usize = 1 << 18;
const MAX_LAYOUTS: usize = 1 << 14;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    /// A file (anything not a directory) on this set.
    File(usize),
    /// A directory: on every set.
    Dir,
}

#[derive(Default)]
pub struct Locations {
    map: Mutex<HashMap<Gfid, Loc>>,
}

impl Locations {
    pub fn get(&self, gfid: Gfid) -> Option<Loc> {
        if gfid.is_root() {
            return Some(Loc::Dir);
        }
        self.map.lock().ok()?.get(&gfid).copied()
    }

    pub fn put(&self, gfid: Gfid, loc: Loc) {
        if let Ok(mut m) = self.map.lock() {
            // Forgetting everything at the limit keeps memory flat; a
            // forgotten location costs one fan-out to find again.
            if m.len() >= MAX_LOCATIONS && !m.contains_key(&gfid) {
                m.clear();
            }
            m.insert(gfid, loc);
        }
    }

    pub fn forget(&self, gfid: Gfid) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&gfid);
        }
    }
}

#[derive(Default)]
pub struct Layouts {
    map: Mutex<HashMap<Gfid, (Layout, Instant)>>,
}

impl Layouts {
    pub fn fresh(&self, dir: Gfid) -> Option<Layout> {
        let m = self.map.lock().ok()?;
        let (layout, at) = m.get(&dir)?;
        (at.elapsed() < LAYOUT_TTL).then(|| layout.clone())
    }

    pub fn put(&self, dir: Gfid, layout: Layout) {
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= MAX_LAYOUTS && !m.contains_key(&dir) {
                m.retain(|_, (_, at)| at.elapsed() < LAYOUT_TTL);
                if m.len() >= MAX_LAYOUTS {
                    m.clear();
                }
            }
            m.insert(dir, (layout, Instant::now()));
        }
    }

    pub fn forget(&self, dir: Gfid) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&dir);
        }
    }
}
