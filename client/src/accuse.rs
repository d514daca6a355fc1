//! Changing the replicas' changelog from outside a transaction: accusing
//! replicas of an op they missed, on the bricks that applied it (a client
//! after the op, heal for a replica that is away), or taking back an
//! accusation an op carried that turned out false.

use std::sync::Arc;

use proto::{FsResult, Gfid, PendingKind};

use crate::protocol::BrickConn;
use crate::quorum::{fan_out, indices, Mask};

#[derive(Clone, Copy)]
pub enum Change {
    Accuse,
    TakeBack,
}

/// Asks the bricks `on` to count one op of `kind` on `gfid` against each of
/// `blamed` (or one fewer); their answers, brick by brick.
pub async fn send(
    bricks: &[Arc<BrickConn>],
    on: Mask,
    gfid: Gfid,
    blamed: Mask,
    kind: PendingKind,
    change: Change,
) -> Vec<(usize, FsResult<()>)> {
    let blame: Vec<u8> = indices(blamed).map(|i| i as u8).collect();
    fan_out(bricks, on, |b| {
        let blame = blame.clone();
        async move {
            b.call(|c, ctx| async move {
                match change {
                    Change::Accuse => c.mark_pending(ctx, gfid, blame, kind).await,
                    Change::TakeBack => c.retract_pending(ctx, gfid, blame, kind).await,
                }
            })
            .await
        }
    })
    .await
}
