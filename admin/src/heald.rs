//! `brickfs heald`: the self-heal daemon of a volume.
//!
//! A shell around `client::heal::Healer::run`, one healer per replica set
//! (`StackConfig::sets`). From a store it follows the volume: a change of
//! bricks (replace-brick, add-brick) closes the healers and connects new
//! ones to the new graph; `network.op-timeout` and `cluster.heal-retry`
//! apply live. Stops on SIGINT or SIGTERM with exit 0. The healer's futures
//! are not `Send`, so all of it runs inside one `block_on` on a
//! current-thread runtime.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::heal::Healer;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{info, Instrument};
use volume::args::{BricksArgs, VolumeFlag};
use volume::follow::{graph_change, Follower};
use volume::{Resolved, Source};

use crate::error::{IoContext, Result};

/// `brickfs heald --help`.
pub const LONG_ABOUT: &str = "Run the self-heal daemon of a volume, in the foreground.\n\n\
    heald connects to the bricks with connections of its own and makes their replicas \
    identical again after a brick missed operations:\n\n\
    - it heals as soon as a brick comes back or anything is blamed (a brick's heal \
    index is no longer empty);\n\n\
    - what could not be healed (a brick still down, a lock held elsewhere) is retried \
    every --retry seconds (the volume's cluster.heal-retry), or sooner when the blame \
    changes;\n\n\
    - a brick that comes back with a new identity (wiped or replaced) is blamed at the \
    root and the whole volume is crawled to refill it.\n\n\
    Split-brains are never resolved automatically: see `brickfs volume heal NAME info \
    split-brain` and `brickfs volume heal NAME split-brain --help`.\n\n\
    From the store (--store or BRICKFS_STORE) it heals every replica set of the volume (a \
    healer each) and follows the volume: after replace-brick or add-brick it heals the new \
    bricks too, and changes of network.op-timeout and cluster.heal-retry apply at once. \
    --bricks names the bricks of one set instead.\n\n\
    Logs go to stderr (--log-level, BRICKFS_LOG_LEVEL, RUST_LOG). Stops on SIGINT or SIGTERM \
    with exit status 0. `brickfs dev` runs one, logging to <state-dir>/logs/heald.log.";

#[derive(clap::Args, Debug)]
pub struct HealdArgs {
    /// The volume to heal.
    #[arg(value_name = "VOLUME")]
    volume: Option<String>,

    #[command(flatten)]
    bricks: BricksArgs,

    #[command(flatten)]
    volume_flag: VolumeFlag,

    /// Seconds between retries of what could not be healed [default: the
    /// volume's cluster.heal-retry, 60].
    #[arg(long, value_name = "SECS", value_parser = volgen::secs::parse_retry)]
    retry: Option<Duration>,

    #[command(flatten)]
    metrics: telemetry::MetricsArgs,
}

