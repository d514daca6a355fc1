//! Self-heal: makes the replicas of a replica set identical again after a
//! brick missed operations (TARGET invariants 5 and 7).
//!
//! The healer is a client of its own (own connections, own lock owner) that
//! works from the bricks' changelog: the heal index lists what some brick
//! blames another for, the pending counters say which replicas are sources
//! and which are sinks, and unconfirmed dirty marks say where a client died
//! mid-transaction. For each object it takes the same replication lock
//! clients take, repairs the sinks (entries of a directory, metadata, and
//! data block by block: only blocks whose blake3 differs are copied), then
//! subtracts from the blame exactly what it saw before repairing, so blame
//! added meanwhile is never lost.
//!
//! Run by `brickfs heald` (triggers: a brick coming back, new blame, a
//! periodic retry) and by `brickfs volume heal` on demand.

mod data;
mod entries;
mod info;
mod lock;
mod object;
mod on_access;
mod roles;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use proto::{FsError, FsResult, Gfid};
use tracing::{info, warn};

pub use info::{BrickHealInfo, Policy, SplitBrainEntry};
pub use object::Outcome;
pub use on_access::HealOnAccess;
pub use roles::Roles;

use crate::protocol::BrickConn;
use crate::quorum::{count, Mask};

/// Objects healed at once by one healer.
const WORKERS: usize = 16;
/// Passes over the heal index in one `heal_index` call: an entry heal can
/// leave work for a later pass (an object moved into a directory healed
/// after its old one).
const MAX_PASSES: usize = 8;
/// Entries named in heald's log line when heal leaves some.
const STUCK_LOGGED: usize = 5;

/// What the healer has done since it started (all monotonic).
#[derive(Default)]
pub struct HealStats {
    pub healed: AtomicU64,
    pub clean: AtomicU64,
    pub postponed: AtomicU64,
    pub split_brain: AtomicU64,
    pub failed: AtomicU64,
    pub entries_created: AtomicU64,
    pub entries_linked: AtomicU64,
    pub entries_removed: AtomicU64,
    /// File data written to sinks.
    pub bytes_copied: AtomicU64,
    /// Checksums fetched to find the blocks that differ.
    pub checksum_bytes: AtomicU64,
}

/// A snapshot of [`HealStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealCounts {
    pub healed: u64,
    pub clean: u64,
    pub postponed: u64,
    pub split_brain: u64,
    pub failed: u64,
    pub entries_created: u64,
    pub entries_linked: u64,
    pub entries_removed: u64,
    pub bytes_copied: u64,
    pub checksum_bytes: u64,
}

impl HealStats {
    pub fn snapshot(&self) -> HealCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HealCounts {
            healed: g(&self.healed),
            clean: g(&self.clean),
            postponed: g(&self.postponed),
            split_brain: g(&self.split_brain),
            failed: g(&self.failed),
            entries_created: g(&self.entries_created),
            entries_linked: g(&self.entries_linked),
            entries_removed: g(&self.entries_removed),
            bytes_copied: g(&self.bytes_copied),
            checksum_bytes: g(&self.checksum_bytes),
        }
    }

    fn count(&self, outcome: &FsResult<Outcome>) {
        let slot = match outcome {
            Ok(Outcome::Healed) => &self.healed,
            Ok(Outcome::Clean | Outcome::Gone) => &self.clean,
            Ok(Outcome::Postponed(_)) => &self.postponed,
            Ok(Outcome::SplitBrain) => &self.split_brain,
            Err(_) => &self.failed,
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }
}

/// The result of one heal run (index or full).
#[derive(Clone, Debug, Default)]
pub struct HealReport {
    pub passes: usize,
    /// Heal-index entries over all bricks that are up, when the run ended.
    pub left: u64,
    pub elapsed: Duration,
    pub counts: HealCounts,
    /// Entries still listed that a heal tried and could not finish, with
    /// why (what `volume heal NAME info` shows), in gfid order.
    pub stuck: Vec<(Gfid, String)>,
}

