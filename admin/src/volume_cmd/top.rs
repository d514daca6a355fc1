//! `brickfs volume top NAME [read|write|clear]`: per brick, the files it
//! served most (`brick/src/top.rs`), as GlusterFS's `volume top` lists
//! them. Every replica of a file counts its writes; reads go to one.

use std::fmt::Write as _;
use std::time::Duration;

use proto::{FsError, HotFile, TopReport};
use volgen::spec::VolumeSpec;

use super::profile::{brick_client, deadline, rpc_error};

/// What to list, as on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Metric {
    /// Reads and writes together.
    #[default]
    All,
    /// Reads (calls).
    Read,
    /// Writes (calls).
    Write,
    /// Show, then start counting afresh on every brick.
    Clear,
}

impl Metric {
    fn key(self, f: &HotFile) -> u64 {
        match self {
            Metric::Read => f.reads,
            Metric::Write => f.writes,
            Metric::All | Metric::Clear => f.reads.saturating_add(f.writes),
        }
    }
}

async fn ask(
    addr: &str,
    volume: &str,
    t: Duration,
    limit: u32,
    clear: bool,
) -> Result<TopReport, FsError> {
    let client = brick_client(addr, volume, t).await?;
    client
        .top(deadline(t), limit, clear)
        .await
        .map_err(|e| rpc_error(addr, e))?
}

/// Asks every brick of `spec`; the text to print, and whether every brick
/// answered.
pub async fn run(spec: &VolumeSpec, metric: Metric, limit: u32) -> (String, bool) {
    let t = spec.option_duration("network.op-timeout");
    // The brick ranks by reads and writes together; for one of them
    // alone it is asked for more and the list is ranked here.
    let asked = match metric {
        Metric::Read | Metric::Write => limit.saturating_mul(4),
        Metric::All | Metric::Clear => limit,
    };
    let clear = metric == Metric::Clear;
    let answers = futures::future::join_all(
        spec.bricks
            .iter()
            .map(|b| ask(&b.addr, &spec.name, t, asked, clear)),
    )
    .await;
    let mut out = String::new();
    let mut ok = 0;
    for (b, answer) in spec.bricks.iter().zip(answers) {
        match answer {
            Err(e) => {
                let _ = writeln!(
                    out,
                    "Brick: {} — {}",
                    b.addr,
                    super::probe::probe_error(&b.addr, &spec.name, &e)
                );
            }
            Ok(report) => {
                ok += 1;
                out.push_str(&brick_report(&b.addr, report, metric, limit as usize));
            }
        }
    }
    let _ = writeln!(
        out,
        "volume top: {}: read on {ok} of {} bricks{}",
        spec.name,
        spec.bricks.len(),
        if clear { ", counts cleared" } else { "" }
    );
    (out, ok == spec.bricks.len())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn brick_report(addr: &str, mut r: TopReport, metric: Metric, limit: usize) -> String {
    let mut out = format!(
        "Brick: {addr}  (counting {} files, at most {})\n",
        r.tracked, r.tracked_max
    );
    r.files
        .sort_by(|a, b| metric.key(b).cmp(&metric.key(a)).then(a.gfid.cmp(&b.gfid)));
    r.files.retain(|f| metric.key(f) > 0);
    r.files.truncate(limit);
    if r.files.is_empty() {
        out.push_str("    (no reads or writes since the brick started or the last clear)\n");
        return out;
    }
    let _ = writeln!(
        out,
        "    {:>10} {:>10} {:>10} {:>10}  file",
        "reads", "read MiB", "writes", "write MiB"
    );
    for f in &r.files {
        let name = match &f.path {
            Some(p) => p.clone(),
            None => format!("<gfid:{}>", f.gfid),
        };
        let _ = writeln!(
            out,
            "    {:>10} {:>10.1} {:>10} {:>10.1}  {name}",
            f.reads,
            mib(f.read_bytes),
            f.writes,
            mib(f.write_bytes)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::Gfid;

    fn file(path: Option<&str>, reads: u64, writes: u64) -> HotFile {
        HotFile {
            gfid: Gfid::random(),
            path: path.map(String::from),
            reads,
            read_bytes: reads * 1024 * 1024,
            writes,
            write_bytes: writes * 4096,
        }
    }

    #[test]
    fn files_are_ranked_by_the_asked_metric_and_unnamed_ones_show_their_gfid() {
        let report = TopReport {
            files: vec![
                file(Some("/a"), 100, 1),
                file(None, 2, 50),
                file(Some("/c"), 0, 0),
            ],
            tracked: 3,
            tracked_max: 4096,
        };
        let by_writes = brick_report("b:1", report.clone(), Metric::Write, 10);
        let lines: Vec<&str> = by_writes.lines().collect();
        assert!(lines[2].contains("<gfid:"), "{by_writes}");
        assert!(lines[3].ends_with("/a"), "{by_writes}");
        assert_eq!(
            lines.len(),
            4,
            "a file with no traffic is not listed: {by_writes}"
        );
        let by_reads = brick_report("b:1", report, Metric::Read, 1);
        let lines: Vec<&str> = by_reads.lines().collect();
        assert!(
            lines[2].ends_with("/a") && lines[2].contains("100.0"),
            "{by_reads}"
        );
        assert_eq!(lines.len(), 3, "the limit holds: {by_reads}");
    }
}
