//! Counts and latencies of this brick's fops, for `/metrics` and `volume
//! profile`. One table per process: brickd serves one brick.

use std::sync::{Arc, OnceLock};

use telemetry::OpTable;

/// Every fop name the brick records (RPC and data connection alike: a
/// write is a write whichever way it came); anything else is "other".
const FOPS: &[&str] = &[
    "hello",
    "scope",
    "lookup",
    "getattr",
    "setattr",
    "create",
    "unlink",
    "purge",
    "rename",
    "link",
    "readlink",
    "read",
    "write",
    "append",
    "writev",
    "fsync",
    "fallocate",
    "copy_range",
    "readdir",
    "statfs",
    "getxattr",
    "listxattr",
    "setxattr",
    "removexattr",
    "inodelk",
    "unlock_batch",
    "mark_pending",
    "retract_pending",
    "getlk",
    "setlk",
    "heal_index",
    "checksums",
    "heal_entry",
    "heal_done",
    "locate",
    "heal_note",
    "quota_usage",
    "quota_elsewhere",
    "top",
];

pub fn fops() -> &'static Arc<OpTable> {
    static TABLE: OnceLock<Arc<OpTable>> = OnceLock::new();
    TABLE.get_or_init(|| {
        Arc::new(OpTable::new(
            "brickfs_brick_fop",
            "Fops this brick served, by operation: time from decoding the request to its answer",
            FOPS,
        ))
    })
}

/// When the brick started serving, and the baseline `volume profile start`
/// took (kept in memory: a restarted brick reports no interval).
struct Profile {
    booted: std::time::Instant,
    baseline: std::sync::Mutex<Option<(std::time::Instant, Vec<telemetry::OpSnapshot>)>>,
}

fn profile_state() -> &'static Profile {
    static STATE: OnceLock<Profile> = OnceLock::new();
    STATE.get_or_init(|| Profile {
        booted: std::time::Instant::now(),
        baseline: std::sync::Mutex::new(None),
    })
}

/// Called when the brick starts serving, so uptime counts from then.
pub fn mark_started() {
    let _ = profile_state();
}

fn wire(s: telemetry::OpSnapshot) -> proto::FopStat {
    proto::FopStat {
        op: s.op,
        count: s.count,
        errors: s.errors,
        sum_us: s.sum_us,
        slots: s.slots,
    }
}

/// `volume profile` on this brick.
pub fn profile(cmd: proto::ProfileCmd) -> proto::ProfileReport {
    let state = profile_state();
    let now = fops().snapshot();
    let mut baseline = state
        .baseline
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match cmd {
        proto::ProfileCmd::Start => *baseline = Some((std::time::Instant::now(), now.clone())),
        proto::ProfileCmd::Stop => *baseline = None,
        proto::ProfileCmd::Info => {}
    }
    let since_start = baseline.as_ref().map(|(at, base)| {
        let diffs = now
            .iter()
            .map(|s| s.since(base.iter().find(|b| b.op == s.op)))
            .filter(|d| d.count > 0)
            .map(wire)
            .collect();
        (at.elapsed().as_secs(), diffs)
    });
    proto::ProfileReport {
        uptime_secs: state.booted.elapsed().as_secs(),
        bucket_bounds_us: telemetry::ops::BUCKETS_US.to_vec(),
        cumulative: now.into_iter().map(wire).collect(),
        since_start,
    }
}
