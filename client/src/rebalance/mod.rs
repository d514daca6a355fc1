//! Rebalance: after replica sets were added, gives every directory a layout
//! over all sets and moves each file to the set its name now hashes to,
//! while clients keep reading and writing.
//!
//! 1. **Layouts** (`fix_layouts`): every directory is made on the sets that
//!    lack it and gets an even layout over all sets, marked incomplete:
//!    clients that miss a name on its hashed set then ask every set.
//!    Clients trust a layout for `LAYOUT_TTL`; the run waits twice that
//!    before moving anything, so every client places new files by the new
//!    layout by then.
//! 2. **Files** (`migrate.rs`), directory by directory: each file not on its
//!    hashed set is copied there as a link file (clients keep using the
//!    source), then, under the source's replication lock (clients' writes
//!    wait), checked unchanged, given its attributes and made real, and
//!    the source is removed. A client that still sends to the old set gets
//!    "no such gfid" and finds the file again. Hard-linked files stay where
//!    they are, with a link file on the hashed set.
//! 3. The directory's layout is marked complete.

mod migrate;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use proto::{FileKind, FsError, FsResult, Gfid, Name};
use tracing::{info, warn};

use crate::distribute::layout::Layout;
use crate::distribute::{Distribute, LAYOUT_TTL};
use crate::heal::Healer;
use crate::layer::{Layer, NewEntry};
use crate::StackConfig;

/// What a rebalance run did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebalanceProgress {
    /// Directories whose layout now spans every set.
    pub dirs_fixed: u64,
    /// Files looked at.
    pub files_scanned: u64,
    /// Files moved to another set.
    pub files_migrated: u64,
    /// Bytes of file data moved.
    pub bytes_migrated: u64,
    /// Files left where they are on purpose (hard links, already moving).
    pub files_skipped: u64,
    /// Files that could not be moved this run (the set was down, …).
    pub failures: u64,
    /// The run ended because `report` asked it to stop.
    pub stopped: bool,
}

/// Called after every directory and every migrated file; returning false
/// stops the run at the next file.
pub type Report = Arc<dyn Fn(&RebalanceProgress) -> bool + Send + Sync>;

/// A directory found by the crawl, with what is needed to make it on a set
/// that lacks it.
#[derive(Clone, Debug)]
struct DirInfo {
    gfid: Gfid,
    /// Parent and name; None for the root.
    place: Option<(Gfid, Name)>,
    perm: u32,
    uid: u32,
    gid: u32,
}

pub(crate) struct Run {
    dht: Arc<Distribute>,
    /// One per set: takes the replication lock a file's writers take.
    lockers: Vec<Arc<Healer>>,
    sets: usize,
    progress: std::sync::Mutex<RebalanceProgress>,
    report: Report,
}

/// Rebalances the volume `config` describes (all its bricks, `replica` per
/// set). Returns when every directory was visited or `report` said stop.
pub async fn run(config: StackConfig, report: Report) -> FsResult<RebalanceProgress> {
    let sets = config.sets();
    if sets.len() < 2 {
        info!("one replica set: nothing to rebalance");
        return Ok(RebalanceProgress::default());
    }
    let dht = crate::connect_distribute(config.clone(), false).await?;
    let mut lockers = Vec::with_capacity(sets.len());
    for set in &sets {
        lockers.push(Healer::connect(set.clone()).await?);
    }
    let run = Run {
        dht,
        lockers,
        sets: sets.len(),
        progress: Default::default(),
        report,
    };
    let result = run.go().await;
    run.dht.close().await;
    result
}