/// What decides whether the daemon tries again after a pass that left work.
#[derive(Clone, Copy)]
struct TriggerState {
    generations: u64,
    changes: u64,
    all_up: bool,
}

pub struct Healer {
    bricks: Vec<Arc<BrickConn>>,
    quorum: usize,
    pub stats: HealStats,
    /// Why the last heal of an object did not finish, until one does, and
    /// the bricks' connection generations when the bricks were told.
    stuck: Mutex<HashMap<Gfid, (String, u64)>>,
}

impl Healer {
    /// Connects to the bricks with connections of its own (its locks must
    /// not be confused with any mount's).
    pub async fn connect(mut config: crate::StackConfig) -> FsResult<Arc<Healer>> {
        config.purpose = proto::Purpose::Maintenance;
        let bricks = crate::connect_bricks(&config).await?;
        let quorum = bricks.len() / 2 + 1;
        Ok(Arc::new(Healer {
            bricks,
            quorum,
            stats: HealStats::default(),
            stuck: Mutex::new(HashMap::new()),
        }))
    }

    pub fn bricks(&self) -> &[Arc<BrickConn>] {
        &self.bricks
    }

    /// A new deadline for one operation on one brick, from the next on.
    pub fn set_op_timeout(&self, timeout: Duration) {
        for b in &self.bricks {
            b.set_op_timeout(timeout);
        }
    }

    /// Closes the healer's connections: the bricks drop its locks at once
    /// (a heal cut short leaves dirty marks, which the next heal resolves).
    pub fn close(&self) {
        for b in &self.bricks {
            b.close();
        }
    }

    fn up_mask(&self) -> Mask {
        crate::quorum::mask_where(&self.bricks, BrickConn::is_up)
    }

    fn all_mask(&self) -> Mask {
        crate::quorum::all_of(self.bricks.len())
    }

    /// Entries waiting for heal over all bricks that are up, as of their
    /// last ping.
    pub fn pending_now(&self) -> u64 {
        self.bricks
            .iter()
            .filter(|b| b.is_up())
            .map(|b| b.heal_entries())
            .sum()
    }

    /// Heals everything the heal indices list, pass after pass, until they
    /// are empty or a pass makes no progress.
    pub async fn heal_index(&self) -> FsResult<HealReport> {
        let started = Instant::now();
        let mut passes = 0;
        while passes < MAX_PASSES {
            let listed = self.list_index().await?;
            if listed.is_empty() {
                break;
            }
            passes += 1;
            let before = self.stats.snapshot();
            let dirs: Vec<Gfid> = listed
                .iter()
                .filter(|(_, dir)| **dir)
                .map(|(g, _)| *g)
                .collect();
            info!(
                pass = passes,
                entries = listed.len(),
                dirs = dirs.len(),
                "heal pass"
            );
            // Directories first, one at a time: their entry heal creates
            // (and heals) the files made while a brick was away, which then
            // need nothing more.
            for d in dirs {
                let res = self.heal_gfid(d, false).await;
                self.note(d, &res).await;
            }
            let files: Vec<Gfid> = self
                .list_index()
                .await?
                .into_iter()
                .filter(|(_, dir)| !*dir)
                .map(|(g, _)| g)
                .collect();
            self.heal_many(files, false).await;
            let after = self.stats.snapshot();
            if after.healed == before.healed && after.clean == before.clean {
                break;
            }
        }
        Ok(self.report(passes, started).await)
    }

    /// Crawls the whole volume from the root, comparing every directory's
    /// entries and every object's metadata and size on all replicas, blame
    /// or not: for a brick that was emptied or replaced.
    pub async fn heal_full(&self) -> FsResult<HealReport> {
        let started = Instant::now();
        info!("full heal: crawling from the root");
        self.crawl(Gfid::ROOT, 0).await?;
        let mut report = self.heal_index().await?;
        report.elapsed = started.elapsed();
        report.passes += 1;
        Ok(report)
    }

