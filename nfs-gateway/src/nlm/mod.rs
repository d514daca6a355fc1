//! NLM v4, the NFSv3 lock manager (program 100021, version 4: what the
//! Linux client uses for NFSv3 over TCP), over the bricks' record locks.
//!
//! An NLM lock is a `Layer::setlk` of the owner's brick-side number
//! (`table.rs`), so NFS clients, FUSE clients and other gateways' clients
//! exclude each other as the bricks decide. A blocked request waits here
//! (`blocking.rs`) and is granted by a GRANTED callback to the client's
//! lockd (`callback.rs`). The hosts holding locks are recorded in the state
//! directory and told of our restarts by NSM (`crate::nsm`), after which a
//! grace period admits only reclaims (`grace.rs`); a host that stops
//! answering our probes loses its locks (`liveness.rs`).
//!
//! - `xdr`: the NLM v4 argument and result types.
//! - `procs`: the procedures.
//! - `table`: hosts, owners, held files, blocked requests (bounded).
//! - `hosts`, `ranges`: what the table keeps per host and per locked file.

mod blocking;
pub mod callback;
pub mod grace;
pub mod hosts;
mod liveness;
pub mod procs;
pub mod ranges;
pub mod table;
pub mod xdr;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use proto::{Gfid, RecordLock, RecordLockType};
use tracing::{info, info_span, warn, Instrument};

use crate::nsm::state_dir::{Record, StateDir};
use crate::GatewayError;
use grace::Grace;
use hosts::HostKey;
use table::{Freed, Tables, LIMITS};

/// How the lock manager reaches and judges client hosts.
#[derive(Clone, Debug)]
pub struct Config {
    /// After a start with hosts to notify: only reclaims for this long.
    pub grace: Duration,
    /// Hosts holding locks are probed (NLM NULL at their lockd) this often.
    pub probe_every: Duration,
    /// A host holding locks that answered nothing for this long loses
    /// them; `None`: never.
    pub host_timeout: Option<Duration>,
    /// Where client hosts' portmappers answer (111; tests use another).
    pub rpcbind_port: u16,
    /// Deadline of each call we make to a client host.
    pub call_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            grace: Duration::from_secs(60),
            probe_every: Duration::from_secs(30),
            host_timeout: Some(Duration::from_secs(120)),
            rpcbind_port: 111,
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// A host that holds nothing is forgotten (and its record removed) this
/// long after its last call: a client that locks now and then keeps its
/// record instead of rewriting it every time.
const FORGET_AFTER: Duration = Duration::from_secs(300);

pub struct LockManager {
    layer: Arc<dyn client::Layer>,
    cfg: Config,
    tables: Mutex<Tables>,
    grace: Grace,
    state_dir: Option<Arc<StateDir>>,
    /// Held while a host's record is written or removed, so a removal
    /// (the host was freed) and a new record (it locked again at once)
    /// cannot pass each other.
    records: tokio::sync::Mutex<()>,
    /// Our NSM state number for this run.
    nsm_state: i32,
    /// Hosts of earlier runs, told of this start by `start`.
    previous: Mutex<Vec<Record>>,
}

impl LockManager {
    /// A lock manager whose hosts are recorded in `state_dir` (none: in
    /// memory only, no notification after a restart). Reads what earlier
    /// runs recorded: with hosts to notify, the grace period starts now.
    pub fn new(
        layer: Arc<dyn client::Layer>,
        cfg: Config,
        state_dir: Option<StateDir>,
    ) -> Result<Arc<LockManager>, GatewayError> {
        let now = Instant::now();
        let (nsm_state, previous) = match &state_dir {
            Some(d) => (d.next_state()?, d.load(LIMITS.hosts)?),
            None => (1, Vec::new()),
        };
        let grace = if previous.is_empty() {
            Grace::none()
        } else {
            Grace::starting(now, cfg.grace)
        };
        let mut tables = Tables::new(LIMITS);
        for r in &previous {
            // Known, recorded, holding nothing until it reclaims.
            if tables.touch(&r.key, r.server, now).is_ok() {
                if let Some(h) = tables.host_mut(&r.key) {
                    h.recorded = true;
                }
            }
        }
        Ok(Arc::new(LockManager {
            layer,
            cfg,
            tables: Mutex::new(tables),
            grace,
            state_dir: state_dir.map(Arc::new),
            records: tokio::sync::Mutex::new(()),
            nsm_state,
            previous: Mutex::new(previous),
        }))
    }

    /// Starts the background work: SM_NOTIFY to the hosts of earlier runs
    /// and the liveness probes. The tasks end with the runtime.
    pub fn start(self: &Arc<LockManager>) {
        let previous = std::mem::take(&mut *lock(&self.previous));
        if let Some(left) = self.grace.remaining(Instant::now()) {
            info!(
                hosts = previous.len(),
                secs = left.as_secs_f64(),
                "NLM grace period: only reclaims are granted"
            );
            tokio::spawn(async move {
                tokio::time::sleep(left).await;
                info!("NLM grace period over");
            });
        }
        if !previous.is_empty() {
            let notify = crate::nsm::notify::notify_all(
                previous,
                self.nsm_state,
                self.cfg.rpcbind_port,
                self.cfg.call_timeout,
            );
            tokio::spawn(notify.instrument(info_span!("sm_notify", state = self.nsm_state)));
        }
        tokio::spawn(liveness::run(self.clone()).instrument(info_span!("nlm_liveness")));
    }

