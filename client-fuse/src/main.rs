//! `brickfs-mount`: connects to the bricks of a volume, mounts it with FUSE
//! and serves it until SIGINT/SIGTERM/SIGHUP or an external unmount, then
//! unmounts cleanly. Exit 0 after a clean unmount, 1 on any failure.
//!
//! The volume is opened with `volume::open`: from the cluster store
//! (`--store`) it is followed, so options apply live and a change of bricks
//! switches the mount to a new graph behind a [`client::switch::Switch`].
//!
//! Run as `mount.fuse.brickfs` (a symlink; `--install-helper`), it is the
//! mount(8) helper for `mount -t fuse.brickfs` and fstab (`helper.rs`).

mod helper;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use client_fuse::ttls::Ttls;
use client_fuse::{MountHandle, MountOptions};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::info;
use volume::args::{BricksArgs, StoreArg, VolumeFlag};

/// Mount a brickfs volume with FUSE.
///
/// brickfs-mount --store URL VOLUME MOUNTPOINT   (or BRICKFS_STORE=URL)
/// brickfs-mount --bricks A,B,C VOLUME MOUNTPOINT
///
/// Runs in the foreground; stop it with Ctrl-C, SIGTERM or `umount
/// MOUNTPOINT`. The mount is listed as type fuse.brickfs. Logs go to
/// stderr; RUST_LOG, if set, overrides --log-level.
///
/// For `mount -t fuse.brickfs VOLUME DIR -o store=URL` and fstab, install
/// the mount(8) helper once: `brickfs-mount --install-helper`.
#[derive(Parser, Debug)]
#[command(name = "brickfs-mount", version, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    store: StoreArg,

    #[command(flatten)]
    bricks: BricksArgs,

    #[command(flatten)]
    volume_flag: VolumeFlag,

    #[command(flatten)]
    tls: tls::TlsArgs,

    /// Off by default for mounts: a host may have many, each would need a
    /// port of its own.
    #[command(flatten)]
    metrics: telemetry::MetricsArgs,

    /// Seconds the kernel caches attributes (0 = ask every time) [default:
    /// the volume's performance.attr-timeout, 1]. Given here, it is fixed
    /// for this mount.
    #[arg(long, value_name = "SECS", value_parser = volgen::secs::parse_cache_time)]
    attr_timeout: Option<Duration>,

    /// Seconds the kernel caches name lookups (0 = ask every time)
    /// [default: the volume's performance.entry-timeout, 1]. Given here, it
    /// is fixed for this mount.
    #[arg(long, value_name = "SECS", value_parser = volgen::secs::parse_cache_time)]
    entry_timeout: Option<Duration>,

    /// FUSE threads reading kernel requests.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,

    /// Threads running the client stack (network I/O, replication). Few is
    /// faster on small hosts: cross-thread wake-ups cost more than the work.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    io_threads: u16,

    /// MiB of written data this mount may hold before the bricks have it
    /// (write-behind): a write returns once its data is queued here, and
    /// close, fsync and unlock wait until a quorum of bricks applied it and
    /// report any failure. One file may hold a quarter of it (at least
    /// 4 MiB). A file created in a directory this mount just made goes to
    /// the bricks with its first bytes, in one round trip, at its first
    /// write or close (at the latest a fraction of a second later). 0
    /// writes through: every write and create waits for the bricks.
    #[arg(long, env = "BRICKFS_WRITE_BEHIND_MIB", value_name = "MIB", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(0..=4096))]
    write_behind_mib: u32,

    /// Log filter: error, warn, info (default), debug, trace, or a tracing
    /// directive such as "client=debug,info".
    #[arg(long, env = "BRICKFS_LOG_LEVEL", value_name = "LEVEL")]
    log_level: Option<String>,

    /// Mount read-only: the kernel refuses every change.
    #[arg(long)]
    read_only: bool,

    /// Most inodes this mount lets the kernel hold (about 180 bytes each
    /// here). Past it the kernel is asked to drop the names of the least
    /// recently used files no process holds open (a later use looks them up
    /// again); directories are kept. 0: no limit, memory then grows with
    /// every file the kernel keeps cached.
    #[arg(long, env = "BRICKFS_INODE_LIMIT", value_name = "N",
          default_value_t = client_fuse::DEFAULT_INODE_LIMIT)]
    inode_limit: usize,

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

    /// VOLUME MOUNTPOINT (an existing directory to mount the volume on);
    /// with the deprecated --volume, MOUNTPOINT alone.
    #[arg(
        num_args = 1..=2,
        required_unless_present = "install_helper",
        value_name = "VOLUME MOUNTPOINT"
    )]
    positional: Vec<String>,
}

