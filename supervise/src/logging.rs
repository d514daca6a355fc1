//! Logging set-up every brickfs binary shares, so `--log-level` means the
//! same everywhere: the flag (or `BRICKFS_LOG_LEVEL`, through clap), else
//! the binary's default; `RUST_LOG`, when set, overrides both. Logs go to
//! stderr, coloured only on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The environment variable older `brickfs-mount` and `brickfs-nfs` read;
/// still honoured when `BRICKFS_LOG_LEVEL` is not set.
const DEPRECATED_ENV: &str = "BRICKFS_LOG";

/// Installs the global subscriber. `level` is the `--log-level` value (a
/// level such as `debug` or a directive such as `client=debug,info`).
pub fn init(level: Option<&str>, default: &str) -> Result<(), String> {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => {
            let deprecated = std::env::var(DEPRECATED_ENV).ok();
            let level = level.or(deprecated.as_deref()).unwrap_or(default);
            EnvFilter::try_new(level).map_err(|e| format!("bad --log-level {level:?}: {e}"))?
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if std::env::var_os("BRICKFS_LOG_LEVEL").is_none() && std::env::var_os(DEPRECATED_ENV).is_some()
    {
        tracing::warn!("{DEPRECATED_ENV} is deprecated: set BRICKFS_LOG_LEVEL instead");
    }
    Ok(())
}
