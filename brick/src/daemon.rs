//! The `brickd` daemon: parses flags, binds, announces `LISTENING <addr>` on
//! stdout and serves until SIGINT/SIGTERM. In the library so that
//! `brickd-failpoints` (the same daemon built with the `failpoints` feature,
//! for crash tests) shares every line of it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Serves one brick (a directory holding a share of a volume) to brickfs clients.
#[derive(Parser, Debug)]
#[command(name = "brickd", version)]
struct Args {
    /// Brick directory; created if missing. Files stay readable as plain files.
    #[arg(long, env = "BRICKFS_DIR")]
    dir: PathBuf,
    /// Address to listen on, e.g. 0.0.0.0:24007; port 0 picks a free port.
    #[arg(long, env = "BRICKFS_LISTEN")]
    listen: String,
    /// Volume this brick belongs to; refuses to start if it belongs to another.
    #[arg(long, env = "BRICKFS_VOLUME")]
    volume: Option<String>,
    /// Log filter: error, warn, info (default), debug, trace, or a tracing
    /// directive such as "brick=debug,info"; RUST_LOG overrides it.
    #[arg(long, env = "BRICKFS_LOG_LEVEL", value_name = "LEVEL")]
    log_level: Option<String>,
    /// The management API's public keys for tenants' scope tokens
    /// [default: scope-keys.json in --tls-dir, if there]. Without them a
    /// tenant's host (certificate role tenant) is refused.
    #[arg(long, env = "BRICKFS_SCOPE_KEYS", value_name = "FILE")]
    scope_keys: Option<PathBuf>,
    #[command(flatten)]
    tls: tls::TlsArgs,
    #[command(flatten)]
    metrics: telemetry::MetricsArgs,
}

/// `main` of `brickd` and `brickd-failpoints`.
pub fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = supervise::logging::init(args.log_level.as_deref(), "info") {
        eprintln!("brickd: {e}");
        return ExitCode::FAILURE;
    }
    #[cfg(feature = "failpoints")]
    match crate::failpoints::arm_from_env() {
        Ok(armed) if !armed.is_empty() => tracing::warn!(?armed, "failpoints armed"),
        Ok(_) => {}
        Err(e) => {
            tracing::error!("FAILPOINTS: {e}");
            return ExitCode::FAILURE;
        }
    }
    #[cfg(not(feature = "failpoints"))]
    if std::env::var_os("FAILPOINTS").is_some() {
        tracing::warn!(
            "FAILPOINTS is ignored: this brickd has no failpoints (see brickd-failpoints)"
        );
    }
    // A storage daemon must not limp on with half-updated state.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    raise_fd_limit();
    // One thread runs every connection: fops are short syscalls run inline,
    // and on a host shared with other bricks and clients, cross-thread
    // wake-ups cost more than the work (measured with perf: most client and
    // brick CPU went to scheduler switches). Slow fops use the blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), crate::BrickError> {
    args.tls.install(tls::Role::Brick)?;
    let scope_keys = args.scope_keys.clone().or_else(|| {
        let default = args.tls.tls_dir.as_ref()?.join(tls::scope::VERIFY_KEYS);
        default.exists().then_some(default)
    });
    match &scope_keys {
        Some(k) => tracing::info!(keys = %k.display(), "tenants' scope tokens checked"),
        None => tracing::info!("no scope keys: tenants' hosts are refused"),
    }
    let config = crate::BrickConfig {
        dir: args.dir,
        volume: args.volume.filter(|v| !v.is_empty()),
        scope_keys,
    };
    let checked = config.clone();
    tokio::task::spawn_blocking(move || crate::check(&checked))
        .await
        .map_err(|e| crate::BrickError::Internal(e.to_string()))??;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| crate::BrickError::io(format!("bind {}", args.listen), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| crate::BrickError::io("local address", e))?;
    let metrics = telemetry::Metrics::new("brickd").ops(crate::stats::fops().clone());
    telemetry::start(&args.metrics, metrics)
        .await
        .map_err(|e| crate::BrickError::io("metrics", e))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "LISTENING {addr}")
        .and_then(|()| out.flush())
        .map_err(|e| crate::BrickError::io("write stdout", e))?;
    drop(out);
    crate::serve(listener, config, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the brick");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

/// The fd caches and client connections want more than the usual soft limit
/// of 1024 open files; the hard limit is ours to take.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open-file limit");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Args as clap::CommandFactory>::command().debug_assert();
    }
}
