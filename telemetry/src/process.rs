//! The process itself, read from /proc at each scrape: memory (now and at
//! its peak, the figure README's limits are about), CPU seconds, threads and
//! open descriptors, under the names Prometheus's own clients use.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

#[derive(Debug, Default)]
pub struct Process;

/// A line `Key:   N kB` of /proc/self/status, in bytes.
fn status_kib(status: &str, key: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: i64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The threads, field 20 of /proc/self/stat.
fn threads(stat: &str) -> Option<i64> {
    // The command name (field 2) may hold spaces; the rest follows ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')': state is field 3, so field N is at index N - 3.
    rest.split_whitespace().nth(20 - 3)?.parse().ok()
}

/// User and system CPU seconds of every thread. From getrusage rather than
/// /proc/self/stat: its microseconds show the few milliseconds a quiet
/// daemon spends, where stat's clock ticks (10 ms) still read zero.
fn cpu_seconds() -> Option<f64> {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the call's duration.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

pub(crate) fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(rss) = status_kib(&status, "VmRSS:") {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory",
                rss,
            )?;
        }
        if let Some(peak) = status_kib(&status, "VmHWM:") {
            gauge(
                &mut encoder,
                "process_resident_memory_max_bytes",
                "Peak resident memory since the process started",
                peak,
            )?;
        }
        if let Some(cpu) = cpu_seconds() {
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(m)?;
        }
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        if let Some(threads) = threads(&stat) {
            gauge(&mut encoder, "process_threads", "Threads", threads)?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors",
                fds.count() as i64,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(status_kib(&status, "VmRSS:").unwrap() > 0);
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(threads(&stat).unwrap() >= 1);
        // A command name with spaces and parentheses.
        let odd = "12 (a b) c) S 1 2 3 4 5 6 7 8 9 10 100 50 0 0 20 0 7 0";
        assert_eq!(threads(odd), Some(7));
        // Even a process that has done almost nothing has spent some CPU.
        let spent: u64 = (0..100_000u64).map(std::hint::black_box).sum();
        assert!(spent > 0);
        assert!(cpu_seconds().unwrap() > 0.0);
    }
}
