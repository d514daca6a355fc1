//! Hosts that hold locks are asked every `probe_every` whether their lockd
//! still answers (NLM NULL, found through their portmapper). One silent for
//! `host_timeout` (no call from it, no answer to a probe) has crashed or
//! left the network without the SM_NOTIFY a reboot sends: its locks go back
//! to the bricks and its blocked requests end, so one dead client cannot
//! keep a file locked for everyone. Hosts holding nothing are forgotten
//! `FORGET_AFTER` after their last call.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tracing::{debug, warn};

use super::hosts::HostKey;
use super::{LockManager, FORGET_AFTER};

/// Probes in flight at once.
const PROBES_AT_ONCE: usize = 16;

pub(super) async fn run(m: Arc<LockManager>) {
    let mut tick = tokio::time::interval(m.cfg.probe_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        round(&m).await;
    }
}

async fn round(m: &Arc<LockManager>) {
    let active: Vec<(HostKey, std::net::IpAddr)> = m
        .tables()
        .hosts()
        .filter(|(_, h)| h.active())
        .map(|(k, h)| (k.clone(), h.server))
        .collect();
    let answered: Vec<HostKey> = futures::stream::iter(active)
        .map(|(k, server)| async move {
            match m.probe(k.addr, server).await {
                Ok(()) => Some(k),
                Err(e) => {
                    debug!(host = %k, error = %e, "NLM probe unanswered");
                    None
                }
            }
        })
        .buffer_unordered(PROBES_AT_ONCE)
        .filter_map(|k| async move { k })
        .collect()
        .await;
    let now = Instant::now();
    let (silent, idle) = {
        let mut t = m.tables();
        for k in &answered {
            if let Some(h) = t.host_mut(k) {
                h.last_heard = now;
            }
        }
        let quiet = |since: Instant| now.saturating_duration_since(since);
        let silent: Vec<(HostKey, u64)> = match m.cfg.host_timeout {
            Some(limit) => t
                .hosts()
                .filter(|(_, h)| h.active() && quiet(h.last_heard) > limit)
                .map(|(k, h)| (k.clone(), quiet(h.last_heard).as_secs()))
                .collect(),
            None => Vec::new(),
        };
        let idle: Vec<HostKey> = t
            .hosts()
            .filter(|(_, h)| !h.active() && quiet(h.last_heard) > FORGET_AFTER)
            .map(|(k, _)| k.clone())
            .collect();
        (silent, idle)
    };
    for (k, secs) in silent {
        warn!(host = %k, silent_secs = secs, "NLM client host stopped answering");
        m.free_host(&k, &format!("no answer for {secs} s"));
    }
    for k in idle {
        // Holds nothing: nothing to free, only the record to drop.
        m.free_host(&k, "idle");
    }
}
