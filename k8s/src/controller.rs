//! Wiring: the leader lease, then the two controllers (claims, PVs) and
//! the sweep, until a signal or the lease is lost.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use crate::api::ApiClient;
use crate::error::Error;
use crate::lease::{self, LeaseConfig};
use crate::{provision, reclaim, sweep};

/// What every reconcile shares.
pub struct Ctx {
    pub client: Client,
    pub api: ApiClient,
    pub provisioner: String,
    pub recorder: Recorder,
    /// The uid of the leader Lease: which cluster a sub-volume was made
    /// for (label `k8s.cluster`), so the sweep of one cluster never takes
    /// another's, even where two share a tenant.
    pub cluster: String,
}

/// Slow retries for what needs the user (or the pool) to change first;
/// quick ones for what may pass by itself.
fn error_policy<K>(_obj: Arc<K>, e: &Error, _ctx: Arc<Ctx>) -> Action {
    if e.transient() {
        Action::requeue(Duration::from_secs(5))
    } else {
        Action::requeue(Duration::from_secs(60))
    }
}

pub struct RunConfig {
    pub lease: LeaseConfig,
    pub sweep_interval: Duration,
    pub concurrency: u16,
}

/// Runs until `shutdown` fires (`Ok`) or the lease is lost (`Err`).
pub async fn run(
    client: Client,
    api: ApiClient,
    provisioner: String,
    cfg: RunConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Error> {
    let mut stop = shutdown.clone();
    let cluster = tokio::select! {
        r = lease::acquire(&client, &cfg.lease) => r?,
        _ = stop.wait_for(|s| *s) => return Ok(()),
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "brickfs-provisioner".into(),
            instance: Some(cfg.lease.identity.clone()),
        },
    );
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        api,
        provisioner,
        recorder,
        cluster,
    });
    let stopped = |rx: tokio::sync::watch::Receiver<bool>| async move {
        let mut rx = rx;
        let _ = rx.wait_for(|s| *s).await;
    };
    let ctl_cfg = controller::Config::default().concurrency(cfg.concurrency);
    let claims = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(ctl_cfg.clone())
    .graceful_shutdown_on(stopped(shutdown.clone()))
    .run(
        |claim, ctx| {
            let span = tracing::info_span!(
                "reconcile",
                claim = %format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any())
            );
            provision::reconcile(claim, ctx).instrument(span)
        },
        error_policy,
        ctx.clone(),
    )
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "claim controller");
        }
    });
    let pvs = Controller::new(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(ctl_cfg)
    .graceful_shutdown_on(stopped(shutdown.clone()))
    .run(
        |pv, ctx| {
            let span = tracing::info_span!("reconcile", pv = %pv.name_any());
            reclaim::reconcile(pv, ctx).instrument(span)
        },
        error_policy,
        ctx.clone(),
    )
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "PV controller");
        }
    });
    let sweeper = {
        let ctx = ctx.clone();
        async move {
            let mut tick = tokio::time::interval(cfg.sweep_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match sweep::sweep(&ctx)
                    .instrument(tracing::info_span!("sweep"))
                    .await
                {
                    Ok(deleted) if !deleted.is_empty() => {
                        tracing::info!(count = deleted.len(), "sweep deleted leftovers")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sweep failed"),
                }
            }
        }
    };
    tracing::info!(provisioner = %ctx.provisioner, "provisioning");
    // The controllers end after a shutdown once their reconciles in flight
    // are done; a lost lease ends everything at once (another replica acts
    // from now on).
    let result = tokio::select! {
        _ = futures::future::join(claims, pvs) => Ok(()),
        e = lease::hold(&client, &cfg.lease) => Err(e),
        _ = sweeper => Ok(()),
    };
    if result.is_ok() {
        lease::release(&client, &cfg.lease).await;
    }
    result
}
