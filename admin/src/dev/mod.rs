//! `brickfs dev`: a replica-3 volume "dev" on this host, in the foreground.
//!
//! Starts 3 `brickd` children per replica set (`--replica-sets N`, default
//! 1; dirs `D/brick1..3N`, loopback, port 0), registers volume `dev`
//! (current brick addresses and UUIDs, started) in a file cluster store in
//! `D/store` (`dev/registry.rs`), then starts the self-heal daemon
//! (`brickfs heald`, this executable, log `D/logs/heald.log`), then the NFS
//! gateway (`brickfs-nfs`, loopback, port 0, log `D/logs/nfs.log`), then
//! the management API (`brickfs-api`, loopback, port 0, log
//! `D/logs/api.log`, an admin tenant's token in `D/admin.token`), mounts
//! the volume with `brickfs-mount` at `M` (with one set they are given the
//! bricks; with several, the store, so they serve all sets), records all of it in
//! `D/cluster.json` (with `"store": "file://D/store"`, the store URL for
//! `brickfs --store URL volume info|status|heal dev ...`, and `"nfs":
//! "127.0.0.1:PORT"`, where the gateway serves NFSv3 and MOUNT) and then
//! only watches: a brick that dies is reported and marked down but never
//! restarted (tests kill bricks on purpose and restart them with the `cmd`
//! from cluster.json); a heald or gateway that exits is reported with its
//! log tail and not restarted either (the volume goes on without self-heal
//! or without NFS). Ctrl-C / SIGTERM unmounts first, then stops the
//! gateway, then heald, then the bricks; the data stays in `D` for the next
//! run.
//!
//! Why the order: the mount must go before the bricks, or the kernel would
//! still route requests to a client whose bricks are gone; the gateway is a
//! client of the bricks too and goes before them for the same reason (NFS
//! clients of it then see a refused connection, not hung requests); heald
//! stops before the bricks so that it lets go of its locks while they can
//! still be released, rather than seeing its bricks vanish in the middle of
//! a heal.

mod api_child;
mod children;
mod cluster_file;
mod heald_child;
mod nfs_child;
mod registry;

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{error, info, warn};

use crate::error::{Error, IoContext, Result};

use children::{
    find_binary, is_mounted, log_tail, open_log, signal, spawn_listening, store_command, terminate,
    umount_detach,
};
use cluster_file::{BrickEntry, ClusterFile};

const VOLUME: &str = "dev";
/// Bricks per replica set.
const REPLICA: usize = volgen::spec::REPLICA as usize;
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Directory holding the bricks (brick1..3, brick1..3N with
    /// --replica-sets N), the store, logs/ and cluster.json.
    /// Re-using it keeps the data of earlier runs.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "./brickfs-dev",
        env = "BRICKFS_DEV_STATE_DIR"
    )]
    state_dir: PathBuf,

    /// Where to mount the volume (default: <state-dir>/mnt).
    #[arg(long, value_name = "DIR")]
    mount: Option<PathBuf>,

    /// Seconds one brick may take for one operation before the clients
    /// count it as down (how long a hung brick can delay an operation):
    /// set as the dev volume's network.op-timeout.
    #[arg(long, value_name = "SECS", value_parser = volgen::secs::parse_timeout)]
    op_timeout: Option<Duration>,

    /// Replica sets of the volume (3 bricks each): 2 makes a 2 x 3
    /// Distributed-Replicate volume of 6 bricks. A state dir keeps its sets:
    /// a larger N adds sets (then `volume rebalance dev start`), a smaller
    /// one is refused.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=16))]
    replica_sets: u8,

    /// Plaintext between the processes, no certificates. By default the
    /// dev cluster runs mutual TLS with a CA and one certificate per role
    /// in <state-dir>/tls (made on the first run), which the other
    /// commands take with --tls-dir <state-dir>/tls.
    #[arg(long)]
    insecure: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

/// True once SIGINT, SIGTERM or SIGHUP arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe);
        // the sigaction struct is fully initialised before the call.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(Error::Io {
                context: format!("installing handler for signal {sig}"),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

struct Brick {
    name: String,
    id: String,
    child: Child,
    addr: String,
    dir: PathBuf,
    cmd: Vec<String>,
    down: bool,
}

