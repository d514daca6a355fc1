//! The files this brick serves most (`volume top`): reads and writes per
//! gfid, from clients (heal and rebalance traffic is not what an operator
//! looks for), with the last name the brick saw for each.
//!
//! Bounded: at most `TRACKED_MAX` files. When the table is full the less
//! busy half is dropped, so a file that stays hot stays listed while a
//! tree walk over millions of files (each seen once) churns only the
//! bottom. The counts are therefore lower bounds for files that were
//! dropped and came back.
//!
//! Data operations carry only a gfid, so names come from lookups, creates
//! and links. A name is a hint: the report checks it still leads to the
//! file (a rename or unlink since leaves the file listed by gfid).

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::{Mutex, MutexGuard, PoisonError};

use proto::{Gfid, HotFile, Name};

use crate::store::{entry_gfid, Store};

/// Files tracked at once. With names of up to 255 bytes this is about
/// 1.3 MiB at most.
pub(crate) const TRACKED_MAX: usize = 4096;

#[derive(Default)]
struct Traffic {
    reads: u64,
    read_bytes: u64,
    writes: u64,
    write_bytes: u64,
    name: Option<(Gfid, Name)>,
}

impl Traffic {
    fn ops(&self) -> u64 {
        self.reads.saturating_add(self.writes)
    }
}

#[derive(Default)]
pub(crate) struct HotFiles {
    files: Mutex<HashMap<Gfid, Traffic>>,
}

impl HotFiles {
    fn table(&self) -> MutexGuard<'_, HashMap<Gfid, Traffic>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn entry(files: &mut HashMap<Gfid, Traffic>, gfid: Gfid) -> &mut Traffic {
        if files.len() >= TRACKED_MAX && !files.contains_key(&gfid) {
            make_room(files);
        }
        files.entry(gfid).or_default()
    }

    pub(crate) fn read(&self, gfid: Gfid, bytes: usize) {
        let mut files = self.table();
        let t = Self::entry(&mut files, gfid);
        t.reads = t.reads.saturating_add(1);
        t.read_bytes = t.read_bytes.saturating_add(bytes as u64);
    }

    pub(crate) fn wrote(&self, gfid: Gfid, bytes: usize) {
        let mut files = self.table();
        let t = Self::entry(&mut files, gfid);
        t.writes = t.writes.saturating_add(1);
        t.write_bytes = t.write_bytes.saturating_add(bytes as u64);
    }

    /// `gfid` is (or was just now) `name` in `parent`.
    pub(crate) fn named(&self, gfid: Gfid, parent: Gfid, name: &Name) {
        let mut files = self.table();
        let t = Self::entry(&mut files, gfid);
        if t.name
            .as_ref()
            .is_none_or(|(p, n)| *p != parent || n != name)
        {
            t.name = Some((parent, name.clone()));
        }
    }

    /// The `limit` busiest files (reads and writes together), with their
    /// paths where the last name seen still leads to them; then, if
    /// `clear`, starts counting afresh. The paths are read from `store`
    /// after the table's lock is let go.
    pub(crate) fn top(&self, store: &Store, limit: usize, clear: bool) -> (Vec<HotFile>, usize) {
        let (rows, tracked) = {
            let mut files = self.table();
            let tracked = files.len();
            let mut rows: Vec<(HotFile, Option<(Gfid, Name)>)> = files
                .iter()
                .filter(|(_, t)| t.ops() > 0)
                .map(|(gfid, t)| {
                    let row = HotFile {
                        gfid: *gfid,
                        path: None,
                        reads: t.reads,
                        read_bytes: t.read_bytes,
                        writes: t.writes,
                        write_bytes: t.write_bytes,
                    };
                    (row, t.name.clone())
                })
                .collect();
            let ops = |f: &HotFile| f.reads.saturating_add(f.writes);
            rows.sort_by(|a, b| ops(&b.0).cmp(&ops(&a.0)).then(a.0.gfid.cmp(&b.0.gfid)));
            rows.truncate(limit);
            if clear {
                files.clear();
            }
            (rows, tracked)
        };
        let files = rows
            .into_iter()
            .map(|(mut row, name)| {
                row.path = name.and_then(|(parent, name)| path_of(store, row.gfid, parent, &name));
                row
            })
            .collect();
        (files, tracked)
    }
}

/// Keeps the busier half (of files tied at its edge, any of them).
fn make_room(files: &mut HashMap<Gfid, Traffic>) {
    let keep = TRACKED_MAX / 2;
    let mut counts: Vec<u64> = files.values().map(Traffic::ops).collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let Some(&floor) = counts.get(keep - 1) else {
        return;
    };
    files.retain(|_, t| t.ops() >= floor);
    let over = files.len().saturating_sub(keep);
    let tied: Vec<Gfid> = files
        .iter()
        .filter(|(_, t)| t.ops() == floor)
        .map(|(g, _)| *g)
        .take(over)
        .collect();
    for g in tied {
        files.remove(&g);
    }
}

/// `/dir/name` when `name` in `parent` still is `gfid` on this brick.
fn path_of(store: &Store, gfid: Gfid, parent: Gfid, name: &Name) -> Option<String> {
    let dirfd = store.dir(parent).ok()?;
    if entry_gfid(dirfd.as_fd(), name).ok()?? != gfid {
        return None;
    }
    let dir = store.dir_path(parent).ok()?;
    let name = String::from_utf8_lossy(name.as_bytes());
    Some(if dir == b"." {
        format!("/{name}")
    } else {
        format!("/{}/{name}", String::from_utf8_lossy(&dir))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_keeps_the_busy_files() {
        let hot = HotFiles::default();
        let busy: Vec<Gfid> = (0..10).map(|_| Gfid::random()).collect();
        for g in &busy {
            for _ in 0..5 {
                hot.read(*g, 4096);
            }
        }
        for _ in 0..(TRACKED_MAX * 3) {
            hot.wrote(Gfid::random(), 1);
        }
        let files = hot.table();
        assert!(files.len() <= TRACKED_MAX);
        for g in &busy {
            let t = files.get(g).expect("a busy file was dropped");
            assert_eq!((t.reads, t.read_bytes), (5, 5 * 4096));
        }
    }

    #[test]
    fn ties_at_the_floor_still_make_room() {
        let mut files = HashMap::new();
        for _ in 0..TRACKED_MAX {
            files.insert(
                Gfid::random(),
                Traffic {
                    reads: 1,
                    ..Default::default()
                },
            );
        }
        make_room(&mut files);
        assert_eq!(files.len(), TRACKED_MAX / 2);
    }
}
