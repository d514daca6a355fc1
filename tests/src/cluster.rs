//! [`TestCluster`]: real `brickd` processes in a temp dir, and [`Mount`]s of
//! them through real `brickfs-mount` FUSE clients.
//!
//! Bricks are numbered from 0. Every method takes `&self` (state sits behind
//! mutexes) so one cluster can be shared by a test's threads, e.g. one thread
//! writing through a mount while another kills a brick.
//!
//! Cleanup is in `Drop` and runs during a panic too: mounts are unmounted
//! first, then stopped bricks are continued and all bricks killed and reaped.
//! On panic the tail of every log goes to stderr. Set `BRICKFS_TEST_KEEP=1`
//! to keep the temp dir (bricks, logs) of a failed test; `BRICKFS_TEST_DIR`
//! picks where temp dirs go (default: the system temp dir); `BRICKFS_BIN_DIR`
//! where the binaries are (default: the target dir of the test binary).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::proc::{self, Listening};
use crate::tree;

/// Volume name the test cluster's bricks and mounts use.
pub const VOLUME: &str = "test";
/// Client per-op timeout passed to every mount (seconds).
pub const OP_TIMEOUT_SECS: u64 = 2;
/// `brickfs-mount` options for a client that caches no attributes and no
/// names in the kernel: it sees another client's change at once, where a
/// default mount may answer from its cache for up to a second.
pub const NO_CACHE: [&str; 4] = ["--attr-timeout", "0", "--entry-timeout", "0"];
const START_TIMEOUT: Duration = Duration::from_secs(20);
const RESTART_BIND_RETRY: Duration = Duration::from_secs(10);
const UNMOUNT_GRACE: Duration = Duration::from_secs(10);

/// How many times `what` appears in the log at `path` (0 if it cannot be read
/// yet: a daemon may not have created it).
pub fn log_count(path: &Path, what: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches(what)
        .count()
}

/// Polls `cond` until it is true or `timeout` passes; returns its last value.
/// Use this instead of sleeping: it returns as soon as the condition holds.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Paths of the workspace binaries the harness runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub brickd: PathBuf,
    pub mount: PathBuf,
    pub brickfs: PathBuf,
    /// The NFS gateway (`nfs-gateway` crate).
    pub brickfs_nfs: PathBuf,
    /// The management API (`api` crate).
    pub brickfs_api: PathBuf,
}

impl Binaries {
    /// Finds the binaries in the target dir this test binary was built into
    /// (`target/<profile>/deps/<test>` → `target/<profile>/`).
    /// `BRICKFS_BIN_DIR`, when set, overrides the directory.
    pub fn locate() -> Binaries {
        // Every process the tests start, and their own clients, use TLS.
        crate::tls::dir();
        let exe = std::env::current_exe().expect("current_exe");
        let deps = exe.parent().expect("test binary has a parent dir");
        let dir = match std::env::var_os("BRICKFS_BIN_DIR") {
            Some(dir) => PathBuf::from(dir),
            None if deps.file_name().is_some_and(|n| n == "deps") => {
                deps.parent().expect("deps has a parent").to_path_buf()
            }
            None => deps.to_path_buf(),
        };
        let find = |name: &str| {
            let p = dir.join(name);
            assert!(
                p.is_file(),
                "{} not found: run `cargo build --workspace` before `cargo test` \
                 (scripts/test.sh does both)",
                p.display()
            );
            p
        };
        Binaries {
            brickd: find("brickd"),
            mount: find("brickfs-mount"),
            brickfs: find("brickfs"),
            brickfs_nfs: find("brickfs-nfs"),
            brickfs_api: find("brickfs-api"),
        }
    }
}

struct BrickProc {
    dir: PathBuf,
    log: PathBuf,
    addr: SocketAddr,
    /// None while killed (until restart_brick).
    child: Option<Child>,
    stopped: bool,
}

/// A running set of bricks. See the module docs.
pub struct TestCluster {
    root: Option<tempfile::TempDir>,
    root_path: PathBuf,
    bins: Binaries,
    bricks: Mutex<Vec<BrickProc>>,
    mounts: Mutex<Vec<Arc<MountState>>>,
    next_mount: AtomicUsize,
    /// Numbers the NFS gateways' logs (`logs/nfs-N.log`).
    pub(crate) next_gateway: AtomicUsize,
    /// The credentials of its bricks and mounts.
    security: crate::tls::Security,
}

