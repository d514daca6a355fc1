//! `brickfs-nfs`: connects to the bricks of a volume and serves it over
//! NFSv3 (with MOUNT v3 and portmap v2 on the same TCP port) until
//! SIGINT/SIGTERM. Announces `LISTENING <addr>` on stdout once it serves.
//! Exit 0 after a clean stop, 1 on any failure.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use nfs_gateway::exports::Exports;
use nfs_gateway::{server, Gateway, GatewayError};
use tokio::signal::unix::{signal, SignalKind};
use tracing::info;
use volume::args::{BricksArgs, StoreArg, VolumeFlag};

/// Serve a brickfs volume over NFSv3.
///
/// brickfs-nfs --store URL VOLUME   (or BRICKFS_STORE=URL)
/// brickfs-nfs --bricks A,B,C VOLUME
///
/// NFS, MOUNT and portmap all answer on the one TCP port of --listen, so
/// clients need no rpcbind on this host: give them the port, e.g.
///
///   mount -t nfs -o vers=3,tcp,nolock,port=2049,mountport=2049,mountproto=tcp HOST:/VOLUME /mnt
///
/// The whole volume is exported as /VOLUME; clients may mount any directory
/// below it. Logs go to stderr; RUST_LOG, if set, overrides --log-level.
#[derive(Parser, Debug)]
#[command(name = "brickfs-nfs", version, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    store: StoreArg,

    #[command(flatten)]
    bricks: BricksArgs,

    #[command(flatten)]
    volume_flag: VolumeFlag,

    /// The volume to serve, exported as /VOLUME.
    #[arg(value_name = "VOLUME")]
    volume: Option<String>,

    /// Address to serve NFS, MOUNT and portmap on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:2049")]
    listen: String,

    /// Rules for a sub-tree, repeatable: PATH[,ro][,root_squash][,allow=CIDR[+CIDR...]],
    /// e.g. /gv0/pvc-1,ro,allow=10.0.0.0/8+192.168.1.7. A mount falls under the rule
    /// with the longest matching path; /VOLUME itself is read-write for everyone
    /// unless a rule for it says otherwise.
    #[arg(long = "export", value_name = "SPEC")]
    exports: Vec<String>,

    /// Log filter: error, warn, info (default), debug, trace, or a tracing
    /// directive such as "nfs_gateway=debug,info".
    #[arg(long, env = "BRICKFS_LOG_LEVEL", value_name = "LEVEL")]
    log_level: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("volume name {0:?} must be a plain name (not empty, no '/')")]
    BadVolume(String),
    #[error(transparent)]
    Open(#[from] volume::OpenError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let context = context.into();
    move |source| StartError::Gateway(GatewayError::Io { context, source })
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = supervise::logging::init(args.log_level.as_deref(), "info") {
        eprintln!("brickfs-nfs: {e}");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("brickfs-nfs")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("brickfs-nfs: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(args));
    // The client stack's background tasks (pings, lock release) have
    // nothing left to do for us; do not wait on them.
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("brickfs-nfs: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), StartError> {
    // Everything that can be checked locally fails before we wait on the
    // network.
    let name = args.volume_flag.pick(args.volume.as_deref())?;
    if proto::Name::from(name.as_str()).validate().is_err() {
        return Err(StartError::BadVolume(name));
    }
    let source = args.bricks.source(args.store.store.as_deref(), &name)?;
    let exports = Exports::parse(&name, &args.exports)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(io_error(format!("cannot listen on {}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(io_error("local address of the listener"))?;
    // Installed before the announcement, so a stop right after it is a
    // clean stop rather than the default action.
    let mut term = signal(SignalKind::terminate()).map_err(io_error("SIGTERM handler"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io_error("SIGINT handler"))?;

    // From the store the volume is followed: options apply live and a
    // change of bricks switches to a new graph.
    let mut opened = volume::open(&source, Box::new(|_, _| {})).await?;
    let gw = Arc::new(Gateway::new(opened.layer.clone(), &name, exports));

    let mut out = std::io::stdout().lock();
    writeln!(out, "LISTENING {addr}")
        .and_then(|()| out.flush())
        .map_err(io_error("write stdout"))?;
    drop(out);
    announce(&gw, addr);

    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    };
    server::serve(gw, listener, shutdown).await?;
    opened.close().await;
    info!("stopped");
    Ok(())
}

/// Logs the exports and how to mount them.
fn announce(gw: &Gateway, addr: SocketAddr) {
    for rule in gw.exports.rules() {
        let allow: Vec<String> = rule
            .allow
            .iter()
            .map(|c| format!("{}/{}", c.addr, c.prefix))
            .collect();
        info!(
            path = %rule.path,
            read_only = rule.read_only,
            root_squash = rule.root_squash,
            allow = %if allow.is_empty() { "*".to_string() } else { allow.join("+") },
            "export"
        );
    }
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "HOST".to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    let (port, volume) = (addr.port(), &gw.volume);
    info!(
        "mount with: mount -t nfs -o vers=3,tcp,nolock,port={port},mountport={port},mountproto=tcp {host}:/{volume} /mnt"
    );
    info!("libnfs URL: nfs://{host}/{volume}?version=3&nfsport={port}&mountport={port}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Args as clap::CommandFactory>::command().debug_assert();
    }
}
