//! Per-inode replication state of this client: which bricks hold our
//! replication lock (eager locking), and which replicas are known stale.
//!
//! Why eager locks: AFR pays lock + pre-op + op + post-op + unlock per fop.
//! Here the lock is kept while this client keeps using the inode, the pre-op
//! (dirty mark and blame) rides on the op itself, and the post-op (dirty clear)
//! rides on the batched unlock. The uncontended fop costs one round trip.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use std::collections::HashSet;

use proto::{Gfid, Name};
use tokio::sync::Mutex;

use crate::quorum::{bit, Mask};

/// Most inode contexts kept; idle ones beyond this are dropped (their stale
/// masks are relearned by the next validation).
pub const MAX_INODES: usize = 65_536;

#[derive(Default)]
pub struct LockState {
    /// Bricks on which this client holds the inode's replication lock.
    /// Changed only through `grant` and `drop_mask`, which keep `listing`
    /// honest.
    pub held: Mask,
    /// For a directory this client created and has held the lock of ever
    /// since: every name in it. While the lock is held nobody else can add
    /// one, so a name not here does not exist, with no round trip. Gone the
    /// moment any lock bit is.
    pub listing: Option<HashSet<Name>>,
    /// Connection generation of each brick when the lock was taken there: a
    /// reconnect means the brick dropped the lock with the old connection.
    pub generations: [u64; 8],
    pub last_used: Option<Instant>,
}

/// Most names a directory listing known to this client may hold.
pub const MAX_LISTING: usize = 10_000;

impl LockState {
    pub fn grant(&mut self, i: usize, generation: u64) {
        if let Some(g) = self.generations.get_mut(i) {
            self.held |= bit(i);
            *g = generation;
        }
    }

    pub fn drop_mask(&mut self, mask: Mask) {
        if self.held & mask != 0 {
            self.listing = None;
        }
        self.held &= !mask;
    }

    pub fn drop_all(&mut self) {
        self.drop_mask(self.held);
    }

    /// Keeps the listing in step with an entry op this client applied.
    pub fn listing_add(&mut self, name: &Name) {
        if let Some(l) = &mut self.listing {
            if l.len() >= MAX_LISTING {
                self.listing = None;
            } else {
                l.insert(name.clone());
            }
        }
    }

    pub fn listing_remove(&mut self, name: &Name) {
        if let Some(l) = &mut self.listing {
            l.remove(name);
        }
    }
}

impl crate::inodelk::Holder for tokio::sync::MutexGuard<'_, LockState> {
    fn held(&self) -> Mask {
        self.held
    }

    fn generation(&self, brick: usize) -> u64 {
        self.generations.get(brick).copied().unwrap_or(0)
    }

    fn grant(&mut self, brick: usize, generation: u64) {
        LockState::grant(self, brick, generation);
    }

    fn drop_mask(&mut self, mask: Mask) {
        LockState::drop_mask(self, mask);
    }
}

pub struct InodeCtx {
    /// Serialises this client's mutations of the inode, so every replica
    /// applies them in the same order.
    pub lock: Mutex<LockState>,
    /// What this client knows of the replicas' copies, as one atomic value
    /// (`Copies`): which lack an op that succeeded, and which hold one that
    /// failed on top of every op that succeeded. Both are stale: not read
    /// from while another copy is reachable.
    copies: AtomicU16,
    /// Brick-connection epoch in which `stale` was last learned from all bricks.
    pub validated_epoch: AtomicU64,
}

impl InodeCtx {
    fn new() -> InodeCtx {
        InodeCtx {
            lock: Mutex::new(LockState::default()),
            copies: AtomicU16::new(0),
            validated_epoch: AtomicU64::new(u64::MAX),
        }
    }

    fn copies(&self) -> Copies {
        Copies::unpack(self.copies.load(Ordering::Acquire))
    }

