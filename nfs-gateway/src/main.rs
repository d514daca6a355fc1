//! `brickfs-nfs`: connects to the bricks of a volume and serves it over
//! NFSv3 (with MOUNT v3, NLM v4, NSM and portmap v2 on the same port) until
//! SIGINT/SIGTERM. Announces `LISTENING <addr>` on stdout once it serves.
//! Exit 0 after a clean stop, 1 on any failure.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use nfs_gateway::exports::Exports;
use nfs_gateway::nlm::{self, LockManager};
use nfs_gateway::nsm::state_dir::StateDir;
use nfs_gateway::server::Listeners;
use nfs_gateway::{handles, rpcbind, server, tenancy, Gateway, GatewayError};
use tokio::net::{TcpListener, UdpSocket};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};
use volume::args::{BricksArgs, StoreArg, VolumeFlag};

/// Serve a brickfs volume over NFSv3, with NLM locks.
///
/// brickfs-nfs --store URL VOLUME   (or BRICKFS_STORE=URL)
/// brickfs-nfs --bricks A,B,C VOLUME
///
/// NFS, MOUNT, the lock manager (NLM v4, NSM) and portmap all answer on the
/// one port of --listen (TCP; NSM and portmap also over UDP), e.g.
///
///   mount -t nfs -o vers=3,tcp,port=2049,mountport=2049,mountproto=tcp HOST:/VOLUME /mnt
///
/// Locks: a client's lockd finds NLM through port 111 of this host, which
/// has no mount option. By default the gateway registers with the rpcbind
/// answering on 127.0.0.1:111 if one runs (--rpcbind-register), and
/// otherwise answers portmap on port 111 of the --listen address itself
/// (--portmap-listen); if neither works it says so and clients must mount
/// with nolock (locks then stay local to each client). --no-portmap: neither.
/// NFS locks and FUSE clients' fcntl locks exclude each other.
///
/// After a restart the client hosts that held locks (recorded in
/// --state-dir) are told by SM_NOTIFY, and for --grace seconds only their
/// reclaims are granted. A client host holding locks is probed every
/// --nlm-probe-every seconds; one silent for --nlm-host-timeout seconds
/// loses its locks.
///
/// The whole volume is exported as /VOLUME; clients may mount any directory
/// below it. Logs go to stderr; RUST_LOG, if set, overrides --log-level.
#[derive(Parser, Debug)]
#[command(
    name = "brickfs-nfs",
    version,
    verbatim_doc_comment,
    args_override_self = true
)]
struct Args {
    #[command(flatten)]
    store: StoreArg,

    #[command(flatten)]
    bricks: BricksArgs,

    #[command(flatten)]
    volume_flag: VolumeFlag,

    #[command(flatten)]
    tls: tls::TlsArgs,

    #[command(flatten)]
    metrics: telemetry::MetricsArgs,

    /// The volume to serve, exported as /VOLUME.
    #[arg(value_name = "VOLUME")]
    volume: Option<String>,

    /// Address to serve NFS, MOUNT, NLM, NSM and portmap on; port 0 picks a
    /// free port.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:2049")]
    listen: String,

    /// Also answer portmap (TCP and UDP) on ADDR, e.g. 0.0.0.0:111, pointing
    /// clients at the --listen port (repeatable).
    #[arg(long, value_name = "ADDR", conflicts_with = "no_portmap")]
    portmap_listen: Vec<SocketAddr>,

