//! Taking the replication locks (`inodelk`) of some inodes on the bricks of
//! a replica set: the one acquisition client transactions
//! (`replicate::txn`) and the healer (`heal::lock`) both use, so the
//! argument that they cannot deadlock holds for any mix of them.
//!
//! The protocol: one non-blocking try on every missing (inode, brick) pair
//! at once. If any brick says no, everything held on these inodes is let
//! go (so two contenders never each hold a part the other waits for), a
//! short random pause, then blocking tries one brick at a time in brick
//! order: whoever gets brick 0 first gets them all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::{FsError, FsResult, Gfid, LockMode};
use rand::Rng;
use tracing::debug;

use crate::protocol::BrickConn;
use crate::quorum::{bit, count, fan_out, indices, mask_where, Mask};

/// Longest one blocking try waits on one brick; bounded by half the op
/// timeout so that a refused try still answers before the deadline.
const SERIAL_WAIT: Duration = Duration::from_secs(1);

/// One inode's lock as the acquisition sees it.
pub(crate) trait Holder {
    /// Bricks where the lock is held.
    fn held(&self) -> Mask;
    /// Connection generation of each brick when the lock was taken there.
    fn generation(&self, brick: usize) -> u64;
    fn grant(&mut self, brick: usize, generation: u64);
    fn drop_mask(&mut self, mask: Mask);
}

/// What must be held before the caller may go on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Need {
    /// A quorum of the bricks that are up: a transaction sends its op to
    /// the bricks it holds and blames the others.
    Quorum,
    /// Every brick that is up: heal compares and repairs every replica it
    /// can reach, and one it could not lock might be changing under it.
    AllUp,
}

/// How one caller acquires.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    pub need: Need,
    /// Bricks of the set that must be up to try at all.
    pub quorum: usize,
    /// How long to keep trying. Transactions wait long (a client's write
    /// should not fail because another client is busy); heal gives up
    /// sooner and takes the object again on its next pass, so one busy
    /// file does not hold up the rest of the heal.
    pub give_up: Duration,
}

/// Why the acquisition stopped trying.
pub(crate) enum Refusal {
    /// Fewer than `quorum` bricks up.
    TooFewUp,
    /// Not granted within `give_up`.
    GaveUp,
}

