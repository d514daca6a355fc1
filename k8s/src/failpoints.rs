//! Failpoints between every two steps that change something outside the
//! process (the management API, the Kubernetes API), so crash tests can
//! kill the provisioner at each of them. They exist only with the
//! `failpoints` feature; `brickfs-provisioner-failpoints` arms them from
//! `FAILPOINTS="provision::after_subvolume=kill"` at start. `kill` is a
//! SIGKILL of the process (no unwinding, nothing flushed); other actions
//! are the `fail` crate's. Unknown names are refused at start.

/// Every failpoint; the crash test kills the provisioner at each in turn.
pub const ALL: &[&str] = &[
    // the sub-volume is made, the PV not yet
    "provision::after_subvolume",
    // the PV is made, the success Event not yet written
    "provision::after_pv",
    // the sub-volume is resized, the PV's capacity not yet
    "expand::after_subvolume",
    // the PV's capacity is raised, the claim's status not yet
    "expand::after_pv",
    // the sub-volume is deleted or archived, the PV not yet deleted
    "reclaim::after_subvolume",
];

macro_rules! failpoint {
    ($name:literal) => {{
        #[cfg(feature = "failpoints")]
        $crate::failpoints::hit($name);
    }};
}
pub(crate) use failpoint;

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    debug_assert!(ALL.contains(&name), "failpoint {name} not in ALL");
    fail::fail_point!(name);
}

/// Arms what `FAILPOINTS` names (`NAME=ACTION;…`).
#[cfg(feature = "failpoints")]
pub fn arm_from_env() -> Result<Vec<String>, String> {
    supervise::failpoints::arm_from_env(ALL)
}
