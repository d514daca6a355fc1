//! The brickfs client stack: layers over one async trait ([`Layer`]).
//! `protocol` talks to one brick; `replicate` turns three of them into one
//! replica set with quorum, changelog and eager locks.

pub mod layer;

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
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            volume: String::new(),
            bricks: Vec::new(),
            op_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(1),
        }
    }
}

/// Connects to the bricks and builds the layer stack; returns its top.
pub async fn connect(config: StackConfig) -> proto::FsResult<Arc<dyn Layer>> {
    let _ = config;
    unimplemented!("replicate stack is being written")
}