impl TestCluster {
    /// Starts `n_bricks` bricks (`brickd --dir <tmp>/bN --listen 127.0.0.1:0
    /// --volume test`) and waits until each printed `LISTENING`.
    pub fn start(n_bricks: usize) -> TestCluster {
        TestCluster::start_with_security(n_bricks, crate::tls::Security::Harness)
    }

    /// As [`start`](Self::start), the bricks and mounts with `security`.
    pub fn start_with_security(n_bricks: usize, security: crate::tls::Security) -> TestCluster {
        let bins = Binaries::locate();
        let base = std::env::var_os("BRICKFS_TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&base).expect("creating BRICKFS_TEST_DIR");
        let root = tempfile::Builder::new()
            .prefix("brickfs-test-")
            .tempdir_in(&base)
            .expect("creating temp dir");
        let root_path = root.path().canonicalize().expect("canonical temp dir");
        std::fs::create_dir_all(root_path.join("logs")).expect("creating logs dir");
        let cluster = TestCluster {
            root: Some(root),
            root_path,
            bins,
            bricks: Mutex::new(Vec::new()),
            mounts: Mutex::new(Vec::new()),
            next_mount: AtomicUsize::new(0),
            next_gateway: AtomicUsize::new(0),
            security,
        };
        for i in 0..n_bricks {
            let dir = cluster.root_path.join(format!("b{i}"));
            std::fs::create_dir_all(&dir).expect("creating brick dir");
            let log = cluster.root_path.join("logs").join(format!("brick{i}.log"));
            let (child, addr) = cluster.spawn_brick(
                &cluster.bins.brickd,
                &[],
                &dir,
                &log,
                "127.0.0.1:0".parse().unwrap(),
                START_TIMEOUT,
            );
            cluster.lock_bricks().push(BrickProc {
                dir,
                log,
                addr,
                child: Some(child),
                stopped: false,
            });
        }
        cluster
    }

    fn spawn_brick(
        &self,
        program: &Path,
        env: &[(&str, &str)],
        dir: &Path,
        log: &Path,
        listen: SocketAddr,
        bind_retry: Duration,
    ) -> (Child, SocketAddr) {
        let deadline = Instant::now() + bind_retry;
        loop {
            let mut cmd = Command::new(program);
            self.security.apply(&mut cmd);
            cmd.envs(env.iter().copied());
            cmd.arg("--dir")
                .arg(dir)
                .arg("--listen")
                .arg(listen.to_string())
                .args(["--volume", VOLUME]);
            match proc::spawn_listening(cmd, log, START_TIMEOUT) {
                Listening::Up(child, addr) => {
                    // brickd may announce LISTENING a moment before it has
                    // opened its store; hand out only initialised bricks.
                    let id = dir.join(proto::PRIVATE_DIR).join("brick-id");
                    if !wait_until(START_TIMEOUT, || id.exists()) {
                        panic!(
                            "brickd --dir {} never wrote {}",
                            dir.display(),
                            id.display()
                        );
                    }
                    return (child, addr);
                }
                Listening::Exited(status) => {
                    // Typically EADDRINUSE right after a kill: retry for a while.
                    if Instant::now() >= deadline {
                        panic!(
                            "brickd --dir {} --listen {listen} exited ({status:?}) before LISTENING; log {}:\n{}",
                            dir.display(),
                            log.display(),
                            proc::log_tail(log, 30)
                        );
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn lock_bricks(&self) -> MutexGuard<'_, Vec<BrickProc>> {
        // A panic while holding the lock must not hide the cluster from Drop.
        self.bricks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_brick<T>(&self, i: usize, f: impl FnOnce(&mut BrickProc) -> T) -> T {
        let mut bricks = self.lock_bricks();
        let n = bricks.len();
        let b = bricks
            .get_mut(i)
            .unwrap_or_else(|| panic!("brick {i} out of range (cluster has {n})"));
        f(b)
    }

    /// The temp dir holding brick dirs, mount points and logs.
    pub fn root(&self) -> &Path {
        &self.root_path
    }

    pub fn binaries(&self) -> &Binaries {
        &self.bins
    }

    pub fn brick_count(&self) -> usize {
        self.lock_bricks().len()
    }

    /// `A,B,C` as brickfs-mount's `--bricks` takes it.
    pub fn bricks_arg(&self) -> String {
        self.brick_addrs(0..self.brick_count()).join(",")
    }

    /// The addresses (`127.0.0.1:PORT`) of bricks `range`, as the CLI takes
    /// them.
    pub fn brick_addrs(&self, range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| self.brick_addr(i).to_string()).collect()
    }

    /// Mounts the volume at a fresh `<tmp>/mntN` and waits until the kernel
    /// lists the mount. Call again for a second client of the same volume.
    pub fn mount(&self) -> Mount {
        self.mount_with_args(&[])
    }

    /// As [`mount`](Self::mount), with extra `brickfs-mount` options.
    pub fn mount_with_args(&self, extra: &[&str]) -> Mount {
        self.mount_bricks(0..self.brick_count(), extra)
    }

    /// A client of bricks `range` alone (`--bricks` of those), e.g. one
    /// replica set: a client of the volume as it was before add-brick.
    pub fn mount_bricks(&self, range: std::ops::Range<usize>, extra: &[&str]) -> Mount {
        let bricks = self.brick_addrs(range).join(",");
        let mut args = vec!["--bricks", bricks.as_str(), "--volume", VOLUME];
        let timeout = OP_TIMEOUT_SECS.to_string();
        args.extend(["--op-timeout", timeout.as_str()]);
        args.extend(extra);
        self.mount_with(&args)
    }

    /// Mounts volume `volume` as the cluster store at `url` describes it
    /// (`brickfs-mount --store URL VOLUME MOUNTPOINT`).
    pub fn mount_from_store(&self, url: &str, volume: &str) -> Mount {
        self.mount_from_store_with_args(url, volume, &[])
    }

    /// As [`mount_from_store`](Self::mount_from_store), with extra
    /// `brickfs-mount` options (e.g. [`NO_CACHE`], which override the
    /// volume's options for this mount).
    pub fn mount_from_store_with_args(&self, url: &str, volume: &str, extra: &[&str]) -> Mount {
        let mut args = vec!["--store", url, volume];
        args.extend(extra);
        self.mount_with(&args)
    }

    /// Runs brickfs-mount with `args` then the mount point; waits until the
    /// kernel lists the mount.
    fn mount_with(&self, args: &[&str]) -> Mount {
        let n = self.next_mount.fetch_add(1, Ordering::SeqCst);
        let path = self.root_path.join(format!("mnt{n}"));
        std::fs::create_dir_all(&path).expect("creating mount point");
        let log = self.root_path.join("logs").join(format!("mount{n}.log"));
        let out = proc::open_log(&log);
        let err = out.try_clone().expect("cloning log fd");
        let mut cmd = Command::new(&self.bins.mount);
        self.security.apply(&mut cmd);
        cmd.args(args)
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = proc::spawn(cmd, libc::SIGTERM)
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bins.mount.display()));
        let state = Arc::new(MountState {
            path: path.clone(),
            log: log.clone(),
            child: Mutex::new(Some(child)),
        });
        self.mounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(state.clone());
        let mounted = wait_until(START_TIMEOUT, || {
            proc::is_mounted(&path)
                || matches!(
                    state.lock_child().as_mut().map(Child::try_wait),
                    Some(Ok(Some(_)))
                )
        });
        if !mounted || !proc::is_mounted(&path) {
            let status = state.lock_child().as_mut().map(Child::try_wait);
            panic!(
                "brickfs-mount did not mount {} within {START_TIMEOUT:?} (process: {status:?}); log {}:\n{}",
                path.display(),
                log.display(),
                proc::log_tail(&log, 30)
            );
        }
        Mount { state }
    }

    /// SIGKILLs brick `i` and reaps it. Its dir and port are kept for restart.
    pub fn kill_brick(&self, i: usize) {
        self.with_brick(i, |b| {
            if let Some(mut child) = b.child.take() {
                proc::kill_and_reap(&mut child);
            }
            b.stopped = false;
        });
    }

    /// SIGSTOPs brick `i` (a hung brick: the socket stays open, nothing answers).
    pub fn stop_brick(&self, i: usize) {
        self.signal_brick(i, libc::SIGSTOP, true);
    }

    /// SIGCONTs brick `i` after [`stop_brick`](Self::stop_brick).
    pub fn cont_brick(&self, i: usize) {
        self.signal_brick(i, libc::SIGCONT, false);
    }

    fn signal_brick(&self, i: usize, sig: libc::c_int, stopped: bool) {
        self.with_brick(i, |b| {
            let child = b
                .child
                .as_mut()
                .unwrap_or_else(|| panic!("brick {i} is not running"));
            assert!(proc::signal(child, sig), "signal {sig} to brick {i} failed");
            b.stopped = stopped;
        });
    }

    /// Starts brick `i` again with the same dir on the same port (killing it
    /// first if it still runs). Retries the bind for a few seconds.
    pub fn restart_brick(&self, i: usize) {
        let brickd = self.bins.brickd.clone();
        self.restart_brick_with(i, &brickd, &[]);
    }

    /// As [`restart_brick`](Self::restart_brick), running `program` (a
    /// brickd built otherwise, e.g. with failpoints) with `env` added.
    pub fn restart_brick_with(&self, i: usize, program: &Path, env: &[(&str, &str)]) {
        let (dir, log, addr) = self.with_brick(i, |b| {
            if let Some(mut child) = b.child.take() {
                proc::kill_and_reap(&mut child);
            }
            b.stopped = false;
            (b.dir.clone(), b.log.clone(), b.addr)
        });
        let (child, new_addr) =
            self.spawn_brick(program, env, &dir, &log, addr, RESTART_BIND_RETRY);
        assert_eq!(
            new_addr, addr,
            "restarted brick {i} listens on another address"
        );
        self.with_brick(i, |b| b.child = Some(child));
    }

    /// Restarts brick `i` with its `/metrics` on a free loopback port and
    /// returns that address (for [`brick_fop_count`]).
    pub fn restart_brick_with_metrics(&self, i: usize) -> SocketAddr {
        let metrics = SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
        let listen = metrics.to_string();
        let brickd = self.bins.brickd.clone();
        self.restart_brick_with(i, &brickd, &[("BRICKFS_METRICS_LISTEN", listen.as_str())]);
        metrics
    }

    /// Whether brick `i`'s process is alive (not killed, not exited).
    pub fn brick_running(&self, i: usize) -> bool {
        self.with_brick(i, |b| {
            matches!(b.child.as_mut().map(Child::try_wait), Some(Ok(None)))
        })
    }

    pub fn brick_pid(&self, i: usize) -> Option<u32> {
        self.with_brick(i, |b| b.child.as_ref().map(Child::id))
    }

    pub fn brick_dir(&self, i: usize) -> PathBuf {
        self.with_brick(i, |b| b.dir.clone())
    }

    pub fn brick_addr(&self, i: usize) -> SocketAddr {
        self.with_brick(i, |b| b.addr)
    }

    pub fn brick_log(&self, i: usize) -> PathBuf {
        self.with_brick(i, |b| b.log.clone())
    }

    /// The brick's UUID, as stored (hex) in `<dir>/.brickfs/brick-id`.
    pub fn brick_id(&self, i: usize) -> proto::BrickId {
        let path = self.brick_dir(i).join(proto::PRIVATE_DIR).join("brick-id");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        proto::BrickId::from_hex(text.trim())
            .unwrap_or_else(|| panic!("{} does not hold a hex brick id: {text:?}", path.display()))
    }

    /// blake3 over brick `i`'s user-visible tree (see [`tree::digest`]).
    pub fn tree_digest(&self, i: usize) -> blake3::Hash {
        tree::digest(&self.brick_dir(i))
    }

    /// One line per entry of brick `i`'s tree, for diffs in failure messages.
    pub fn tree_manifest(&self, i: usize) -> Vec<String> {
        tree::manifest(&self.brick_dir(i))
    }

    /// Waits (up to `timeout`) until all bricks have the same tree digest;
    /// panics with the differing entries otherwise.
    pub fn assert_replicas_identical(&self, timeout: Duration) {
        let n = self.brick_count();
        let same = wait_until(timeout, || {
            let first = self.tree_digest(0);
            (1..n).all(|i| self.tree_digest(i) == first)
        });
        if same {
            return;
        }
        let base = self.tree_manifest(0);
        let mut report = String::new();
        for i in 1..n {
            let other = self.tree_manifest(i);
            for line in base.iter().filter(|l| !other.contains(l)) {
                report.push_str(&format!("  only on brick 0: {line}\n"));
            }
            for line in other.iter().filter(|l| !base.contains(l)) {
                report.push_str(&format!("  only on brick {i}: {line}\n"));
            }
        }
        panic!("brick trees differ after {timeout:?}:\n{report}");
    }

    fn dump_logs(&self) {
        let mut out = String::from("\n==== brickfs test cluster logs (tails) ====\n");
        if let Ok(bricks) = self.bricks.try_lock() {
            for (i, b) in bricks.iter().enumerate() {
                out.push_str(&format!(
                    "---- brick {i} ({}) {}\n",
                    b.addr,
                    b.log.display()
                ));
                out.push_str(&proc::log_tail(&b.log, 40));
            }
        }
        if let Ok(mounts) = self.mounts.try_lock() {
            for m in mounts.iter() {
                out.push_str(&format!(
                    "---- mount {} {}\n",
                    m.path.display(),
                    m.log.display()
                ));
                out.push_str(&proc::log_tail(&m.log, 40));
            }
        }
        out.push_str(&format!(
            "==== end of logs; cluster dir {} ====\n",
            self.root_path.display()
        ));
        eprint!("{out}");
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            self.dump_logs();
        }
        // Mounts first: the kernel must not route requests to a client whose
        // bricks are gone (that would make the unmount wait on timeouts).
        let mounts = std::mem::take(&mut *self.mounts.lock().unwrap_or_else(|e| e.into_inner()));
        for m in mounts {
            m.unmount();
        }
        for b in self.lock_bricks().iter_mut() {
            if let Some(mut child) = b.child.take() {
                if b.stopped {
                    proc::signal(&mut child, libc::SIGCONT);
                }
                proc::kill_and_reap(&mut child);
            }
        }
        let keep = panicking && std::env::var_os("BRICKFS_TEST_KEEP").is_some_and(|v| v != "0");
        if let Some(root) = self.root.take() {
            if keep || proc::has_mounts_under(&self.root_path) {
                // Never recurse into a mount that would not go away.
                let path = root.keep();
                eprintln!("brickfs test: kept {}", path.display());
            }
        }
    }
}

struct MountState {
    path: PathBuf,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

impl MountState {
    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// SIGTERM (brickfs-mount unmounts itself), wait; else lazy unmount and
    /// SIGKILL. Idempotent.
    fn unmount(&self) {
        let mut guard = self.lock_child();
        if let Some(child) = guard.as_mut() {
            proc::signal(child, libc::SIGTERM);
            let exited = proc::wait_until_exit(child, UNMOUNT_GRACE).is_some();
            if !exited || proc::is_mounted(&self.path) {
                let _ = proc::umount_detach(&self.path);
            }
            if !exited {
                proc::kill_and_reap(child);
            }
        } else if proc::is_mounted(&self.path) {
            let _ = proc::umount_detach(&self.path);
        }
        *guard = None;
    }
}

/// One FUSE client of a [`TestCluster`]; unmounted on drop.
pub struct Mount {
    state: Arc<MountState>,
}

impl Mount {
    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.state.path
    }

    /// `path()/rel`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.state.path.join(rel)
    }

    pub fn log(&self) -> &Path {
        &self.state.log
    }

    /// Whether the client's log holds `what`.
    pub fn log_has(&self, what: &str) -> bool {
        proc::log_has(&self.state.log, what)
    }

    /// How often the client logged brick `brick` up: once when it first
    /// connected, once more after each outage it noticed.
    pub fn brick_ups(&self, brick: SocketAddr) -> usize {
        // The space ends the field: port 1234 is not port 12345.
        proc::log_lines(&self.state.log, &["brick up", &format!("brick={brick} ")])
    }

    /// The brickfs-mount pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.state.lock_child().as_ref().map(Child::id)
    }

    pub fn is_mounted(&self) -> bool {
        proc::is_mounted(&self.state.path)
    }

    /// SIGKILLs the client (a crashed client: its locks must end with its
    /// connections). The dead mount is detached on drop.
    pub fn kill(&self) {
        if let Some(child) = self.state.lock_child().as_mut() {
            proc::kill_and_reap(child);
        }
    }

    /// Unmounts now (as drop does).
    pub fn unmount(self) {
        self.state.unmount();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.state.unmount();
    }
}

/// How many `op` calls the brick whose `/metrics` is at `metrics` served
/// (0 if none).
pub fn brick_fop_count(metrics: SocketAddr, op: &str) -> f64 {
    let answer = crate::http::try_request(
        &crate::http::Target::plain(metrics),
        "GET",
        "/metrics",
        None,
        "",
    )
    .expect("scrape the brick's metrics");
    let series = format!("brickfs_brick_fop_seconds_count{{op=\"{op}\"}} ");
    answer
        .raw
        .lines()
        .find_map(|l| l.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0.0)
}
