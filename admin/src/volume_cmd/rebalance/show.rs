//! Text of `volume rebalance NAME status`, in the manner of Gluster's.

use super::doc::{RebalanceDoc, ALIVE_SECS};

/// `12.5 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `1:02:03` (hours unbounded).
pub fn hms(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The status of volume `name`'s current or last run (`None`: never
/// started), at unix time `now`.
pub fn status(name: &str, doc: Option<&RebalanceDoc>, now: u64) -> String {
    let Some(d) = doc else {
        return format!(
            "volume rebalance: {name}: no rebalance has been started \
             (brickfs volume rebalance {name} start)\n"
        );
    };
    let node_w = d.host.len().max("Node".len());
    let mut s = format!(
        "Rebalance of volume {name} over {} replica sets\n{:>node_w$}  {:>16}  {:>10}  {:>10}  \
         {:>10}  {:>10}  {:>12}  {:>17}\n{:>node_w$}  {:>16}  {:>10}  {:>10}  {:>10}  {:>10}  \
         {:>12}  {:>17}\n",
        d.sets,
        "Node",
        "Rebalanced-files",
        "size",
        "scanned",
        "failures",
        "skipped",
        "status",
        "run time in h:m:s",
        "-".repeat(node_w),
        "-".repeat(16),
        "-".repeat(10),
        "-".repeat(10),
        "-".repeat(10),
        "-".repeat(10),
        "-".repeat(12),
        "-".repeat(17),
    );
    s.push_str(&format!(
        "{:>node_w$}  {:>16}  {:>10}  {:>10}  {:>10}  {:>10}  {:>12}  {:>17}\n",
        d.host,
        d.files_migrated,
        mib(d.bytes_migrated),
        d.files_scanned,
        d.failures,
        d.files_skipped,
        d.state.text(),
        hms(d.elapsed(now)),
    ));
    s.push_str(&format!(
        "Directories laid out over all sets: {}\n",
        d.dirs_fixed
    ));
    if d.state.is_live() {
        let silent = d.silent_for(now);
        let who = if d.pid == 0 {
            format!("starting on {}", d.host)
        } else {
            format!("pid {} on {}", d.pid, d.host)
        };
        if silent < ALIVE_SECS {
            s.push_str(&format!(
                "Runner: {who}, alive (last report {silent} s ago)\n"
            ));
        } else {
            s.push_str(&format!(
                "Runner: {who}, NOT alive: no report for {silent} s (if it died, \
                 `brickfs volume rebalance {name} start` runs it again after {} s of \
                 silence)\n",
                super::doc::STALE_SECS
            ));
        }
    }
    if let Some(e) = &d.error {
        s.push_str(&format!("Error: {e}\n"));
    }
    if !d.log.is_empty() {
        s.push_str(&format!("Log: {}\n", d.log));
    }
    s
}

/// One line for `volume status`.
pub fn task_line(d: &RebalanceDoc, now: u64) -> String {
    format!(
        "Task: Rebalance  Status: {}  ({} files migrated, {}, run time {}; \
         brickfs volume rebalance {} status)\n",
        d.state.text(),
        d.files_migrated,
        mib(d.bytes_migrated),
        hms(d.elapsed(now)),
        d.volume
    )
}
