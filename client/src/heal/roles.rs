//! Which replicas are heal sources and which are sinks, from the changelog
//! the bricks return (AFR's rule): a replica blamed by any replica that has
//! the object is a sink; the others are sources. Every replica blamed by
//! another is split-brain, which heal reports and never resolves by itself.

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
    /// Every replica present is blamed by another.
    SplitBrain { blamed: Mask },
}

fn counter(c: &proto::PendingCounts, kind: PendingKind) -> u32 {
    match kind {
        PendingKind::Data => c.data,
        PendingKind::Metadata => c.metadata,
        PendingKind::Entry => c.entry,
    }
}

/// Replicas that `present` blame for `kind`.
pub fn blamed(kind: PendingKind, present: &[(usize, &Looked)]) -> Mask {
    let mut m = 0;
    for (_, looked) in present {
        for (idx, counts) in &looked.pending {
            if counter(counts, kind) > 0 {
                m |= bit(*idx as usize);
            }
        }
    }
    m
}

pub fn roles(kind: PendingKind, present: &[(usize, &Looked)]) -> Roles {
    let have = present.iter().fold(0, |m, (i, _)| m | bit(*i));
    let sinks = blamed(kind, present) & have;
    let sources = have & !sinks;
    if sinks == 0 {
        if present.iter().any(|(_, l)| l.dirty) {
            return Roles::Vote;
        }
        return Roles::Clean;
    }
    match crate::quorum::indices(sources).next() {
        Some(source) => Roles::Heal { source, sinks },
        None => Roles::SplitBrain { blamed: sinks },
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

    #[test]
    fn blamed_replica_is_the_sink() {
        let (a, b, c) = (
            looked(&[(0, 3)], false),
            looked(&[(0, 3)], false),
            looked(&[], false),
        );
        let present = [(0, &c), (1, &a), (2, &b)];
        assert_eq!(
            roles(PendingKind::Data, &present),
            Roles::Heal {
                source: 1,
                sinks: 0b001
            }
        );
        assert_eq!(roles(PendingKind::Metadata, &present), Roles::Clean);
    }

    #[test]
    fn rolling_outage_leaves_one_source() {
        // b0 missed a write (b1, b2 blame it); b2 missed a later one (b0, b1 blame it).
        let b0 = looked(&[(2, 1)], false);
        let b1 = looked(&[(0, 1), (2, 1)], false);
        let b2 = looked(&[(0, 1)], false);
        let present = [(0, &b0), (1, &b1), (2, &b2)];
        assert_eq!(
            roles(PendingKind::Data, &present),
            Roles::Heal {
                source: 1,
                sinks: 0b101
            }
        );
    }

    #[test]
    fn mutual_blame_is_split_brain() {
        let b0 = looked(&[(1, 1)], false);
        let b1 = looked(&[(0, 1)], false);
        let present = [(0, &b0), (1, &b1)];
        assert_eq!(
            roles(PendingKind::Data, &present),
            Roles::SplitBrain { blamed: 0b011 }
        );
    }

    #[test]
    fn dirty_without_blame_is_decided_by_content() {
        let b0 = looked(&[], true);
        let b1 = looked(&[], false);
        assert_eq!(roles(PendingKind::Data, &[(0, &b0), (1, &b1)]), Roles::Vote);
    }

    #[test]
    fn blame_from_a_brick_index_out_of_range_is_ignored() {
        let b0 = looked(&[(200, 1)], false);
        assert_eq!(roles(PendingKind::Data, &[(0, &b0)]), Roles::Clean);
    }
}
