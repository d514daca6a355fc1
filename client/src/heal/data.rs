//! Data heal: compare the blake3 of every block on the source and the
//! sinks and copy only the blocks that differ. A big file is healed a chunk
//! at a time, letting clients take the lock in between, so it stays
//! writable while it heals; whatever a client writes meanwhile reaches the
//! sinks too (they are up), and every chunk is compared under the lock.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use proto::{FsResult, Gfid, SetAttr, Txn};

use super::lock::HealLock;
use super::object::{vouched, Survey, Vote};
use super::roles::Roles;
use super::Healer;
use crate::quorum::{bit, fan_out, indices, Mask};

/// Unit of comparison: a 1 MiB change costs at most 9 blocks (1.1 MiB).
pub const BLOCK: u32 = 128 * 1024;
/// Blocks compared and copied under one hold of the lock.
const CHUNK_BLOCKS: u32 = 32;
/// Largest read or write heal sends.
const RUN_MAX: u32 = 1 << 20;

impl Healer {
    pub(super) async fn data_step(
        &self,
        lock: &mut HealLock,
        survey: &Survey,
        roles: Roles,
        full: bool,
    ) -> FsResult<(super::object::StepResult, bool)> {
        use super::object::StepResult as S;
        let (source, sinks) = match roles {
            Roles::Heal { source, sinks } => (source, sinks),
            Roles::SplitBrain {
                likely: Some(likely),
                ..
            } => {
                let vote = self.vote_content(lock.gfid, survey).await?;
                match vouched(lock.gfid, "content", likely, vote) {
                    Vote::Agree => return Ok((S::Done, false)),
                    Vote::Winner { source, sinks } => (source, sinks),
                    Vote::Undecided(_) => return Ok((S::Split, false)),
                }
            }
            Roles::SplitBrain { .. } => return Ok((S::Split, false)),
            Roles::SourceAbsent { failed } => {
                return Ok((S::Postponed(Roles::waiting_for_a_source(failed)), false))
            }
            Roles::Clean if !full => return Ok((S::Done, false)),
            Roles::Clean => match self.vote(survey, |a| a.size) {
                Vote::Agree => return Ok((S::Done, false)),
                Vote::Undecided(why) => return Ok((S::Postponed(why), false)),
                Vote::Winner { .. } => match self.vote_content(lock.gfid, survey).await? {
                    Vote::Agree => return Ok((S::Done, false)),
                    Vote::Undecided(why) => return Ok((S::Postponed(why), false)),
                    Vote::Winner { source, sinks } => (source, sinks),
                },
            },
            Roles::Vote => match self.vote_content(lock.gfid, survey).await? {
                Vote::Agree => return Ok((S::Done, false)),
                Vote::Undecided(why) => return Ok((S::Postponed(why), false)),
                Vote::Winner { source, sinks } => (source, sinks),
            },
        };
        if sinks == 0 {
            return Ok((S::Done, false));
        }
        self.copy_data(lock, source, sinks).await?;
        Ok((S::Done, true))
    }

    /// Groups the replicas by their whole content (size and every block's
    /// checksum) and lets the majority win.
    async fn vote_content(&self, gfid: Gfid, survey: &Survey) -> FsResult<Vote> {
        let mut groups: HashMap<[u8; 32], Mask> = HashMap::new();
        for (i, _) in &survey.present {
            let digest = self.content_digest(*i, gfid).await?;
            *groups.entry(digest).or_insert(0) |= bit(*i);
        }
        Ok(self.decide(groups.into_values().collect(), survey.have()))
    }

    async fn content_digest(&self, brick: usize, gfid: Gfid) -> FsResult<[u8; 32]> {
        let b = &self.bricks[brick];
        let mut h = blake3::Hasher::new();
        let mut offset = 0u64;
        let step = 256u32;
        loop {
            let cs = b
                .call_with_timeout(self.checksum_timeout(), |c, ctx| async move {
                    c.checksums(ctx, gfid, offset, BLOCK, step).await
                })
                .await?;
            self.stats
                .checksum_bytes
                .fetch_add(32 * cs.blocks.len() as u64, Ordering::Relaxed);
            h.update(&cs.size.to_le_bytes());
            for block in &cs.blocks {
                h.update(block);
            }
            offset += u64::from(BLOCK) * u64::from(step);
            if offset >= cs.size {
                return Ok(*h.finalize().as_bytes());
            }
        }
    }

