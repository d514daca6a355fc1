//! UNSTABLE writes answered from the gateway's memory: the client stack's
//! write-behind under the NFS program, when `--write-behind-mib` asks for
//! it (off by default: see the flag's help for why).
//!
//! NFSv3 lets a server answer a WRITE sent UNSTABLE before the data is
//! safe, as long as the client can tell when it was not: COMMIT returns
//! only once every earlier write of the file is applied by a quorum of
//! bricks and fsync'ed, and reports a write that failed on the way; the
//! write verifier changes with every gateway start, so a client whose
//! gateway died before its COMMIT sees another verifier and sends its
//! uncommitted writes again (`nfs.rs`). FILE_SYNC and DATA_SYNC writes are
//! answered after the same drain and fsync. Reads, SETATTR and NLM unlocks
//! of the file wait for its queued writes first (the write-behind layer's
//! own rules), so what one client wrote is what every client of this
//! gateway reads, and the next lock holder sees it.
//!
//! Memory: the queued bytes are bounded by the window; the per-file
//! records, which a mount drops at close, are dropped here once a file's
//! writes are all answered and it was not written for [`IDLE_FOR`]
//! (NFS has no close). A file whose write failed behind is kept for
//! [`FAILED_FOR`] so that its COMMIT or next WRITE reports it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use client::layer::Layer;
use client::write_behind::{Window, WriteBehind};
use tracing::debug;

/// How long a file's record outlives its last write.
pub const IDLE_FOR: Duration = Duration::from_secs(10);
/// How long a failure no COMMIT or WRITE reported yet is kept.
pub const FAILED_FOR: Duration = Duration::from_secs(120);
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Write-behind over `below` with a window of `mib` MiB (none for 0), and
/// the task that forgets idle files for as long as it lives.
pub fn start(below: Arc<dyn Layer>, mib: u32) -> Option<Arc<WriteBehind>> {
    if mib == 0 {
        return None;
    }
    let wb = WriteBehind::new(below, Window::of(mib as usize * (1 << 20)));
    tokio::spawn(sweep(Arc::downgrade(&wb)));
    Some(wb)
}

async fn sweep(wb: Weak<WriteBehind>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(wb) = wb.upgrade() else {
            return;
        };
        let before = wb.files_known();
        if before == 0 {
            continue;
        }
        let left = wb.forget_idle(IDLE_FOR, FAILED_FOR);
        if left != before {
            debug!(forgotten = before - left, left, "idle files written behind");
        }
    }
}
