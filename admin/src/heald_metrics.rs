//! heald's `/metrics`: what the healers of the current graph have done
//! (counters start again at a graph change, which Prometheus takes as a
//! reset) and how many entries wait in the bricks' heal indices.

use std::sync::{Arc, PoisonError, RwLock};

use client::heal::{HealCounts, Healer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// The healers heald runs now; replaced at each graph change.
#[derive(Default, Clone)]
pub struct Current(Arc<RwLock<Vec<Arc<Healer>>>>);

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("heald's healers")
    }
}

impl Current {
    pub fn set(&self, healers: &[Arc<Healer>]) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = healers.to_vec();
    }

    fn sums(&self) -> (HealCounts, u64) {
        let healers = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut c = HealCounts::default();
        let mut pending = 0;
        for h in healers.iter() {
            let s = h.stats.snapshot();
            c.healed += s.healed;
            c.clean += s.clean;
            c.postponed += s.postponed;
            c.split_brain += s.split_brain;
            c.failed += s.failed;
            c.entries_created += s.entries_created;
            c.entries_linked += s.entries_linked;
            c.entries_removed += s.entries_removed;
            c.bytes_copied += s.bytes_copied;
            c.checksum_bytes += s.checksum_bytes;
            pending += h.pending_now();
        }
        (c, pending)
    }
}

fn counter_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, *value)];
        ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Current {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (c, pending) = self.sums();
        counter_family(
            &mut encoder,
            "brickfs_heal_objects",
            "Objects looked at by heal, by outcome",
            "outcome",
            &[
                ("healed", c.healed),
                ("clean", c.clean),
                ("postponed", c.postponed),
                ("split_brain", c.split_brain),
                ("failed", c.failed),
            ],
        )?;
        counter_family(
            &mut encoder,
            "brickfs_heal_entries",
            "Directory entries heal changed on a sink, by change",
            "change",
            &[
                ("created", c.entries_created),
                ("linked", c.entries_linked),
                ("removed", c.entries_removed),
            ],
        )?;
        counter_family(
            &mut encoder,
            "brickfs_heal_bytes",
            "Bytes heal moved: file data written to sinks, checksums fetched",
            "kind",
            &[("copied", c.bytes_copied), ("checksums", c.checksum_bytes)],
        )?;
        let m = encoder.encode_descriptor(
            "brickfs_heal_pending_entries",
            "Entries in the heal indices of the bricks that are up, as of their last ping",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(pending).unwrap_or(i64::MAX)).encode(m)
    }
}
