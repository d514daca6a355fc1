//! Counts and latencies of a daemon's operations, one cell per operation
//! name, kept in atomics: recording is a few relaxed adds, with no lock on
//! the path of a request. Read as Prometheus histograms (`/metrics`) and
//! as snapshots (`volume profile`), whose differences are the figures of an
//! interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use serde::{Deserialize, Serialize};

/// Upper bounds of the latency buckets, in microseconds: from a cached
/// lookup (tens of µs) to an fsync of a big file on a slow disk (seconds).
pub const BUCKETS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
/// The buckets above and one for everything slower.
const SLOTS: usize = BUCKETS_US.len() + 1;

/// The name operations not in a table's list are counted under.
pub const OTHER: &str = "other";

#[derive(Default)]
struct Cell {
    count: AtomicU64,
    errors: AtomicU64,
    sum_us: AtomicU64,
    slots: [AtomicU64; SLOTS],
}

fn slot_of(us: u64) -> usize {
    BUCKETS_US.partition_point(|&b| b < us)
}

/// The operations of one daemon (or one layer of it).
pub struct OpTable {
    /// What the metric is called (`brickfs_brick_fop`), and its help.
    name: &'static str,
    help: &'static str,
    cells: HashMap<&'static str, Cell>,
    /// The names in the order given, for stable output.
    order: Vec<&'static str>,
}

impl std::fmt::Debug for OpTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpTable").field("name", &self.name).finish()
    }
}

