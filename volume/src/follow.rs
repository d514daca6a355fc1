//! Following a volume in the cluster store. [`Follower`] waits for the
//! next version of a volume's spec (etcd: a watch made again after a lost
//! connection; file store: re-read every 100 ms) and resolves it; store
//! trouble is logged once and retried, and the caller keeps what it has
//! meanwhile. [`keep_switched`] is how a mount or NFS gateway uses it:
//!
//! - changed timeouts apply from the next operation on, without a new
//!   graph: `network.op-timeout` through `Layer::set_op_timeout`, the FUSE
//!   cache times through the caller's callback;
//! - changed bricks, brick identities or replica count (replace-brick,
//!   add-brick) build a new client stack from the new spec and put it in
//!   place of the old one behind the [`Switch`]: operations already running
//!   finish on the old graph, which is then closed (locks given back,
//!   connections closed). A new graph that cannot connect is not used; the
//!   old one keeps serving and the next round tries again.

use std::sync::Arc;
use std::time::Duration;

use client::switch::Switch;
use client::Layer;
use store::{Revision, Store};
use tracing::{debug, info, warn};
use volgen::plan::ClientPlan;
use volgen::spec::VolumeSpec;

use crate::{OpenError, Resolved};

/// How long one watch waits before it is made again (and how long to
/// wait after the store could not be reached).
pub const EVERY: Duration = Duration::from_secs(2);

/// Called with the new attribute and entry cache times when they change.
pub type OnCacheTimes = Box<dyn Fn(Duration, Duration) + Send + Sync>;

/// The versions of one volume's spec, in order, as they are written.
pub struct Follower {
    url: String,
    name: String,
    store: Option<Arc<dyn Store>>,
    /// The revision of the last version handed out.
    seen: Option<Revision>,
    /// The last error, logged once until the store answers again.
    failing: Option<String>,
}

impl Follower {
    /// Follows volume `name` in the store at `url` from revision `seen`
    /// (the one the caller already runs).
    pub fn new(url: String, name: String, seen: Option<Revision>) -> Follower {
        Follower {
            url,
            name,
            store: None,
            seen,
            failing: None,
        }
    }

    pub fn volume(&self) -> &str {
        &self.name
    }

    /// Waits for the next version of the spec and returns it resolved. A
    /// version that cannot be served (volume stopped or deleted, a brick
    /// that does not resolve) is logged and skipped: the caller keeps
    /// serving what it has.
    pub async fn next(&mut self) -> Resolved {
        loop {
            match self.try_next().await {
                Ok(Some(resolved)) => {
                    if let Some(why) = self.failing.take() {
                        info!(volume = %self.name, "following the volume again (was: {why})");
                    }
                    return resolved;
                }
                Ok(None) => {}
                Err(e) => {
                    let why = e.to_string();
                    if self.failing.as_deref() != Some(why.as_str()) {
                        warn!(volume = %self.name, "cannot follow the volume in the store: {why}; keeping the current graph and settings");
                        self.failing = Some(why);
                    }
                    tokio::time::sleep(EVERY).await;
                }
            }
        }
    }

    /// One watch: `Ok(None)` when it timed out with nothing new.
    async fn try_next(&mut self) -> Result<Option<Resolved>, OpenError> {
        let store = match &self.store {
            Some(s) => s.clone(),
            None => {
                let s = store::open(&self.url).await?;
                self.store = Some(s.clone());
                s
            }
        };
        let entry = store
            .watch(&VolumeSpec::key(&self.name), self.seen, EVERY)
            .await?;
        let Some(entry) = entry else {
            return Err(OpenError::UnknownVolume {
                name: self.name.clone(),
                url: self.url.clone(),
            });
        };
        if Some(entry.revision) == self.seen {
            return Ok(None);
        }
        // Seen even when it cannot be served: the next watch waits for the
        // version after it instead of failing on it every round.
        self.seen = Some(entry.revision);
        crate::resolve_entry(&self.name, &entry, crate::Serve::StartedOnly)
            .await
            .map(Some)
    }
}

