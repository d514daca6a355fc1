//! `brickfs volume heal NAME [SUB]`: self-heal on demand, heal status and
//! split-brain resolution, each with a healer of its own
//! (`client::heal::Healer`), alongside whatever `brickfs heald` is doing.
//!
//! The healer's futures are not `Send`: every command runs inside one
//! `block_on` on a current-thread runtime.

mod info;
mod split_brain;
mod watch;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use client::heal::{HealReport, Healer};
use client::StackConfig;

use crate::args::{parse_brick_addr, parse_secs};
use crate::error::{Error, FsContext, IoContext, Result};
use crate::store::Store;

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

    /// The volume's bricks in volume order, as host:port, comma-separated
    /// (instead of looking them up in the store).
    #[arg(long, global = true, value_name = "A,B,C", value_delimiter = ',',
          value_parser = parse_brick_addr)]
    bricks: Vec<SocketAddr>,

    /// Seconds one brick may take for one operation before it counts as down.
    #[arg(long, global = true, value_name = "SECS", default_value = "5",
          value_parser = parse_secs)]
    op_timeout: f64,

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

/// Runs `brickfs volume ...`; `store` is the global `--store`.
pub fn run(cmd: VolumeCmd, store: Option<&str>) -> Result<ExitCode> {
    let VolumeCmd::Heal(args) = cmd;
    let bricks = volume_bricks(store, &args.name, &args.bricks)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ctx(|| "starting the tokio runtime".into())?;
    rt.block_on(async {
        let healer = connect(&args.name, &bricks, args.op_timeout).await?;
        match args.sub {
            None => heal(&healer, &args.name, false).await,
            Some(HealSub::Full) => heal(&healer, &args.name, true).await,
            Some(HealSub::Info(info)) => info::run(&healer, info).await,
            Some(HealSub::SplitBrain(cmd)) => split_brain::run(&healer, cmd).await,
        }
    })
}

/// The bricks of volume `name`: `--bricks` when given, else the store's.
fn volume_bricks(
    store: Option<&str>,
    name: &str,
    bricks: &[SocketAddr],
) -> Result<Vec<SocketAddr>> {
    if !bricks.is_empty() {
        return Ok(bricks.to_vec());
    }
    let Some(url) = store else {
        return Err(Error::Msg(format!(
            "where is volume {name}? pass --store URL or set BRICKFS_STORE \
             (`brickfs dev` prints its store URL), or name the bricks with --bricks A,B,C"
        )));
    };
    // A `brickfs dev` state directory lists its volume in cluster.json;
    // anything else is a cluster store holding volume specs.
    let dev_state = crate::store::parse_store_url(url)
        .map(|dir| dir.join("cluster.json").is_file())
        .unwrap_or(false);
    if dev_state {
        return Ok(Store::open(url)?.volume(name)?.bricks);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ctx(|| "starting the tokio runtime".into())?;
    let spec = rt.block_on(crate::volume_cmd::stored_volume(url, name))?;
    crate::volume_cmd::resolve_bricks(&spec)
}

async fn connect(volume: &str, bricks: &[SocketAddr], op_timeout: f64) -> Result<Arc<Healer>> {
    let config = StackConfig {
        volume: volume.to_string(),
        bricks: bricks.to_vec(),
        op_timeout: Duration::from_secs_f64(op_timeout),
        ping_interval: Duration::from_secs(1),
        brick_ids: None,
        replica: 0,
    };
    let healer = Healer::connect(config)
        .await
        .fs_ctx(|| format!("connecting to the bricks of volume {volume}"))?;
    if !healer.bricks().iter().any(|b| b.is_up()) {
        return Err(Error::Msg(format!(
            "no brick of volume {volume} is reachable ({})",
            join_addrs(bricks)
        )));
    }
    Ok(healer)
}

/// Heals now (index, or `full`) and prints the summary.
async fn heal(healer: &Healer, volume: &str, full: bool) -> Result<ExitCode> {
    let report = if full {
        healer.heal_full().await
    } else {
        healer.heal_index().await
    }
    .fs_ctx(|| format!("heal of volume {volume}"))?;
    println!("heal of volume {volume}: {}", summary(&report));
    let c = &report.counts;
    Ok(if report.left > 0 && c.split_brain + c.failed > 0 {
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
    fn bricks_from_flag_store_or_neither() {
        let a: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        assert_eq!(volume_bricks(None, "dev", &[a]).unwrap(), vec![a]);
        let e = volume_bricks(None, "dev", &[]).unwrap_err().to_string();
        assert!(e.contains("--store") && e.contains("BRICKFS_STORE"), "{e}");
        let e = volume_bricks(Some("s3://bucket"), "dev", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported store URL"), "{e}");
    }
}
