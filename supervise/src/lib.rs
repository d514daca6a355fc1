//! Local process and mount plumbing shared by everything that runs brickfs
//! daemons as children (`brickfs dev`, the test harness) or watches its own
//! FUSE mount (`brickfs-mount`): the mount table, signals to our own
//! children, the `LISTENING <addr>` handshake, log tails; and the logging
//! set-up of every daemon.
//!
//! Signals only ever go to a child we spawned and have not reaped
//! (`try_wait()` is `None`), so never to a recycled pid.

pub mod children;
#[cfg(feature = "failpoints")]
pub mod failpoints;
pub mod logging;
pub mod mounts;
