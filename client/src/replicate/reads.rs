//! Reads: lookups ask every brick (they are where stale replicas are found),
//! everything else asks one healthy replica.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use proto::{Attr, FsError, FsResult, Gfid, Looked, Name};

use super::Replicate;
use crate::protocol::BrickConn;
use crate::quorum::{bit, count, fan_out, indices, Mask, Tally};

/// Bricks blamed by any of the answers.
fn blamed_by(answers: &[(usize, Looked)]) -> Mask {
    let mut m = 0;
    for (_, looked) in answers {
        for (idx, counts) in &looked.pending {
            if !counts.is_zero() {
                m |= bit(*idx as usize);
            }
        }
    }
    m
}

/// Replicas that only they themselves blame: each applied an op that failed
/// without a quorum, and nobody says it missed one.
fn failed_only(answers: &[(usize, Looked)]) -> Mask {
    let (mut by_self, mut by_others) = (0, 0);
    for (i, looked) in answers {
        for (idx, counts) in &looked.pending {
            if counts.is_zero() {
                continue;
            }
            if usize::from(*idx) == *i {
                by_self |= bit(*i);
            } else {
                by_others |= bit(*idx as usize);
            }
        }
    }
    by_self & !by_others
}

/// Errors that mean "this replica does not have the object", i.e. it missed
/// the operation that created it (or the one that removed it, elsewhere).
fn is_missing(e: &FsError) -> bool {
    matches!(e, FsError::NotFound | FsError::Stale(_))
}

impl Replicate {
    pub(crate) async fn lookup_all(&self, parent: Gfid, name: &Name) -> FsResult<Attr> {
        name.validate()?;
        if self.known_absent(parent, name) {
            return Err(FsError::NotFound);
        }
        if self.all_clean() {
            // The healthy common case: one round trip to one brick.
            let parent_stale = self.inodes.peek(parent).map(|c| c.stale()).unwrap_or(0);
            if parent_stale == 0 {
                let answer = self
                    .read_from(parent, |b| {
                        let name = name.clone();
                        async move {
                            b.call(|c, ctx| async move { c.lookup(ctx, parent, name).await })
                                .await
                        }
                    })
                    .await;
                match answer {
                    Ok(looked) => return Ok(looked.attr),
                    Err(e) if !e.is_transport() => return Err(e),
                    Err(_) => {}
                }
            }
        }
        let up = self.up_mask();
        if up == 0 {
            return Err(FsError::BrickDown("all bricks".into()));
        }
        let epoch = self.epoch();
        let answers = fan_out(&self.bricks, up, |b| {
            let name = name.clone();
            async move {
                b.call(|c, ctx| async move { c.lookup(ctx, parent, name).await })
                    .await
            }
        })
        .await;
        let mut tally = Tally::new(answers);
        // Vote: each distinct gfid is a candidate, "missing" is another.
        let mut found: HashMap<Gfid, Vec<(usize, Looked)>> = HashMap::new();
        for (i, looked) in std::mem::take(&mut tally.ok) {
            found.entry(looked.attr.gfid).or_default().push((i, looked));
        }
        let missing: Mask = tally
            .failed
            .iter()
            .filter(|(_, e)| is_missing(e))
            .fold(0, |m, (i, _)| m | bit(*i));
        let best = found.into_values().max_by_key(|g| g.len());
        let Some(group) = best else {
            return Err(if tally.failed.is_empty() {
                FsError::BrickDown("no brick answered".into())
            } else {
                tally.common_error(self.quorum)
            });
        };
        // Ties go to the replicas that have the entry: hiding a file that a
        // brick missed the deletion of is healed later, losing one is not.
        if count(missing) > group.len() {
            return Err(FsError::NotFound);
        }
        let group_mask = group.iter().fold(0, |m, (i, _)| m | bit(*i));
        let answered = group_mask | tally.failed.iter().fold(0, |m, (i, _)| m | bit(*i));
        let stale = (blamed_by(&group) | (answered & !group_mask)) & self.all_mask();
        let attr = group[0].1.attr.clone();
        let ctx = self.inodes.get(attr.gfid);
        ctx.learn(
            stale,
            failed_only(&group),
            answered,
            self.all_mask(),
            count(group_mask | missing) >= self.quorum,
        );
        // A replica without the name needs its directory healed; one that
        // is blamed, the object itself.
        self.found_stale(attr.gfid, blamed_by(&group) & self.all_mask());
        self.found_stale(parent, answered & !group_mask);
        if answered == up {
            ctx.validated_epoch.store(epoch, Ordering::Release);
        }
        Ok(attr)
    }

