//! `brickfs heald`: the self-heal daemon of a volume.
//!
//! A thin shell around `client::heal::Healer::run`, one healer per replica
//! set (`StackConfig::sets`; `--bricks` names one set): connect, log, heal
//! until SIGINT or SIGTERM, exit 0. The healer's futures are not `Send`, so
//! all of it runs inside one `block_on` on a current-thread runtime.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use client::heal::Healer;
use client::StackConfig;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, Instrument};

use crate::args::{parse_brick_addr, parse_secs};
use crate::error::{FsContext, IoContext, Result};

/// `brickfs heald --help`.
pub const LONG_ABOUT: &str = "Run the self-heal daemon of a volume, in the foreground.\n\n\
    heald connects to the bricks with connections of its own and makes their replicas \
    identical again after a brick missed operations:\n\n\
    - it heals as soon as a brick comes back or anything is blamed (a brick's heal \
    index is no longer empty);\n\n\
    - what could not be healed (a brick still down, a lock held elsewhere) is retried \
    every --retry seconds, or sooner when the blame changes;\n\n\
    - a brick that comes back with a new identity (wiped or replaced) is blamed at the \
    root and the whole volume is crawled to refill it.\n\n\
    Split-brains are never resolved automatically: see `brickfs volume heal NAME info \
    split-brain` and `brickfs volume heal NAME split-brain --help`.\n\n\
    With --store it heals every replica set of the volume (a healer each); --bricks \
    names the bricks of one set.\n\n\
    Logs go to stderr (--log-level, RUST_LOG). Stops on SIGINT or SIGTERM with exit \
    status 0. `brickfs dev` runs one, logging to <state-dir>/logs/heald.log.";

#[derive(clap::Args, Debug)]
pub struct HealdArgs {
    /// Bricks of one replica set in volume order, as host:port, comma-separated.
    #[arg(long, value_name = "A,B,C", value_delimiter = ',',
          required_unless_present = "store", conflicts_with = "store",
          value_parser = parse_brick_addr)]
    bricks: Vec<SocketAddr>,

    /// Cluster store holding the volume (file:///DIR or etcd://HOST:PORT):
    /// bricks, their identities and timeouts come from the volume's spec.
    #[arg(long, value_name = "URL")]
    store: Option<String>,

    /// Volume name, checked by every brick.
    #[arg(long, default_value = "dev")]
    volume: String,

    /// Seconds between retries of what could not be healed.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    retry: f64,

    /// Seconds one brick may take for one operation before it counts as down.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    op_timeout: f64,
}

pub fn run(args: HealdArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ctx(|| "starting the tokio runtime".into())?;
    rt.block_on(async {
        // Installed first, so that a signal during connect stops us too.
        let mut term = signal(SignalKind::terminate()).ctx(|| "installing SIGTERM handler".into())?;
        let mut int = signal(SignalKind::interrupt()).ctx(|| "installing SIGINT handler".into())?;
        let mut args = args;
        let mut brick_ids = None;
        let mut op_timeout = Duration::from_secs_f64(args.op_timeout);
        let mut replica = 0;
        if let Some(url) = &args.store {
            let (plan, addrs) = volgen::plan::fetch(url, &args.volume)
                .await
                .map_err(crate::error::Error::Msg)?;
            args.bricks = addrs;
            brick_ids = Some(plan.brick_ids);
            op_timeout = plan.op_timeout;
            replica = plan.replica;
        }
        let config = StackConfig {
            volume: args.volume.clone(),
            bricks: args.bricks.clone(),
            op_timeout,
            ping_interval: Duration::from_secs(1),
            brick_ids,
            replica,
        };
        // One healer per replica set: each heals its own set's changelog.
        let sets = config.sets();
        let connect = futures::future::try_join_all(sets.iter().map(|set| Healer::connect(set.clone())));
        let healers = tokio::select! {
            h = connect => h.fs_ctx(|| format!("connecting to the bricks of volume {}", args.volume))?,
            _ = term.recv() => return Ok(ExitCode::SUCCESS),
            _ = int.recv() => return Ok(ExitCode::SUCCESS),
        };
        for (i, set) in sets.iter().enumerate() {
            let addrs: Vec<String> = set.bricks.iter().map(ToString::to_string).collect();
            info!(
                volume = %args.volume,
                set = i + 1,
                bricks = %addrs.join(","),
                retry_secs = args.retry,
                "heald: watching replica set {} of {} ({} bricks)",
                i + 1,
                sets.len(),
                set.bricks.len()
            );
        }
        let retry = Duration::from_secs_f64(args.retry);
        let several = healers.len() > 1;
        let runs = healers.into_iter().enumerate().map(|(i, h)| {
            let span = if several {
                tracing::info_span!("set", n = i + 1)
            } else {
                tracing::Span::none()
            };
            h.run(retry).instrument(span)
        });
        tokio::select! {
            _ = futures::future::join_all(runs) => {}
            _ = term.recv() => info!("heald: SIGTERM; stopping"),
            _ = int.recv() => info!("heald: SIGINT; stopping"),
        }
        Ok(ExitCode::SUCCESS)
    })
}