/// Makes sure every inode of `gfids` (with its lock state in `holders`, in
/// the same order) is held per `policy`; returns the bricks where all are
/// held. Nothing is held when it fails.
pub(crate) async fn acquire<H: Holder>(
    bricks: &[Arc<BrickConn>],
    gfids: &[Gfid],
    holders: &mut [H],
    policy: Policy,
) -> Result<Mask, Refusal> {
    let started = Instant::now();
    let mut blocking = false;
    loop {
        let up = mask_where(bricks, BrickConn::is_up);
        if count(up) < policy.quorum {
            release(bricks, gfids, holders).await;
            return Err(Refusal::TooFewUp);
        }
        forget_lost(bricks, holders);
        let held_everywhere = holders.iter().fold(up, |m, h| m & h.held());
        if held_everywhere == up {
            return Ok(up);
        }
        // A brick that said no is held by someone else: going on without
        // it would order our op differently there, so that always means a
        // retry. A brick that failed to answer is down and is blamed.
        let refused = if blocking {
            !acquire_serially(bricks, gfids, holders, up).await
        } else {
            !acquire_parallel(bricks, gfids, holders, up).await
        };
        let up_now = mask_where(bricks, BrickConn::is_up);
        let held = holders.iter().fold(up_now, |m, h| m & h.held());
        let enough = match policy.need {
            Need::Quorum => count(held) >= policy.quorum,
            Need::AllUp => held == up_now && count(held) >= policy.quorum,
        };
        if !refused && enough {
            return Ok(held);
        }
        release(bricks, gfids, holders).await;
        if started.elapsed() > policy.give_up {
            return Err(Refusal::GaveUp);
        }
        blocking = true;
        let pause = rand::rng().random_range(1..20);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

impl Refusal {
    /// The error a transaction reports.
    pub(crate) fn into_error(self, bricks: &[Arc<BrickConn>], quorum: usize) -> FsError {
        match self {
            Refusal::TooFewUp => crate::quorum::read_only(bricks, quorum),
            Refusal::GaveUp => FsError::Timeout("replication lock".into()),
        }
    }
}

/// Locks held over a connection that has since been replaced (or is down)
/// are gone on the brick: forget them.
fn forget_lost<H: Holder>(bricks: &[Arc<BrickConn>], holders: &mut [H]) {
    for h in holders.iter_mut() {
        for i in indices(h.held()) {
            let lost = bricks
                .get(i)
                .is_none_or(|b| b.generation() != h.generation(i) || !b.is_up());
            if lost {
                h.drop_mask(bit(i));
            }
        }
    }
}

/// One non-blocking attempt on every missing (inode, brick) pair at once;
/// false when a brick refused.
async fn acquire_parallel<H: Holder>(
    bricks: &[Arc<BrickConn>],
    gfids: &[Gfid],
    holders: &mut [H],
    up: Mask,
) -> bool {
    let mut none_refused = true;
    for (gfid, h) in gfids.iter().copied().zip(holders.iter_mut()) {
        let need = up & !h.held();
        if need == 0 {
            continue;
        }
        let answers = fan_out(bricks, need, |b| async move { try_lock(&b, gfid, 0).await }).await;
        for (i, res) in answers {
            match res {
                Ok((true, generation)) => h.grant(i, generation),
                Ok((false, _)) => none_refused = false,
                Err(e) => debug!(brick = i, "inodelk: {e}"),
            }
        }
    }
    none_refused
}

/// Blocking attempts one brick at a time in brick order; stops (false) at
/// the first brick that does not grant within the wait.
async fn acquire_serially<H: Holder>(
    bricks: &[Arc<BrickConn>],
    gfids: &[Gfid],
    holders: &mut [H],
    up: Mask,
) -> bool {
    let op_timeout = bricks.first().map_or(SERIAL_WAIT, |b| b.op_timeout());
    let wait_ms = (op_timeout / 2).min(SERIAL_WAIT).as_millis() as u32;
    for i in indices(up) {
        let Some(b) = bricks.get(i) else { continue };
        for (gfid, h) in gfids.iter().copied().zip(holders.iter_mut()) {
            if h.held() & bit(i) != 0 {
                continue;
            }
            match try_lock(b, gfid, wait_ms).await {
                Ok((true, generation)) => h.grant(i, generation),
                Ok((false, _)) => return false,
                // A brick that fails now is down: the others may still
                // make the quorum.
                Err(e) => debug!(brick = i, "inodelk: {e}"),
            }
        }
    }
    true
}

/// One try at `gfid`'s lock on `b`, waiting up to `wait_ms` there: whether
/// it was granted, and the connection generation it was asked over (a lock
/// is only as good as the connection that holds it).
async fn try_lock(b: &BrickConn, gfid: Gfid, wait_ms: u32) -> FsResult<(bool, u64)> {
    let generation = b.generation();
    b.call(|c, ctx| async move { c.inodelk(ctx, gfid, LockMode::Acquire { wait_ms }).await })
        .await
        .map(|g| (g.granted, generation))
}

/// Lets go of every lock held on these inodes, clearing the dirty marks
/// their ops made (the post-op rides on the unlock).
pub(crate) async fn release<H: Holder>(
    bricks: &[Arc<BrickConn>],
    gfids: &[Gfid],
    holders: &mut [H],
) {
    for (gfid, h) in gfids.iter().copied().zip(holders.iter_mut()) {
        let held = h.held();
        if held != 0 {
            unlock_on(bricks, held, vec![gfid]).await;
            h.drop_mask(held);
        }
    }
}

/// One `unlock_batch` per brick of `mask`.
pub(crate) async fn unlock_on(bricks: &[Arc<BrickConn>], mask: Mask, gfids: Vec<Gfid>) {
    let answers = fan_out(bricks, mask, |b| {
        let gfids = gfids.clone();
        async move {
            b.call(|c, ctx| async move { c.unlock_batch(ctx, gfids).await })
                .await
        }
    })
    .await;
    for (i, res) in answers {
        if let Err(e) = res {
            debug!(brick = i, "unlock: {e}");
        }
    }
}
