//! The healer's replication locks: the same inode locks client
//! transactions take, so heal and clients never modify an object at once
//! and clients' directory listings (kept while they hold a directory's
//! lock) stay true. Taken on every brick that is up, in brick order after a
//! failed parallel try, as clients do, so the two cannot deadlock.

use std::time::{Duration, Instant};

use proto::{FsError, FsResult, Gfid, LockMode};
use rand::Rng;

use super::Healer;
use crate::quorum::{bit, count, fan_out, indices, Mask};

/// Longest the healer waits for a lock before leaving the object for the
/// next pass.
const GIVE_UP: Duration = Duration::from_secs(30);

/// Locks held by the healer on one inode.
pub struct HealLock {
    pub gfid: Gfid,
    /// Bricks where the lock is held.
    pub held: Mask,
    generations: [u64; 8],
}

impl Healer {
    pub(crate) async fn lock(&self, gfid: Gfid) -> FsResult<HealLock> {
        let started = Instant::now();
        let mut lock = HealLock {
            gfid,
            held: 0,
            generations: [0; 8],
        };
        let mut serial = false;
        loop {
            let up = self.up_mask();
            if count(up) < 2 {
                self.unlock(&mut lock).await;
                return Err(FsError::BrickDown(
                    "fewer than two bricks up: nothing to heal from".into(),
                ));
            }
            let granted = if serial {
                self.acquire_serially(&mut lock, up).await
            } else {
                self.acquire_parallel(&mut lock, up).await
            };
            if granted && lock.held & up == up {
                return Ok(lock);
            }
            self.unlock(&mut lock).await;
            if started.elapsed() > GIVE_UP {
                return Err(FsError::Timeout(format!("heal lock on {gfid}")));
            }
            serial = true;
            let pause = rand::rng().random_range(5..50);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    async fn acquire_parallel(&self, lock: &mut HealLock, up: Mask) -> bool {
        let gfid = lock.gfid;
        let answers = fan_out(&self.bricks, up, |b| async move {
            let generation = b.generation();
            b.call(|c, ctx| async move {
                c.inodelk(ctx, gfid, LockMode::Acquire { wait_ms: 0 }).await
            })
            .await
            .map(|g| (g.granted, generation))
        })
        .await;
        let mut all = true;
        for (i, res) in answers {
            match res {
                Ok((true, generation)) => {
                    lock.held |= bit(i);
                    lock.generations[i] = generation;
                }
                _ => all = false,
            }
        }
        all
    }

    async fn acquire_serially(&self, lock: &mut HealLock, up: Mask) -> bool {
        let gfid = lock.gfid;
        for i in indices(up) {
            let b = &self.bricks[i];
            let generation = b.generation();
            let res = b
                .call(|c, ctx| async move {
                    c.inodelk(ctx, gfid, LockMode::Acquire { wait_ms: 1000 })
                        .await
                })
                .await;
            match res {
                Ok(g) if g.granted => {
                    lock.held |= bit(i);
                    lock.generations[i] = generation;
                }
                _ => return false,
            }
        }
        true
    }

    /// Releases the lock (also clearing the dirty marks heal's own writes
    /// made on the sinks).
    pub(crate) async fn unlock(&self, lock: &mut HealLock) {
        let held = lock.held;
        if held == 0 {
            return;
        }
        let gfid = lock.gfid;
        fan_out(&self.bricks, held, |b| async move {
            b.call(|c, ctx| async move { c.unlock_batch(ctx, vec![gfid]).await })
                .await
        })
        .await;
        lock.held = 0;
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
