//! Kubernetes for the provisioner's tests: a real control plane (etcd,
//! kube-apiserver, kube-controller-manager 1.20.2 with the PV binder and
//! expander, `scripts/k8s-control-plane.sh`) in a temp dir, `kubectl`
//! against it, and `brickfs-provisioner` processes (also the failpoints
//! build) that act as the ServiceAccount of `k8s/deploy/compute/provisioner-rbac.yaml`.
//!
//! Drop stops what was started: provisioners by their pid, the control
//! plane by its script (which stops only the pids it recorded), also when
//! a test panics; then logs' tails go to stderr. `BRICKFS_TEST_KEEP=1`
//! keeps the temp dir of a failed test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{wait_until, Binaries};
use crate::proc;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent dir")
        .to_path_buf()
}

/// The least RBAC the provisioner runs with (the manifest users apply).
pub fn rbac_manifest() -> PathBuf {
    workspace().join("k8s/deploy/compute/provisioner-rbac.yaml")
}

/// The output of one kubectl run.
pub struct Kubectl {
    pub ok: bool,
    pub out: String,
    pub err: String,
}

/// A running control plane; see the module docs.
pub struct ControlPlane {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    pub kubeconfig: PathBuf,
    /// Credentials of the provisioner's ServiceAccount (RBAC applies).
    pub provisioner_kubeconfig: PathBuf,
}

impl ControlPlane {
    /// Starts one in a new temp dir and applies the provisioner's RBAC.
    pub fn start() -> ControlPlane {
        let base = std::env::var_os("BRICKFS_TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("brickfs-k8s-")
            .tempdir_in(&base)
            .expect("creating temp dir");
        let path = dir.path().canonicalize().expect("canonical temp dir");
        let cp_dir = path.join("cp");
        let out = Command::new(workspace().join("scripts/k8s-control-plane.sh"))
            .arg("start")
            .arg(&cp_dir)
            .stdin(Stdio::null())
            .output()
            .expect("running scripts/k8s-control-plane.sh");
        let cp = ControlPlane {
            dir: Some(dir),
            kubeconfig: cp_dir.join("kubeconfig"),
            provisioner_kubeconfig: cp_dir.join("provisioner.kubeconfig"),
            path,
        };
        assert!(
            out.status.success(),
            "the control plane did not start:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cp.kubectl_ok(&["apply", "-f", &rbac_manifest().display().to_string()]);
        cp
    }

    /// The temp dir (logs of what the test started go here too).
    pub fn root(&self) -> &Path {
        &self.path
    }

    pub fn kubectl(&self, args: &[&str]) -> Kubectl {
        self.kubectl_stdin(args, None)
    }

    fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Kubectl {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--request-timeout", "20s"])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("running kubectl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("kubectl stdin");
            pipe.write_all(input.as_bytes())
                .expect("writing to kubectl");
        }
        let out = child.wait_with_output().expect("waiting for kubectl");
        Kubectl {
            ok: out.status.success(),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let r = self.kubectl(args);
        assert!(r.ok, "kubectl {args:?} failed:\n{}{}", r.out, r.err);
        r.out
    }

    /// `kubectl apply -f -` of `yaml`.
    #[track_caller]
    pub fn apply(&self, yaml: &str) {
        let r = self.kubectl_stdin(&["apply", "-f", "-"], Some(yaml));
        assert!(r.ok, "kubectl apply failed:\n{}{}\n{yaml}", r.out, r.err);
    }

    /// The object as JSON, `None` when it does not exist. `ns` is empty for
    /// cluster-scoped kinds.
    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let mut args = vec!["get", kind, name, "-o", "json"];
        if !ns.is_empty() {
            args.extend(["-n", ns]);
        }
        let r = self.kubectl(&args);
        if !r.ok {
            assert!(
                r.err.contains("NotFound") || r.err.contains("not found"),
                "kubectl {args:?}: {}",
                r.err
            );
            return None;
        }
        Some(serde_json::from_str(&r.out).expect("kubectl printed JSON"))
    }

    /// Every object of `kind` (in `ns`, or all namespaces when empty).
    pub fn list(&self, kind: &str, ns: &str) -> Vec<Value> {
        let mut args = vec!["get", kind, "-o", "json"];
        if ns.is_empty() {
            args.push("--all-namespaces");
        } else {
            args.extend(["-n", ns]);
        }
        let out = self.kubectl_ok(&args);
        let v: Value = serde_json::from_str(&out).expect("kubectl printed JSON");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Polls until the object exists and `cond` holds; returns it.
    #[track_caller]
    pub fn wait_for(
        &self,
        timeout: Duration,
        kind: &str,
        ns: &str,
        name: &str,
        what: &str,
        mut cond: impl FnMut(&Value) -> bool,
    ) -> Value {
        let mut last = None;
        let ok = wait_until(timeout, || {
            last = self.get(kind, ns, name);
            last.as_ref().is_some_and(&mut cond)
        });
        assert!(
            ok,
            "{kind} {ns}/{name}: not {what} within {timeout:?}; last: {last:#?}"
        );
        last.expect("checked")
    }

    /// Polls until the object is gone.
    #[track_caller]
    pub fn wait_gone(&self, timeout: Duration, kind: &str, ns: &str, name: &str) {
        let mut last = None;
        assert!(
            wait_until(timeout, || {
                last = self.get(kind, ns, name);
                last.is_none()
            }),
            "{kind} {ns}/{name} still there after {timeout:?}: {last:#?}"
        );
    }

    /// `(reason, message)` of the Events about object `name` in `ns`.
    pub fn events_about(&self, ns: &str, name: &str) -> Vec<(String, String)> {
        self.list("events", ns)
            .into_iter()
            .filter(|e| e["involvedObject"]["name"] == name || e["regarding"]["name"] == name)
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (
                    s("reason"),
                    if e["message"].is_string() {
                        s("message")
                    } else {
                        s("note")
                    },
                )
            })
            .collect()
    }