    /// Register NFS, MOUNT, NLM and NSM with the rpcbind at ADDR (default
    /// 127.0.0.1:111; --rpcbind-register=ADDR for another) at start, and
    /// unregister at stop.
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = rpcbind::DEFAULT,
        conflicts_with = "no_portmap"
    )]
    rpcbind_register: Option<SocketAddr>,

    /// Neither serve portmap on port 111 nor register with rpcbind (clients
    /// then need nolock, or another way to find NLM).
    #[arg(long)]
    no_portmap: bool,

    /// Where the lock manager keeps its NSM state number and the client
    /// hosts to notify after a restart [default: /var/lib/brickfs/nfs/VOLUME].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Grace period after a restart with hosts to notify: only lock
    /// reclaims are granted for this long (0: none).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_grace)]
    grace: Duration,

    /// How often client hosts holding locks are probed (NLM NULL).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = volgen::secs::parse_retry)]
    nlm_probe_every: Duration,

    /// A client host holding locks that answers nothing for this long loses
    /// its locks (0: never).
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = parse_host_timeout)]
    nlm_host_timeout: Duration,

    /// The port client hosts' portmappers answer on, for GRANTED callbacks,
    /// probes and SM_NOTIFY (tests serve a fake one elsewhere).
    #[arg(long, value_name = "PORT", default_value_t = 111)]
    callback_rpcbind_port: u16,

    /// Rules for a sub-tree, repeatable: PATH[,ro][,root_squash][,allow=CIDR[+CIDR...]],
    /// e.g. /gv0/pvc-1,ro,allow=10.0.0.0/8+192.168.1.7. A mount falls under the rule
    /// with the longest matching path; /VOLUME itself is read-write for everyone
    /// unless a rule for it says otherwise.
    #[arg(long = "export", value_name = "SPEC")]
    exports: Vec<String>,

    /// MiB of data from UNSTABLE WRITEs this gateway may hold before the
    /// bricks have it (write-behind; 0, the default, writes through: every
    /// WRITE is answered once a quorum of bricks applied it). With it such
    /// a WRITE is answered once queued here, and COMMIT waits until a
    /// quorum applied and fsync'ed every earlier write of the file and
    /// reports any that failed, as NFS servers do; the write verifier
    /// changes at every start, so clients that COMMIT resend what a
    /// gateway that died held. Clients that never COMMIT (libnfs's nfs-cp)
    /// lose what a killed gateway held, and libnfs keeps several WRITEs in
    /// flight anyway: measured, it gained nothing there. One file may hold
    /// a quarter of it (at least 4 MiB).
    #[arg(long, env = "BRICKFS_NFS_WRITE_BEHIND_MIB", value_name = "MIB", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=4096))]
    write_behind_mib: u32,

    /// Log filter: error, warn, info (default), debug, trace, or a tracing
    /// directive such as "nfs_gateway=debug,info".
    #[arg(long, env = "BRICKFS_LOG_LEVEL", value_name = "LEVEL")]
    log_level: Option<String>,
}

fn parse_grace(s: &str) -> Result<Duration, String> {
    volgen::secs::Rule {
        zero_ok: true,
        max_secs: 3_600,
    }
    .parse(s)
}