struct Dev {
    state_dir: PathBuf,
    /// The CA and certificates; `None` with --insecure.
    tls_dir: Option<PathBuf>,
    /// Replica sets (3 bricks each).
    sets: usize,
    mount_point: PathBuf,
    log_dir: PathBuf,
    bricks: Vec<Brick>,
    /// The self-heal daemon; `None` before it starts and after it exited.
    heald: Option<Child>,
    /// The NFS gateway and where it listens; `None` before it starts and
    /// after it exited.
    nfs: Option<(Child, SocketAddr)>,
    /// The management API and where it listens, like `nfs`.
    api: Option<(Child, SocketAddr)>,
    mount: Option<Child>,
    stopped: bool,
    /// flock on D/.lock: one `brickfs dev` per state dir. Released on exit.
    _lock: File,
}

/// Runs `brickfs dev`; `log_level` is the global `--log-level`, passed on
/// to heald and the NFS gateway when given.
pub fn run(args: DevArgs, log_level: Option<&str>) -> Result<ExitCode> {
    install_signal_handlers()?;
    let brickd = find_binary("brickd")?;
    let mounter = find_binary("brickfs-mount")?;
    let gateway = find_binary("brickfs-nfs")?;
    let api = find_binary("brickfs-api")?;

    let cwd = std::env::current_dir().ctx(|| "reading the current directory".into())?;
    std::fs::create_dir_all(&args.state_dir)
        .ctx(|| format!("creating {}", args.state_dir.display()))?;
    let state_dir = cwd
        .join(&args.state_dir)
        .canonicalize()
        .ctx(|| format!("resolving {}", args.state_dir.display()))?;
    let mount_point = resolve_mount_point(&cwd, &state_dir, args.mount.as_deref())?;
    let log_dir = state_dir.join("logs");
    std::fs::create_dir_all(&log_dir).ctx(|| format!("creating {}", log_dir.display()))?;
    let lock = lock_state_dir(&state_dir)?;
    let tls_dir = if args.insecure {
        warn!("--insecure: the dev cluster's processes talk plaintext");
        children::set_security(vec!["--insecure".into()]);
        None
    } else {
        let dir = state_dir.join("tls");
        if !dir.join(tls::ca::CA_CERT).exists() {
            tls::ca::init_with_roles(&dir, &["127.0.0.1".into(), "localhost".into()])?;
            info!(dir = %dir.display(), "made a CA and a certificate per role");
        }
        children::set_security(vec!["--tls-dir".into(), dir.to_string_lossy().into_owned()]);
        Some(dir)
    };

    if is_mounted(&mount_point) {
        warn!(mount = %mount_point.display(), "stale mount from an earlier run; unmounting it (lazy)");
        umount_detach(&mount_point)?;
    }
    std::fs::create_dir_all(&mount_point).ctx(|| format!("creating {}", mount_point.display()))?;

    let mut dev = Dev {
        state_dir,
        tls_dir,
        sets: usize::from(args.replica_sets),
        mount_point,
        log_dir,
        bricks: Vec::new(),
        heald: None,
        nfs: None,
        api: None,
        mount: None,
        stopped: false,
        _lock: lock,
    };
    // From here on, an error drops `dev`, which stops whatever was started.
    for n in 1..=dev.sets * REPLICA {
        let brick = dev.start_brick(&brickd, n)?;
        info!(brick = %brick.name, addr = %brick.addr, pid = brick.child.id(), id = %brick.id, "brick up");
        dev.bricks.push(brick);
    }
    let known: Vec<(String, String)> = dev
        .bricks
        .iter()
        .map(|b| (b.addr.clone(), b.id.clone()))
        .collect();
    let sets_before = registry::register(&dev.store_dir(), VOLUME, &known, args.op_timeout)?;
    dev.start_heald(log_level)?;
    dev.start_nfs(&gateway, log_level)?;
    dev.start_api(&api, log_level)?;
    dev.start_mount(&mounter, log_level)?;
    dev.write_cluster_file()?;
    dev.print_summary();
    if sets_before > 0 && sets_before < dev.sets {
        let new = if dev.sets - sets_before == 1 {
            format!("Replica set {} is new and empty", dev.sets)
        } else {
            format!(
                "Replica sets {} to {} are new and empty",
                sets_before + 1,
                dev.sets
            )
        };
        println!(
            "{new}: `brickfs --store {} volume rebalance {VOLUME} start` spreads the files \
             over all sets.",
            dev.store_url()
        );
    }

    loop {
        for _ in 0..10 {
            if stop_requested() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if stop_requested() {
            info!("stopping: unmounting, then stopping the NFS gateway, heald and the bricks");
            dev.shutdown();
            println!(
                "brickfs dev: stopped; data kept in {}",
                dev.state_dir.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if dev.check_children()? {
            error!(
                "mount process exited; stopping the bricks. Last lines of {}:\n{}",
                dev.mount_log().display(),
                log_tail(&dev.mount_log(), 20)
            );
            dev.shutdown();
            return Ok(ExitCode::FAILURE);
        }
    }
}

/// The mount point as an absolute path, resolved through its parent only: a
/// stale FUSE mount cannot be canonicalized itself (ENOTCONN).
fn resolve_mount_point(cwd: &Path, state_dir: &Path, mount: Option<&Path>) -> Result<PathBuf> {
    let m = match mount {
        Some(m) => cwd.join(m),
        None => state_dir.join("mnt"),
    };
    let (Some(parent), Some(name)) = (m.parent(), m.file_name()) else {
        return Err(Error::Msg(format!(
            "--mount {} is not a usable directory path",
            m.display()
        )));
    };
    std::fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
    let parent = parent
        .canonicalize()
        .ctx(|| format!("resolving {}", parent.display()))?;
    Ok(parent.join(name))
}

fn lock_state_dir(state_dir: &Path) -> Result<File> {
    let path = state_dir.join(".lock");
    let f = File::create(&path).ctx(|| format!("creating {}", path.display()))?;
    // SAFETY: plain syscall on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::Msg(format!(
            "another `brickfs dev` is already using {} (see its cluster.json); \
             stop it first or pass a different --state-dir",
            state_dir.display()
        )));
    }
    Ok(f)
}

