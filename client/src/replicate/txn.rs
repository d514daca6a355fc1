//! The replica transaction: lock (eager), op with folded pre-op, blame for
//! whoever missed it, delayed batched post-op + unlock.
//!
//! Invariants enforced here (TARGET.md "Replication: what must hold"):
//! 1. success only when a quorum of bricks applied the op;
//! 2. fewer than a quorum of bricks up → EROFS before anything is sent;
//! 3. an op is only sent to bricks on which this client holds the inode's
//!    replication lock, so concurrent writers are ordered identically on
//!    every replica (6); an op that reaches only a minority (the others died
//!    between lock and op) fails, and is marked so that heal never takes the
//!    minority's copy as a source;
//! 4. every brick that misses an op is blamed on those that applied it —
//!    up front via `Txn::blame` when known, after the fact via `mark_pending`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::{Done, FsError, FsResult, Gfid, LockMode, Name, PendingKind, Txn};
use tokio::sync::MutexGuard;
use tracing::warn;

use super::inodes::{InodeCtx, LockState};
use super::Replicate;
use crate::accuse::{self, Change};
use crate::inodelk::{self, Need, Policy};
use crate::protocol::BrickConn;
use crate::quorum::{bit, count, fan_out, indices, Mask, Tally};

/// Longest a transaction keeps trying to get its locks before giving up:
/// long, because a client's write should not fail while another client is
/// busy with the file.
const LOCK_GIVE_UP: Duration = Duration::from_secs(60);

/// The inodes whose copies an op changes, which record who missed it: every
/// directory an entry op changed (a rename across directories changes two),
/// else the object itself.
fn changed_by(kind: PendingKind, locked: &[Gfid], object: Gfid) -> Vec<Gfid> {
    if kind == PendingKind::Entry {
        locked.to_vec()
    } else {
        vec![object]
    }
}

pub struct Locked<'a> {
    pub gfids: Vec<Gfid>,
    pub guards: Vec<MutexGuard<'a, LockState>>,
}

