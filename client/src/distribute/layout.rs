//! Directory layouts: which replica set each part of the name-hash space
//! belongs to, kept per directory in an extended attribute on every set's
//! copy of the directory (as Gluster's DHT keeps `trusted.glusterfs.dht`).
//!
//! A layout is *complete* when every file of the directory is on the set
//! its name hashes to, or has a link file there; a name missing from its
//! hashed set then does not exist. An incomplete layout (being rebalanced)
//! makes a miss ask every set.

use proto::{Gfid, Name};

/// A directory's layout.
pub const LAYOUT_XATTR: &[u8] = b"trusted.brickfs.dht.layout";
/// On a link file: the index of the set holding the file of that name.
pub const LINKTO_XATTR: &[u8] = b"trusted.brickfs.dht.linkto";
/// Mode of a link file (sticky bit, no permissions), so that one is
/// recognised from its attributes; the attribute above confirms it.
pub const LINKTO_PERM: u32 = 0o1000;

const MAGIC: &str = "brickfs-layout 1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u32,
    pub end: u32,
    pub set: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Sorted, covering 0..=u32::MAX without gaps or overlaps.
    pub ranges: Vec<Range>,
    pub complete: bool,
}

/// Hash of a name: where in the layout it falls.
pub fn name_hash(name: &Name) -> u32 {
    let h = blake3::hash(name.as_bytes());
    let b = h.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl Layout {
    /// Equal shares of the hash space for `sets` sets, in set order.
    pub fn even(sets: usize, complete: bool) -> Layout {
        let all: Vec<usize> = (0..sets.clamp(1, usize::from(u16::MAX))).collect();
        Layout::even_over(&all, complete)
    }

    /// Equal shares of the hash space for the sets listed, in that order
    /// (a directory made while some sets lack its parent: only those that
    /// have it). An empty list is set 0 alone.
    pub fn even_over(sets: &[usize], complete: bool) -> Layout {
        let sets: Vec<u16> = sets.iter().filter_map(|s| u16::try_from(*s).ok()).collect();
        let sets = if sets.is_empty() { vec![0] } else { sets };
        let n = sets.len() as u64;
        let space = 1u64 << 32;
        let ranges = sets
            .iter()
            .enumerate()
            .map(|(i, set)| {
                let i = i as u64;
                Range {
                    start: (i * space / n) as u32,
                    end: ((i + 1) * space / n - 1) as u32,
                    set: *set,
                }
            })
            .collect();
        Layout { ranges, complete }
    }

    /// The sets the layout sends names to, ascending.
    pub fn sets(&self) -> Vec<usize> {
        let mut sets: Vec<usize> = self.ranges.iter().map(|r| usize::from(r.set)).collect();
        sets.sort_unstable();
        sets.dedup();
        sets
    }

    /// The layout of a directory that has none: it was made while the
    /// volume had one replica set, so all its files are on set 0.
    pub fn legacy() -> Layout {
        Layout::even(1, true)
    }

    pub fn set_for(&self, name: &Name) -> usize {
        let h = name_hash(name);
        let i = self.ranges.partition_point(|r| r.end < h);
        self.ranges.get(i).map_or(0, |r| usize::from(r.set))
    }

    /// Highest set index the layout names.
    pub fn max_set(&self) -> usize {
        self.ranges
            .iter()
            .map(|r| usize::from(r.set))
            .max()
            .unwrap_or(0)
    }

    /// True when the layout gives each of `sets` sets an equal share: what
    /// rebalance makes it.
    pub fn is_even_over(&self, sets: usize) -> bool {
        self.ranges == Layout::even(sets, self.complete).ranges
    }

    /// True when each of sets `0..sets` owns exactly its share of the hash
    /// space (in one range or several) and no other set owns any.
    pub fn is_balanced_over(&self, sets: usize) -> bool {
        let mut owned = vec![0u64; sets.max(1)];
        for r in &self.ranges {
            match owned.get_mut(usize::from(r.set)) {
                Some(o) => *o += u64::from(r.end) - u64::from(r.start) + 1,
                None => return false,
            }
        }
        owned
            .iter()
            .enumerate()
            .all(|(i, o)| *o == share(i, sets.max(1)))
    }

    /// The layout over `sets` sets that keeps the most of this one: each
    /// set keeps the start of what it had, up to its new share, and the
    /// rest goes to the sets short of theirs. Growing N sets to N + 1 moves
    /// 1 / (N + 1) of the names, where a fresh even split would move about
    /// half. Incomplete: the files have yet to move.
    pub fn grown(&self, sets: usize) -> Layout {
        let sets = sets.clamp(1, usize::from(u16::MAX));
        let mut owned = vec![0u64; sets];
        // (start, length, set), and the pieces nobody keeps.
        let mut pieces: Vec<(u64, u64, usize)> = Vec::new();
        let mut pool: Vec<(u64, u64)> = Vec::new();
        for r in &self.ranges {
            let (start, len) = (
                u64::from(r.start),
                u64::from(r.end) - u64::from(r.start) + 1,
            );
            let set = usize::from(r.set);
            let keep = match owned.get(set) {
                Some(o) => (share(set, sets) - o).min(len),
                None => 0,
            };
            if keep > 0 {
                pieces.push((start, keep, set));
                owned[set] += keep;
            }
            if len > keep {
                pool.push((start + keep, len - keep));
            }
        }
        let mut set = 0;
        for (mut start, mut len) in pool {
            while len > 0 && set < sets {
                let room = share(set, sets) - owned[set];
                if room == 0 {
                    set += 1;
                    continue;
                }
                let take = room.min(len);
                pieces.push((start, take, set));
                owned[set] += take;
                start += take;
                len -= take;
            }
        }
        pieces.sort_unstable();
        let mut ranges: Vec<Range> = Vec::with_capacity(pieces.len());
        for (start, len, set) in pieces {
            let end = (start + len - 1) as u32;
            match ranges.last_mut() {
                Some(last) if usize::from(last.set) == set && u64::from(last.end) + 1 == start => {
                    last.end = end
                }
                _ => ranges.push(Range {
                    start: start as u32,
                    end,
                    set: set as u16,
                }),
            }
        }
        Layout {
            ranges,
            complete: false,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!(
            "{MAGIC} {}",
            if self.complete {
                "complete"
            } else {
                "incomplete"
            }
        );
        for r in &self.ranges {
            s.push_str(&format!(" {:08x}-{:08x}:{}", r.start, r.end, r.set));
        }
        s.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Layout> {
        let text = std::str::from_utf8(bytes).ok()?;
        let rest = text.strip_prefix(MAGIC)?.trim_start();
        let mut words = rest.split_ascii_whitespace();
        let complete = match words.next()? {
            "complete" => true,
            "incomplete" => false,
            _ => return None,
        };
        let mut ranges = Vec::new();
        for w in words {
            let (span, set) = w.split_once(':')?;
            let (a, b) = span.split_once('-')?;
            ranges.push(Range {
                start: u32::from_str_radix(a, 16).ok()?,
                end: u32::from_str_radix(b, 16).ok()?,
                set: set.parse().ok()?,
            });
        }
        // Must cover the whole space in order: anything else is damage, and
        // a damaged layout is treated as absent rather than trusted.
        let mut next: u64 = 0;
        for r in &ranges {
            if u64::from(r.start) != next || r.end < r.start {
                return None;
            }
            next = u64::from(r.end) + 1;
        }
        (next == 1 << 32).then_some(Layout { ranges, complete })
    }
}

/// Set `i`'s share of the hash space when there are `n` sets: the lengths
/// of `even`'s ranges, so an even layout is balanced.
fn share(i: usize, n: usize) -> u64 {
    let (i, n, space) = (i as u64, n as u64, 1u64 << 32);
    (i + 1) * space / n - i * space / n
}

/// The set a link file points to, from its attribute's value.
/// Where a link file points: the set, and (links made since the format
/// grew it) the gfid of the file it was made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkTo {
    pub set: usize,
    pub gfid: Option<Gfid>,
}

/// `SET` or `SET:GFIDHEX`.
pub fn decode_linkto(bytes: &[u8]) -> Option<LinkTo> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let (set, gfid) = match text.split_once(':') {
        Some((set, hex)) => (set, Some(Gfid::from_hex(hex)?)),
        None => (text, None),
    };
    Some(LinkTo {
        set: set.parse().ok()?,
        gfid,
    })
}

pub fn encode_linkto(set: usize, gfid: Gfid) -> Vec<u8> {
    format!("{set}:{}", gfid.to_hex()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_layouts_cover_the_space_and_round_trip() {
        for n in 1..=7 {
            let l = Layout::even(n, n % 2 == 0);
            assert_eq!(l.ranges.len(), n);
            assert_eq!(l.ranges[0].start, 0);
            assert_eq!(l.ranges[n - 1].end, u32::MAX);
            assert_eq!(Layout::decode(&l.encode()), Some(l.clone()));
            assert!(l.is_even_over(n));
            assert_eq!(l.max_set(), n - 1);
        }
    }

    #[test]
    fn layouts_over_some_sets_name_only_those() {
        let l = Layout::even_over(&[0, 2], true);
        assert_eq!(l.sets(), vec![0, 2]);
        assert_eq!(Layout::decode(&l.encode()), Some(l.clone()));
        assert!(!l.is_even_over(3));
        assert_eq!(Layout::even_over(&[0, 1, 2], true), Layout::even(3, true));
        assert_eq!(Layout::even_over(&[], true), Layout::even(1, true));
        for i in 0..100 {
            assert_ne!(l.set_for(&Name::new(format!("f{i}"))), 1);
        }
    }

    #[test]
    fn damaged_layouts_are_refused() {
        assert_eq!(Layout::decode(b""), None);
        assert_eq!(Layout::decode(b"brickfs-layout 1 complete"), None);
        assert_eq!(
            Layout::decode(b"brickfs-layout 1 complete 00000000-7fffffff:0"),
            None
        );
        assert_eq!(
            Layout::decode(b"brickfs-layout 1 maybe 00000000-ffffffff:0"),
            None
        );
        assert_eq!(
            Layout::decode(b"brickfs-layout 1 complete 00000000-80000000:0 7fffffff-ffffffff:1"),
            None
        );
        assert!(Layout::decode(b"brickfs-layout 1 complete 00000000-ffffffff:0").is_some());
    }

    #[test]
    fn names_spread_evenly_over_sets() {
        let l = Layout::even(2, true);
        let on_zero = (0..1200)
            .filter(|i| l.set_for(&Name::new(format!("file-{i:05}"))) == 0)
            .count();
        assert!((420..=780).contains(&on_zero), "{on_zero} of 1200 on set 0");
        let three = Layout::even(3, true);
        for i in 0..100 {
            assert!(three.set_for(&Name::new(format!("f{i}"))) < 3);
        }
    }

    #[test]
    fn growing_keeps_most_names_where_they_are() {
        let names: Vec<Name> = (0..3000).map(|i| Name::new(format!("n{i}"))).collect();
        for (from, to) in [(1usize, 2usize), (2, 3), (3, 4), (2, 5)] {
            let old = Layout::even(from, true);
            let new = old.grown(to);
            assert!(!new.complete);
            assert!(new.is_balanced_over(to), "{from}->{to}: {new:?}");
            assert_eq!(Layout::decode(&new.encode()), Some(new.clone()));
            let moved = names
                .iter()
                .filter(|n| old.set_for(n) != new.set_for(n))
                .count();
            // About (to - from) / to of the names move, never half.
            let ideal = names.len() * (to - from) / to;
            assert!(
                moved <= ideal + names.len() / 20,
                "{from}->{to}: {moved} moved, ideal {ideal}"
            );
            for n in &names {
                let (a, b) = (old.set_for(n), new.set_for(n));
                assert!(
                    a == b || b >= from,
                    "{from}->{to}: a name moved between old sets"
                );
            }
        }
        assert_eq!(
            Layout::legacy().grown(3).ranges,
            Layout::even(3, false).ranges
        );
        assert!(Layout::even(3, true).is_balanced_over(3));
        assert!(!Layout::even(2, true).is_balanced_over(3));
        // Growing what is already balanced changes nothing.
        let g = Layout::even(2, true).grown(3);
        assert_eq!(g.grown(3).ranges, g.ranges);
    }

    #[test]
    fn link_values_round_trip() {
        let g = Gfid([7; 16]);
        assert_eq!(
            decode_linkto(&encode_linkto(5, g)),
            Some(LinkTo {
                set: 5,
                gfid: Some(g)
            })
        );
        // Link files made before the gfid was recorded.
        assert_eq!(decode_linkto(b"3"), Some(LinkTo { set: 3, gfid: None }));
        assert_eq!(decode_linkto(b"x"), None);
        assert_eq!(decode_linkto(b"3:nothex"), None);
    }
}