/// Reads the UUID a brick gave itself on first start. The brick writes it
/// before it listens, but allow it a moment anyway.
fn read_brick_id(dir: &Path) -> Result<String> {
    let path = dir.join(proto::PRIVATE_DIR).join("brick-id");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::read(&path) {
            Ok(bytes) => return Ok(format_brick_id(&bytes)),
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(Error::Io {
                    context: format!("reading brick id {}", path.display()),
                    source: e,
                })
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Shows the id as a UUID whether the brick stored hex, a UUID or 16 raw bytes.
fn format_brick_id(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if let Some(id) = proto::BrickId::from_hex(&text.replace('-', "")) {
        return id.to_string();
    }
    if let Ok(raw) = <[u8; 16]>::try_from(bytes) {
        return proto::BrickId(raw).to_string();
    }
    text.to_string()
}

impl Dev {
    fn mount_log(&self) -> PathBuf {
        self.log_dir.join("mount.log")
    }

    fn heald_log(&self) -> PathBuf {
        self.log_dir.join("heald.log")
    }

    fn nfs_log(&self) -> PathBuf {
        self.log_dir.join("nfs.log")
    }

    /// Where the dev volume's spec lives (a file cluster store).
    fn store_dir(&self) -> PathBuf {
        self.state_dir.join("store")
    }

    /// The URL `brickfs --store` takes to find this volume.
    fn store_url(&self) -> String {
        store::file_url(&self.store_dir())
    }

    fn start_heald(&mut self, log_level: Option<&str>) -> Result<()> {
        let child = heald_child::start(&self.store_url(), VOLUME, log_level, &self.heald_log())?;
        info!(pid = child.id(), log = %self.heald_log().display(), "heald started");
        self.heald = Some(child);
        Ok(())
    }

    fn api_log(&self) -> PathBuf {
        self.log_dir.join("api.log")
    }

    fn admin_token_file(&self) -> PathBuf {
        self.state_dir.join("admin.token")
    }

    fn start_api(&mut self, bin: &Path, log_level: Option<&str>) -> Result<()> {
        api_child::ensure_admin_token(&self.store_url(), &self.admin_token_file())?;
        let (child, addr) = api_child::start(
            bin,
            &self.store_url(),
            log_level,
            &self.api_log(),
            START_TIMEOUT,
        )?;
        info!(%addr, pid = child.id(), log = %self.api_log().display(), "management API up");
        self.api = Some((child, addr));
        Ok(())
    }

    fn start_nfs(&mut self, gateway: &Path, log_level: Option<&str>) -> Result<()> {
        let (child, addr) = nfs_child::start(
            gateway,
            &self.store_url(),
            VOLUME,
            &self.state_dir.join("nfs"),
            log_level,
            &self.nfs_log(),
            START_TIMEOUT,
        )?;
        info!(%addr, pid = child.id(), log = %self.nfs_log().display(), "NFS gateway up");
        self.nfs = Some((child, addr));
        Ok(())
    }

    fn start_brick(&self, brickd: &Path, n: usize) -> Result<Brick> {
        let name = format!("brick{n}");
        let dir = self.state_dir.join(&name);
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let log = self.log_dir.join(format!("{name}.log"));
        let metrics = children::metrics_args(&name);
        let mut cmd = Command::new(brickd);
        cmd.arg("--dir")
            .arg(&dir)
            .args(["--listen", "127.0.0.1:0", "--volume", VOLUME])
            .args(&metrics)
            .args(children::security_args());
        let (mut child, addr) = spawn_listening(&mut cmd, &log, START_TIMEOUT)?;
        let id = match read_brick_id(&dir) {
            Ok(id) => id,
            Err(e) => {
                children::kill_and_reap(&mut child);
                return Err(e);
            }
        };
        let addr = addr.to_string();
        let cmd = vec![
            brickd.to_string_lossy().into_owned(),
            "--dir".into(),
            dir.to_string_lossy().into_owned(),
            "--listen".into(),
            addr.clone(),
            "--volume".into(),
            VOLUME.into(),
        ]
        .into_iter()
        .chain(metrics)
        .chain(children::security_args())
        .collect();
        Ok(Brick {
            name,
            id,
            child,
            addr,
            dir,
            cmd,
            down: false,
        })
    }

    fn start_mount(&mut self, mounter: &Path, log_level: Option<&str>) -> Result<()> {
        let log = self.mount_log();
        let out = open_log(&log)?;
        let err = out
            .try_clone()
            .ctx(|| format!("cloning {}", log.display()))?;
        let mut cmd = store_command(mounter, log_level, &self.store_url());
        cmd.args(children::metrics_args("mount"))
            .arg(VOLUME)
            .arg(&self.mount_point)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err);
        children::detach_from_terminal(&mut cmd);
        let child = cmd
            .spawn()
            .ctx(|| format!("starting {}", mounter.display()))?;
        let child = self.mount.insert(child);
        children::wait_mounted(child, &self.mount_point, &log, START_TIMEOUT)
    }

    fn write_cluster_file(&self) -> Result<()> {
        let file = ClusterFile {
            volume: VOLUME,
            replica: REPLICA,
            mount: &self.mount_point,
            mount_pid: self.mount.as_ref().map(Child::id),
            heald_pid: self.heald.as_ref().map(Child::id),
            nfs: self.nfs.as_ref().map(|(_, addr)| addr.to_string()),
            nfs_pid: self.nfs.as_ref().map(|(child, _)| child.id()),
            api: self.api.as_ref().map(|(_, addr)| addr.to_string()),
            api_pid: self.api.as_ref().map(|(child, _)| child.id()),
            store: self.store_url(),
            tls_dir: self.tls_dir.as_deref(),
            bricks: self
                .bricks
                .iter()
                .map(|b| BrickEntry {
                    name: b.name.clone(),
                    id: b.id.clone(),
                    pid: b.child.id(),
                    addr: b.addr.clone(),
                    dir: b.dir.clone(),
                    cmd: b.cmd.clone(),
                    state: match (self.stopped, b.down) {
                        (true, _) => "stopped",
                        (false, true) => "down",
                        (false, false) => "up",
                    },
                })
                .collect(),
            metrics: children::metrics_addrs(),
        };
        file.write_atomic(&self.state_dir.join("cluster.json"))
    }

    fn print_summary(&self) {
        if self.sets > 1 {
            println!(
                "brickfs dev: volume \"{VOLUME}\" ({} x {REPLICA} = {}, Distributed-Replicate) is up",
                self.sets,
                self.bricks.len()
            );
        } else {
            println!("brickfs dev: volume \"{VOLUME}\" (replica {REPLICA}) is up");
        }
        let indent = if self.sets > 1 { "    " } else { "  " };
        for (i, b) in self.bricks.iter().enumerate() {
            if self.sets > 1 && i % REPLICA == 0 {
                println!("  replica set {}:", i / REPLICA + 1);
            }
            println!(
                "{indent}{}  {}  pid {}  {}",
                b.name,
                b.addr,
                b.child.id(),
                b.dir.display()
            );
        }
        if let Some(m) = &self.mount {
            println!(
                "  mount   {}  (brickfs-mount pid {})",
                self.mount_point.display(),
                m.id()
            );
        }
        if let Some(h) = &self.heald {
            println!(
                "  heald   pid {}  (self-heal daemon; log {})",
                h.id(),
                self.heald_log().display()
            );
        }
        if let Some((child, addr)) = &self.nfs {
            println!(
                "  nfs     {addr}  (brickfs-nfs pid {}; NFSv3, MOUNT and NLM locks on one port; log {})",
                child.id(),
                self.nfs_log().display()
            );
            println!(
                "          {}",
                nfs_child::kernel_mount_command(*addr, VOLUME, "/mnt")
            );
            println!(
                "          {}   (libnfs: nfs-ls, nfs-cp, nfs-cat)",
                nfs_child::libnfs_url(*addr, VOLUME)
            );
        }
        if let Some((child, addr)) = &self.api {
            let scheme = if self.tls_dir.is_some() {
                "https"
            } else {
                "http"
            };
            println!(
                "  api     {scheme}://{addr}  (brickfs-api pid {}; admin token in {}; log {})",
                child.id(),
                self.admin_token_file().display(),
                self.api_log().display()
            );
            if let Some(dir) = &self.tls_dir {
                let d = dir.display();
                println!(
                    "          curl --cacert {d}/ca.pem --cert {d}/admin.pem --key {d}/admin.key \\\n                 -H \"Authorization: Bearer $(cat {})\" https://{addr}/v1/whoami",
                    self.admin_token_file().display()
                );
            }
        }
        let metrics = children::metrics_addrs();
        if !metrics.is_empty() {
            let list: Vec<String> = metrics.iter().map(|(n, a)| format!("{n} {a}")).collect();
            println!(
                "  metrics http://ADDR/metrics (Prometheus): {}",
                list.join(", ")
            );
            let security = match &self.tls_dir {
                Some(dir) => format!("--tls-dir {}", dir.display()),
                None => "--insecure".into(),
            };
            println!(
                "          brickfs --store {} {security} volume profile {VOLUME} start|info|stop",
                self.store_url()
            );
            println!(
                "          brickfs --store {} {security} volume top {VOLUME} [read|write|clear]",
                self.store_url()
            );
        }
        let store = self.store_url();
        match &self.tls_dir {
            Some(dir) => {
                println!(
                    "  tls     {}  (mutual TLS: the CA and a certificate per role)",
                    dir.display()
                );
                println!(
                    "  store   {store}   (brickfs --store {store} --tls-dir {} volume heal {VOLUME} info)",
                    dir.display()
                );
            }
            None => println!(
                "  store   {store}   (brickfs --store {store} --insecure volume heal {VOLUME} info)"
            ),
        }
        println!("  logs    {}", self.log_dir.display());
        println!(
            "  state   {}",
            self.state_dir.join("cluster.json").display()
        );
        println!(
            "Press Ctrl-C (or `kill {}`) to unmount and stop the bricks; the data stays in {}.",
            std::process::id(),
            self.state_dir.display()
        );
    }

    /// Reaps children that exited. Marks dead bricks down and forgets a dead
    /// heald or NFS gateway (none is restarted); returns true when the mount
    /// process is gone.
    fn check_children(&mut self) -> Result<bool> {
        let mut changed = false;
        for b in self.bricks.iter_mut().filter(|b| !b.down) {
            if let Ok(Some(status)) = b.child.try_wait() {
                warn!(
                    "{} (pid {}) is down ({status}); not restarting. Restart it with the `cmd` in cluster.json",
                    b.name,
                    b.child.id()
                );
                b.down = true;
                changed = true;
            }
        }
        if let Some(Ok(Some(status))) = self.heald.as_mut().map(Child::try_wait) {
            warn!(
                "heald (pid {}) exited ({status}); not restarting it: the volume runs on \
                 without self-heal (`brickfs --store {} volume heal {VOLUME}` heals by hand). \
                 Last lines of {}:\n{}",
                self.heald.as_ref().map_or(0, Child::id),
                self.store_url(),
                self.heald_log().display(),
                log_tail(&self.heald_log(), 20)
            );
            self.heald = None;
            changed = true;
        }
        if let Some(Ok(Some(status))) = self.nfs.as_mut().map(|(child, _)| child.try_wait()) {
            warn!(
                "the NFS gateway brickfs-nfs (pid {}) exited ({status}); not restarting it: \
                 the volume goes on without NFS (the FUSE mount is unaffected). Last lines of {}:\n{}",
                self.nfs.as_ref().map_or(0, |(child, _)| child.id()),
                self.nfs_log().display(),
                log_tail(&self.nfs_log(), 20)
            );
            self.nfs = None;
            changed = true;
        }
        if let Some(Ok(Some(status))) = self.api.as_mut().map(|(child, _)| child.try_wait()) {
            warn!(
                "the management API brickfs-api (pid {}) exited ({status}); not restarting it. \
                 Last lines of {}:\n{}",
                self.api.as_ref().map_or(0, |(child, _)| child.id()),
                self.api_log().display(),
                log_tail(&self.api_log(), 20)
            );
            self.api = None;
            changed = true;
        }
        if changed {
            self.write_cluster_file()?;
        }
        Ok(match self.mount.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => {
                error!(
                    "brickfs-mount (pid {}) exited: {status}",
                    self.mount.as_ref().map_or(0, Child::id)
                );
                true
            }
            _ => false,
        })
    }

    /// Unmounts, then stops the NFS gateway, heald, and the bricks.
    /// Idempotent; also runs on drop so a failed start leaves nothing behind.
    fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        if let Some(mut m) = self.mount.take() {
            // brickfs-mount unmounts itself on SIGTERM.
            signal(&mut m, libc::SIGTERM);
            if children::wait_until_exit(&mut m, STOP_GRACE).is_none() {
                warn!(
                    "brickfs-mount (pid {}) did not exit; detaching the mount",
                    m.id()
                );
                if is_mounted(&self.mount_point) {
                    let _ = umount_detach(&self.mount_point);
                }
                terminate(&mut m, Duration::from_secs(2));
            }
        }
        if is_mounted(&self.mount_point) {
            if let Err(e) = umount_detach(&self.mount_point) {
                warn!("{e}");
            }
        }
        if let Some((mut a, _)) = self.api.take() {
            api_child::stop(&mut a, STOP_GRACE);
        }
        if let Some((mut n, _)) = self.nfs.take() {
            nfs_child::stop(&mut n, STOP_GRACE);
        }
        if let Some(mut h) = self.heald.take() {
            heald_child::stop(&mut h, STOP_GRACE);
        }
        // Signal all bricks first so they stop in parallel, then wait.
        for b in &mut self.bricks {
            signal(&mut b.child, libc::SIGTERM);
        }
        for b in &mut self.bricks {
            if terminate(&mut b.child, STOP_GRACE).is_none() {
                warn!(
                    "{} (pid {}) ignored SIGTERM; killed it",
                    b.name,
                    b.child.id()
                );
            }
        }
        self.stopped = true;
        if !self.bricks.is_empty() {
            if let Err(e) = self.write_cluster_file() {
                warn!("{e}");
            }
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::format_brick_id;

    #[test]
    fn brick_id_formats() {
        let uuid = "0123456789abcdef0123456789abcdef";
        let want = "01234567-89ab-cdef-0123-456789abcdef";
        assert_eq!(format_brick_id(uuid.as_bytes()), want);
        assert_eq!(format_brick_id(format!("{want}\n").as_bytes()), want);
        let raw: [u8; 16] = [
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ];
        assert_eq!(format_brick_id(&raw), want);
    }
}
