//! The management API child of `brickfs dev`: `brickfs-api` on a free
//! loopback port, logging to `logs/api.log`, with an admin tenant whose
//! token is in `D/admin.token` (made on the first run, kept after).
//!
//! Started after the gateway, stopped before it; never restarted: if it
//! exits, `brickfs dev` warns with its log tail and goes on without it.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use tracing::{info, warn};

use super::children::{spawn_listening, store_command, terminate};
use super::Result;
use crate::error::{Error, IoContext};

const ADMIN: &str = "admin";

/// Starts `brickfs-api [--log-level L] --store URL --listen 127.0.0.1:0`
/// and waits for its `LISTENING` line.
pub fn start(
    bin: &Path,
    store_url: &str,
    log_level: Option<&str>,
    log: &Path,
    timeout: Duration,
) -> Result<(Child, SocketAddr)> {
    let mut cmd = store_command(bin, log_level, store_url);
    cmd.args(["--listen", "127.0.0.1:0"])
        .args(super::children::metrics_args("api"));
    spawn_listening(&mut cmd, log, timeout)
}

/// SIGTERM, then SIGKILL after `grace`.
pub fn stop(child: &mut Child, grace: Duration) {
    if terminate(child, grace).is_none() {
        warn!(
            "brickfs-api (pid {}) ignored SIGTERM; killed it",
            child.id()
        );
    }
}

/// Makes the admin tenant and writes its token to `token_file` (0600),
/// unless that file exists. A tenant left without its file (the file was
/// removed) gets a new token: the old one is unrecoverable by design.
pub fn ensure_admin_token(store_url: &str, token_file: &Path) -> Result<()> {
    if token_file.exists() {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ctx(|| "starting the tokio runtime".into())?;
    let token = rt.block_on(async {
        let store = store::open(store_url)
            .await
            .map_err(|e| Error::Msg(e.to_string()))?;
        let store = store.as_ref();
        let fail = |e: tenant::TenantError| Error::Msg(format!("admin tenant: {e}"));
        match tenant::create(store, ADMIN, Vec::new(), true).await {
            Ok((_, token)) => Ok(token),
            Err(tenant::TenantError::Exists(_)) => {
                tenant::revoke(store, ADMIN).await.map_err(fail)?;
                let (_, token) = tenant::create(store, ADMIN, Vec::new(), true)
                    .await
                    .map_err(fail)?;
                Ok(token)
            }
            Err(e) => Err(fail(e)),
        }
    })?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(token_file)
        .ctx(|| format!("creating {}", token_file.display()))?;
    writeln!(f, "{token}").ctx(|| format!("writing {}", token_file.display()))?;
    info!(file = %token_file.display(), "admin token made");
    Ok(())
}