/// Keeps `switch` on the current graph and options of the followed volume
/// for as long as the task runs; `first` is the plan the switch's current
/// graph was built from.
pub async fn keep_switched(
    mut follower: Follower,
    first: ClientPlan,
    switch: Arc<Switch>,
    on_cache_times: OnCacheTimes,
) {
    let volume = follower.volume().to_string();
    let mut current = first;
    // A version whose graph could not connect: tried again every round
    // until it connects or a newer version replaces it.
    let mut pending: Option<Resolved> = None;
    loop {
        let (next, retrying) = match pending.take() {
            Some(p) => match tokio::time::timeout(EVERY, follower.next()).await {
                Ok(newer) => (newer, false),
                Err(_) => (p, true),
            },
            None => (follower.next().await, false),
        };
        let Resolved { plan, config, .. } = next.clone();
        if let Some(change) = graph_change(&current, &plan) {
            match client::connect(config).await {
                Ok(layer) => {
                    let number = switch.replace(layer).await;
                    info!("switched to graph {number}: {change}");
                    current.bricks = plan.bricks.clone();
                    current.brick_ids = plan.brick_ids.clone();
                    current.replica = plan.replica;
                    // Built with the new timeout already.
                    current.op_timeout = plan.op_timeout;
                }
                Err(e) => {
                    if !retrying {
                        warn!("volume {volume} changed ({change}) but the new graph cannot connect: {e}; keeping graph {}, trying again every {EVERY:?}", switch.graph_number());
                    } else {
                        debug!("volume {volume}: the new graph still cannot connect: {e}");
                    }
                    pending = Some(next);
                }
            }
        }
        if plan.op_timeout != current.op_timeout {
            info!(from = ?current.op_timeout, to = ?plan.op_timeout, "volume option changed: network.op-timeout");
            switch.set_op_timeout(plan.op_timeout);
        }
        if (plan.attr_timeout, plan.entry_timeout) != (current.attr_timeout, current.entry_timeout)
        {
            info!(attr = ?plan.attr_timeout, entry = ?plan.entry_timeout, "volume option changed: attribute and entry cache times");
            on_cache_times(plan.attr_timeout, plan.entry_timeout);
        }
        current = ClientPlan {
            bricks: current.bricks,
            brick_ids: current.brick_ids,
            replica: current.replica,
            ..plan
        };
    }
}

/// What about the graph changed from `old` to `new`, said for the log
/// ("1 x 3 → 2 x 3 bricks (added …)"); `None` when the same graph serves.
pub fn graph_change(old: &ClientPlan, new: &ClientPlan) -> Option<String> {
    if (&old.bricks, &old.brick_ids, old.replica) == (&new.bricks, &new.brick_ids, new.replica) {
        return None;
    }
    let shape = |p: &ClientPlan| {
        let replica = p.replica.max(1);
        format!("{} x {replica}", p.bricks.len() / replica)
    };
    let mut what = Vec::new();
    let added: Vec<&str> = new
        .bricks
        .iter()
        .filter(|b| !old.bricks.contains(b))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = old
        .bricks
        .iter()
        .filter(|b| !new.bricks.contains(b))
        .map(String::as_str)
        .collect();
    if added.len() == removed.len() && old.bricks.len() == new.bricks.len() {
        for (o, n) in removed.iter().zip(&added) {
            what.push(format!("{o} replaced by {n}"));
        }
    } else {
        if !added.is_empty() {
            what.push(format!("added {}", added.join(", ")));
        }
        if !removed.is_empty() {
            what.push(format!("removed {}", removed.join(", ")));
        }
    }
    let renewed = old
        .bricks
        .iter()
        .zip(&old.brick_ids)
        .filter(|(addr, id)| {
            new.bricks
                .iter()
                .zip(&new.brick_ids)
                .any(|(a, i)| a == *addr && i != *id)
        })
        .count();
    if renewed > 0 {
        what.push(format!("{renewed} brick(s) with a new identity"));
    }
    let detail = if what.is_empty() {
        String::new()
    } else {
        format!(" ({})", what.join("; "))
    };
    Some(format!("{} → {} bricks{detail}", shape(old), shape(new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(bricks: &[&str], replica: usize) -> ClientPlan {
        ClientPlan {
            volume: "gv0".into(),
            bricks: bricks.iter().map(|b| b.to_string()).collect(),
            brick_ids: bricks
                .iter()
                .map(|b| {
                    let mut id = [0u8; 16];
                    id[..b.len().min(16)].copy_from_slice(&b.as_bytes()[..b.len().min(16)]);
                    proto::BrickId(id)
                })
                .collect(),
            replica,
            attr_timeout: Duration::from_secs(1),
            entry_timeout: Duration::from_secs(1),
            op_timeout: Duration::from_secs(5),
            heal_retry: Duration::from_secs(60),
        }
    }

    #[test]
    fn options_alone_change_no_graph() {
        let a = plan(&["h1:1", "h2:1", "h3:1"], 3);
        let b = ClientPlan {
            op_timeout: Duration::from_secs(7),
            attr_timeout: Duration::ZERO,
            ..a.clone()
        };
        assert_eq!(graph_change(&a, &b), None);
    }

    #[test]
    fn brick_changes_are_named() {
        let a = plan(&["h1:1", "h2:1", "h3:1"], 3);
        let replaced = plan(&["h1:1", "h2:1", "h4:1"], 3);
        assert_eq!(
            graph_change(&a, &replaced).as_deref(),
            Some("1 x 3 → 1 x 3 bricks (h3:1 replaced by h4:1)")
        );
        let added = plan(&["h1:1", "h2:1", "h3:1", "h4:1", "h5:1", "h6:1"], 3);
        assert_eq!(
            graph_change(&a, &added).as_deref(),
            Some("1 x 3 → 2 x 3 bricks (added h4:1, h5:1, h6:1)")
        );
        let mut wiped = a.clone();
        wiped.brick_ids[1] = proto::BrickId([9; 16]);
        assert_eq!(
            graph_change(&a, &wiped).as_deref(),
            Some("1 x 3 → 1 x 3 bricks (1 brick(s) with a new identity)")
        );
    }
}