fn parse_host_timeout(s: &str) -> Result<Duration, String> {
    volgen::secs::Rule {
        zero_ok: true,
        max_secs: 86_400,
    }
    .parse(s)
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("volume name {0:?} must be a plain name (not empty, no '/')")]
    BadVolume(String),
    #[error(transparent)]
    Open(#[from] volume::OpenError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("the cluster store: {0}")]
    Store(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
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
    args.tls.install(tls::Role::Gateway)?;
    let source = args.bricks.source(args.store.store.as_deref(), &name)?;
    let exports = Exports::parse(&name, &args.exports)?;
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/var/lib/brickfs/nfs").join(&name));
    let state_dir = StateDir::open(&state_dir)?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(io_error(format!("cannot listen on {}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(io_error("local address of the listener"))?;
    let mut listeners = Listeners::tcp(listener);
    // NSM and portmap over UDP on the same port, for sm-notify; without
    // it (the port is taken for UDP) only TCP is advertised.
    match UdpSocket::bind(addr).await {
        Ok(u) => listeners.udp = Some(u),
        Err(e) => {
            warn!(%addr, error = %e, "cannot serve UDP on the gateway's port; NSM and portmap over TCP only")
        }
    }
    let register = portmap_plan(&args, addr, &mut listeners).await?;
    // Installed before the announcement, so a stop right after it is a
    // clean stop rather than the default action.
    let mut term = signal(SignalKind::terminate()).map_err(io_error("SIGTERM handler"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io_error("SIGINT handler"))?;

    // From the store the volume is followed: options apply live and a
    // change of bricks switches to a new graph.
    let mut opened = volume::open(&source, Box::new(|_, _| {})).await?;
    let cfg = nlm::Config {
        grace: args.grace,
        probe_every: args.nlm_probe_every,
        host_timeout: (!args.nlm_host_timeout.is_zero()).then_some(args.nlm_host_timeout),
        rpcbind_port: args.callback_rpcbind_port,
        call_timeout: Duration::from_secs(5),
    };
    info!(
        state_dir = %state_dir.path().display(),
        grace_secs = cfg.grace.as_secs_f64(),
        probe_every_secs = cfg.probe_every.as_secs_f64(),
        host_timeout_secs = args.nlm_host_timeout.as_secs_f64(),
        "lock manager"
    );
    // The store, when the volume comes from one: the cluster's handle key
    // and the tenants' exports are read from it.
    let store = match &source {
        volume::Source::Store { url, .. } => Some(
            store::open(url)
                .await
                .map_err(|e| StartError::Store(e.to_string()))?,
        ),
        _ => None,
    };
    let handle_key = match &store {
        Some(s) => handles::handle_key::from_store(s.as_ref()).await,
        None => handles::handle_key::from_dir(state_dir.path()),
    }
    .map_err(StartError::Store)?;
    let ops = client::stats::table(
        "brickfs_nfs_op",
        "Calls of the NFS gateway (NFS, MOUNT and NLM) into the client stack, by operation",
    );
    let write_behind = nfs_gateway::unstable::start(opened.layer.clone(), args.write_behind_mib);
    let below: Arc<dyn client::layer::Layer> = match &write_behind {
        Some(wb) => wb.clone(),
        None => opened.layer.clone(),
    };
    let layer: Arc<dyn client::layer::Layer> = client::stats::Stats::new(below, ops.clone());
    let mut metrics = telemetry::Metrics::new("brickfs-nfs").ops(ops);
    if let Some(wb) = &write_behind {
        let (queued, known) = (wb.clone(), wb.clone());
        metrics = metrics
            .gauge(
                "brickfs_nfs_write_behind_bytes",
                "Bytes of UNSTABLE writes queued here and not yet applied by the bricks",
                move || i64::try_from(queued.queued_bytes()).unwrap_or(i64::MAX),
            )
            .gauge(
                "brickfs_nfs_write_behind_files",
                "Files written lately whose write-behind records this gateway keeps",
                move || i64::try_from(known.files_known()).unwrap_or(i64::MAX),
            );
    }
    telemetry::start(&args.metrics, metrics)
        .await
        .map_err(io_error("metrics"))?;
    info!(
        window_mib = args.write_behind_mib,
        "UNSTABLE writes {}",
        if write_behind.is_some() {
            "answered once queued; COMMIT waits for the bricks"
        } else {
            "answered once a quorum of bricks applied them"
        }
    );
    let locks = LockManager::new(layer.clone(), cfg, Some(state_dir))?;
    let gw = Arc::new(Gateway::new(
        layer,
        &name,
        handle_key,
        exports,
        locks.clone(),
    ));
    if let Some(store) = store {
        let table = tenancy::load(store.as_ref(), &name)
            .await
            .map_err(StartError::Store)?;
        info!(
            tenants = table.tenants(),
            subvolumes = table.subvolumes(),
            "tenant exports: each tenant's sub-volumes only to its networks"
        );
        gw.tenancy.set(table);
        tokio::spawn(tenancy::refresh(gw.tenancy.clone(), store, name.clone()));
    }
    let registered = match register {
        Some(at) => match rpcbind::register(at, &listeners.served()?).await {
            Ok(done) => Some((at, done)),
            Err(e) => {
                warn!(%at, error = %e, "cannot register with rpcbind: NFS clients will not find the lock manager (mount with nolock)");
                None
            }
        },
        None => None,
    };

    let mut out = std::io::stdout().lock();
    writeln!(out, "LISTENING {addr}")
        .and_then(|()| out.flush())
        .map_err(io_error("write stdout"))?;
    drop(out);
    announce(&gw, addr);
    locks.start();

    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    };
    server::serve(gw, listeners, shutdown).await?;
    if let Some((at, done)) = registered {
        rpcbind::unregister(at, &done, addr.port()).await;
    }
    if let Some(wb) = &write_behind {
        // What clients wrote UNSTABLE and did not COMMIT yet still goes
        // to the bricks before the connections close.
        wb.close_queue().await;
    }
    opened.close().await;
    info!("stopped");
    Ok(())
}

/// How clients' lockds will find us: the rpcbind to register with, or
/// portmap listeners added to `listeners`. By default (neither flag): the
/// host's rpcbind if one answers on 127.0.0.1:111, else our own portmap on
/// port 111 of the --listen address, else a warning.
async fn portmap_plan(
    args: &Args,
    addr: SocketAddr,
    listeners: &mut Listeners,
) -> Result<Option<SocketAddr>, StartError> {
    if args.no_portmap {
        return Ok(None);
    }
    for at in &args.portmap_listen {
        let (tcp, udp) = bind_portmap(*at).await?;
        listeners.portmap_tcp.push(tcp);
        listeners.portmap_udp.push(udp);
        info!(%at, "serving portmap");
    }
    if args.rpcbind_register.is_some() || !args.portmap_listen.is_empty() {
        return Ok(args.rpcbind_register);
    }
    let default_rpcbind = SocketAddr::from(([127, 0, 0, 1], 111));
    if rpcbind::answers(default_rpcbind).await {
        info!(at = %default_rpcbind, "an rpcbind runs here: registering with it");
        return Ok(Some(default_rpcbind));
    }
    let at = SocketAddr::new(addr.ip(), 111);
    match bind_portmap(at).await {
        Ok((tcp, udp)) => {
            info!(%at, "serving portmap (no rpcbind runs here)");
            listeners.portmap_tcp.push(tcp);
            listeners.portmap_udp.push(udp);
        }
        Err(e) => warn!(
            "{e}: NFS clients will not find the lock manager (mount with nolock, or give --portmap-listen or --rpcbind-register)"
        ),
    }
    Ok(None)
}

async fn bind_portmap(at: SocketAddr) -> Result<(TcpListener, UdpSocket), StartError> {
    let tcp = TcpListener::bind(at)
        .await
        .map_err(io_error(format!("cannot serve portmap on {at} (TCP)")))?;
    let udp = UdpSocket::bind(at)
        .await
        .map_err(io_error(format!("cannot serve portmap on {at} (UDP)")))?;
    Ok((tcp, udp))
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
        "mount with: mount -t nfs -o vers=3,tcp,port={port},mountport={port},mountproto=tcp {host}:/{volume} /mnt"
    );
    info!("libnfs URL: nfs://{host}/{volume}?version=3&nfsport={port}&mountport={port}");
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn the_command_line_is_well_formed() {
        <super::Args as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn portmap_flags() {
        let parse = |args: &[&str]| super::Args::try_parse_from(args);
        let a = parse(&["brickfs-nfs", "--rpcbind-register", "gv0"]).expect("parses");
        assert_eq!(
            a.rpcbind_register,
            Some("127.0.0.1:111".parse().expect("addr"))
        );
        assert_eq!(
            a.volume.as_deref(),
            Some("gv0"),
            "the volume is not the address"
        );
        let a = parse(&["brickfs-nfs", "--rpcbind-register=10.0.0.1:111", "gv0"]).expect("parses");
        assert_eq!(
            a.rpcbind_register,
            Some("10.0.0.1:111".parse().expect("addr"))
        );
        assert!(parse(&[
            "brickfs-nfs",
            "--no-portmap",
            "--portmap-listen",
            "0.0.0.0:111",
            "gv0"
        ])
        .is_err());
        // Later values win (the test harness gives defaults first).
        let a = parse(&["brickfs-nfs", "--grace", "60", "--grace", "5", "gv0"]).expect("parses");
        assert_eq!(a.grace, std::time::Duration::from_secs(5));
        assert!(parse(&["brickfs-nfs", "--grace", "-1", "gv0"]).is_err());
        let a = parse(&["brickfs-nfs", "--nlm-host-timeout", "0", "gv0"]).expect("parses");
        assert!(a.nlm_host_timeout.is_zero());
    }
}
