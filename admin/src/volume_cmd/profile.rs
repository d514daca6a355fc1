//! `brickfs volume profile NAME start|info|stop`: every brick's fops,
//! counted and timed (`brick/src/stats.rs`), since `start` and since the
//! brick started, as a table per brick.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use proto::{FopStat, FsError, ProfileCmd, ProfileReport};
use tarpc::client::RpcError;
use tarpc::context::Context;
use volgen::spec::VolumeSpec;

/// What to do, as on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Take a baseline on every brick: `info` then reports since now.
    Start,
    /// Per brick and fop: calls, errors, mean and percentile latencies.
    Info,
    /// Drop the baselines.
    Stop,
}

impl Action {
    fn cmd(self) -> ProfileCmd {
        match self {
            Action::Start => ProfileCmd::Start,
            Action::Info => ProfileCmd::Info,
            Action::Stop => ProfileCmd::Stop,
        }
    }
}

/// A connection of its own to the brick at `addr`, said hello to as a
/// client of `volume`; `t` bounds every step.
pub(super) async fn brick_client(
    addr: &str,
    volume: &str,
    t: Duration,
) -> Result<proto::BrickClient, FsError> {
    let sock = tokio::time::timeout(t, tokio::net::lookup_host(addr))
        .await
        .map_err(|_| FsError::Timeout(addr.to_string()))?
        .map_err(|e| brick_down(addr, &e))?
        .next()
        .ok_or_else(|| brick_down(addr, &"resolves to no address"))?;
    let client = client::protocol::connect_rpc(sock, t).await?;
    client
        .hello(
            deadline(t),
            uuid::Uuid::new_v4().as_u128(),
            volume.to_string(),
            proto::Purpose::Client,
        )
        .await
        .map_err(|e| rpc_error(addr, e))??;
    Ok(client)
}

fn brick_down(addr: &str, e: &dyn std::fmt::Display) -> FsError {
    FsError::BrickDown(format!("{addr}: {e}"))
}

pub(super) fn rpc_error(addr: &str, e: RpcError) -> FsError {
    match e {
        RpcError::DeadlineExceeded => FsError::Timeout(addr.to_string()),
        other => brick_down(addr, &other),
    }
}

pub(super) fn deadline(t: Duration) -> Context {
    let mut ctx: Context = tarpc::context::current();
    ctx.deadline = Instant::now() + t;
    ctx
}

/// One brick's report, over a connection of its own.
async fn ask(
    addr: &str,
    volume: &str,
    t: Duration,
    cmd: ProfileCmd,
) -> Result<ProfileReport, FsError> {
    let client = brick_client(addr, volume, t).await?;
    client
        .profile(deadline(t), cmd)
        .await
        .map_err(|e| rpc_error(addr, e))?
}

/// Runs `action` on every brick of `spec`; the text to print, and whether
/// every brick answered.
pub async fn run(spec: &VolumeSpec, action: Action) -> (String, bool) {
    let t = spec.option_duration("network.op-timeout");
    let asks = spec
        .bricks
        .iter()
        .map(|b| ask(&b.addr, &spec.name, t, action.cmd()));
    let answers = futures::future::join_all(asks).await;
    let mut out = String::new();
    let mut ok = 0;
    for (b, answer) in spec.bricks.iter().zip(&answers) {
        match (answer, action) {
            (Err(e), _) => {
                let _ = writeln!(
                    out,
                    "Brick: {} — {}",
                    b.addr,
                    super::probe::probe_error(&b.addr, &spec.name, e)
                );
            }
            (Ok(report), Action::Info) => {
                ok += 1;
                out.push_str(&brick_report(&b.addr, report));
            }
            (Ok(_), _) => ok += 1,
        }
    }
    let verb = match action {
        Action::Start => "started",
        Action::Stop => "stopped",
        Action::Info => "read",
    };
    let _ = writeln!(
        out,
        "volume profile: {}: {verb} on {ok} of {} bricks",
        spec.name,
        spec.bricks.len()
    );
    (out, ok == spec.bricks.len())
}

fn brick_report(addr: &str, r: &ProfileReport) -> String {
    let mut out = format!("Brick: {addr}  (up {} s)\n", r.uptime_secs);
    match &r.since_start {
        Some((secs, stats)) => {
            let _ = writeln!(out, "  Since `profile start` ({secs} s ago):");
            out.push_str(&table(stats, &r.bucket_bounds_us, *secs));
        }
        None => out.push_str(
            "  Not started on this brick (`volume profile NAME start`; a restarted brick \
             forgets it).\n",
        ),
    }
    let _ = writeln!(out, "  Since the brick started:");
    out.push_str(&table(&r.cumulative, &r.bucket_bounds_us, r.uptime_secs));
    out
}

/// The latency under which a fraction `q` of the calls finished: the
/// upper bound of the bucket the q-th call fell in.
fn quantile(s: &FopStat, bounds: &[u64], q: f64) -> String {
    let total: u64 = s.slots.iter().sum();
    if total == 0 {
        return "-".into();
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, &n) in s.slots.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return match bounds.get(i) {
                Some(b) => format!("≤{}", human_us(*b)),
                None => format!(">{}", human_us(bounds.last().copied().unwrap_or(0))),
            };
        }
    }
    "-".into()
}

fn human_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{}s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}

fn table(stats: &[FopStat], bounds: &[u64], secs: u64) -> String {
    if stats.is_empty() {
        return "    (no fops)\n".into();
    }
    let mut rows: Vec<&FopStat> = stats.iter().collect();
    // The most time spent first: where the brick's time goes.
    rows.sort_by(|a, b| b.sum_us.cmp(&a.sum_us).then(a.op.cmp(&b.op)));
    let mut out = format!(
        "    {:<14} {:>10} {:>8} {:>9} {:>10} {:>9} {:>9} {:>9}\n",
        "fop", "calls", "errors", "calls/s", "mean", "p50", "p90", "p99"
    );
    for s in rows {
        let rate = s.count as f64 / secs.max(1) as f64;
        let mean = human_us(s.sum_us.checked_div(s.count).unwrap_or(0));
        let _ = writeln!(
            out,
            "    {:<14} {:>10} {:>8} {:>9.1} {:>10} {:>9} {:>9} {:>9}",
            s.op,
            s.count,
            s.errors,
            rate,
            mean,
            quantile(s, bounds, 0.5),
            quantile(s, bounds, 0.9),
            quantile(s, bounds, 0.99),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_puts_the_costliest_fop_first_with_its_quantiles() {
        let bounds = vec![100, 1000];
        let stats = vec![
            FopStat {
                op: "lookup".into(),
                count: 10,
                errors: 2,
                sum_us: 500,
                slots: vec![10, 0, 0],
            },
            FopStat {
                op: "create".into(),
                count: 4,
                errors: 0,
                sum_us: 9000,
                slots: vec![0, 3, 1],
            },
        ];
        let t = table(&stats, &bounds, 2);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].trim_start().starts_with("create"), "{t}");
        assert!(
            lines[1].contains("≤1ms") && lines[1].contains(">1ms"),
            "{t}"
        );
        assert!(lines[2].contains("≤100µs"), "{t}");
        assert!(lines[2].contains("5.0"), "10 calls in 2 s: {t}");
    }
}
