//! Which replicas are heal sources and which are sinks, from the changelog
//! the bricks return (AFR's rule): a replica blamed by any replica that has
//! the object is a sink; the others are sources. Every replica blamed by
//! another is split-brain, which heal reports and never resolves by itself,
//! with one exception that is not a split-brain at all:
//!
//! **Stale accusations.** Blame is a counter on the accusing brick, and a
//! heal subtracts it only on the bricks that are up. A brick that was down
//! while another was healed keeps accusing it of ops it has long received:
//! after rolling outages each replica can be blamed by some other, although
//! every op reached a quorum. When one replica is accused by a majority of
//! the replicas, it is a sink, and its own accusations are not counted: any
//! op it applied and another replica missed was applied with a quorum
//! partner, which accuses the same replica too (or has had it healed).
//!
//! When two replicas are each accused by a majority (an outage of one, then
//! of another, with heal in between while a third was down), discounting
//! both leaves one replica whose accusations are credible. It is only a
//! *likely* source: an op's accusation is written at its post-op, so an
//! applier that lost its post-op does not accuse the replica that missed
//! the op, and the likely source may be that replica. Heal takes it only
//! when another replica's content (or metadata) is identical to it, so two
//! replicas vouch for it (data.rs, object.rs); otherwise it stays a
//! split-brain. Every acknowledged op reached two replicas, so a replica
//! that lacks one differs from both of them unless the op changed nothing.
//!
//! **Self-accusation.** A replica that applied an op its client could not
//! get a quorum for accuses itself (the others may not have heard of the
//! op). That is no blame: such a copy holds every op that succeeded plus
//! the failed one, so it is the source of last resort, after any unblamed
//! copy that is clean, then any that is dirty (a transaction left
//! unconfirmed), and only with every replica present, else heal waits for
//! the others. When nobody else is blamed and every replica is here, the
//! contents vote instead, as for a dirty mark: a hung brick that resumed
//! may have run the failed op after all. Whichever source is taken, the other unblamed copies that are
//! dirty or accuse themselves are healed from it too: heal clears every
//! mark, and one left as it was could differ with nothing to say so.
//!
//! Directories where every replica is blamed by both others (each missed
//! ops the other two applied, and no heal ran in between) are not a
//! split-brain either when all replicas are there: entry heal lets a
//! majority of all replicas decide name by name (`entries.rs`), since the
//! two replicas that applied a name's last op agree on it.

use proto::{Looked, PendingKind};

use crate::quorum::{bit, Mask};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Roles {
    /// Nobody blames anybody and no transaction is unconfirmed.
    Clean,
    /// Copy from `source` to `sinks`.
    Heal { source: usize, sinks: Mask },
    /// Nobody is blamed but a transaction was left unconfirmed: the
    /// replicas' contents decide (majority), if they differ at all.
    Vote,
    /// Every replica present is blamed by another. `likely` is the one
    /// replica left credible once the accusations of replicas a majority
    /// accuses are discounted, if there is one: a source only if another
    /// replica's content agrees with it.
    SplitBrain { blamed: Mask, likely: Option<usize> },
    /// The only sources present accuse themselves (`failed`: an op reached
    /// them without a quorum) while a replica is away: it may be a better
    /// source. Not a split-brain; heal waits for it.
    SourceAbsent { failed: Mask },
}

impl Roles {
    /// Why heal waits, for `SourceAbsent`.
    pub fn waiting_for_a_source(failed: Mask) -> String {
        format!(
            "replicas {failed:#b} hold an operation that failed without a quorum, and a \
             replica that may not is away: waiting for it"
        )
    }
}

fn self_accused(kind: PendingKind, present: &[(usize, &Looked)]) -> Mask {
    present
        .iter()
        .filter(|(i, l)| l.against(*i).of(kind) > 0)
        .fold(0, |m, (i, _)| m | bit(*i))
}