pub fn run(args: HealdArgs, store: Option<&str>) -> Result<ExitCode> {
    let name = args.volume_flag.pick(args.volume.as_deref())?;
    let source = args.bricks.source(store, &name)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ctx(|| "starting the tokio runtime".into())?;
    rt.block_on(async {
        // Installed first, so that a signal during connect stops us too.
        let mut stop = Stop::install()?;
        let current_healers = crate::heald_metrics::Current::default();
        let metrics = telemetry::Metrics::new("heald")
            .collector(Box::new(current_healers.clone()));
        telemetry::start(&args.metrics, metrics)
            .await
            .ctx(|| "the metrics endpoint".into())?;
        let resolved = tokio::select! {
            r = source.resolve() => r?,
            why = stop.wait() => { info!("heald: {why}; stopping"); return Ok(ExitCode::SUCCESS) }
        };
        let mut follower = match &source {
            Source::Store { url, name } => {
                Some(Follower::new(url.clone(), name.clone(), resolved.revision))
            }
            Source::Bricks { .. } => None,
        };
        let retry = RetrySetting::new(args.retry, resolved.plan.heal_retry);
        let mut current = resolved;
        loop {
            let healers = tokio::select! {
                h = crate::heal_cmd::connect(&name, &current.config) => h?,
                why = stop.wait() => { info!("heald: {why}; stopping"); return Ok(ExitCode::SUCCESS) }
            };
            announce(&name, &current, &retry);
            current_healers.set(&healers);
            let several = healers.len() > 1;
            let runs = healers.iter().enumerate().map(|(i, h)| {
                let span = if several {
                    tracing::info_span!("set", n = i + 1)
                } else {
                    tracing::Span::none()
                };
                let retry = retry.clone();
                h.clone().run(move || retry.get()).instrument(span)
            });
            let mut runs = std::pin::pin!(futures::future::join_all(runs));
            // Until the graph changes: option changes apply to the healers
            // as they run.
            let next = loop {
                let changed = async {
                    match follower.as_mut() {
                        Some(f) => f.next().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = &mut runs => {
                        // Healers run until dropped; ending is a bug, not a state to serve in.
                        tracing::error!("heald: the healers stopped by themselves");
                        close(&healers);
                        return Ok(ExitCode::FAILURE);
                    }
                    why = stop.wait() => {
                        info!("heald: {why}; stopping");
                        close(&healers);
                        return Ok(ExitCode::SUCCESS);
                    }
                    next = changed => {
                        if let Some(change) = graph_change(&current.plan, &next.plan) {
                            info!("volume {name} changed ({change}): healing the new graph");
                            break next;
                        }
                        if next.plan.op_timeout != current.plan.op_timeout {
                            info!(to = ?next.plan.op_timeout, "volume option changed: network.op-timeout");
                            for h in &healers {
                                h.set_op_timeout(next.plan.op_timeout);
                            }
                        }
                        retry.follow(next.plan.heal_retry);
                        current = next;
                    }
                }
            };
            close(&healers);
            current = next;
        }
    })
}

fn close(healers: &[Arc<Healer>]) {
    for h in healers {
        h.close();
    }
}

fn announce(name: &str, current: &Resolved, retry: &RetrySetting) {
    let sets = current.config.sets();
    for (i, set) in sets.iter().enumerate() {
        let addrs: Vec<String> = set.bricks.iter().map(ToString::to_string).collect();
        info!(
            volume = %name,
            set = i + 1,
            bricks = %addrs.join(","),
            retry_secs = retry.get().as_secs_f64(),
            "heald: watching replica set {} of {} ({} bricks)",
            i + 1,
            sets.len(),
            set.bricks.len()
        );
    }
}

/// The retry interval the healers read each time: `--retry` when given,
/// else the volume's `cluster.heal-retry` as it changes.
#[derive(Clone)]
struct RetrySetting {
    millis: Arc<AtomicU64>,
    fixed: bool,
}

impl RetrySetting {
    fn new(flag: Option<Duration>, from_volume: Duration) -> RetrySetting {
        let d = flag.unwrap_or(from_volume);
        RetrySetting {
            millis: Arc::new(AtomicU64::new(d.as_millis() as u64)),
            fixed: flag.is_some(),
        }
    }

    fn get(&self) -> Duration {
        Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }

    /// The volume's option changed; ignored when `--retry` set it.
    fn follow(&self, from_volume: Duration) {
        if self.fixed || from_volume == self.get() {
            return;
        }
        info!(to = ?from_volume, "volume option changed: cluster.heal-retry");
        self.millis
            .store(from_volume.as_millis() as u64, Ordering::Relaxed);
    }
}

/// SIGINT and SIGTERM.
struct Stop {
    term: Signal,
    int: Signal,
}

impl Stop {
    fn install() -> Result<Stop> {
        Ok(Stop {
            term: signal(SignalKind::terminate()).ctx(|| "installing SIGTERM handler".into())?,
            int: signal(SignalKind::interrupt()).ctx(|| "installing SIGINT handler".into())?,
        })
    }

    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