    pub fn nsm_state(&self) -> i32 {
        self.nsm_state
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn in_grace(&self) -> bool {
        self.grace.active(Instant::now())
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        lock(&self.tables)
    }

    /// (hosts, owners, locked files, blocked requests), for tests and logs.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        self.tables().counts()
    }

    /// Makes sure `host` is in the state directory before it is granted a
    /// lock: a restart right after the grant must still tell it.
    async fn ensure_recorded(&self, host: &HostKey) -> Result<(), GatewayError> {
        let Some(dir) = self.state_dir.clone() else {
            return Ok(());
        };
        // Most LOCKs come from a host recorded already: they need not wait
        // behind another host's write and fsync. Only a write sets
        // `recorded`, so it cannot be stale in that direction.
        if self.tables().host(host).is_none_or(|h| h.recorded) {
            return Ok(());
        }
        let _order = self.records.lock().await;
        let server = match self.tables().host(host) {
            Some(h) if h.recorded => return Ok(()),
            Some(h) => h.server,
            None => return Ok(()),
        };
        let record = Record {
            key: host.clone(),
            server,
        };
        let written = tokio::task::spawn_blocking(move || dir.record(&record))
            .await
            .map_err(|e| GatewayError::Io {
                context: "recording an NLM host".into(),
                source: std::io::Error::other(e.to_string()),
            })?;
        written?;
        if let Some(h) = self.tables().host_mut(host) {
            h.recorded = true;
        }
        Ok(())
    }

    /// Removes the record of a host that was freed, unless the host is
    /// back (it locked again): then its record is needed.
    fn unrecord(self: &Arc<Self>, host: HostKey) {
        let Some(dir) = self.state_dir.clone() else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let _order = me.records.lock().await;
            if me.tables().host(&host).is_some() {
                return;
            }
            let removed = tokio::task::spawn_blocking(move || {
                let r = dir.forget(&host);
                (host, r)
            })
            .await;
            if let Ok((host, Err(e))) = removed {
                warn!(%host, error = %e, "cannot remove the NLM host record");
            }
        });
    }

    /// Gives back every lock `owner` holds on `gfid`.
    async fn give_back(&self, owner: u64, gfid: Gfid, (start, end): (u64, u64)) {
        let unlock = RecordLock {
            owner,
            pid: 0,
            start,
            end,
            typ: RecordLockType::Unlock,
            flock: false,
        };
        if let Err(e) = self.layer.setlk(gfid, unlock, false).await {
            // The bricks drop them anyway when our connection ends.
            warn!(%gfid, owner, error = %e, "cannot give back an NLM lock");
        }
    }

    /// Frees everything `host` holds and waits for: its blocked requests
    /// end, its locks go back to the bricks, its record goes.
    pub fn free_host(self: &Arc<Self>, host: &HostKey, why: &str) {
        let Some(freed) = self.tables().free_host(host) else {
            return;
        };
        let Freed { held, blocked, .. } = freed;
        if held.is_empty() && blocked.is_empty() {
            tracing::debug!(%host, "forgetting the NLM host: {why}");
        } else {
            info!(%host, locked_files = held.len(), blocked = blocked.len(), "freeing the host's NLM locks: {why}");
        }
        for b in &blocked {
            b.cancel.notify_one();
        }
        self.unrecord(host.clone());
        if held.is_empty() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            for (owner, gfid, _) in held {
                me.give_back(owner, gfid, (0, u64::MAX)).await;
            }
        });
    }

    /// SM_NOTIFY from `sender`: the host named `mon_name` rebooted and has
    /// NSM state `state` now. Hosts at the sender's address, or at the
    /// address `mon_name` spells, lose the locks they took before that
    /// reboot. Names alone are not trusted: many machines call themselves
    /// `localhost`.
    pub fn host_rebooted(self: &Arc<Self>, sender: IpAddr, mon_name: &[u8], state: i32) {
        let named: Option<IpAddr> = std::str::from_utf8(mon_name)
            .ok()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical());
        let sender = sender.to_canonical();
        let hosts: Vec<HostKey> = self
            .tables()
            .hosts()
            .filter(|(k, h)| {
                (k.addr == sender || Some(k.addr) == named) && h.client_state != Some(state)
            })
            .map(|(k, _)| k.clone())
            .collect();
        info!(%sender, mon_name = %String::from_utf8_lossy(mon_name), state, hosts = hosts.len(), "SM_NOTIFY: a client host rebooted");
        for h in hosts {
            self.free_host(&h, "it rebooted (SM_NOTIFY)");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The brick-side record lock of an NLM request.
fn record_lock(owner: u64, svid: i32, (start, end): (u64, u64), exclusive: bool) -> RecordLock {
    RecordLock {
        owner,
        pid: svid as u32,
        start,
        end,
        typ: if exclusive {
            RecordLockType::Write
        } else {
            RecordLockType::Read
        },
        flock: false,
    }
}