    /// A name this client knows is not in a directory: one it created and
    /// has held the replication lock of, on every brick that is up, ever
    /// since (no other client can have added a name meanwhile). Saves the
    /// negative lookup before every create, e.g. for each file tar extracts
    /// into a directory it just made.
    fn known_absent(&self, parent: Gfid, name: &Name) -> bool {
        let Some(ctx) = self.inodes.peek(parent) else {
            return false;
        };
        // A transaction in flight on the directory may be adding the name.
        let Ok(state) = ctx.lock.try_lock() else {
            return false;
        };
        let Some(listing) = &state.listing else {
            return false;
        };
        let up = self.up_mask();
        let current =
            indices(state.held).all(|i| self.bricks[i].generation() == state.generations[i]);
        up != 0 && state.held == up && current && !listing.contains(name)
    }

    /// [`Replicate::validated`], asking the bricks even if nothing changed
    /// since the last time.
    pub(crate) async fn revalidated(&self, gfid: Gfid) -> FsResult<()> {
        self.inodes
            .get(gfid)
            .validated_epoch
            .store(u64::MAX, Ordering::Release);
        self.validated(gfid).await
    }

    /// Makes sure we know which replicas of `gfid` are stale, asking all
    /// bricks once per connection epoch.
    pub(crate) async fn validated(&self, gfid: Gfid) -> FsResult<()> {
        if self.all_clean() {
            return Ok(());
        }
        let ctx = self.inodes.get(gfid);
        if ctx.validated_epoch.load(Ordering::Acquire) == self.epoch() {
            return Ok(());
        }
        self.validate_now(gfid, count(self.up_mask()))
            .await
            .map(drop)
    }

    /// How many bricks an open hears from ([`Replicate::validate_now`]):
    /// enough that they meet every write quorum (two of three), so one of
    /// them applied any write that succeeded and blames a copy that missed
    /// it.
    pub(crate) fn read_quorum(&self) -> usize {
        (self.bricks.len() + 1).saturating_sub(self.quorum).max(1)
    }

    /// Asks bricks which replicas of `gfid` are current, however clean
    /// their last pings said they were: a client learns that another one's
    /// writes missed a brick only from the next ping (up to a second
    /// later), and in between the fast paths would read that brick. An
    /// open needs this (close-to-open). The bricks that are up are asked in
    /// brick order until `need` of them answered (one that cannot answer is
    /// replaced by the next). Returns the attributes of the first current
    /// replica in brick order (as [`Replicate::read_from`] would ask it),
    /// if it answered.
    pub(crate) async fn validate_now(&self, gfid: Gfid, need: usize) -> FsResult<Option<Attr>> {
        let epoch = self.epoch();
        let ctx = self.inodes.get(gfid);
        let up = self.up_mask();
        let mut tally: Tally<Looked> = Tally::new(Vec::new());
        let mut asked: Mask = 0;
        loop {
            let heard = tally.ok.len() + tally.failed.iter().filter(|(_, e)| is_missing(e)).count();
            let ask = indices(up & !asked)
                .take(need.saturating_sub(heard))
                .fold(0, |m, i| m | bit(i));
            if ask == 0 {
                break;
            }
            asked |= ask;
            let answers = fan_out(&self.bricks, ask, |b| async move {
                b.call(|c, ctx| async move { c.getattr(ctx, gfid).await })
                    .await
            })
            .await;
            let round = Tally::new(answers);
            tally.ok.extend(round.ok);
            tally.failed.extend(round.failed);
        }
        if tally.ok.is_empty() {
            return Err(if tally.failed.is_empty() {
                FsError::BrickDown("no brick answered".into())
            } else {
                tally.common_error(self.quorum)
            });
        }
        let missing = tally
            .failed
            .iter()
            .filter(|(_, e)| is_missing(e))
            .fold(0, |m, (i, _)| m | bit(*i));
        let stale = blamed_by(&tally.ok) | missing;
        let answered = tally.ok_mask() | tally.failed_mask();
        // An error answer says nothing of the changelog: only the replicas
        // that showed theirs, or showed they lack the object, are learned.
        let told = tally.ok_mask() | missing;
        ctx.learn(
            stale & self.all_mask(),
            failed_only(&tally.ok),
            told,
            self.all_mask(),
            count(told) >= self.quorum,
        );
        self.found_stale(gfid, stale & self.all_mask());
        if answered == up {
            ctx.validated_epoch.store(epoch, Ordering::Release);
        }
        let current = ctx.stale() | self.replaced_mask();
        let mut ok = tally.ok;
        ok.sort_by_key(|(i, _)| *i);
        Ok(ok
            .into_iter()
            .find(|(i, _)| current & bit(*i) == 0)
            .map(|(_, looked)| looked.attr))
    }