/// Replicas that at least `need` of `present` other than themselves blame
/// (an accusation of oneself is no blame, see the module docs).
fn accused_by_at_least(kind: PendingKind, present: &[(usize, &Looked)], need: usize) -> Mask {
    let mut m = 0;
    for (target, _) in present {
        let accusers = present
            .iter()
            .filter(|(i, l)| i != target && l.against(*target).of(kind) > 0)
            .count();
        if accusers >= need {
            m |= bit(*target);
        }
    }
    m
}

/// `replicas` is the size of the replica set (present or not).
pub fn roles(kind: PendingKind, present: &[(usize, &Looked)], replicas: usize) -> Roles {
    let have = present.iter().fold(0, |m, (i, _)| m | bit(*i));
    let mut sinks = accused_by_at_least(kind, present, 1);
    let mut likely = None;
    if sinks == have && present.len() >= 3 {
        // Everyone blamed: discount the accusations of the replicas a
        // majority accuses (see the module docs).
        let overruled = accused_by_at_least(kind, present, present.len() / 2 + 1);
        let credible: Vec<(usize, &Looked)> = present
            .iter()
            .filter(|(i, _)| overruled & bit(*i) == 0)
            .copied()
            .collect();
        let discounted = accused_by_at_least(kind, &credible, 1) | overruled;
        match overruled.count_ones() {
            0 => {}
            1 => sinks = discounted,
            _ => likely = crate::quorum::indices(have & !discounted).next(),
        }
    }
    let sources = have & !sinks;
    let dirty = present
        .iter()
        .filter(|(_, l)| l.dirty)
        .fold(0, |m, (i, _)| m | bit(*i));
    let failed = self_accused(kind, present) & have;
    if sinks == 0 {
        if failed == 0 && dirty == 0 {
            return Roles::Clean;
        }
        // With everyone here the contents decide: a hung brick that resumed
        // may have run the failed op after all, unblamed and clean, and
        // then the copies that have it are the majority. Not for metadata,
        // whose vote weighs mode and owner only: a failed xattr or times
        // change would pass it and lose its marks.
        if failed == 0 || (present.len() >= replicas && kind != PendingKind::Metadata) {
            return Roles::Vote;
        }
    }
    let first = |m: Mask| crate::quorum::indices(m).next();
    let Some(source) = first(sources & !dirty & !failed)
        .or_else(|| first(sources & !failed))
        .or_else(|| first(sources))
    else {
        return Roles::SplitBrain {
            blamed: sinks,
            likely,
        };
    };
    if failed & bit(source) != 0 && present.len() < replicas {
        return Roles::SourceAbsent {
            failed: failed & sources,
        };
    }
    Roles::Heal {
        source,
        sinks: sinks | (sources & (dirty | failed) & !bit(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{Attr, FileKind, Gfid, PendingCounts};

    fn looked(pending: &[(u8, u32)], dirty: bool) -> Looked {
        Looked {
            attr: Attr::bare(Gfid::ROOT, FileKind::File, 0o644),
            pending: pending
                .iter()
                .map(|(i, d)| {
                    (
                        *i,
                        PendingCounts {
                            data: *d,
                            metadata: 0,
                            entry: 0,
                        },
                    )
                })
                .collect(),
            dirty,
        }
    }

    fn split_brain(blamed: Mask, likely: Option<usize>) -> Roles {
        Roles::SplitBrain { blamed, likely }
    }

    #[test]
    fn blamed_replica_is_the_sink() {
        let (a, b, c) = (
            looked(&[(0, 3)], false),
            looked(&[(0, 3)], false),
            looked(&[], false),
        );
        let present = [(0, &c), (1, &a), (2, &b)];
        assert_eq!(
            roles(PendingKind::Data, &present, 3),
            Roles::Heal {
                source: 1,
                sinks: 0b001
            }
        );
        assert_eq!(roles(PendingKind::Metadata, &present, 3), Roles::Clean);
    }

    #[test]
    fn rolling_outage_leaves_one_source() {
        // b0 missed a write (b1, b2 blame it); b2 missed a later one (b0, b1 blame it).
        let b0 = looked(&[(2, 1)], false);
        let b1 = looked(&[(0, 1), (2, 1)], false);
        let b2 = looked(&[(0, 1)], false);
        let present = [(0, &b0), (1, &b1), (2, &b2)];
        assert_eq!(
            roles(PendingKind::Data, &present, 3),
            Roles::Heal {
                source: 1,
                sinks: 0b101
            }
        );
    }

    #[test]
    fn stale_accusations_of_a_replica_a_majority_blames_do_not_count() {
        // After rolling outages: b1 missed ops (b0 and b2 blame it) but
        // still counts ops against b0 and b2 that heal brought them while b1
        // was away. Not a split-brain: b1 is the sink.
        let b0 = looked(&[(1, 0x8e)], false);
        let b1 = looked(&[(0, 0x25), (2, 2)], false);
        let b2 = looked(&[(1, 0x3a)], false);
        let present = [(0, &b0), (1, &b1), (2, &b2)];
        assert_eq!(
            roles(PendingKind::Data, &present, 3),
            Roles::Heal {
                source: 0,
                sinks: 0b010
            }
        );
        // Each replica blamed by both others: no way to tell.
        let b0 = looked(&[(1, 1), (2, 1)], false);
        let b1 = looked(&[(0, 1), (2, 1)], false);
        let b2 = looked(&[(0, 1), (1, 1)], false);
        let present = [(0, &b0), (1, &b1), (2, &b2)];
        assert_eq!(
            roles(PendingKind::Data, &present, 3),
            split_brain(0b111, None)
        );
    }

    #[test]
    fn two_replicas_a_majority_blames_leave_a_likely_source() {
        // The crash soak's state: b1 and b2 are each blamed by both others,
        // b0 only by b1 (whose accusations are discounted).
        let b0 = looked(&[(1, 38), (2, 1)], false);
        let b1 = looked(&[(0, 22), (2, 1)], false);
        let b2 = looked(&[(1, 38)], false);
        let present = [(0, &b0), (1, &b1), (2, &b2)];
        assert_eq!(
            roles(PendingKind::Data, &present, 3),
            split_brain(0b111, Some(0))
        );
        // The third replica down: nothing can vouch for the likely source.
        assert_eq!(
            roles(PendingKind::Data, &present[..2], 3),
            split_brain(0b011, None)
        );
        // Nobody else blamed by a majority: an ordinary split-brain.
        let b0 = looked(&[(1, 1), (2, 1)], false);
        let b1 = looked(&[(0, 1)], false);
        let b2 = looked(&[], false);
        let present = [(0, &b0), (1, &b1), (2, &b2)];
        assert_eq!(
            roles(PendingKind::Data, &present, 3),
            split_brain(0b111, None)
        );
    }

    #[test]
    fn mutual_blame_is_split_brain() {
        let b0 = looked(&[(1, 1)], false);
        let b1 = looked(&[(0, 1)], false);
        let present = [(0, &b0), (1, &b1)];
        assert_eq!(
            roles(PendingKind::Data, &present, 3),
            split_brain(0b011, None)
        );
    }

    #[test]
    fn dirty_without_blame_is_decided_by_content() {
        let b0 = looked(&[], true);
        let b1 = looked(&[], false);
        assert_eq!(
            roles(PendingKind::Data, &[(0, &b0), (1, &b1)], 3),
            Roles::Vote
        );
    }

    #[test]
    fn a_replica_accusing_itself_is_a_sink() {
        // b0 applied an op its client could not get a quorum for while b1
        // and b2 were unreachable; b2 then missed one that b0 and b1 applied.
        let b0 = looked(&[(0, 1), (2, 1)], true);
        let b1 = looked(&[(2, 1)], false);
        let b2 = looked(&[], false);
        let present = [(0, &b0), (1, &b1), (2, &b2)];
        assert_eq!(
            roles(PendingKind::Data, &present, 3),
            Roles::Heal {
                source: 1,
                sinks: 0b101
            }
        );
        // Alone, it is no source for anybody, and not a split-brain: the
        // good copies are away.
        assert_eq!(
            roles(PendingKind::Data, &present[..1], 3),
            Roles::SourceAbsent { failed: 0b001 }
        );
        // With the replica that missed the later op only: the same.
        assert_eq!(
            roles(PendingKind::Data, &[(0, &b0), (2, &b2)], 3),
            Roles::SourceAbsent { failed: 0b001 }
        );
        // With the good copy: healed from it.
        assert_eq!(
            roles(PendingKind::Data, &present[..2], 3),
            Roles::Heal {
                source: 1,
                sinks: 0b001
            }
        );
    }

    #[test]
    fn a_self_accusation_after_rolling_outages_is_no_split_brain() {
        // b1 missed W1 (b0 and b2 blame it) and was healed from b2 while b0
        // was down, so b0 still accuses it; b2 then missed W2 (b0 and b1
        // blame it); W3 reached only b0. The one unblamed copy is b0's,
        // which has every op that succeeded: the source, failed op and all.
        let b0 = looked(&[(0, 1), (1, 1), (2, 1)], true);
        let b1 = looked(&[(2, 1)], false);
        let b2 = looked(&[], false);
        let present = [(0, &b0), (1, &b1), (2, &b2)];
        assert_eq!(
            roles(PendingKind::Data, &present, 3),
            Roles::Heal {
                source: 0,
                sinks: 0b110
            }
        );
        // b2 away: b1 is behind, b0 the only source present, and b2 may
        // have what b0 has without the failed op; wait for it.
        assert_eq!(
            roles(PendingKind::Data, &present[..2], 3),
            Roles::SourceAbsent { failed: 0b001 }
        );
    }

    #[test]
    fn a_self_accusation_nobody_else_backs_is_put_to_the_vote_when_all_are_here() {
        let b0 = looked(&[(0, 1)], true);
        let b1 = looked(&[], false);
        let b2 = looked(&[], false);
        let present = [(0, &b0), (1, &b1), (2, &b2)];
        assert_eq!(roles(PendingKind::Data, &present, 3), Roles::Vote);
        // A failed xattr change: the clean copy is the source.
        let m0 = Looked {
            pending: vec![(
                0,
                PendingCounts {
                    data: 0,
                    metadata: 1,
                    entry: 0,
                },
            )],
            ..looked(&[], true)
        };
        assert_eq!(
            roles(PendingKind::Metadata, &[(0, &m0), (1, &b1), (2, &b2)], 3),
            Roles::Heal {
                source: 1,
                sinks: 0b001
            }
        );
        // One away: the clean copy is the source.
        assert_eq!(
            roles(PendingKind::Data, &present[..2], 3),
            Roles::Heal {
                source: 1,
                sinks: 0b001
            }
        );
    }

    #[test]
    fn a_clean_source_goes_before_a_dirty_one_which_it_heals() {
        // The same, with b0's accusation of itself lost: its dirty mark is
        // what is left of the failed op.
        let b0 = looked(&[(2, 1)], true);
        let b1 = looked(&[(2, 1)], false);
        let b2 = looked(&[], false);
        let present = [(0, &b0), (1, &b1), (2, &b2)];
        assert_eq!(
            roles(PendingKind::Data, &present, 3),
            Roles::Heal {
                source: 1,
                sinks: 0b101
            }
        );
        // Every source dirty (a client died before its post-op, or the
        // bricks that missed the failed op were killed holding their own
        // marks): the first, and the others are made the same.
        let b1 = looked(&[(2, 1)], true);
        let present = [(0, &b0), (1, &b1), (2, &b2)];
        assert_eq!(
            roles(PendingKind::Data, &present, 3),
            Roles::Heal {
                source: 0,
                sinks: 0b110
            }
        );
    }

    #[test]
    fn blame_from_a_brick_index_out_of_range_is_ignored() {
        let b0 = looked(&[(200, 1)], false);
        assert_eq!(roles(PendingKind::Data, &[(0, &b0)], 3), Roles::Clean);
    }
}
