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

impl Distribute {
    /// The pool: every set's file system summed.
    pub(crate) async fn pool_statfs(&self) -> FsResult<StatFs> {
        let answers = join_all(self.sets.iter().map(|s| s.statfs(Gfid::ROOT))).await;
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
                    }
                },
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        total.ok_or_else(|| error.unwrap_or(FsError::BrickDown("no replica set".into())))
    }

    /// The usage of the sub-volume `at` is in, summed over the sets.
    pub(crate) async fn quota_of(&self, at: Gfid) -> FsResult<Option<QuotaUse>> {
        let first = if self.is_dir(at).await? {
            self.sets[0].statfs(at).await?
        } else {
            self.on_file(at, |s| async move { s.statfs(at).await })
                .await?
        };
        let Some(q) = first.quota else {
            return Ok(None);
        };
        let shares = join_all(self.sets.iter().map(|s| s.statfs(q.subvol))).await;
        let mut sum = QuotaUse {
            bytes: 0,
            inodes: 0,
            ..q
        };
        for share in shares {
            if let Some(u) = share?.quota {
                sum.bytes = sum.bytes.saturating_add(u.bytes);
                sum.inodes = sum.inodes.saturating_add(u.inodes);
            }
        }
        Ok(Some(sum))
    }

    /// While the stack lives: every set's usage, and to each set the sum
    /// of the others'.
    pub async fn run_quota_sync(me: Weak<Distribute>) {
        // The first round at once: a mount of a sub-volume writes from its
        // first moment.
        let mut pause = Duration::ZERO;
        loop {
            tokio::time::sleep(pause).await;
            let Some(d) = me.upgrade() else {
                return;
            };
            if d.closed() {
                return;
            }
            pause = if d.sync_quotas_once().await {
                QUOTA_SYNC
            } else {
                QUOTA_IDLE
            };
        }
    }

    /// One round; false when the volume has no sub-volume.
    async fn sync_quotas_once(&self) -> bool {
        let shares = join_all(self.sets.iter().map(|s| s.quota_usage())).await;
        let shares: Vec<Vec<QuotaUse>> = match shares.into_iter().collect::<FsResult<_>>() {
            Ok(s) => s,
            // A set that cannot say: the others keep what they last heard
            // (its share only grows through its own bricks, which count it).
            Err(e) => {
                tracing::warn!(error = %e, "sub-volume usage of a set unknown");
                return true;
            }
        };
        if shares.iter().all(Vec::is_empty) {
            return false;
        }
        let sends = self.sets.iter().enumerate().map(|(i, set)| {
            let mut others: Vec<QuotaUse> = Vec::new();
            for (j, share) in shares.iter().enumerate() {
                if i == j {
                    continue;
                }
                for u in share {
                    match others.iter_mut().find(|o| o.subvol == u.subvol) {
                        Some(o) => {
                            o.bytes = o.bytes.saturating_add(u.bytes);
                            o.inodes = o.inodes.saturating_add(u.inodes);
                        }
                        None => others.push(*u),
                    }
                }
            }
            // A sub-volume this set holds but no other: nothing elsewhere.
            for u in &shares[i] {
                if !others.iter().any(|o| o.subvol == u.subvol) {
                    others.push(QuotaUse {
                        bytes: 0,
                        inodes: 0,
                        ..*u
                    });
                }
            }
            let set = set.clone();
            async move { set.quota_elsewhere(others).await }
        });
        join_all(sends).await;
        true
    }
}