impl Args {
    /// The volume source, the directory of it to mount (`VOLUME/SUBDIR`:
    /// one sub-volume; empty: the whole volume) and the mountpoint.
    fn target(&self) -> Result<(volume::Source, String, PathBuf), String> {
        let (name, mountpoint) = match self.positional.as_slice() {
            [volume, mountpoint] => (Some(volume.as_str()), mountpoint),
            [mountpoint] => (None, mountpoint),
            _ => return Err("give the volume name and the mountpoint".into()),
        };
        let name = self.volume_flag.pick(name).map_err(|e| e.to_string())?;
        let (name, subdir) = match name.split_once('/') {
            Some((v, sub)) => (v.to_string(), sub.trim_matches('/').to_string()),
            None => (name, String::new()),
        };
        let source = self
            .bricks
            .source(self.store.store.as_deref(), &name)
            .map_err(|e| e.to_string())?;
        Ok((source, subdir, PathBuf::from(mountpoint)))
    }
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
    let result =
        supervise::logging::init(args.log_level.as_deref(), "info").and_then(|()| run(args));
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

const MIB: usize = 1 << 20;

fn run(args: Args) -> Result<(), String> {
    args.tls
        .install(tls::Role::Client)
        .map_err(|e| e.to_string())?;
    let (source, subdir, mountpoint) = args.target()?;
    // Checked before connecting, so a typo fails at once.
    if !mountpoint.is_dir() {
        return Err(format!(
            "mountpoint {} does not exist or is not a directory",
            mountpoint.display()
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

    // The kernel's cache times: the volume's (as they change), unless a
    // flag fixed them for this mount.
    let ttls = Arc::new(Ttls::new(Duration::ZERO, Duration::ZERO));
    let on_cache_times: volume::OnCacheTimes = {
        let ttls = ttls.clone();
        let (fixed_attr, fixed_entry) = (args.attr_timeout, args.entry_timeout);
        Box::new(move |attr, entry| {
            ttls.set(fixed_attr.unwrap_or(attr), fixed_entry.unwrap_or(entry));
        })
    };
    // Holding a create for the file's first bytes is write-behind too.
    client::set_hold_creates(args.write_behind_mib > 0);
    let mut opened = rt
        .block_on(volume::open(&source, on_cache_times))
        .map_err(|e| e.to_string())?;
    let mut volume_name = opened.plan.volume.clone();
    let ops = client::stats::table(
        "brickfs_mount_op",
        "Calls of the FUSE front-end into the client stack, by operation",
    );
    let mut below: Arc<dyn client::layer::Layer> = opened.layer.clone();
    let write_behind = (args.write_behind_mib > 0).then(|| {
        let window = client::write_behind::Window::of(args.write_behind_mib as usize * MIB);
        client::write_behind::WriteBehind::new(below.clone(), window)
    });
    if let Some(wb) = &write_behind {
        below = wb.clone();
    }
    let mut layer: Arc<dyn client::layer::Layer> = client::stats::Stats::new(below, ops.clone());
    let inodes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let known = inodes.clone();
    let limit = i64::try_from(args.inode_limit).unwrap_or(i64::MAX);
    let metrics = telemetry::Metrics::new("brickfs-mount")
        .ops(ops)
        .gauge(
            "brickfs_mount_inodes",
            "Inodes the kernel holds through this mount",
            move || {
                i64::try_from(known.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(i64::MAX)
            },
        )
        .gauge(
            "brickfs_mount_inode_limit",
            "Inodes past which the kernel is asked to drop names (0: none)",
            move || limit,
        );
    rt.block_on(telemetry::start(&args.metrics, metrics))
        .map_err(|e| e.to_string())?;
    if !subdir.is_empty() {
        let top = rt
            .block_on(client::subtree::Subtree::resolve(&layer, &subdir))
            .map_err(|e| format!("cannot mount {volume_name}/{subdir}: {e}"))?;
        if top.kind != proto::FileKind::Dir {
            return Err(format!("{volume_name}/{subdir} is not a directory"));
        }
        layer = client::subtree::Subtree::new(layer, top.gfid);
        volume_name = format!("{volume_name}/{subdir}");
    }

    let opts = MountOptions {
        volume: volume_name.clone(),
        ttls,
        threads: usize::from(args.threads),
        allow_other: true,
        read_only: args.read_only,
        inode_limit: args.inode_limit,
        inodes,
    };
    let handle =
        client_fuse::mount(layer, rt.handle().clone(), &mountpoint, &opts).map_err(|e| {
            format!(
                "cannot mount volume {volume_name} at {}: {e}",
                mountpoint.display()
            )
        })?;
    info!("mounted {volume_name} at {}", handle.mountpoint().display());
    if args.announce_mounted {
        announce_line(&format!("MOUNTED {}", std::process::id()));
        // Nothing more goes to the helper, which has exited: stdout joins
        // the log, so a stray write cannot fail on a closed pipe.
        // SAFETY: plain dup2 of our own standard descriptors.
        unsafe {
            libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
        }
    }

    let why = rt.block_on(stop.wait(&handle));
    info!(reason = why, "unmounting {}", handle.mountpoint().display());
    let mountpoint = handle.mountpoint().to_path_buf();
    // The runtime keeps running while unmounting, so requests in flight
    // still get their answers.
    let result = handle.unmount();
    if let Some(wb) = &write_behind {
        // Writes of files still open at the unmount (a lazy one) go out
        // before the connections close.
        rt.block_on(wb.close_queue());
    }
    rt.block_on(opened.close());
    // Tasks still waiting (a blocking lock, a hung brick) must not hold up exit.
    rt.shutdown_timeout(Duration::from_secs(2));
    result.map_err(|e| format!("unmount of {} failed: {e}", mountpoint.display()))?;
    info!("unmounted {}", mountpoint.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Args as clap::CommandFactory>::command().debug_assert();
    }
}
