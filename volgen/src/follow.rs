//! Following a volume in the cluster store, for the client binaries
//! (`brickfs-mount`, `brickfs-nfs`) started with `--store`: the spec's key
//! is watched (etcd: a watch that is made again after a lost connection;
//! file store: re-read every 100 ms), and when it changes
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
//!
//! Besides [`crate::plan::fetch`], the one other piece of I/O in this
//! library: both client binaries share it, and both already take their
//! plan from here.

use std::sync::Arc;
use std::time::Duration;

use client::switch::Switch;
use client::Layer;
use tracing::{debug, info, warn};

use crate::plan::ClientPlan;

/// How long one watch waits before it is made again (and how long to
/// wait after the store could not be reached).
pub const EVERY: Duration = Duration::from_secs(2);

/// Called with the new attribute and entry cache times when they change.
pub type OnCacheTimes = Box<dyn Fn(Duration, Duration) + Send + Sync>;

/// Follows volume `first.volume` in the store at `url` for as long as the
/// task runs; `first` is the plan `switch`'s current graph was built from.
pub async fn run(
    url: String,
    first: ClientPlan,
    switch: Arc<Switch>,
    on_cache_times: OnCacheTimes,
) {
    let volume = first.volume.clone();
    let mut current = first;
    let mut fetch_failing = false;
    let mut connect_failing = false;
    let key = crate::spec::VolumeSpec::key(&volume);
    let mut store: Option<Arc<dyn store::Store>> = None;
    let mut seen = None;
    loop {
        let found = async {
            let s = match &store {
                Some(s) => s.clone(),
                None => {
                    let s = store::open(&url).await.map_err(|e| e.to_string())?;
                    store = Some(s.clone());
                    s
                }
            };
            let entry = s
                .watch(&key, seen, EVERY)
                .await
                .map_err(|e| e.to_string())?;
            let entry =
                entry.ok_or_else(|| format!("volume {volume} is no longer in the store"))?;
            if Some(entry.revision) == seen {
                return Ok(None);
            }
            let plan = crate::plan::plan_entry(&entry).await?;
            Ok::<_, String>(Some((entry.revision, plan)))
        }
        .await;
        let (plan, addrs) = match found {
            Ok(Some((revision, found))) => {
                fetch_failing = false;
                seen = Some(revision);
                found
            }
            Ok(None) => continue,
            Err(e) => {
                if !fetch_failing {
                    warn!("cannot follow volume {volume} in the store: {e}; keeping the current graph and settings");
                    fetch_failing = true;
                }
                tokio::time::sleep(EVERY).await;
                continue;
            }
        };
        if let Some(change) = graph_change(&current, &plan) {
            let config = client::StackConfig {
                volume: plan.volume.clone(),
                bricks: addrs,
                op_timeout: plan.op_timeout,
                brick_ids: Some(plan.brick_ids.clone()),
                replica: plan.replica,
                ..client::StackConfig::default()
            };
            match client::connect(config).await {
                Ok(layer) => {
                    connect_failing = false;
                    let number = switch.replace(layer).await;
                    info!("switched to graph {number}: {change}");
                    current.bricks = plan.bricks.clone();
                    current.brick_ids = plan.brick_ids.clone();
                    current.replica = plan.replica;
                    // Built with the new timeout already.
                    current.op_timeout = plan.op_timeout;
                }
                Err(e) => {
                    if connect_failing {
                        debug!("volume {volume}: the new graph still cannot connect: {e}");
                    } else {
                        warn!("volume {volume} changed ({change}) but the new graph cannot connect: {e}; keeping graph {}, trying again every {EVERY:?}", switch.graph_number());
                        connect_failing = true;
                    }
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
