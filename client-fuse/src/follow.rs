//! A mount started from the cluster store follows its volume's options:
//! every few seconds it reads the spec again and applies changed timeouts
//! (`network.op-timeout`, `performance.attr-timeout`,
//! `performance.entry-timeout`) from the next operation on, without
//! unmounting. A change of bricks (replace-brick) is reported; using the
//! new bricks takes a new mount.

use std::sync::Arc;
use std::time::Duration;

use client::Layer;
use client_fuse::ttls::Ttls;
use tracing::{info, warn};
use volgen::plan::ClientPlan;

const EVERY: Duration = Duration::from_secs(2);

pub async fn run(
    url: String,
    volume: String,
    first: ClientPlan,
    layer: Arc<dyn Layer>,
    ttls: Arc<Ttls>,
) {
    let mut current = first;
    let mut warned_bricks = false;
    let mut warned_error = false;
    loop {
        tokio::time::sleep(EVERY).await;
        let plan = match volgen::plan::fetch(&url, &volume).await {
            Ok((plan, _)) => {
                warned_error = false;
                plan
            }
            Err(e) => {
                if !warned_error {
                    warn!("cannot follow volume {volume} in the store: {e}; keeping the current settings");
                    warned_error = true;
                }
                continue;
            }
        };
        if plan.op_timeout != current.op_timeout {
            info!(from = ?current.op_timeout, to = ?plan.op_timeout, "volume option changed: network.op-timeout");
            layer.set_op_timeout(plan.op_timeout);
        }
        if (plan.attr_timeout, plan.entry_timeout) != (current.attr_timeout, current.entry_timeout)
        {
            info!(attr = ?plan.attr_timeout, entry = ?plan.entry_timeout, "volume option changed: attribute and entry cache times");
            ttls.set(plan.attr_timeout, plan.entry_timeout);
        }
        if (&plan.bricks, &plan.brick_ids) != (&current.bricks, &current.brick_ids)
            && !warned_bricks
        {
            warn!(bricks = %plan.bricks.join(","), "the volume's bricks changed in the store (replace-brick?): this mount keeps its bricks; mount again to use the new ones");
            warned_bricks = true;
        }
        current = ClientPlan {
            bricks: current.bricks,
            brick_ids: current.brick_ids,
            ..plan
        };
    }
}
