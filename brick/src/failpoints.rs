//! Failpoints between the steps of every operation that changes the disk,
//! so that crash tests can kill a brick at any instant of any operation
//! (see `staging` for what a kill at each point leaves and how it is
//! repaired).
//!
//! They exist only with the `failpoints` feature (the `fail` crate), which
//! nothing enables by default: `brickd` has none; `brickd-failpoints`, built
//! with `cargo build -p brick --features failpoints --bin brickd-failpoints`,
//! arms them from the environment at start:
//!
//! ```text
//! FAILPOINTS="create::after_stage=kill;rename::after_rename=kill" brickd-failpoints …
//! ```
//!
//! `kill` makes the brick SIGKILL itself the first time the point is
//! reached: no unwinding, no destructor, no buffered write — what a kill -9
//! or an OOM kill at that instant leaves. Any other action is the `fail`
//! crate's (`panic`, `sleep(100)`, `return`, `off`, …). Unknown names are
//! refused at start, so a typo in a test cannot silently test nothing.

/// Every failpoint, `<op>::after_<step>`. The crash test
/// (`tests/tests/it/crash.rs`) kills a brick at each of them in turn. `create`
/// is a regular file, `mknod` a fifo, socket or device; `truncate` is a
/// setattr that changes the size (its owner, mode and times steps are the
/// `setattr` ones).
pub const ALL: &[&str] = &[
    "create::after_dirty",
    "create::after_blame",
    "create::after_stage",
    "create::after_data",
    "create::after_owner",
    "create::after_mode",
    "create::after_xattrs",
    "create::after_gfid",
    "create::after_name",
    "create::after_index",
    "mknod::after_dirty",
    "mknod::after_blame",
    "mknod::after_stage",
    "mknod::after_owner",
    "mknod::after_mode",
    "mknod::after_xattrs",
    "mknod::after_gfid",
    "mknod::after_name",
    "mknod::after_index",
    "symlink::after_dirty",
    "symlink::after_blame",
    "symlink::after_stage",
    "symlink::after_owner",
    "symlink::after_mode",
    "symlink::after_xattrs",
    "symlink::after_gfid",
    "symlink::after_name",
    "symlink::after_index",
    "mkdir::after_dirty",
    "mkdir::after_blame",
    "mkdir::after_stage",
    "mkdir::after_owner",
    "mkdir::after_mode",
    "mkdir::after_xattrs",
    "mkdir::after_gfid",
    "mkdir::after_pointer",
    "mkdir::after_place",
    "link::after_dirty",
    "link::after_blame",
    "link::after_name",
    "unlink::after_dirty",
    "unlink::after_blame",
    "unlink::after_keep",
    "unlink::after_park",
    "unlink::after_name",
    "unlink::after_drop",
    "rmdir::after_dirty",
    "rmdir::after_blame",
    "rmdir::after_park",
    "rmdir::after_remove",
    "rmdir::after_drop",
    "rename::after_dirty",
    "rename::after_blame",
    "rename::after_stage",
    "rename::after_park",
    "rename::after_rename",
    "rename::after_pointer",
    "rename::after_drop",
    "setattr::after_dirty",
    "setattr::after_blame",
    "setattr::after_owner",
    "setattr::after_mode",
    "setattr::after_times",
    "truncate::after_dirty",
    "truncate::after_blame",
    "truncate::after_size",
    "setxattr::after_dirty",
    "setxattr::after_blame",
    "setxattr::after_set",
    "removexattr::after_dirty",
    "removexattr::after_blame",
    "removexattr::after_remove",
    "write::after_dirty",
    "write::after_blame",
    "write::after_write",
    "fallocate::after_dirty",
    "fallocate::after_blame",
    "fallocate::after_fallocate",
    "copy_range::after_dirty",
    "copy_range::after_blame",
    "copy_range::after_copy",
];

/// `failpoint!(op, "after_step")`: the failpoint `op::after_step` (`op` a
/// `&'static str` expression, the step a literal). Nothing at all without
/// the `failpoints` feature.
macro_rules! failpoint {
    ($op:expr, $step:literal) => {{
        #[cfg(feature = "failpoints")]
        $crate::failpoints::hit($op, $step);
        #[cfg(not(feature = "failpoints"))]
        let _ = $op;
    }};
}
pub(crate) use failpoint;

#[cfg(feature = "failpoints")]
static UNKNOWN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Evaluates one failpoint.
#[cfg(feature = "failpoints")]
pub fn hit(op: &str, step: &str) {
    let name = format!("{op}::{step}");
    if !ALL.contains(&name.as_str()) {
        // A point missing from ALL would never be crash-tested.
        tracing::error!(failpoint = %name, "failpoint not listed in failpoints::ALL");
        UNKNOWN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(name.clone());
    }
    fail::fail_point!(name.as_str());
}

/// Failpoints reached that `ALL` does not list (for the unit tests).
#[cfg(feature = "failpoints")]
pub fn unknown() -> Vec<String> {
    UNKNOWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Arms the failpoints `FAILPOINTS` names; returns them.
#[cfg(feature = "failpoints")]
pub fn arm_from_env() -> Result<Vec<String>, String> {
    supervise::failpoints::arm_from_env(ALL)
}
