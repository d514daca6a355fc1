//! The healer's replication locks: the same inode locks client
//! transactions take, by the same acquisition (`crate::inodelk`), so heal
//! and clients never modify an object at once, cannot deadlock, and
//! clients' directory listings (kept while they hold a directory's lock)
//! stay true. Heal needs the lock on every brick that is up.

use std::time::Duration;

use proto::{FsError, FsResult, Gfid};

use super::Healer;
use crate::inodelk::{self, Holder, Need, Policy, Refusal};
use crate::quorum::{bit, indices, Mask};

/// Longest the healer waits for a lock before leaving the object for the
/// next pass: shorter than a client's wait, so one busy file does not hold
/// up the rest of the heal.
const GIVE_UP: Duration = Duration::from_secs(30);

/// Locks held by the healer on one inode.
pub struct HealLock {
    pub gfid: Gfid,
    /// Bricks where the lock is held.
    pub held: Mask,
    generations: [u64; 8],
}

impl Holder for HealLock {
    fn held(&self) -> Mask {
        self.held
    }

    fn generation(&self, brick: usize) -> u64 {
        self.generations.get(brick).copied().unwrap_or(0)
    }

    fn grant(&mut self, brick: usize, generation: u64) {
        if let Some(g) = self.generations.get_mut(brick) {
            self.held |= bit(brick);
            *g = generation;
        }
    }

    fn drop_mask(&mut self, mask: Mask) {
        self.held &= !mask;
    }
}

impl Healer {
    /// The inode's replication lock on every brick that is up
    /// (`crate::inodelk`, the acquisition client transactions use).
    pub(crate) async fn lock(&self, gfid: Gfid) -> FsResult<HealLock> {
        let mut lock = [HealLock {
            gfid,
            held: 0,
            generations: [0; 8],
        }];
        let policy = Policy {
            need: Need::AllUp,
            quorum: self.quorum,
            give_up: GIVE_UP,
        };
        match inodelk::acquire(&self.bricks, &[gfid], &mut lock, policy).await {
            Ok(_) => {
                let [lock] = lock;
                Ok(lock)
            }
            Err(Refusal::TooFewUp) => Err(FsError::BrickDown(format!(
                "fewer than {} bricks up: nothing to heal from",
                self.quorum
            ))),
            Err(Refusal::GaveUp) => Err(FsError::Timeout(format!("heal lock on {gfid}"))),
        }
    }

    /// Releases the lock (also clearing the dirty marks heal's own writes
    /// made on the sinks).
    pub(crate) async fn unlock(&self, lock: &mut HealLock) {
        let gfid = lock.gfid;
        inodelk::release(&self.bricks, &[gfid], std::slice::from_mut(lock)).await;
    }

    /// Lets clients in between two chunks of a long heal, then takes the
    /// lock back; fails if a brick in `needed` lost its connection meanwhile
    /// (what was learned about it under the lock may no longer hold).
    pub(crate) async fn cycle(&self, lock: &mut HealLock, needed: Mask) -> FsResult<()> {
        self.unlock(lock).await;
        tokio::task::yield_now().await;
        let generations = lock.generations;
        *lock = self.lock(lock.gfid).await?;
        for i in indices(needed) {
            if lock.held & bit(i) == 0 || lock.generations[i] != generations[i] {
                self.unlock(lock).await;
                return Err(FsError::BrickDown(format!(
                    "brick {i} reconnected during heal of {}",
                    lock.gfid
                )));
            }
        }
        Ok(())
    }

    /// True while every brick in `needed` is still held on the connection
    /// the lock was taken on.
    pub(crate) fn still_held(&self, lock: &HealLock, needed: Mask) -> bool {
        indices(needed).all(|i| {
            lock.held & bit(i) != 0
                && self.bricks[i].is_up()
                && self.bricks[i].generation() == lock.generations[i]
        })
    }
}
