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
    "fsync",
    "fallocate",
    "readdir",
    "statfs",
    "getxattr",
    "listxattr",
    "setxattr",
    "removexattr",
    "inodelk",
    "unlock_batch",
    "mark_pending",
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
