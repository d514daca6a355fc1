//! Leader election through a coordination.k8s.io/v1 Lease, so that of two
//! replicas exactly one acts. Every write is a replace with the
//! resourceVersion last read (optimistic concurrency): of two candidates
//! that saw the same lease, one write wins and the other gets 409.
//!
//! Why observed time, not the lease's renewTime: a candidate takes over
//! when the lease's resourceVersion has not changed for a whole lease
//! duration *by its own clock* (as client-go does), so clock skew between
//! hosts cannot shorten a holder's term. A holder that stops cleanly
//! clears holderIdentity, and a candidate takes an unheld lease at once.
//! The holder renews every `renew_every`; if it cannot renew for
//! `renew_deadline` (less than the duration), it gives up leadership
//! before anyone can take it over.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::error::Error;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    pub renew_every: Duration,
    pub renew_deadline: Duration,
}

/// `hostname_pid`: unique per process, and says where it runs.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    format!("{host}_{}", std::process::id())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn spec_for(cfg: &LeaseConfig, old: Option<&LeaseSpec>) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    let ours = old.and_then(|s| s.holder_identity.as_deref()) == Some(cfg.identity.as_str());
    let transitions = old.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(
            i32::try_from(cfg.duration.as_secs().max(1)).unwrap_or(i32::MAX),
        ),
        acquire_time: if ours {
            old.and_then(|s| s.acquire_time.clone())
        } else {
            Some(now.clone())
        },
        renew_time: Some(now),
        lease_transitions: Some(if ours || old.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..LeaseSpec::default()
    }
}

/// Waits until this process holds the lease; returns the Lease's uid.
pub async fn acquire(client: &Client, cfg: &LeaseConfig) -> Result<String, Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    // The resourceVersion last seen and when it was first seen.
    let mut observed: Option<(String, Instant)> = None;
    let mut logged_holder = None;
    loop {
        match try_acquire(&api, cfg, &mut observed).await {
            Ok(Attempt::Acquired(uid)) => {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, "acquired the leader lease");
                return Ok(uid);
            }
            Ok(Attempt::HeldBy(holder)) => {
                if logged_holder.as_ref() != Some(&holder) {
                    tracing::info!(lease = %cfg.name, %holder, "standing by: another replica holds the lease");
                    logged_holder = Some(holder);
                }
            }
            Err(e) if is_conflict(&e) => {
                tracing::debug!("lease changed under us; reading it again")
            }
            Err(e) => tracing::warn!(error = %e, "reading or writing the leader lease failed"),
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}

/// What one attempt at the lease found.
enum Attempt {
    /// Ours now; the Lease's uid (what `acquire` returns).
    Acquired(String),
    /// Another replica's, with its identity.
    HeldBy(String),
}

/// One attempt: create the Lease, or take it over if it is ours, free, or
/// unrenewed for its duration (as observed here, not by clocks).
async fn try_acquire(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    observed: &mut Option<(String, Instant)>,
) -> Result<Attempt, kube::Error> {
    let acquired = |l: Lease| Attempt::Acquired(l.metadata.uid.unwrap_or_default());
    let Some(lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                namespace: Some(cfg.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec_for(cfg, None)),
        };
        return Ok(acquired(api.create(&PostParams::default(), &lease).await?));
    };
    let rv = lease.metadata.resource_version.clone().unwrap_or_default();
    let now = Instant::now();
    let since = match observed {
        Some((seen, at)) if *seen == rv => *at,
        _ => {
            *observed = Some((rv, now));
            now
        }
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(cfg.duration, Duration::from_secs);
    let free = holder.is_empty() || holder == cfg.identity || now.duration_since(since) >= duration;
    if !free {
        return Ok(Attempt::HeldBy(holder));
    }
    let mut new = lease.clone();
    new.spec = Some(spec_for(cfg, Some(&spec)));
    Ok(acquired(
        api.replace(&cfg.name, &PostParams::default(), &new).await?,
    ))
}

/// Renews the lease for as long as it can; returns why it stopped
/// (another holder, or no renewal within the deadline).
pub async fn hold(client: &Client, cfg: &LeaseConfig) -> Error {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let mut last_renewal = Instant::now();
    loop {
        tokio::time::sleep(cfg.renew_every).await;
        match renew(&api, cfg).await {
            Ok(true) => last_renewal = Instant::now(),
            Ok(false) => {
                return Error::LostLease(format!("{}: another replica holds it", cfg.name))
            }
            Err(e) => tracing::warn!(error = %e, "renewing the leader lease failed"),
        }
        if last_renewal.elapsed() >= cfg.renew_deadline {
            return Error::LostLease(format!(
                "{}: not renewed for {:?}",
                cfg.name, cfg.renew_deadline
            ));
        }
    }
}

async fn renew(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let lease = api.get(&cfg.name).await?;
    let spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(false);
    }
    let mut new = lease;
    new.spec = Some(spec_for(cfg, Some(&spec)));
    api.replace(&cfg.name, &PostParams::default(), &new).await?;
    Ok(true)
}

/// Gives the lease up (on a clean stop), so the standby takes over at once.
pub async fn release(client: &Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let result = async {
        let mut lease = api.get(&cfg.name).await?;
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        api.replace(&cfg.name, &PostParams::default(), &lease)
            .await?;
        Ok::<(), kube::Error>(())
    }
    .await;
    match result {
        Ok(()) => tracing::info!(lease = %cfg.name, "released the leader lease"),
        Err(e) => tracing::warn!(error = %e, "releasing the leader lease failed"),
    }
}
