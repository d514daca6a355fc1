//! Fan-out to a set of bricks and the vote over their answers. Every
//! replicated operation goes through here, so quorum rules live in one place.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::join_all;
use proto::{FsError, FsResult};

use crate::protocol::BrickConn;

/// Bitmask of replica-set positions.
pub type Mask = u8;

/// The mask bit of replica `i`; 0 for an index no replica set has (it can
/// come from a brick's disk, so it must not panic).
pub fn bit(i: usize) -> Mask {
    1u8.checked_shl(i as u32).unwrap_or(0)
}

pub fn count(m: Mask) -> usize {
    m.count_ones() as usize
}

pub fn indices(m: Mask) -> impl Iterator<Item = usize> {
    (0..8).filter(move |i| m & bit(*i) != 0)
}

/// Every position of a replica set of `n` bricks.
pub fn all_of(n: usize) -> Mask {
    ((1u16 << n.min(8)) - 1) as Mask
}

/// The bricks for which `pred` holds.
pub fn mask_where(bricks: &[Arc<BrickConn>], pred: impl Fn(&BrickConn) -> bool) -> Mask {
    bricks
        .iter()
        .enumerate()
        .filter(|(_, b)| pred(b))
        .fold(0, |m, (i, _)| m | bit(i))
}

/// The bricks of a set that are down and why, for errors a person reads:
/// `127.0.0.1:4002 (brick down: … connection refused), 127.0.0.1:4003 (…)`.
pub fn describe_down(bricks: &[Arc<BrickConn>]) -> String {
    let down: Vec<String> = bricks
        .iter()
        .filter(|b| !b.is_up())
        .map(|b| format!("{} ({})", b.addr, b.down_reason()))
        .collect();
    if down.is_empty() {
        "none down".into()
    } else {
        down.join(", ")
    }
}

/// The error of an op that must not start: fewer than `quorum` bricks up.
pub fn read_only(bricks: &[Arc<BrickConn>], quorum: usize) -> FsError {
    FsError::ReadOnly {
        need: quorum,
        down: describe_down(bricks),
    }
}

/// Calls `f` on every brick in `mask` concurrently; answers in brick order.
pub async fn fan_out<T, F, Fut>(
    bricks: &[Arc<BrickConn>],
    mask: Mask,
    f: F,
) -> Vec<(usize, FsResult<T>)>
where
    F: Fn(Arc<BrickConn>) -> Fut,
    Fut: Future<Output = FsResult<T>>,
{
    let calls = indices(mask).filter(|i| *i < bricks.len()).map(|i| {
        let fut = f(bricks[i].clone());
        async move { (i, fut.await) }
    });
    join_all(calls).await
}

/// The answers of one fan-out, sorted into what counts.
pub struct Tally<T> {
    pub ok: Vec<(usize, T)>,
    /// Bricks that did not answer (down, timed out): they missed the op.
    pub unreachable: Mask,
    /// Why each of them did not answer.
    pub unreachable_why: Vec<(usize, FsError)>,
    /// Bricks that answered with an error about the file.
    pub failed: Vec<(usize, FsError)>,
}

impl<T> Tally<T> {
    pub fn new(answers: Vec<(usize, FsResult<T>)>) -> Tally<T> {
        let mut tally = Tally {
            ok: Vec::new(),
            unreachable: 0,
            unreachable_why: Vec::new(),
            failed: Vec::new(),
        };
        for (i, res) in answers {
            match res {
                Ok(v) => tally.ok.push((i, v)),
                Err(e) if e.is_transport() => {
                    tally.unreachable |= bit(i);
                    tally.unreachable_why.push((i, e));
                }
                Err(e) => tally.failed.push((i, e)),
            }
        }
        tally
    }

    pub fn ok_mask(&self) -> Mask {
        self.ok.iter().fold(0, |m, (i, _)| m | bit(*i))
    }

    pub fn failed_mask(&self) -> Mask {
        self.failed.iter().fold(0, |m, (i, _)| m | bit(*i))
    }

    /// The error most bricks agree on, for reporting a failed operation.
    pub fn common_error(&self, need: usize) -> FsError {
        let mut by_errno: HashMap<i32, (usize, usize, &FsError)> = HashMap::new();
        for (i, e) in &self.failed {
            by_errno.entry(e.errno()).or_insert((0, *i, e)).0 += 1;
        }
        // Most bricks agree; on a tie the lowest brick's answer, so the same
        // disagreement always reports the same errno.
        if let Some((_, (_, _, e))) = by_errno
            .iter()
            .max_by_key(|(_, (n, first, _))| (*n, std::cmp::Reverse(*first)))
        {
            return (*e).clone();
        }
        let why: Vec<String> = self
            .unreachable_why
            .iter()
            .map(|(_, e)| e.to_string())
            .collect();
        FsError::Quorum {
            need,
            got: self.ok.len(),
            detail: if why.is_empty() {
                "no brick answered".into()
            } else {
                why.join("; ")
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_sorts_answers() {
        let t = Tally::new(vec![
            (0, Ok(1)),
            (1, Err(FsError::Timeout("b".into()))),
            (2, Err(FsError::NotFound)),
        ]);
        assert_eq!(t.ok_mask(), 0b001);
        assert_eq!(t.unreachable, 0b010);
        assert_eq!(t.failed_mask(), 0b100);
        assert_eq!(t.common_error(2), FsError::NotFound);
    }

    #[test]
    fn no_answers_is_a_quorum_error() {
        let t: Tally<()> = Tally::new(vec![(0, Err(FsError::BrickDown("a".into())))]);
        assert!(matches!(
            t.common_error(2),
            FsError::Quorum {
                need: 2,
                got: 0,
                ..
            }
        ));
    }

    #[test]
    fn masks() {
        assert_eq!(indices(0b101).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(count(0b111), 3);
    }
}
