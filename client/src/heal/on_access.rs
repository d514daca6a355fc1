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
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use proto::Gfid;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::{Healer, Outcome};
use crate::StackConfig;

/// Objects waiting; more are dropped (the daemon heals them anyway).
const QUEUE_MAX: usize = 1024;

/// Longest `close` waits for the healer's thread to end.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

pub struct HealOnAccess {
    config: StackConfig,
    /// The worker, once started; gone for good after `close`.
    worker: Mutex<Worker>,
    /// Queued or being healed; shared with the worker, which removes what it is done with.
    queued: Arc<Mutex<HashSet<Gfid>>>,
    /// Tells the worker to stop, also in the middle of a heal.
    stop: watch::Sender<bool>,
}

enum Worker {
    NotStarted,
    Running {
        tx: mpsc::Sender<Gfid>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
    Closed,
}

impl HealOnAccess {
    pub fn new(config: StackConfig) -> HealOnAccess {
        HealOnAccess {
            config,
            worker: Mutex::new(Worker::NotStarted),
            queued: Arc::new(Mutex::new(HashSet::new())),
            stop: watch::Sender::new(false),
        }
    }

    /// Stops the healer (a heal in progress is abandoned: as after a
    /// healer crash, what it had not recorded stays blamed) and waits for
    /// its thread, whose runtime closes its connections when it ends.
    pub async fn close(&self) {
        let was = std::mem::replace(
            &mut *self.worker.lock().unwrap_or_else(PoisonError::into_inner),
            Worker::Closed,
        );
        let Worker::Running { tx, thread } = was else {
            return;
        };
        self.stop.send_replace(true);
        drop(tx);
        let Some(thread) = thread else {
            return;
        };
        let joined = tokio::task::spawn_blocking(move || thread.join());
        if tokio::time::timeout(CLOSE_WAIT, joined).await.is_err() {
            warn!("heal on access: the healer did not stop within {CLOSE_WAIT:?}");
        }
    }

    /// Queues `gfid` for heal unless it is queued already or the queue is full.
    pub fn queue(&self, gfid: Gfid) {
        {
            let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
            if queued.len() >= QUEUE_MAX || !queued.insert(gfid) {
                return;
            }
        }
        let sent = {
            let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
            if matches!(*worker, Worker::NotStarted) {
                *worker = self.start();
            }
            match &*worker {
                Worker::Running { tx, .. } => tx.try_send(gfid).is_ok(),
                _ => false,
            }
        };
        if !sent {
            done(&self.queued, gfid);
        }
    }

    fn start(&self) -> Worker {
        let (tx, mut rx) = mpsc::channel::<Gfid>(QUEUE_MAX);
        let config = self.config.clone();
        let queued = self.queued.clone();
        let mut stop = self.stop.subscribe();
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
                let work = async move {
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
                    for b in healer.bricks() {
                        b.close();
                    }
                };
                rt.block_on(async move {
                    tokio::select! {
                        _ = work => {}
                        _ = stop.wait_for(|stop| *stop) => debug!("heal on access: stopped"),
                    }
                });
                // Dropping the runtime ends the connections' tasks, which
                // closes the sockets.
                drop(rt);
            });
        match spawned {
            Ok(thread) => Worker::Running {
                tx,
                thread: Some(thread),
            },
            Err(e) => {
                warn!("heal on access: cannot start its thread: {e}");
                Worker::Running { tx, thread: None }
            }
        }
    }
}

fn done(queued: &Mutex<HashSet<Gfid>>, gfid: Gfid) {
    queued
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&gfid);
}
