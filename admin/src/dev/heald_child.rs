//! The self-heal daemon child of `brickfs dev`: `brickfs heald` (this very
//! executable) for the dev volume's bricks, logging to `logs/heald.log`.
//!
//! It is started once the bricks are up and before the mount, stopped after
//! the mount and before the bricks, and never restarted: if it exits,
//! `brickfs dev` warns and the volume goes on without self-heal.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use tracing::warn;

use super::children::{detach_from_terminal, open_log, store_command, terminate};
use super::{IoContext, Result};

/// Starts `brickfs [--log-level L] --store URL heald VOLUME`: bricks,
/// timeouts and retries come from the volume in the store, and follow it.
pub fn start(store_url: &str, volume: &str, log_level: Option<&str>, log: &Path) -> Result<Child> {
    let exe = std::env::current_exe().ctx(|| "finding the brickfs executable".into())?;
    let out = open_log(log)?;
    let err = out
        .try_clone()
        .ctx(|| format!("cloning {}", log.display()))?;
    let mut cmd = store_command(&exe, log_level, store_url);
    cmd.arg("heald")
        .arg(volume)
        .args(super::children::metrics_args("heald"));
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    detach_from_terminal(&mut cmd);
    cmd.spawn()
        .ctx(|| format!("starting {} heald", exe.display()))
}

/// SIGTERM, then SIGKILL after `grace`.
pub fn stop(child: &mut Child, grace: Duration) {
    if terminate(child, grace).is_none() {
        warn!("heald (pid {}) ignored SIGTERM; killed it", child.id());
    }
}
