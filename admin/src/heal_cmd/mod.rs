//! `brickfs volume heal NAME [SUB]`: self-heal on demand, heal status and
//! split-brain resolution, each with healers of its own (one
//! `client::heal::Healer` per replica set), alongside whatever `brickfs
//! heald` is doing.
//!
//! The healer's futures are not `Send`: every command runs inside one
//! `block_on` on a current-thread runtime.

mod info;
mod split_brain;
mod watch;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use client::heal::{HealReport, Healer};
use client::StackConfig;

use crate::error::{Error, FsContext, IoContext, Result};

/// Unhealed entries a heal run lists after its summary.
const STUCK_SHOWN: usize = 20;

/// The heal subcommands of `brickfs volume` (flattened into
/// `crate::volume_cmd::VolumeCmd`).
#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Self-heal of a volume: heal now, show what is waiting, resolve
    /// split-brains.
    #[command(long_about = "Self-heal of a volume.\n\n\
        Without a subcommand, heals now everything the bricks' heal indices list \
        (what `brickfs heald` would do next) and prints a summary; exit status 1 when \
        entries are left because of split-brain or failures.\n\n\
        The bricks come from the volume store (--store URL or BRICKFS_STORE; \
        `brickfs dev` prints its store URL) or from --bricks.")]
    Heal(HealArgs),
}

#[derive(clap::Args, Debug)]
pub struct HealArgs {
    /// Volume name.
    name: String,

    #[command(flatten)]
    bricks: volume::args::BricksArgs,

    #[command(subcommand)]
    sub: Option<HealSub>,
}

#[derive(Subcommand, Debug)]
enum HealSub {
    /// Crawl the whole volume and heal every difference, blamed or not (for a
    /// brick that was emptied or replaced).
    Full,
    /// List what waits for heal on each brick; `--watch` follows the progress,
    /// `info split-brain` lists the split-brains.
    Info(info::InfoArgs),
    /// Resolve a split-brain by choosing the good copy.
    #[command(subcommand)]
    SplitBrain(split_brain::SplitBrainCmd),
}

/// Runs `brickfs volume heal ...`; `store` is the global `--store`.
pub fn run(cmd: VolumeCmd, store: Option<&str>) -> Result<ExitCode> {
    let VolumeCmd::Heal(args) = cmd;
    let source = args.bricks.source(store, &args.name)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ctx(|| "starting the tokio runtime".into())?;
    rt.block_on(async {
        let resolved = source.resolve_for_admin().await?;
        let healers = connect(&args.name, &resolved.config).await?;
        match args.sub {
            None => heal(&healers, &args.name, false).await,
            Some(HealSub::Full) => heal(&healers, &args.name, true).await,
            Some(HealSub::Info(info)) => info::run(&healers, info).await,
            Some(HealSub::SplitBrain(cmd)) => split_brain::run(&healers, cmd).await,
        }
    })
}

/// One healer per replica set, in volume order.
pub async fn connect(volume: &str, config: &StackConfig) -> Result<Vec<Arc<Healer>>> {
    let sets = config.sets();
    let mut healers = Vec::with_capacity(sets.len());
    for (i, set) in sets.iter().enumerate() {
        let which = set_name(volume, i, sets.len());
        let healer = Healer::connect(set.clone())
            .await
            .fs_ctx(|| format!("connecting to the bricks of {which}"))?;
        if !healer.bricks().iter().any(|b| b.is_up()) {
            return Err(Error::Msg(format!(
                "no brick of {which} is reachable ({})",
                join_addrs(&set.bricks)
            )));
        }
        healers.push(healer);
    }
    Ok(healers)
}

/// `volume gv0`, or `replica set 2 of volume gv0` when there are several.
fn set_name(volume: &str, i: usize, sets: usize) -> String {
    if sets > 1 {
        format!("replica set {} of volume {volume}", i + 1)
    } else {
        format!("volume {volume}")
    }
}

/// Heals now (index, or `full`), every set at once, and prints a summary
/// per set.
async fn heal(healers: &[Arc<Healer>], volume: &str, full: bool) -> Result<ExitCode> {
    let reports = futures::future::join_all(healers.iter().map(|h| async move {
        if full {
            h.heal_full().await
        } else {
            h.heal_index().await
        }
    }))
    .await;
    let mut failed = false;
    for (i, report) in reports.into_iter().enumerate() {
        let which = set_name(volume, i, healers.len());
        let report = report.fs_ctx(|| format!("heal of {which}"))?;
        println!("heal of {which}: {}", summary(&report));
        // What is left is said with why (as `heal info` does).
        for (gfid, why) in report.stuck.iter().take(STUCK_SHOWN) {
            println!("  not healed: {}: {why}", healers[i].path_of(*gfid).await);
        }
        if report.stuck.len() > STUCK_SHOWN {
            println!(
                "  ... and {} more (see `volume heal {volume} info`)",
                report.stuck.len() - STUCK_SHOWN
            );
        }
        let c = &report.counts;
        failed |= report.left > 0 && c.split_brain + c.failed > 0;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `2000 objects healed (created 2000, ...), ...; 0 entries left`.
fn summary(r: &HealReport) -> String {
    let c = &r.counts;
    format!(
        "{} objects healed (created {}, linked {}, removed {} entries), {} copied, {} of \
         checksums, {} postponed, {} split-brain, {} failed, in {:.2} s; {} entries left",
        c.healed,
        c.entries_created,
        c.entries_linked,
        c.entries_removed,
        mib(c.bytes_copied),
        mib(c.checksum_bytes),
        c.postponed,
        c.split_brain,
        c.failed,
        r.elapsed.as_secs_f64(),
        r.left
    )
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Bytes in the largest unit that keeps the number at least 1.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn join_addrs<'a>(addrs: impl IntoIterator<Item = &'a SocketAddr>) -> String {
    addrs
        .into_iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::heal::HealCounts;
    use std::time::Duration;

    #[test]
    fn summary_line() {
        let r = HealReport {
            passes: 1,
            left: 0,
            elapsed: Duration::from_millis(4210),
            counts: HealCounts {
                healed: 2000,
                entries_created: 2000,
                bytes_copied: 96 * 1024 * 1024,
                checksum_bytes: 512 * 1024,
                ..HealCounts::default()
            },
            stuck: Vec::new(),
        };
        assert_eq!(
            summary(&r),
            "2000 objects healed (created 2000, linked 0, removed 0 entries), 96.0 MiB copied, \
             0.5 MiB of checksums, 0 postponed, 0 split-brain, 0 failed, in 4.21 s; 0 entries left"
        );
    }

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(96 * 1024 * 1024), "96.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn set_names() {
        assert_eq!(set_name("gv0", 1, 2), "replica set 2 of volume gv0");
        assert_eq!(set_name("gv0", 0, 1), "volume gv0");
    }
}
