//! Blocked lock requests (LOCK with `block` set that the bricks refused):
//! a task per request asks the bricks again with a growing pause until they
//! grant it, the client cancels, or its host is freed; then the client is
//! told by a GRANTED callback. Until it acknowledges, the lock is held for
//! it and its next LOCK for the same range (Linux resends every 30 s) is
//! answered GRANTED.

use std::sync::Arc;
use std::time::Duration;

use proto::backoff::Backoff;
use proto::{FsError, RecordLock};
use tokio::sync::Notify;
use tracing::{debug, info, info_span, warn, Instrument};

use super::hosts::HostKey;
use super::table::BlockedKey;
use super::xdr::{Stat, TestArgs};
use super::LockManager;

/// Pauses between the bricks' refusals: short at first (a lock is often
/// held briefly), at most a second (each waiter costs the bricks a request
/// per pause).
const RETRY: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
/// GRANTED callbacks that fail are sent again this often, this many times;
/// then the client's own resent LOCK has to pick the lock up.
const CALLBACK_RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
const CALLBACK_TRIES: u32 = 5;

impl LockManager {
    /// Registers the blocked request and starts its wait: BLOCKED, or
    /// DENIED_NOLOCKS when too many already wait.
    pub(super) fn start_waiting(
        self: &Arc<Self>,
        key: BlockedKey,
        host: HostKey,
        grant: TestArgs,
        lock: RecordLock,
    ) -> Stat {
        let registered = self.tables().block(key, &host, grant);
        let (id, cancel) = match registered {
            Ok(r) => r,
            Err(full) => {
                warn!(%host, "NLM blocking lock refused: {full}");
                self.tables().forget_if_unused(key.owner);
                return Stat::DeniedNoLocks;
            }
        };
        let span = info_span!("nlm_blocked", %host, gfid = %key.gfid, id);
        tokio::spawn(self.clone().wait(key, id, cancel, lock).instrument(span));
        Stat::Blocked
    }

    async fn wait(
        self: Arc<Self>,
        key: BlockedKey,
        id: u64,
        cancel: Arc<Notify>,
        lock: RecordLock,
    ) {
        debug!("waiting for the bricks to grant the lock");
        let mut pause = RETRY;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause.next_pause()) => {}
                _ = cancel.notified() => return,
            }
            if self.tables().blocked(&key).is_none_or(|b| b.id != id) {
                return;
            }
            match self.layer.setlk(key.gfid, lock, false).await {
                Ok(()) => break,
                Err(FsError::WouldBlock) => {}
                Err(e) => debug!(error = %e, "bricks did not answer the lock; trying again"),
            }
        }
        let granted = self.tables().grant(&key, id);
        match granted {
            Ok(true) => {}
            // Cancelled, or the host freed, while the bricks said yes.
            _ => {
                self.give_back(key.owner, key.gfid, key.range()).await;
                self.tables().forget_if_unused(key.owner);
                return;
            }
        }
        info!("bricks granted the blocked lock; calling the client back");
        self.call_back(key, id).await;
    }

    /// Sends GRANTED until the client answers or the tries run out.
    async fn call_back(&self, key: BlockedKey, id: u64) {
        let mut pause = CALLBACK_RETRY;
        for attempt in 1..=CALLBACK_TRIES {
            let target = {
                let t = self.tables();
                t.blocked(&key)
                    .filter(|b| b.id == id)
                    .and_then(|b| Some((b.host.clone(), t.host(&b.host)?.server, b.grant.clone())))
            };
            // Gone: the client resent its LOCK (and got GRANTED), cancelled,
            // or its host was freed.
            let Some((host, from, grant)) = target else {
                return;
            };
            match self.send_granted(&host, from, &grant).await {
                Ok(Stat::Granted) => {
                    let mut t = self.tables();
                    t.unblock(&key, Some(id));
                    if let Some(h) = t.host_mut(&host) {
                        h.last_heard = std::time::Instant::now();
                    }
                    info!("client took the granted lock");
                    return;
                }
                Ok(stat) => {
                    // It no longer waits (interrupted, its CANCEL still on
                    // the way): the lock is not its to keep.
                    info!(?stat, "client refused the granted lock; giving it back");
                    if self.tables().unblock(&key, Some(id)).is_some() {
                        self.give_back(key.owner, key.gfid, key.range()).await;
                        self.tables().release(key.owner, key.gfid, key.range());
                    }
                    return;
                }
                Err(e) => {
                    warn!(attempt, error = %e, "GRANTED callback failed");
                    tokio::time::sleep(pause.next_pause()).await;
                }
            }
        }
        warn!("client did not take the GRANTED callback; its next LOCK gets the lock");
    }
}
