//! `brickfs-mount`: connects to the bricks of a volume, mounts it with FUSE
//! and serves it until SIGINT/SIGTERM/SIGHUP or an external unmount, then
//! unmounts cleanly. Exit 0 after a clean unmount, 1 on any failure.
//!
//! Mounted from the cluster store (`--store`), it follows the volume's spec
//! (`volgen::follow`): options apply live and a change of bricks switches
//! the mount to a new graph behind a [`client::switch::Switch`].
//!
//! Run as `mount.fuse.brickfs` (a symlink; `--install-helper`), it is the
//! mount(8) helper for `mount -t fuse.brickfs` and fstab (`helper.rs`).

mod helper;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use client::{Layer, StackConfig};
use client_fuse::{MountHandle, MountOptions};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::info;
use tracing_subscriber::EnvFilter;

/// Mount a brickfs volume with FUSE.
///
/// Runs in the foreground; stop it with Ctrl-C, SIGTERM or `umount MOUNTPOINT`.
/// Logs go to stderr; RUST_LOG, if set, overrides --log-level.
///
/// For `mount -t fuse.brickfs VOLUME DIR -o store=URL` and fstab, install
/// the mount(8) helper once: `brickfs-mount --install-helper`.
#[derive(Parser, Debug)]
#[command(name = "brickfs-mount", version)]
struct Args {
    /// Bricks of the replica set in volume order, as host:port, comma-separated
    /// (without a cluster store).
    #[arg(
        long,
        env = "BRICKFS_BRICKS",
        value_delimiter = ',',
        required_unless_present_any = ["store", "install_helper"],
        conflicts_with = "store",
        value_parser = client::cli::parse_brick
    )]
    bricks: Vec<SocketAddr>,

    /// Cluster store holding the volume (file:///DIR or etcd://HOST:PORT):
    /// the bricks, their identities and the volume's options come from the
    /// spec there, and only a started volume mounts. Then give the volume
    /// name before the mountpoint: `brickfs-mount --store URL gv0 /mnt/gv0`.
    #[arg(long, value_name = "URL")]
    store: Option<String>,

    /// Volume name, checked by every brick.
    #[arg(long, env = "BRICKFS_VOLUME", default_value = "dev")]
    volume: String,

    /// Seconds the kernel caches attributes (0 = ask every time).
    #[arg(long, value_name = "SECS", default_value = "1.0", value_parser = client::cli::parse_secs)]
    attr_timeout: Duration,

    /// Seconds the kernel caches name lookups (0 = ask every time).
    #[arg(long, value_name = "SECS", default_value = "1.0", value_parser = client::cli::parse_secs)]
    entry_timeout: Duration,

    /// Seconds one brick may take for one operation before it counts as down.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = client::cli::parse_secs)]
    op_timeout: Duration,

    /// FUSE threads reading kernel requests.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,

    /// Threads running the client stack (network I/O, replication). Few is
    /// faster on small hosts: cross-thread wake-ups cost more than the work.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    io_threads: u16,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive
    /// such as "client=debug,info".
    #[arg(
        long,
        env = "BRICKFS_LOG",
        value_name = "LEVEL",
        default_value = "info"
    )]
    log_level: String,

    /// Mount read-only: the kernel refuses every change.
    #[arg(long)]
    read_only: bool,

    /// Create the mount(8) helper DIR/mount.fuse.brickfs (default DIR:
    /// /sbin), a symlink to this binary, and exit. Then `mount -t
    /// fuse.brickfs VOLUME DIR -o store=URL` and fstab lines such as
    /// `gv0 /mnt/gv0 fuse.brickfs store=file:///var/lib/brickfs,_netdev 0 0` work.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "/sbin")]
    install_helper: Option<PathBuf>,

    /// Print `MOUNTED <pid>` on stdout once mounted, or `ERROR <why>` (the
    /// mount helper's handshake with the child it starts).
    #[arg(long, hide = true)]
    announce_mounted: bool,

    /// With --store: VOLUME MOUNTPOINT; with --bricks: MOUNTPOINT (an
    /// existing directory to mount the volume on).
    #[arg(
        num_args = 1..=2,
        required_unless_present = "install_helper",
        value_name = "[VOLUME] MOUNTPOINT"
    )]
    positional: Vec<String>,

    #[arg(skip)]
    mountpoint: PathBuf,

    #[arg(skip)]
    brick_ids: Option<Vec<proto::BrickId>>,
    #[arg(skip)]
    replica: usize,

    /// The plan the store gave, for following its changes.
    #[arg(skip)]
    plan: Option<volgen::plan::ClientPlan>,
}

/// Fills bricks, volume and timeouts from the store's spec when `--store`
/// is given, and sorts out the positional arguments.
fn resolve(mut args: Args) -> Result<Args, String> {
    let Some(url) = args.store.clone() else {
        if args.positional.len() != 1 {
            return Err("without --store give only the mountpoint (the volume is --volume)".into());
        }
        args.mountpoint = PathBuf::from(&args.positional[0]);
        return Ok(args);
    };
    let [volume, mountpoint] = args.positional.as_slice() else {
        return Err("with --store give the volume name and the mountpoint".into());
    };
    let (volume, mountpoint) = (volume.clone(), PathBuf::from(mountpoint));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    let (plan, addrs) = rt.block_on(volgen::plan::fetch(&url, &volume))?;
    args.volume = plan.volume.clone();
    args.bricks = addrs;
    args.brick_ids = Some(plan.brick_ids.clone());
    args.replica = plan.replica;
    args.attr_timeout = plan.attr_timeout;
    args.entry_timeout = plan.entry_timeout;
    args.op_timeout = plan.op_timeout;
    args.mountpoint = mountpoint;
    args.plan = Some(plan);
    Ok(args)
}

