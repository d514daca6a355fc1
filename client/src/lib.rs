//! The brickfs client stack: layers over one async trait ([`Layer`]).
//! `protocol` talks to one brick; `replicate` turns three of them into one
//! replica set with quorum, changelog and eager locks.

pub mod cli;
mod data;
pub mod heal;
pub mod layer;
pub mod protocol;
pub mod quorum;
pub mod replicate;

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
        }
    }
}

/// Connects to the bricks and builds the layer stack; returns its top.
///
/// Waits (up to the op timeout) for every brick so that a fresh mount starts
/// with full knowledge; a volume with no brick reachable is an error, one
/// with fewer than a quorum mounts read-only in effect.
pub async fn connect(config: StackConfig) -> proto::FsResult<Arc<dyn Layer>> {
    let bricks = connect_bricks(&config).await?;
    let heal = heal::HealOnAccess::new(config.clone());
    let replicate = replicate::Replicate::new(bricks, config.op_timeout, Some(heal));
    tokio::spawn(replicate.clone().run_background());
    Ok(replicate)
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