/// How an entry op changes the names of a directory, for the listings this
/// client keeps of directories it holds the lock of.
pub enum ListingChange<'a> {
    Add(Gfid, &'a Name),
    Remove(Gfid, &'a Name),
}

/// What a finished transaction tells its caller besides the value.
pub struct Applied<T> {
    pub value: T,
    /// Bricks that applied the op.
    pub applied: Mask,
}

/// Values whose attributes the attribute cache may keep.
pub trait Attrs {
    fn attr(&self) -> Option<&proto::Attr>;
}

impl Attrs for proto::Attr {
    fn attr(&self) -> Option<&proto::Attr> {
        Some(self)
    }
}

impl Attrs for (u64, proto::Attr) {
    fn attr(&self) -> Option<&proto::Attr> {
        Some(&self.1)
    }
}

impl Attrs for () {
    fn attr(&self) -> Option<&proto::Attr> {
        None
    }
}

impl Attrs for Option<Gfid> {
    fn attr(&self) -> Option<&proto::Attr> {
        None
    }
}

impl Replicate {
    /// Runs one replicated mutation. `gfids` are the inodes whose replication
    /// locks order it (the file for data/metadata ops, the parent
    /// directories for entry ops); `blame_on` is where missed ops are recorded.
    pub(crate) async fn txn<T, F, Fut>(
        &self,
        gfids: &[Gfid],
        blame_on: Gfid,
        kind: PendingKind,
        listing: &[ListingChange<'_>],
        op: F,
    ) -> FsResult<Applied<T>>
    where
        T: Send + Attrs,
        F: Fn(Arc<BrickConn>, Txn) -> Fut,
        Fut: std::future::Future<Output = FsResult<Done<T>>>,
    {
        self.txn_reading(gfids, blame_on, kind, listing, None, op)
            .await
    }

    /// As [`Replicate::txn`], for an op whose bricks each read `source` of
    /// their own (a copy within the brick): refused with `NotSupported`
    /// unless every replica of it is fresh, as learned from the bricks once
    /// its lock is held (nobody can change it then).
    pub(crate) async fn txn_reading<T, F, Fut>(
        &self,
        gfids: &[Gfid],
        blame_on: Gfid,
        kind: PendingKind,
        listing: &[ListingChange<'_>],
        source: Option<Gfid>,
        op: F,
    ) -> FsResult<Applied<T>>
    where
        T: Send + Attrs,
        F: Fn(Arc<BrickConn>, Txn) -> Fut,
        Fut: std::future::Future<Output = FsResult<Done<T>>>,
    {
        self.require_quorum()?;
        self.attrs.forget(gfids);
        let epoch = self.attrs.epoch();
        let mut ids: Vec<Gfid> = gfids.to_vec();
        ids.sort();
        ids.dedup();
        let ctxs: Vec<Arc<InodeCtx>> = ids.iter().map(|g| self.inodes.get(*g)).collect();
        let mut guards = Vec::with_capacity(ctxs.len());
        for ctx in &ctxs {
            guards.push(ctx.lock.lock().await);
        }
        let mut locked = Locked { gfids: ids, guards };
        let targets = self.acquire(&mut locked).await?;
        if let Some(source) = source {
            self.revalidated(source).await?;
            let stale = self.inodes.get(source).stale();
            if stale != 0 {
                return Err(FsError::NotSupported(format!(
                    "replicas {stale:#b} of {source} are stale"
                )));
            }
        }
        let stale_before = if kind == PendingKind::Entry {
            0
        } else {
            self.require_a_good_copy(blame_on, targets).await?
        };
        let all = self.all_mask();
        // Bricks the op will not reach, accused along with it.
        let ahead = all & !targets;
        let txn = Txn::blaming(indices(ahead).map(|i| i as u8).collect());
        let answers = fan_out(&self.bricks, targets, |b| op(b, txn.clone())).await;
        let tally = Tally::new(answers);
        let now = Instant::now();
        let mut contended = false;
        for (_, done) in &tally.ok {
            contended |= done.contended;
        }
        // Bricks that lost their connection also lost our locks there.
        for g in locked.guards.iter_mut() {
            g.drop_mask(tally.unreachable);
            g.last_used = Some(now);
        }
        let ok_mask = tally.ok_mask();
        let missed = all & !ok_mask;
        // Applied on stale copies only (the good one failed it): as good as
        // applied on a minority, or they would blame the good copy too.
        let chosen = count(ok_mask) >= self.quorum && ok_mask & !stale_before != 0;
        // Replicas that missed the op with no brick recording it: nothing
        // would tell heal, so the op must not count as done.
        let mut unrecorded: Mask = 0;
        if chosen {
            // Bricks that were sent the op but did not apply it are blamed now
            // (the up-front blame covered only the ones known to be missing).
            let late = missed & targets;
            if late != 0 {
                for g in changed_by(kind, &locked.gfids, blame_on) {
                    if self.blame_after(g, ok_mask, late, kind).await == 0 {
                        unrecorded |= late;
                    }
                    self.inodes.get(g).add_stale(late);
                }
                if unrecorded != 0 {
                    // The dirty marks are then all that is left to say the
                    // replicas differ: released without the post-op, they
                    // stay for heal (whose vote sides with the appliers).
                    self.release_keeping_dirty(&mut locked, ok_mask).await;
                }
            }
        } else if ok_mask != 0 {
            // Applied on a minority (or on stale copies) only: the op
            // failed, so those copies must never become a heal source. They
            // accuse themselves, and bricks that refused the op (an answer,
            // not silence) hold the majority's copy and accuse them too;
            // heal then overwrites them. The self-accusation is what counts
            // when the majority was unreachable: without it nothing on any
            // brick would tell the minority's copy from the good ones once
            // they return, and heal could take it as a source. The dirty
            // marks stay (released without the post-op) in case the
            // accusation could not be written.
            warn!(
                ?blame_on,
                applied = ok_mask,
                "op applied on a minority or on stale copies only"
            );
            let accusers = ok_mask | tally.failed_mask();
            let mut accused_itself = 0;
            for g in changed_by(kind, &locked.gfids, blame_on) {
                accused_itself |= self.blame_after(g, accusers, ok_mask, kind).await & ok_mask;
                self.inodes.get(g).add_failed_only(ok_mask);
            }
            if kind == PendingKind::Data && ahead != 0 && accused_itself != 0 {
                // The op's up-front blame of the bricks that were down says
                // they missed an op that in fact failed: false, and it would
                // make them sinks to the copy that holds the failed op. A
                // data op adds exactly one, on the object, where it applied.
                // Only where the copy now accuses itself: elsewhere the
                // blame is the one mark besides the dirty one left.
                self.retract_blame(blame_on, accused_itself, ahead).await;
            }
            self.release_keeping_dirty(&mut locked, ok_mask).await;
        }
        for (k, g) in locked.gfids.iter().enumerate() {
            let state = &mut locked.guards[k];
            if !chosen {
                if ok_mask != 0 {
                    // Applied somewhere, not everywhere: the names are unknown.
                    state.listing = None;
                }
                continue;
            }
            for change in listing {
                match change {
                    ListingChange::Add(dir, name) if dir == g => state.listing_add(name),
                    ListingChange::Remove(dir, name) if dir == g => state.listing_remove(name),
                    _ => {}
                }
            }
        }
        if chosen {
            // Only an op that took effect leaves the others behind.
            self.inodes.get(blame_on).add_stale(missed);
            // Cached while this client still orders the inode's ops, so an
            // older answer never overwrites a newer one.
            let first = &tally.ok[0].1;
            self.attrs.put(epoch, first.parents.iter().cloned());
            if let Some(a) = first.value.attr() {
                self.attrs.put(epoch, [a.clone()]);
            }
        }
        if contended {
            // Another client waits for one of our locks: let go of this
            // inode's and of every other lock we are not using right now;
            // a directory with creates held in it once they are out (the
            // next tick sends them, and their answers say contended again).
            if locked.gfids.iter().any(|g| self.held.holds_in(*g)) {
                self.hurry.store(true, std::sync::atomic::Ordering::Release);
            } else {
                self.release_locked(&mut locked).await;
            }
            drop(locked);
            self.release_unused(std::time::Duration::ZERO).await;
        } else {
            drop(locked);
        }
        if chosen && unrecorded != 0 {
            warn!(
                ?blame_on,
                applied = ok_mask,
                missed = unrecorded,
                "no brick recorded who missed the op: reported as failed"
            );
            return Err(FsError::Os {
                errno: libc::EIO,
                msg: format!(
                    "bricks {unrecorded:#b} missed an op on {blame_on} and no brick could record it"
                ),
            });
        }
        if chosen {
            let Tally { mut ok, .. } = tally;
            let (_, first) = ok.remove(0);
            return Ok(Applied {
                value: first.value,
                applied: ok_mask,
            });
        }
        if count(self.up_mask()) < self.quorum {
            return Err(crate::quorum::read_only(&self.bricks, self.quorum));
        }
        Err(tally.common_error(self.quorum))
    }

    async fn retract_blame(&self, gfid: Gfid, on: Mask, blamed: Mask) {
        let answers = accuse::send(
            &self.bricks,
            on,
            gfid,
            blamed,
            PendingKind::Data,
            Change::TakeBack,
        )
        .await;
        for (i, res) in answers {
            if let Err(e) = res {
                warn!(
                    brick = i,
                    ?gfid,
                    "could not take back the blame of a failed op: {e}"
                );
            }
        }
    }

    /// Records on the bricks `on` that `blamed` missed an op; returns the
    /// bricks that recorded it.
    pub(crate) async fn blame_after(
        &self,
        gfid: Gfid,
        on: Mask,
        blamed: Mask,
        kind: PendingKind,
    ) -> Mask {
        let answers = accuse::send(&self.bricks, on, gfid, blamed, kind, Change::Accuse).await;
        let mut recorded = 0;
        for (i, res) in answers {
            match res {
                Ok(_) => {
                    self.bricks[i].note_blame_made();
                    recorded |= bit(i);
                }
                Err(e) => warn!(brick = i, ?gfid, "could not record blame: {e}"),
            }
        }
        recorded
    }

    /// Makes sure this client holds the replication locks of every inode in
    /// `locked` on every brick that is up; returns the bricks where all are
    /// held (`crate::inodelk`, shared with heal).
    async fn acquire(&self, locked: &mut Locked<'_>) -> FsResult<Mask> {
        let policy = Policy {
            need: Need::Quorum,
            quorum: self.quorum,
            give_up: LOCK_GIVE_UP,
        };
        inodelk::acquire(&self.bricks, &locked.gfids, &mut locked.guards, policy)
            .await
            .map_err(|r| r.into_error(&self.bricks, self.quorum))
    }

    async fn release_keeping_dirty(&self, locked: &mut Locked<'_>, mask: Mask) {
        for k in 0..locked.gfids.len() {
            let gfid = locked.gfids[k];
            fan_out(&self.bricks, mask, |b| async move {
                b.call(|c, ctx| async move { c.inodelk(ctx, gfid, LockMode::Release).await })
                    .await
            })
            .await;
            locked.guards[k].drop_mask(mask);
        }
    }

    /// A change sent only to copies known to be stale, while the good one's
    /// brick is down, would leave them blaming it and it blaming them: a
    /// split-brain heal cannot settle. Refused with EIO, as reads of such a
    /// file are, until the good copy is back or heal made another good.
    /// A copy that only accuses itself (it applied an op that failed) has
    /// every op that succeeded: as good as any for this. Returns the copies
    /// known to lack some.
    async fn require_a_good_copy(&self, gfid: Gfid, targets: Mask) -> FsResult<Mask> {
        if self.all_clean() {
            return Ok(0);
        }
        self.validated(gfid).await?;
        let ctx = self.inodes.get(gfid);
        if targets & !ctx.behind() != 0 {
            return Ok(ctx.behind());
        }
        // What this client knows may predate a heal: the bricks once more.
        self.revalidated(gfid).await?;
        if targets & !ctx.behind() != 0 {
            return Ok(ctx.behind());
        }
        warn!(%gfid, targets, stale = ctx.stale(), "refusing a change: every reachable replica is stale");
        Err(FsError::Os {
            errno: libc::EIO,
            msg: format!(
                "every reachable replica of {gfid} is stale; its good copy's brick is down"
            ),
        })
    }

    // Cached attributes are exact only while this client holds the
    // inode's lock (nobody else changes it): they go before the lock does.
    pub(crate) async fn release_locked(&self, locked: &mut Locked<'_>) {
        self.attrs.forget(&locked.gfids);
        inodelk::release(&self.bricks, &locked.gfids, &mut locked.guards).await;
    }

    pub(crate) async fn unlock_on(&self, mask: Mask, gfids: Vec<Gfid>) {
        self.attrs.forget(&gfids);
        inodelk::unlock_on(&self.bricks, mask, gfids).await;
    }

    /// The delayed post-op: locks idle for `post_op_delay` are released in
    /// one batch per brick, which also clears their dirty marks.
    pub(crate) async fn release_idle(&self) {
        self.release_unused(self.post_op_delay).await;
        self.inodes.trim();
    }

    /// Releases every lock not used for `min_idle`, one batch per brick.
    pub(super) async fn release_unused(&self, min_idle: Duration) {
        let now = Instant::now();
        let snapshot = self.inodes.snapshot();
        let mut per_brick: Vec<Vec<Gfid>> = vec![Vec::new(); self.bricks.len()];
        // The guards stay held until the unlocks are answered: a new
        // transaction must not re-acquire a lock that is about to be released.
        let mut guards = Vec::new();
        for (gfid, ctx) in &snapshot {
            let Ok(state) = ctx.lock.try_lock() else {
                continue;
            };
            // Creates held in a directory need its lock (`held.rs`).
            if state.held == 0 || self.held.holds_in(*gfid) {
                continue;
            }
            let idle = state
                .last_used
                .map(|t| now.duration_since(t) >= min_idle)
                .unwrap_or(true);
            if !idle {
                continue;
            }
            for i in indices(state.held) {
                if i < per_brick.len() {
                    per_brick[i].push(*gfid);
                }
            }
            guards.push(state);
        }
        for (i, gfids) in per_brick.into_iter().enumerate() {
            for chunk in gfids.chunks(4096) {
                self.unlock_on(bit(i), chunk.to_vec()).await;
            }
        }
        for mut g in guards {
            g.drop_all();
        }
        drop(snapshot);
    }
}