    /// Asks one healthy replica for metadata: always the first in brick
    /// order, because times differ slightly between replicas (each brick's
    /// own clock sets ctime) and tools such as tar treat a ctime that moves
    /// between two stats as a file changing under them.
    pub(crate) async fn read_from<T, F, Fut>(&self, gfid: Gfid, f: F) -> FsResult<T>
    where
        F: Fn(Arc<BrickConn>) -> Fut,
        Fut: Future<Output = FsResult<T>>,
    {
        self.read_starting_at(gfid, 0, f).await
    }

    /// Asks one healthy replica for data, preferring the one the gfid
    /// hashes to, so reads of many files spread over the replica set.
    pub(crate) async fn read_data_from<T, F, Fut>(&self, gfid: Gfid, f: F) -> FsResult<T>
    where
        F: Fn(Arc<BrickConn>) -> Fut,
        Fut: Future<Output = FsResult<T>>,
    {
        let start = (gfid.ino() as usize) % self.bricks.len().max(1);
        self.read_starting_at(gfid, start, f).await
    }

    /// Moves on to the next healthy replica if one cannot answer or turns
    /// out not to have the object.
    async fn read_starting_at<T, F, Fut>(&self, gfid: Gfid, start: usize, f: F) -> FsResult<T>
    where
        F: Fn(Arc<BrickConn>) -> Fut,
        Fut: Future<Output = FsResult<T>>,
    {
        let n = self.bricks.len();
        let ctx = self.inodes.peek(gfid);
        let (stale, failed_only) = ctx
            .as_ref()
            .map(|c| (c.stale(), c.failed_only()))
            .unwrap_or((0, 0));
        let up = self.up_mask();
        let mut healthy = up & !stale & !self.replaced_mask();
        if healthy == 0 {
            // Copies that hold every op that succeeded, and one that failed
            // on top: better than no answer while the good ones are away.
            healthy = up & failed_only & !self.replaced_mask();
        }
        if healthy == 0 {
            return Err(if up == 0 {
                FsError::BrickDown("all bricks".into())
            } else {
                FsError::Os {
                    errno: libc::EIO,
                    msg: format!("no healthy replica of {gfid} is up"),
                }
            });
        }
        let order = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| healthy & bit(*i) != 0);
        let mut first_err = None;
        let mut lacking: Mask = 0;
        for i in order {
            match f(self.bricks[i].clone()).await {
                Ok(v) => {
                    // A replica that does not know a gfid another one has
                    // missed its creation. (If none has it, the object is
                    // not on this replica set at all, which under
                    // distribute is no fault of any replica: it may be
                    // made here later, by rebalance or a directory heal.)
                    if let (Some(c), true) = (&ctx, lacking != 0) {
                        c.add_stale(lacking);
                    }
                    return Ok(v);
                }
                Err(e) if e.is_transport() => {
                    first_err.get_or_insert(e);
                }
                // A name that is not found is an answer, not a fault.
                Err(e @ FsError::Stale(_)) if count(healthy) > 1 => {
                    lacking |= bit(i);
                    first_err.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_err.unwrap_or(FsError::BrickDown("no brick answered".into())))
    }
}
