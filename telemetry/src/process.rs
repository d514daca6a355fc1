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

/// utime + stime of /proc/self/stat, in clock ticks; and the threads.
fn cpu_ticks_and_threads(stat: &str) -> Option<(u64, i64)> {
    // The command name (field 2) may hold spaces; the rest follows ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so field N is at index N - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    let threads: i64 = fields.get(20 - 3)?.parse().ok()?;
    Some((utime + stime, threads))
}

fn gauge(
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
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        if let Some((ticks, threads)) = cpu_ticks_and_threads(&stat) {
            // SAFETY: sysconf only reads a constant of the system.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(ticks as f64 / hz).encode(m)?;
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
        let (_, threads) = cpu_ticks_and_threads(&stat).unwrap();
        assert!(threads >= 1);
        // A command name with spaces and parentheses.
        let odd = "12 (a b) c) S 1 2 3 4 5 6 7 8 9 10 100 50 0 0 20 0 7 0";
        assert_eq!(cpu_ticks_and_threads(odd), Some((150, 7)));
    }
}