    fn crawl(&self, dir: Gfid, depth: usize) -> futures::future::LocalBoxFuture<'_, FsResult<()>> {
        futures::FutureExt::boxed_local(async move {
            if depth > 4096 {
                return Err(FsError::Invalid("directory tree too deep".into()));
            }
            let res = self.heal_gfid(dir, true).await;
            self.note(dir, &res).await;
            res?;
            let listing = self.read_listing_any(dir).await?;
            let mut files = Vec::new();
            for entry in listing.values() {
                if entry.kind == proto::FileKind::Dir {
                    self.crawl(entry.gfid, depth + 1).await?;
                } else {
                    files.push(entry.gfid);
                }
            }
            self.heal_many(files, true).await;
            Ok(())
        })
    }

    async fn heal_many(&self, gfids: Vec<Gfid>, full: bool) {
        futures::stream::iter(gfids)
            .for_each_concurrent(WORKERS, |g| async move {
                let res = self.heal_gfid(g, full).await;
                self.note(g, &res).await;
            })
            .await;
    }

    /// Counts an outcome; one that leaves the object unhealed is logged
    /// and told to the bricks with why, so that `volume heal NAME info`
    /// lists the reason with the entry instead of a bare pending count.
    async fn note(&self, gfid: Gfid, res: &FsResult<Outcome>) {
        self.stats.count(res);
        let why = match res {
            Ok(Outcome::SplitBrain) => {
                warn!(%gfid, "split-brain: not healed; resolve it with `volume heal NAME split-brain`");
                "split-brain: its replicas blame each other; pick the good copy with \
                 `volume heal NAME split-brain`"
                    .to_string()
            }
            Ok(Outcome::Postponed(why)) => {
                info!(%gfid, why, "heal postponed");
                why.clone()
            }
            Err(e) => {
                warn!(%gfid, "heal failed: {e}");
                format!("heal failed: {e}")
            }
            Ok(_) => {
                self.stuck_map().remove(&gfid);
                return;
            }
        };
        // Bricks keep notes in memory: tell them again after a reconnect.
        let generations = self.trigger_state().generations;
        let told = (why.clone(), generations);
        if self.stuck_map().insert(gfid, told.clone()) == Some(told) {
            return;
        }
        // Best effort: a brick that misses it shows the entry without why.
        crate::quorum::fan_out(&self.bricks, self.up_mask(), |b| {
            let why = why.clone();
            async move {
                b.call(|c, ctx| async move { c.heal_note(ctx, gfid, why).await })
                    .await
            }
        })
        .await;
    }

    fn stuck_map(&self) -> std::sync::MutexGuard<'_, HashMap<Gfid, (String, u64)>> {
        self.stuck.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn report(&self, passes: usize, started: Instant) -> HealReport {
        let (left, stuck) = match self.list_index().await {
            Ok(l) => {
                let mut stuck = self.stuck_map();
                stuck.retain(|g, _| l.contains_key(g));
                let mut listed: Vec<(Gfid, String)> =
                    stuck.iter().map(|(g, (w, _))| (*g, w.clone())).collect();
                listed.sort();
                (l.len() as u64, listed)
            }
            Err(_) => (self.pending_now(), Vec::new()),
        };
        HealReport {
            passes,
            left,
            elapsed: started.elapsed(),
            counts: self.stats.snapshot(),
            stuck,
        }
    }

    /// The union of the heal indices of every brick that is up; `true` for
    /// directories.
    async fn list_index(&self) -> FsResult<BTreeMap<Gfid, bool>> {
        let mut out = BTreeMap::new();
        for (_, entries) in self.index_pages(self.up_mask()).await? {
            for e in entries {
                *out.entry(e.gfid).or_insert(false) |= e.dir;
            }
        }
        Ok(out)
    }

    /// Runs until dropped: heals when a brick comes back or anything is
    /// blamed, retries what could not be healed every `retry()` (asked
    /// each time, so the volume's `cluster.heal-retry` applies live; sooner
    /// when the blame changes), and crawls everything when a brick turns up
    /// with a new identity (wiped or replaced).
    pub async fn run(self: Arc<Self>, retry: impl Fn() -> Duration) {
        let mut last_failed_at: Option<(Instant, TriggerState)> = None;
        let mut last_stuck: Vec<(Gfid, String)> = Vec::new();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if count(self.up_mask()) < 2 {
                continue;
            }
            if let Some(replaced) = self.replaced_bricks() {
                warn!(
                    bricks = replaced,
                    "brick with a new identity: blaming it at the root and crawling everything"
                );
                self.blame_root(replaced).await;
                match self.heal_full().await {
                    Ok(r) => info!(left = r.left, elapsed = ?r.elapsed, "full heal done"),
                    Err(e) => warn!("full heal failed: {e}"),
                }
                continue;
            }
            if self.pending_now() == 0 {
                continue;
            }
            let now = self.trigger_state();
            if let Some((at, seen)) = last_failed_at {
                // Nothing new to try: wait for a brick to (re)connect, for
                // new blame while every brick is up (while one is down, new
                // blame is against it and cannot be healed), or the retry.
                let reconnected = now.generations != seen.generations;
                let new_blame = now.all_up && now.changes != seen.changes;
                if !reconnected && !new_blame && at.elapsed() < retry() {
                    continue;
                }
            }
            match self.heal_index().await {
                Ok(r) if r.left == 0 => {
                    info!(passes = r.passes, elapsed = ?r.elapsed, bytes = r.counts.bytes_copied, "heal index empty");
                    last_failed_at = None;
                    last_stuck.clear();
                }
                Ok(r) => {
                    // What cannot be healed is said with why, loudly each
                    // time the reasons change (and listed by `heal info`).
                    if r.stuck != last_stuck && !r.stuck.is_empty() {
                        let first: Vec<String> = r
                            .stuck
                            .iter()
                            .take(STUCK_LOGGED)
                            .map(|(g, why)| format!("{g}: {why}"))
                            .collect();
                        warn!(
                            left = r.left,
                            not_healed = r.stuck.len(),
                            "heal left entries for later; {}",
                            first.join("; ")
                        );
                    } else {
                        info!(
                            left = r.left,
                            not_healed = r.stuck.len(),
                            "heal left entries for later"
                        );
                    }
                    last_stuck = r.stuck;
                    last_failed_at = Some((Instant::now(), self.trigger_state()));
                }
                Err(e) => {
                    warn!("heal pass failed: {e}");
                    last_failed_at = Some((Instant::now(), self.trigger_state()));
                }
            }
        }
    }

    fn trigger_state(&self) -> TriggerState {
        TriggerState {
            generations: self.bricks.iter().map(|b| b.generation()).sum(),
            changes: self.bricks.iter().map(|b| b.index_changes()).sum(),
            all_up: self.up_mask() == self.all_mask(),
        }
    }

    /// Bricks that came back with a new identity since this healer
    /// connected to them.
    fn replaced_bricks(&self) -> Option<Mask> {
        let changed = crate::quorum::mask_where(&self.bricks, |b| b.is_up() && b.is_replaced());
        (changed != 0).then_some(changed)
    }

    /// Makes the other bricks blame `replaced` for the root's entries, so
    /// clients stop trusting its (empty) namespace until heal refills it.
    pub async fn blame_root(&self, replaced: Mask) {
        let blame: Vec<u8> = crate::quorum::indices(replaced).map(|i| i as u8).collect();
        let on = self.up_mask() & !replaced;
        crate::quorum::fan_out(&self.bricks, on, |b| {
            let blame = blame.clone();
            async move {
                b.call(|c, ctx| async move {
                    c.mark_pending(ctx, Gfid::ROOT, blame, proto::PendingKind::Entry)
                        .await
                })
                .await
            }
        })
        .await;
        for i in crate::quorum::indices(replaced) {
            self.bricks[i].clear_replaced();
        }
    }
}