    fn checksum_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(30)
    }

    /// Copies the blocks that differ from `source` to `sinks`, then sets
    /// the sinks' size to the source's.
    pub(super) async fn copy_data(
        &self,
        lock: &mut HealLock,
        source: usize,
        sinks: Mask,
    ) -> FsResult<()> {
        let gfid = lock.gfid;
        let needed = sinks | bit(source);
        let src = &self.bricks[source];
        let span = u64::from(BLOCK) * u64::from(CHUNK_BLOCKS);
        let mut offset = 0u64;
        loop {
            if !self.still_held(lock, needed) {
                return Err(proto::FsError::BrickDown(format!(
                    "a brick went away during the heal of {gfid}"
                )));
            }
            let sums = fan_out(&self.bricks, needed, |b| async move {
                b.call_with_timeout(self.checksum_timeout(), |c, ctx| async move {
                    c.checksums(ctx, gfid, offset, BLOCK, CHUNK_BLOCKS).await
                })
                .await
            })
            .await;
            let mut by_brick = HashMap::new();
            for (i, res) in sums {
                let cs = res?;
                self.stats
                    .checksum_bytes
                    .fetch_add(32 * cs.blocks.len() as u64, Ordering::Relaxed);
                by_brick.insert(i, cs);
            }
            let Some(src_sums) = by_brick.get(&source) else {
                return Err(proto::FsError::BrickDown("heal source".into()));
            };
            let size = src_sums.size;
            // Per block, the sinks whose copy differs.
            let mut differ: Vec<Mask> = vec![0; src_sums.blocks.len()];
            for sink in indices(sinks) {
                let theirs = by_brick
                    .get(&sink)
                    .map(|c| c.blocks.as_slice())
                    .unwrap_or(&[]);
                for (k, mine) in src_sums.blocks.iter().enumerate() {
                    if theirs.get(k) != Some(mine) {
                        differ[k] |= bit(sink);
                    }
                }
            }
            let mut k = 0;
            while k < differ.len() {
                if differ[k] == 0 {
                    k += 1;
                    continue;
                }
                // A run of blocks that differ on the same sinks.
                let who = differ[k];
                let mut end = k + 1;
                while end < differ.len()
                    && differ[end] == who
                    && (end - k + 1) as u32 * BLOCK <= RUN_MAX
                {
                    end += 1;
                }
                let at = offset + k as u64 * u64::from(BLOCK);
                let len = ((end - k) as u64 * u64::from(BLOCK)).min(size.saturating_sub(at));
                let data = src.read(gfid, at, len as u32).await?;
                let data = std::sync::Arc::new(data);
                let writes = fan_out(&self.bricks, who, |b| {
                    let data = data.clone();
                    async move {
                        b.write(Txn::none(), gfid, proto::data::WriteAt::Offset(at), &data)
                            .await
                    }
                })
                .await;
                for (_, res) in writes {
                    res?;
                    self.stats
                        .bytes_copied
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                k = end;
            }
            offset += span;
            if offset >= size {
                break;
            }
            // Clients may write between two chunks of a big file.
            self.cycle(lock, needed).await?;
        }
        // The source's size now, under the lock: clients may have changed it
        // between chunks.
        let size = src
            .call(|c, ctx| async move { c.getattr(ctx, gfid).await })
            .await?
            .attr
            .size;
        let truncate = fan_out(&self.bricks, sinks, |b| async move {
            let now = b
                .call(|c, ctx| async move { c.getattr(ctx, gfid).await })
                .await?
                .attr
                .size;
            if now == size {
                return Ok(());
            }
            let set = SetAttr {
                size: Some(size),
                ..SetAttr::default()
            };
            b.call(|c, ctx| async move { c.setattr(ctx, Txn::none(), gfid, set).await })
                .await
                .map(|_| ())
        })
        .await;
        for (_, res) in truncate {
            res?;
        }
        Ok(())
    }
}
