//! The byte ranges one owner holds locked in one file, as the gateway's
//! own bookkeeping: the bricks keep the locks themselves, this only says
//! when an owner no longer holds anything in a file (so its entry, and in
//! the end its host's, can go) and what to give back when a host is freed.
//! Lock types do not matter here: a range is held or not.

/// Inclusive ranges, sorted, neither overlapping nor touching.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().copied()
    }

    /// Adds `start..=end`, merging with what it overlaps or touches.
    pub fn add(&mut self, start: u64, end: u64) {
        let (mut lo, mut hi) = (start, end);
        self.0.retain(|&(s, e)| {
            let touches = s <= hi.saturating_add(1) && lo <= e.saturating_add(1);
            if touches {
                lo = lo.min(s);
                hi = hi.max(e);
            }
            !touches
        });
        let at = self.0.partition_point(|&(s, _)| s < lo);
        self.0.insert(at, (lo, hi));
    }

    /// Removes `start..=end`, splitting what it cuts through.
    pub fn remove(&mut self, start: u64, end: u64) {
        let mut next = Vec::with_capacity(self.0.len() + 1);
        for &(s, e) in &self.0 {
            if e < start || s > end {
                next.push((s, e));
                continue;
            }
            if s < start {
                next.push((s, start - 1));
            }
            if e > end {
                next.push((end + 1, e));
            }
        }
        self.0 = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(r: &Ranges) -> Vec<(u64, u64)> {
        r.iter().collect()
    }

    #[test]
    fn add_merges_and_remove_splits() {
        let mut r = Ranges::default();
        r.add(10, 19);
        r.add(30, 39);
        assert_eq!(of(&r), vec![(10, 19), (30, 39)]);
        r.add(20, 29);
        assert_eq!(of(&r), vec![(10, 39)], "touching ranges merge");
        r.remove(15, 24);
        assert_eq!(of(&r), vec![(10, 14), (25, 39)]);
        r.add(0, u64::MAX);
        assert_eq!(of(&r), vec![(0, u64::MAX)]);
        r.remove(0, 9);
        assert_eq!(of(&r), vec![(10, u64::MAX)]);
        r.remove(5, u64::MAX);
        assert!(r.is_empty());
        r.add(u64::MAX, u64::MAX);
        r.add(0, 0);
        assert_eq!(of(&r), vec![(0, 0), (u64::MAX, u64::MAX)]);
        r.remove(0, u64::MAX);
        assert!(r.is_empty());
    }
}
