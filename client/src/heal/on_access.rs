//! Heal on access: a client that finds a stale replica of what it uses
//! (it already reads from a good one) queues the object here, and a healer
//! of the client's own repairs it ahead of the daemon's index crawl, so the
//! files in use get their redundancy back first.
//!
//! The healer runs on a thread of its own with its own connections and lock
//! owner (the heal engine's futures are not `Send`, and its locks must never
//! be mistaken for the client's eager locks). It is started on first use:
//! a client that never sees a stale replica costs nothing.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use proto::Gfid;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Healer, Outcome};
use crate::StackConfig;

/// Objects waiting; more are dropped (the daemon heals them anyway).
const QUEUE_MAX: usize = 1024;

pub struct HealOnAccess {
    config: StackConfig,
    tx: OnceLock<mpsc::Sender<Gfid>>,
    /// Queued or being healed; shared with the worker, which removes what it is done with.
    queued: Arc<Mutex<HashSet<Gfid>>>,
}

impl HealOnAccess {
    pub fn new(config: StackConfig) -> HealOnAccess {
        HealOnAccess {
            config,
            tx: OnceLock::new(),
            queued: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Queues `gfid` for heal unless it is queued already or the queue is full.
    pub fn queue(&self, gfid: Gfid) {
        {
            let mut queued = self
                .queued
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if queued.len() >= QUEUE_MAX || !queued.insert(gfid) {
                return;
            }
        }
        let tx = self.tx.get_or_init(|| self.start());
        if tx.try_send(gfid).is_err() {
            done(&self.queued, gfid);
        }
    }

    fn start(&self) -> mpsc::Sender<Gfid> {
        let (tx, mut rx) = mpsc::channel::<Gfid>(QUEUE_MAX);
        let config = self.config.clone();
        let queued = self.queued.clone();
        let spawned = std::thread::Builder::new()
            .name("heal-on-access".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        warn!("heal on access: no runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let healer = match Healer::connect(config).await {
                        Ok(h) => h,
                        Err(e) => {
                            warn!("heal on access: cannot connect: {e}");
                            return;
                        }
                    };
                    while let Some(gfid) = rx.recv().await {
                        match healer.heal_gfid(gfid, false).await {
                            Ok(Outcome::Healed) => info!(%gfid, "healed on access"),
                            Ok(other) => debug!(%gfid, ?other, "heal on access"),
                            Err(e) => debug!(%gfid, "heal on access failed: {e}"),
                        }
                        done(&queued, gfid);
                    }
                });
            });
        if let Err(e) = spawned {
            warn!("heal on access: cannot start its thread: {e}");
        }
        tx
    }
}

fn done(queued: &Mutex<HashSet<Gfid>>, gfid: Gfid) {
    queued
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&gfid);
}
