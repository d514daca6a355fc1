//! Sub-volume usage across replica sets. Each set's bricks count and
//! enforce their own share (`brick/src/quota.rs`); this layer sums the
//! shares for `df`, and tells each set what the others hold every
//! `QUOTA_SYNC` (while any sub-volume exists; every `QUOTA_IDLE` to find
//! out otherwise), so a limit holds across sets within what is written
//! between two such updates.

use std::sync::Weak;
use std::time::Duration;

use futures::future::join_all;
use proto::{FsError, FsResult, Gfid, QuotaUse, StatFs};

use super::Distribute;
use crate::layer::Layer;

/// How often every set hears what the others hold, while the volume has
/// sub-volumes: the overshoot on several sets is what they accept in this
/// time (measured, 2 sets, 4 writers at ~85 MiB/s, 32 MiB limit: 1.2 MiB
/// over; with 1 s and no first round at once the limit doubled). A few
/// small RPCs per set each time.
pub const QUOTA_SYNC: Duration = Duration::from_millis(100);
/// How often a volume without sub-volumes is asked whether it has any.
pub const QUOTA_IDLE: Duration = Duration::from_secs(1);
/// Rounds between two sends of unchanged shares (every second).
const RESEND_EVERY: u32 = 10;

impl Distribute {
    /// The file system `at` is on, every set's summed; in a sub-volume,
    /// with its usage summed over the sets too. One round to every set,
    /// asked at the sub-volume's root (a directory every set has), after
    /// one to the set holding `at` when it is a file.
    pub(crate) async fn summed_statfs(&self, at: Gfid) -> FsResult<StatFs> {
        let ask = if at.is_root() || self.is_dir(at).await? {
            at
        } else {
            let st = self
                .on_file(at, |s| async move { s.statfs(at).await })
                .await?;
            st.quota.map_or(Gfid::ROOT, |q| q.subvol)
        };
        let answers = join_all(self.sets.iter().map(|s| async move {
            match s.statfs(ask).await {
                // A directory made before add-brick, not yet on this set:
                // its share of the pool still counts.
                Err(e) if super::is_gone(&e) => s.statfs(Gfid::ROOT).await,
                other => other,
            }
        }))
        .await;
        let mut total: Option<StatFs> = None;
        let mut error = None;
        for answer in answers {
            match answer {
                Ok(s) => match &mut total {
                    None => total = Some(s),
                    Some(t) => {
                        // Block counts are in each set's own fragment size.
                        let scale = |v: u64| {
                            v.saturating_mul(u64::from(s.frsize.max(1)))
                                / u64::from(t.frsize.max(1))
                        };
                        t.blocks = t.blocks.saturating_add(scale(s.blocks));
                        t.bfree = t.bfree.saturating_add(scale(s.bfree));
                        t.bavail = t.bavail.saturating_add(scale(s.bavail));
                        t.files = t.files.saturating_add(s.files);
                        t.ffree = t.ffree.saturating_add(s.ffree);
                        t.namelen = t.namelen.min(s.namelen);
                        t.quota = match (t.quota, s.quota) {
                            (Some(a), Some(b)) => Some(QuotaUse {
                                bytes: a.bytes.saturating_add(b.bytes),
                                inodes: a.inodes.saturating_add(b.inodes),
                                ..a
                            }),
                            (a, b) => a.or(b),
                        };
                    }
                },
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        total.ok_or_else(|| error.unwrap_or(FsError::BrickDown("no replica set".into())))
    }

    /// While the stack lives: every set's usage, and to each set the sum
    /// of the others'.
    pub async fn run_quota_sync(me: Weak<Distribute>) {
        // The first round at once: a mount of a sub-volume writes from its
        // first moment.
        let mut pause = Duration::ZERO;
        let mut sent: Vec<Vec<QuotaUse>> = Vec::new();
        let mut round: u32 = 0;
        loop {
            tokio::time::sleep(pause).await;
            let Some(d) = me.upgrade() else {
                return;
            };
            if d.closed() {
                return;
            }
            // What a set heard is resent now and then even when unchanged: a
            // brick that restarted has forgotten it.
            let resend = round.is_multiple_of(RESEND_EVERY);
            round = round.wrapping_add(1);
            pause = if d.sync_quotas_once(&mut sent, resend).await {
                QUOTA_SYNC
            } else {
                QUOTA_IDLE
            };
        }
    }

    /// Every set's share; `None` when a set cannot say (the others then
    /// keep what they last heard: its share only grows through its own
    /// bricks, which count it).
    async fn shares(&self) -> Option<Vec<Vec<QuotaUse>>> {
        let shares = join_all(self.sets.iter().map(|s| s.quota_usage())).await;
        match shares.into_iter().collect::<FsResult<_>>() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "sub-volume usage of a set unknown");
                None
            }
        }
    }

    /// One round; false when the volume has no sub-volume. `sent` is what
    /// each set was told last; only changes are sent unless `resend`.
    async fn sync_quotas_once(&self, sent: &mut Vec<Vec<QuotaUse>>, resend: bool) -> bool {
        let Some(shares) = self.shares().await else {
            return true;
        };
        if shares.iter().all(Vec::is_empty) {
            return false;
        }
        let total = sum(&shares);
        sent.resize(shares.len(), Vec::new());
        let mut sends = Vec::new();
        for (i, set) in self.sets.iter().enumerate() {
            let others: Vec<QuotaUse> = total
                .iter()
                .map(|t| {
                    let mine = shares[i].iter().find(|u| u.subvol == t.subvol);
                    QuotaUse {
                        bytes: t.bytes.saturating_sub(mine.map_or(0, |u| u.bytes)),
                        inodes: t.inodes.saturating_sub(mine.map_or(0, |u| u.inodes)),
                        ..*t
                    }
                })
                .collect();
            if resend || sent[i] != others {
                sent[i] = others.clone();
                let set = set.clone();
                sends.push(async move { set.quota_elsewhere(others).await });
            }
        }
        join_all(sends).await;
        true
    }
}

/// Each sub-volume's usage summed over the sets' shares.
pub(crate) fn sum(shares: &[Vec<QuotaUse>]) -> Vec<QuotaUse> {
    let mut total: Vec<QuotaUse> = Vec::new();
    for u in shares.iter().flatten() {
        match total.iter_mut().find(|t| t.subvol == u.subvol) {
            Some(t) => {
                t.bytes = t.bytes.saturating_add(u.bytes);
                t.inodes = t.inodes.saturating_add(u.inodes);
            }
            None => total.push(*u),
        }
    }
    total
}
