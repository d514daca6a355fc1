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
//!
//! Directories whose layout was already complete and even are crawled too,
//! for strays only: files with no entry at all on their hashed set (a
//! client that had not switched to the new graph yet put them where its
//! old graph said). Lookups cannot find those until they move.

mod migrate;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use proto::{FileKind, FsResult, Gfid, Name};
use tracing::{info, warn};

use crate::distribute::layout::Layout;
use crate::distribute::{is_gone, Distribute, LAYOUT_TTL};
use crate::heal::Healer;
use crate::layer::Layer;
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

/// A directory found by the crawl, with where it is (to make it on a set
/// that lacks it).
#[derive(Clone, Debug)]
struct DirInfo {
    gfid: Gfid,
    /// Parent and name; None for the root.
    place: Option<(Gfid, Name)>,
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
    let moving = crate::StackConfig {
        purpose: proto::Purpose::Maintenance,
        ..config.clone()
    };
    let dht = crate::connect_distribute(moving, false).await?;
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
        if dirs.iter().any(|(_, relaid, _)| *relaid) {
            tokio::time::sleep(LAYOUT_TTL * 2 + Duration::from_millis(200)).await;
        }
        info!(dirs = dirs.len(), "rebalance: moving files");
        for (dir, relaid, layout) in dirs {
            if self.stopped() {
                break;
            }
            // A directory whose layout was already right may still hold
            // strays: files a client that had not switched to the new
            // graph yet put where its old graph sent them.
            let done = match self.migrate_dir(dir.gfid, !relaid, &layout).await {
                Ok(true) if relaid => {
                    let layout = Layout {
                        complete: true,
                        ..layout
                    };
                    self.dht.write_layout(dir.gfid, &layout).await
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            match done {
                Ok(()) => {}
                // Removed by a client meanwhile.
                Err(e) if is_gone(&e) => {}
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
    /// gives it an incomplete even layout over all sets. Returns every
    /// directory, and whether its layout was changed (else it was already
    /// complete and even). A directory that clients
    /// remove or rename meanwhile is passed over (a renamed one is found
    /// at its new place if the crawl has not passed it, else left for the
    /// next run); other trouble with one directory is counted as a
    /// failure and the crawl goes on.
    async fn fix_layouts(&self) -> FsResult<Vec<(DirInfo, bool, Layout)>> {
        let mut queue = VecDeque::from([DirInfo {
            gfid: Gfid::ROOT,
            place: None,
        }]);
        let mut todo = Vec::new();
        while let Some(dir) = queue.pop_front() {
            if self.stopped() {
                break;
            }
            match self.fix_dir(&dir, &mut queue).await {
                Ok(Some((relaid, layout))) => todo.push((dir, relaid, layout)),
                Ok(None) => {}
                Err(e) if is_gone(&e) => {}
                Err(e) if dir.place.is_none() => return Err(e),
                Err(e) => {
                    warn!(dir = %dir.gfid, error = %e, "rebalance: directory not laid out");
                    self.update(|p| p.failures += 1);
                }
            }
        }
        Ok(todo)
    }

    /// One directory of `fix_layouts`: its subdirectories go to `queue`;
    /// whether its layout was changed, None when it moved away meanwhile.
    async fn fix_dir(
        &self,
        dir: &DirInfo,
        queue: &mut VecDeque<DirInfo>,
    ) -> FsResult<Option<(bool, Layout)>> {
        if !self.make_everywhere(dir).await? {
            return Ok(None);
        }
        let mut layout = self.dht.read_layout(dir.gfid).await?;
        let relaid = !(layout.complete && layout.is_balanced_over(self.sets));
        if relaid {
            // Most names stay where they are; those that move go to the
            // sets short of their share.
            layout = layout.grown(self.sets);
            self.dht.write_layout(dir.gfid, &layout).await?;
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
                    });
                }
            }
            after = page.entries.last().map(|e| e.name.clone());
            if page.eof || after.is_none() {
                break;
            }
        }
        Ok(Some((relaid, layout)))
    }

    /// Makes directory `dir` on the sets that do not have it (sets added
    /// after it was made), with the same gfid, attributes and extended
    /// attributes (a directory answers from any set, so every copy must
    /// carry them) and an incomplete layout. False when the directory is
    /// no longer where the crawl found it (a copy made there would bring
    /// back the old name).
    async fn make_everywhere(&self, dir: &DirInfo) -> FsResult<bool> {
        let Some((parent, name)) = &dir.place else {
            return Ok(true);
        };
        let mut missing = Vec::new();
        let mut present = None;
        for s in 0..self.sets {
            match self.dht.set(s).getattr(dir.gfid).await {
                Ok(_) => {
                    present.get_or_insert(s);
                }
                Err(e) if is_gone(&e) => missing.push(s),
                Err(e) => return Err(e),
            }
        }
        let Some(from) = present else {
            return Ok(false);
        };
        if missing.is_empty() {
            return Ok(true);
        }
        match self.dht.set(from).lookup(*parent, name).await {
            Ok(a) if a.gfid == dir.gfid => {}
            Ok(_) => return Ok(false),
            Err(e) if is_gone(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
        let layout = Layout::even(self.sets, false);
        self.dht
            .copy_dir(*parent, name, dir.gfid, from, &missing, Some(&layout))
            .await?;
        Ok(true)
    }
}