    fn update(&self, change: impl Fn(Copies) -> Copies) {
        let _ = self
            .copies
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(change(Copies::unpack(v)).pack())
            });
    }

    /// Replicas not to be read from while another copy is reachable.
    pub fn stale(&self) -> Mask {
        let c = self.copies();
        c.behind | c.failed_only
    }

    /// Replicas known to lack an op that succeeded.
    pub fn behind(&self) -> Mask {
        self.copies().behind
    }

    /// Replicas accused only by themselves: they applied an op that failed
    /// for want of a quorum. Read from only when no other copy is
    /// reachable, so that a file stays readable with two bricks down
    /// (TARGET invariant 2), and good enough to write to.
    pub fn failed_only(&self) -> Mask {
        self.copies().failed_only
    }

    /// Replicas learned to have missed an op: whatever else they hold.
    pub fn add_stale(&self, m: Mask) {
        self.update(|c| Copies {
            behind: c.behind | m,
            failed_only: c.failed_only & !m,
        });
    }

    /// Replicas that applied an op which failed; those known to be behind
    /// stay so.
    pub fn add_failed_only(&self, m: Mask) {
        self.update(|c| Copies {
            behind: c.behind,
            failed_only: c.failed_only | (m & !c.behind),
        });
    }

    /// What the bricks that answered said of the replicas: `stale` are
    /// blamed (by another or by themselves), `failed_only` only by
    /// themselves. With fewer than a write quorum of answers (`enough`
    /// false) the answers may all come from copies that missed an op whose
    /// appliers are away, so what was known is only added to.
    pub fn learn(&self, stale: Mask, failed_only: Mask, answered: Mask, all: Mask, enough: bool) {
        let keep = if enough { all & !answered } else { all };
        self.update(|c| {
            let behind = ((stale & !failed_only) | (c.behind & keep)) & all;
            Copies {
                behind,
                failed_only: ((failed_only & stale) | (c.failed_only & keep)) & all & !behind,
            }
        });
    }
}

/// The two masks of [`InodeCtx::copies`]; never both set for a replica.
#[derive(Clone, Copy)]
struct Copies {
    behind: Mask,
    failed_only: Mask,
}

impl Copies {
    fn unpack(v: u16) -> Copies {
        let [behind, failed_only] = v.to_le_bytes();
        Copies {
            behind,
            failed_only,
        }
    }

    fn pack(self) -> u16 {
        u16::from_le_bytes([self.behind, self.failed_only & !self.behind])
    }
}

#[derive(Default)]
pub struct Inodes {
    map: DashMap<Gfid, Arc<InodeCtx>>,
}

impl Inodes {
    pub fn get(&self, gfid: Gfid) -> Arc<InodeCtx> {
        if let Some(c) = self.map.get(&gfid) {
            return c.clone();
        }
        self.map
            .entry(gfid)
            .or_insert_with(|| Arc::new(InodeCtx::new()))
            .clone()
    }

    pub fn peek(&self, gfid: Gfid) -> Option<Arc<InodeCtx>> {
        self.map.get(&gfid).map(|c| c.clone())
    }

    pub fn snapshot(&self) -> Vec<(Gfid, Arc<InodeCtx>)> {
        self.map
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect()
    }

    /// Bounds memory: once past half the limit, drops contexts nobody uses
    /// that hold no lock, and past the limit also those that only remember
    /// stale replicas (relearned by the next validation).
    pub fn trim(&self) {
        let len = self.map.len();
        if len <= MAX_INODES / 2 {
            return;
        }
        let over = len > MAX_INODES;
        self.map.retain(|_, ctx| {
            if Arc::strong_count(ctx) > 1 {
                return true;
            }
            let Ok(state) = ctx.lock.try_lock() else {
                return true;
            };
            if state.held != 0 {
                return true;
            }
            !over && ctx.stale() != 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::InodeCtx;

    #[test]
    fn a_copy_that_missed_an_op_is_no_longer_one_to_fall_back_on() {
        let ctx = InodeCtx::new();
        ctx.add_failed_only(0b001);
        assert_eq!((ctx.stale(), ctx.failed_only()), (0b001, 0b001));
        // Brick 0 then misses a later op: it lacks something that succeeded.
        ctx.add_stale(0b001);
        assert_eq!((ctx.stale(), ctx.failed_only()), (0b001, 0));
        // Already stale when it applied a failed op: still not a fallback.
        ctx.add_failed_only(0b011);
        assert_eq!((ctx.stale(), ctx.failed_only()), (0b011, 0b010));
        // Bricks 0 and 1 answer: brick 1 is clean again; brick 2, not
        // asked, keeps what was known of it.
        ctx.add_failed_only(0b100);
        ctx.learn(0b001, 0, 0b011, 0b111, true);
        assert_eq!((ctx.stale(), ctx.failed_only()), (0b101, 0b100));
        // Brick 0 alone answers that nobody blames it: the bricks that
        // could are away, so it stays behind.
        ctx.learn(0, 0, 0b001, 0b111, false);
        assert_eq!((ctx.stale(), ctx.failed_only()), (0b101, 0b100));
        // Enough answers say it is healed.
        ctx.learn(0, 0, 0b011, 0b111, true);
        assert_eq!((ctx.stale(), ctx.failed_only()), (0b100, 0b100));
    }
}