fn init_logging(level: &str) -> Result<(), String> {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => EnvFilter::try_new(level).map_err(|e| format!("--log-level {level:?}: {e}"))?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

fn main() -> ExitCode {
    if helper::invoked_as_helper() {
        return helper::main();
    }
    let args = Args::parse();
    if let Some(dir) = &args.install_helper {
        return match helper::install(dir) {
            Ok(link) => {
                println!(
                    "{} -> {}: `mount -t fuse.brickfs VOLUME DIR -o store=URL` uses it",
                    link.display(),
                    std::env::current_exe().unwrap_or_default().display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("brickfs-mount: --install-helper: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let announce = args.announce_mounted;
    let result = init_logging(&args.log_level)
        .and_then(|()| resolve(args))
        .and_then(run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("brickfs-mount: {e}");
            if announce {
                announce_line(&format!("ERROR {}", e.replace('\n', " ")));
            }
            ExitCode::FAILURE
        }
    }
}

/// One line of the mount helper's handshake on stdout.
fn announce_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Signals that end the mount. Installed before mounting, so that a signal
/// arriving at any point after the mount leads to an unmount rather than
/// the default action killing us with the mount left dead.
struct Stop {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Stop {
    fn install() -> std::io::Result<Stop> {
        Ok(Stop {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for a signal or for the session to end by itself.
    async fn wait(&mut self, handle: &MountHandle) -> &'static str {
        // The FUSE session has no async notification of its end; a cheap
        // poll of its thread is enough to exit soon after `umount`.
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => return "SIGHUP",
                _ = tick.tick() => {
                    if !handle.is_mounted() {
                        return "unmounted externally";
                    }
                }
            }
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    // Checked before connecting, so a typo fails at once.
    if !args.mountpoint.is_dir() {
        return Err(format!(
            "mountpoint {} does not exist or is not a directory",
            args.mountpoint.display()
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.io_threads))
        .enable_all()
        .thread_name("brickfs-io")
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    let mut stop = {
        let _enter = rt.enter();
        Stop::install().map_err(|e| format!("cannot install signal handlers: {e}"))?
    };

    let config = StackConfig {
        volume: args.volume.clone(),
        bricks: args.bricks.clone(),
        op_timeout: args.op_timeout,
        brick_ids: args.brick_ids.clone(),
        replica: args.replica,
        ..StackConfig::default()
    };
    let stack = rt
        .block_on(client::connect(config))
        .map_err(|e| format!("cannot connect to volume {}: {e}", args.volume))?;
    // From the store, the volume's graph may change under the mount.
    let switch = args
        .plan
        .is_some()
        .then(|| client::switch::Switch::new(stack.clone()));
    let layer: Arc<dyn Layer> = match &switch {
        Some(s) => s.clone(),
        None => stack,
    };

    let opts = MountOptions {
        volume: args.volume.clone(),
        attr_timeout: args.attr_timeout,
        entry_timeout: args.entry_timeout,
        threads: usize::from(args.threads),
        allow_other: true,
        read_only: args.read_only,
    };
    let handle = client_fuse::mount(layer.clone(), rt.handle().clone(), &args.mountpoint, &opts)
        .map_err(|e| {
            format!(
                "cannot mount volume {} at {}: {e}",
                args.volume,
                args.mountpoint.display()
            )
        })?;
    info!(
        "mounted {} at {}",
        args.volume,
        handle.mountpoint().display()
    );
    if args.announce_mounted {
        announce_line(&format!("MOUNTED {}", std::process::id()));
        // Nothing more goes to the helper, which has exited: stdout joins
        // the log, so a stray write cannot fail on a closed pipe.
        // SAFETY: plain dup2 of our own standard descriptors.
        unsafe {
            libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
        }
    }
    if let (Some(url), Some(plan), Some(switch)) = (args.store.clone(), args.plan.clone(), switch) {
        let ttls = handle.ttls();
        rt.spawn(volgen::follow::run(
            url,
            plan,
            switch,
            Box::new(move |attr, entry| ttls.set(attr, entry)),
        ));
    }

    let why = rt.block_on(stop.wait(&handle));
    info!(reason = why, "unmounting {}", handle.mountpoint().display());
    let mountpoint = handle.mountpoint().to_path_buf();
    // The runtime keeps running while unmounting, so requests in flight
    // still get their answers.
    let result = handle.unmount();
    // Locks go back with their post-op (no dirty marks left for heal).
    // The timer must be made inside the runtime.
    let _ =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), layer.close()).await });
    // Tasks still waiting (a blocking lock, a hung brick) must not hold up exit.
    rt.shutdown_timeout(Duration::from_secs(2));
    result.map_err(|e| format!("unmount of {} failed: {e}", mountpoint.display()))?;
    info!("unmounted {}", mountpoint.display());
    Ok(())
}
