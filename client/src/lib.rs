//! The brickfs client stack: layers over one async trait ([`Layer`]).
//! `protocol` talks to one brick; `replicate` turns three of them into one
//! replica set with quorum, changelog and eager locks.

mod accuse;
mod data;
pub mod distribute;
pub mod heal;
mod inodelk;
pub mod layer;
pub mod protocol;
pub mod quorum;
pub mod rebalance;
pub mod replicate;
pub mod stats;
pub mod subtree;
pub mod switch;
pub mod write_behind;

pub use layer::{Layer, NewEntry};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How a client stack is built: which bricks, and the timeouts.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Volume name, checked by each brick.
    pub volume: String,
    /// The bricks of the replica set, in volume order.
    pub bricks: Vec<SocketAddr>,
    /// Deadline of one operation on one brick; a brick that misses it is
    /// treated as down until its ping answers again.
    pub op_timeout: Duration,
    /// Interval of the liveness ping to each brick.
    pub ping_interval: Duration,
    /// The brick UUIDs the volume spec names, in brick order, when known:
    /// a brick answering with another identity (a wiped or swapped disk)
    /// is not used until the spec says so (replace-brick).
    pub brick_ids: Option<Vec<proto::BrickId>>,
    /// Bricks per replica set: `bricks` form sets this many at a time, in
    /// order (as in Gluster). 0 means all bricks are one set.
    pub replica: usize,
    /// Heal and rebalance connect as `Maintenance`: bricks count what they
    /// write against sub-volume limits but never refuse it.
    pub purpose: proto::Purpose,
}

impl StackConfig {
    /// One config per replica set, in volume order; each names only its
    /// own bricks and identities.
    pub fn sets(&self) -> Vec<StackConfig> {
        let per = if self.replica == 0 {
            self.bricks.len().max(1)
        } else {
            self.replica
        };
        self.bricks
            .chunks(per)
            .enumerate()
            .map(|(i, bricks)| StackConfig {
                bricks: bricks.to_vec(),
                brick_ids: self
                    .brick_ids
                    .as_ref()
                    .map(|ids| ids.iter().skip(i * per).take(per).copied().collect()),
                replica: 0,
                ..self.clone()
            })
            .collect()
    }
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            volume: String::new(),
            bricks: Vec::new(),
            op_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(1),
            brick_ids: None,
            replica: 0,
            purpose: proto::Purpose::Client,
        }
    }
}

/// Whether replica sets built from now on in this process may answer a
/// create before the bricks made it (`replicate/held.rs`). Only a FUSE
/// mount writing behind sets it: it is write-behind for creates, and the
/// NFS gateway must not, since an NFS client takes a CREATE's answer as
/// the server's promise that the file exists, whatever happens next.
static HOLD_CREATES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_hold_creates(hold: bool) {
    HOLD_CREATES.store(hold, std::sync::atomic::Ordering::Release);
}

pub(crate) fn hold_creates() -> bool {
    HOLD_CREATES.load(std::sync::atomic::Ordering::Acquire)
}

/// Connects to the bricks and builds the layer stack; returns its top.
///
/// Waits (up to the op timeout) for every brick so that a fresh mount starts
/// with full knowledge; a replica set with no brick reachable is an error,
/// one with fewer than a quorum serves read-only in effect.
pub async fn connect(config: StackConfig) -> proto::FsResult<Arc<dyn Layer>> {
    let distribute = connect_distribute(config, true).await?;
    Ok(distribute)
}

/// The stack as a distribute layer over one replicate layer per set;
/// `heal_on_access` gives each set a healer for stale replicas it meets.
pub async fn connect_distribute(
    config: StackConfig,
    heal_on_access: bool,
) -> proto::FsResult<Arc<distribute::Distribute>> {
    // The bricks refuse heal RPCs from a mount's or the gateway's
    // certificate; heald heals what such a client finds stale.
    let heal_on_access = heal_on_access && tls::me().may_maintain();
    let sets = config.sets();
    let connected = futures::future::join_all(sets.iter().map(connect_bricks)).await;
    let mut replicas = Vec::with_capacity(sets.len());
    for (set, bricks) in sets.into_iter().zip(connected) {
        let bricks = bricks.map_err(|e| {
            proto::FsError::BrickDown(format!(
                "replica set {}: {e}",
                set.bricks
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ))
        })?;
        let heal = heal_on_access.then(|| heal::HealOnAccess::new(set.clone()));
        let replicate = replicate::Replicate::new(bricks, set.op_timeout, heal);
        tokio::spawn(replicate.clone().run_background());
        replicas.push(replicate);
    }
    let distribute = distribute::Distribute::new(replicas);
    distribute.init_root_layout().await?;
    if distribute.set_count() > 1 {
        tokio::spawn(distribute::Distribute::run_quota_sync(Arc::downgrade(
            &distribute,
        )));
    }
    Ok(distribute)
}

/// Connections to the bricks of a replica set under a client id of their
/// own (locks are scoped by it), kept alive in the background. Waits up to
/// the op timeout for every brick; fails only if none is reachable.
pub async fn connect_bricks(
    config: &StackConfig,
) -> proto::FsResult<Vec<Arc<protocol::BrickConn>>> {
    if config.bricks.is_empty() || config.bricks.len() > 8 {
        return Err(proto::FsError::Invalid(format!(
            "a replica set has 1 to 8 bricks, got {}",
            config.bricks.len()
        )));
    }
    let client_id: proto::ClientId = uuid::Uuid::new_v4().as_u128();
    let bricks: Vec<_> = config
        .bricks
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            protocol::BrickConn::new(
                i as u8,
                *addr,
                config.volume.clone(),
                client_id,
                config.op_timeout,
                config.ping_interval,
                config
                    .brick_ids
                    .as_ref()
                    .and_then(|ids| ids.get(i).copied()),
            )
        })
        .collect();
    for b in &bricks {
        b.set_purpose(config.purpose);
    }
    let first = futures::future::join_all(bricks.iter().map(|b| b.connect_once())).await;
    let mut last_err = None;
    for (b, res) in bricks.iter().zip(first) {
        if let Err(e) = res {
            tracing::warn!(brick = %b.addr, "not usable at mount time: {e}");
            last_err = Some(e);
        }
    }
    if !bricks.iter().any(|b| b.is_up()) {
        return Err(last_err.unwrap_or(proto::FsError::BrickDown("no brick".into())));
    }
    for b in &bricks {
        tokio::spawn(b.clone().run_keepalive());
    }
    Ok(bricks)
}