impl OpTable {
    pub fn new(name: &'static str, help: &'static str, ops: &[&'static str]) -> OpTable {
        let mut order: Vec<&'static str> = Vec::with_capacity(ops.len() + 1);
        for op in ops.iter().copied().chain([OTHER]) {
            if !order.contains(&op) {
                order.push(op);
            }
        }
        OpTable {
            name,
            help,
            cells: order.iter().map(|&op| (op, Cell::default())).collect(),
            order,
        }
    }

    /// One operation, its time, and whether it failed.
    pub fn record(&self, op: &str, took: Duration, failed: bool) {
        let Some(cell) = self.cells.get(op).or_else(|| self.cells.get(OTHER)) else {
            return;
        };
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        cell.count.fetch_add(1, Ordering::Relaxed);
        if failed {
            cell.errors.fetch_add(1, Ordering::Relaxed);
        }
        cell.sum_us.fetch_add(us, Ordering::Relaxed);
        cell.slots[slot_of(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// Every operation seen so far (those never called left out).
    pub fn snapshot(&self) -> Vec<OpSnapshot> {
        self.order
            .iter()
            .filter_map(|&op| {
                let c = &self.cells[op];
                let count = c.count.load(Ordering::Relaxed);
                (count > 0).then(|| OpSnapshot {
                    op: op.to_string(),
                    count,
                    errors: c.errors.load(Ordering::Relaxed),
                    sum_us: c.sum_us.load(Ordering::Relaxed),
                    slots: c.slots.iter().map(|s| s.load(Ordering::Relaxed)).collect(),
                })
            })
            .collect()
    }
}

/// One operation's figures at one instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpSnapshot {
    pub op: String,
    pub count: u64,
    pub errors: u64,
    pub sum_us: u64,
    /// Calls per latency bucket ([`BUCKETS_US`], then slower).
    pub slots: Vec<u64>,
}

impl OpSnapshot {
    /// What happened between `earlier` and this one (counters only grow
    /// within one process; a restart in between leaves this one as is).
    pub fn since(&self, earlier: Option<&OpSnapshot>) -> OpSnapshot {
        let Some(e) = earlier.filter(|e| e.count <= self.count) else {
            return self.clone();
        };
        OpSnapshot {
            op: self.op.clone(),
            count: self.count - e.count,
            errors: self.errors.saturating_sub(e.errors),
            sum_us: self.sum_us.saturating_sub(e.sum_us),
            slots: self
                .slots
                .iter()
                .enumerate()
                .map(|(i, &n)| n.saturating_sub(e.slots.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }

    pub fn mean_us(&self) -> u64 {
        self.sum_us.checked_div(self.count).unwrap_or(0)
    }

    /// The latency under which a fraction `q` of the calls finished, from
    /// the buckets: the upper bound of the bucket the q-th call fell in
    /// (an estimate no finer than the buckets; `None` beyond the last).
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let total: u64 = self.slots.iter().sum();
        if total == 0 {
            return Some(0);
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.slots.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return BUCKETS_US.get(i).copied();
            }
        }
        None
    }
}

impl Collector for OpTable {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snaps = self.snapshot();
        let seconds = format!("{}_seconds", self.name);
        let errors_name = format!("{}_errors", self.name);
        {
            let mut family =
                encoder.encode_descriptor(&seconds, self.help, None, MetricType::Histogram)?;
            for s in &snaps {
                let labels = [("op", s.op.as_str())];
                let buckets: Vec<(f64, u64)> = s
                    .slots
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| {
                        let le = BUCKETS_US.get(i).map_or(f64::MAX, |&us| us as f64 / 1e6);
                        (le, n)
                    })
                    .collect();
                family
                    .encode_family(&labels)?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        s.sum_us as f64 / 1e6,
                        s.count,
                        &buckets,
                        None,
                    )?;
            }
        }
        let mut errors = encoder.encode_descriptor(
            &errors_name,
            "Calls of the operation that failed (any error, ENOENT included)",
            None,
            MetricType::Counter,
        )?;
        for s in &snaps {
            let labels = [("op", s.op.as_str())];
            let counter = prometheus_client::metrics::counter::ConstCounter::new(s.errors);
            counter.encode(errors.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_their_buckets_and_quantiles_follow() {
        let t = OpTable::new("t_op", "test", &["read", "write"]);
        for _ in 0..90 {
            t.record("read", Duration::from_micros(80), false);
        }
        for _ in 0..10 {
            t.record("read", Duration::from_millis(20), true);
        }
        t.record("mystery", Duration::from_secs(30), false);
        let s = t.snapshot();
        assert_eq!(s.len(), 2, "write never called: left out; {s:?}");
        let read = &s[0];
        assert_eq!(
            (read.op.as_str(), read.count, read.errors),
            ("read", 100, 10)
        );
        assert_eq!(read.quantile_us(0.5), Some(100));
        assert_eq!(read.quantile_us(0.9), Some(100));
        assert_eq!(read.quantile_us(0.99), Some(25_000));
        assert_eq!(read.mean_us(), (90 * 80 + 10 * 20_000) / 100);
        let other = &s[1];
        assert_eq!((other.op.as_str(), other.count), (OTHER, 1));
        assert_eq!(other.quantile_us(0.5), None, "slower than the last bucket");
    }

    #[test]
    fn an_interval_is_the_difference_of_two_snapshots() {
        let t = OpTable::new("t_op", "test", &["read"]);
        t.record("read", Duration::from_micros(10), false);
        let before = t.snapshot().remove(0);
        t.record("read", Duration::from_millis(3), true);
        let after = t.snapshot().remove(0);
        let d = after.since(Some(&before));
        assert_eq!((d.count, d.errors, d.sum_us), (1, 1, 3000));
        assert_eq!(d.quantile_us(1.0), Some(5_000));
        // A baseline from before a restart (bigger than now) is ignored.
        assert_eq!(before.since(Some(&after)), before);
    }

    #[test]
    fn the_exposition_is_prometheus_text() {
        let mut r = prometheus_client::registry::Registry::default();
        let t = std::sync::Arc::new(OpTable::new("brickfs_x_op", "ops", &["lookup"]));
        t.record("lookup", Duration::from_micros(120), false);
        r.register_collector(Box::new(crate::Shared(t)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(
            text.contains("# TYPE brickfs_x_op_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("brickfs_x_op_seconds_count{op=\"lookup\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("brickfs_x_op_seconds_bucket{le=\"0.00025\",op=\"lookup\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("brickfs_x_op_errors_total{op=\"lookup\"} 0"),
            "{text}"
        );
    }
}