impl Run {
    async fn go(&self) -> FsResult<RebalanceProgress> {
        info!(sets = self.sets, "rebalance: fixing directory layouts");
        let dirs = self.fix_layouts().await?;
        if self.stopped() {
            return Ok(self.snapshot());
        }
        // Every client's cached layout is the new one before a file moves.
        tokio::time::sleep(LAYOUT_TTL * 2 + Duration::from_millis(200)).await;
        info!(dirs = dirs.len(), "rebalance: moving files");
        for dir in dirs {
            if self.stopped() {
                break;
            }
            match self.migrate_dir(dir.gfid).await {
                Ok(true) => {
                    self.dht
                        .write_layout(dir.gfid, &Layout::even(self.sets, true))
                        .await?
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(dir = %dir.gfid, error = %e, "rebalance: directory left incomplete");
                    self.update(|p| p.failures += 1);
                }
            }
        }
        let p = self.snapshot();
        info!(?p, "rebalance: finished");
        Ok(p)
    }

    fn snapshot(&self) -> RebalanceProgress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn stopped(&self) -> bool {
        self.snapshot().stopped
    }

    /// Applies `f` to the progress and tells the reporter; a reporter that
    /// answers false stops the run.
    pub(crate) fn update(&self, f: impl FnOnce(&mut RebalanceProgress)) {
        let now = match self.progress.lock() {
            Ok(mut p) => {
                f(&mut p);
                p.clone()
            }
            Err(_) => return,
        };
        if !(self.report)(&now) {
            if let Ok(mut p) = self.progress.lock() {
                p.stopped = true;
            }
        }
    }

    /// Crawls every directory (breadth first), makes it on every set and
    /// gives it an incomplete even layout over all sets. Returns the
    /// directories whose files may need to move.
    async fn fix_layouts(&self) -> FsResult<Vec<DirInfo>> {
        let root = self.dht.getattr(Gfid::ROOT).await?;
        let mut queue = VecDeque::from([DirInfo {
            gfid: Gfid::ROOT,
            place: None,
            perm: root.perm,
            uid: root.uid,
            gid: root.gid,
        }]);
        let mut todo = Vec::new();
        while let Some(dir) = queue.pop_front() {
            if self.stopped() {
                break;
            }
            self.make_everywhere(&dir).await?;
            let layout = self.dht.read_layout(dir.gfid).await?;
            if !(layout.complete && layout.is_even_over(self.sets)) {
                self.dht
                    .write_layout(dir.gfid, &Layout::even(self.sets, false))
                    .await?;
                todo.push(dir.clone());
            }
            self.update(|p| p.dirs_fixed += 1);
            let mut after = None;
            loop {
                let page = self.dht.readdir(dir.gfid, after.clone(), 512).await?;
                for e in &page.entries {
                    if e.attr.kind == FileKind::Dir {
                        queue.push_back(DirInfo {
                            gfid: e.attr.gfid,
                            place: Some((dir.gfid, e.name.clone())),
                            perm: e.attr.perm,
                            uid: e.attr.uid,
                            gid: e.attr.gid,
                        });
                    }
                }
                after = page.entries.last().map(|e| e.name.clone());
                if page.eof || after.is_none() {
                    break;
                }
            }
        }
        Ok(todo)
    }

    /// Makes directory `dir` on the sets that do not have it (sets added
    /// after it was made), with the same gfid.
    async fn make_everywhere(&self, dir: &DirInfo) -> FsResult<()> {
        let Some((parent, name)) = &dir.place else {
            return Ok(());
        };
        for s in 0..self.sets {
            let set = self.dht.set(s);
            match set.getattr(dir.gfid).await {
                Ok(_) => continue,
                Err(FsError::Stale(_) | FsError::NotFound) => {}
                Err(e) => return Err(e),
            }
            let new = NewEntry {
                name: name.clone(),
                kind: FileKind::Dir,
                perm: dir.perm,
                rdev: 0,
                uid: dir.uid,
                gid: dir.gid,
                target: None,
            };
            let xattrs = vec![(
                Name::new(crate::distribute::layout::LAYOUT_XATTR),
                proto::Bytes::from(Layout::even(self.sets, false).encode()),
            )];
            match set.create_object(*parent, new, dir.gfid, xattrs).await {
                Ok(_) | Err(FsError::Exists) => {
                    info!(set = s, dir = %dir.gfid, %name, "rebalance: directory made on a new set")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