    /// Waits for an Event about `name` with `reason` whose message holds
    /// `says`; returns the message.
    #[track_caller]
    pub fn wait_event(
        &self,
        timeout: Duration,
        ns: &str,
        name: &str,
        reason: &str,
        says: &str,
    ) -> String {
        let mut seen = Vec::new();
        let mut found = None;
        let ok = wait_until(timeout, || {
            seen = self.events_about(ns, name);
            found = seen
                .iter()
                .find(|(r, m)| r == reason && m.contains(says))
                .map(|(_, m)| m.clone());
            found.is_some()
        });
        assert!(ok, "no Event {reason} saying {says:?} about {ns}/{name} within {timeout:?}; events: {seen:#?}");
        found.expect("checked")
    }

    /// Prints the control plane's log tails (for a failing test).
    fn dump_logs(&self) {
        for name in ["kube-apiserver", "kube-controller-manager"] {
            let log = self.path.join("cp").join(format!("{name}.log"));
            eprintln!(
                "--- {} (tail) ---\n{}",
                log.display(),
                proc::log_tail(&log, 20)
            );
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        let _ = Command::new(workspace().join("scripts/k8s-control-plane.sh"))
            .arg("stop")
            .arg(self.path.join("cp"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if std::thread::panicking() && std::env::var_os("BRICKFS_TEST_KEEP").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("keeping {}", d.keep().display());
            }
        }
    }
}

/// The provisioner binary next to the others; with `failpoints`, the
/// failpoints build, made on first use like `brickd-failpoints`.
pub fn provisioner_binary(bins: &Binaries, failpoints: bool) -> PathBuf {
    let dir = bins.brickd.parent().expect("binaries' dir").to_path_buf();
    if !failpoints {
        let p = dir.join("brickfs-provisioner");
        assert!(
            p.is_file(),
            "{} not found: run `cargo build --workspace`",
            p.display()
        );
        return p;
    }
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let exe = dir.join("brickfs-provisioner-failpoints");
        if std::env::var_os("BRICKFS_BIN_DIR").is_some() {
            return if exe.is_file() {
                Ok(exe)
            } else {
                Err(format!("{} not found", exe.display()))
            };
        }
        let target = dir.parent().ok_or("the binaries' dir has no parent")?;
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "k8s", "--features", "failpoints"])
            .args(["--bin", "brickfs-provisioner-failpoints", "--manifest-path"])
            .arg(workspace().join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out = cmd.output().map_err(|e| format!("running cargo: {e}"))?;
        if !out.status.success() || !exe.is_file() {
            return Err(format!(
                "building brickfs-provisioner-failpoints failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(exe)
    });
    match built {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// How to start one provisioner.
#[derive(Clone, Debug)]
pub struct ProvisionerOpts {
    pub api: String,
    pub token_file: PathBuf,
    pub name: String,
    pub lease_name: String,
    pub lease_secs: u32,
    pub sweep_secs: u32,
    /// `FAILPOINTS` for the failpoints build; `None`: the plain binary.
    pub failpoints: Option<String>,
    /// `--metrics-listen`.
    pub metrics: Option<std::net::SocketAddr>,
}

impl ProvisionerOpts {
    pub fn new(api: &str, token_file: &Path) -> ProvisionerOpts {
        ProvisionerOpts {
            api: api.to_string(),
            token_file: token_file.to_path_buf(),
            name: "brickfs.io/nfs".into(),
            lease_name: "brickfs-provisioner".into(),
            lease_secs: 3,
            sweep_secs: 300,
            failpoints: None,
            metrics: None,
        }
    }
}

/// One `brickfs-provisioner` process, killed (SIGKILL, by pid) on drop.
pub struct Provisioner {
    child: Mutex<Option<Child>>,
    pid: u32,
    log: PathBuf,
}

static NEXT_LOG: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Provisioner {
    pub fn start(cp: &ControlPlane, bins: &Binaries, opts: &ProvisionerOpts) -> Provisioner {
        let n = NEXT_LOG.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = cp.root().join(format!("provisioner-{n}.log"));
        let program = provisioner_binary(bins, opts.failpoints.is_some());
        // The harness's provisioner certificate (BRICKFS_TLS_DIR).
        let mut cmd = crate::tls::command(program);
        cmd.arg("--api")
            .arg(&opts.api)
            .arg("--token-file")
            .arg(&opts.token_file)
            .arg("--kubeconfig")
            .arg(&cp.provisioner_kubeconfig)
            .args(["--provisioner-name", &opts.name])
            .args(["--lease-name", &opts.lease_name])
            .args(["--lease-duration", &opts.lease_secs.to_string()])
            .args(["--sweep-interval", &opts.sweep_secs.to_string()])
            .args(["--log-level", "k8s=debug,info"])
            .env_remove("RUST_LOG")
            .env_remove("BRICKFS_API_TOKEN")
            .env_remove("KUBECONFIG");
        if let Some(fp) = &opts.failpoints {
            cmd.env("FAILPOINTS", fp);
        }
        if let Some(m) = opts.metrics {
            cmd.arg("--metrics-listen").arg(m.to_string());
        }
        let file = proc::open_log(&log);
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file);
        let child = proc::spawn(cmd, libc::SIGKILL).expect("starting brickfs-provisioner");
        let pid = child.id();
        Provisioner {
            child: Mutex::new(Some(child)),
            pid,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn log_has(&self, what: &str) -> bool {
        proc::log_has(&self.log, what)
    }

    /// Waits for `what` in the log; panics with the log's tail otherwise.
    #[track_caller]
    pub fn wait_log(&self, timeout: Duration, what: &str) {
        assert!(
            wait_until(timeout, || self.log_has(what)),
            "provisioner {}: no {what:?} in its log within {timeout:?}:\n{}",
            self.pid,
            proc::log_tail(&self.log, 40)
        );
    }

    /// Whether it still runs.
    pub fn running(&self) -> bool {
        let mut g = self.child.lock().unwrap_or_else(|e| e.into_inner());
        g.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits until it has exited (e.g. at a failpoint).
    #[track_caller]
    pub fn wait_exit(&self, timeout: Duration) {
        assert!(
            wait_until(timeout, || !self.running()),
            "provisioner {} still runs after {timeout:?}:\n{}",
            self.pid,
            proc::log_tail(&self.log, 40)
        );
    }

    /// SIGKILL, by pid, and reap.
    pub fn kill(&self) {
        let mut g = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = g.take() {
            proc::kill_and_reap(&mut c);
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&self) {
        let mut g = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = g.take() {
            proc::signal(&mut c, libc::SIGTERM);
            if proc::wait_until_exit(&mut c, Duration::from_secs(15)).is_none() {
                proc::kill_and_reap(&mut c);
            }
        }
    }
}

impl Drop for Provisioner {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} (tail) ---\n{}",
                self.log.display(),
                proc::log_tail(&self.log, 30)
            );
        }
    }
}

/// Resident set size of a process, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
