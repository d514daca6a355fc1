//! The real Linux kernel NFS client in a qemu guest
//! (`tests/qemu-nfs/nlm-check.sh`): a network namespace with a tap device
//! for the guest, the guest's boot, and its serial console, where it
//! reports `KNC: PASS|FAIL …`, asks the host side (`KNC: ASK action`) and
//! ends with `KNC: RESULT …`.
//!
//! Needs root and /dev/net/tun; `prepare` installs what is missing.
//! Everything made (namespace, veth, qemu) is removed on drop, passed or
//! not.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("qemu-nfs/nlm-check.sh")
}

/// Root, /dev/net/tun, and the packages, kernel and initramfs
/// (`nlm-check.sh prepare`).
pub fn prepare() {
    assert_eq!(
        // SAFETY: no preconditions.
        unsafe { libc::geteuid() },
        0,
        "the kernel NFS client tests need root (network namespaces, tap devices)"
    );
    assert!(
        Path::new("/dev/net/tun").exists(),
        "the kernel NFS client tests need /dev/net/tun"
    );
    let prepared = Command::new(script())
        .arg("prepare")
        .stderr(Stdio::inherit())
        .output()
        .expect("run nlm-check.sh prepare");
    assert!(
        prepared.status.success(),
        "nlm-check.sh prepare failed (packages, kernel or initramfs)"
    );
}

/// The namespace and veth of one run, removed on drop. The host side is
/// `host` (10.77.IDX.1), the guest `guest` (10.77.IDX.2).
pub struct Net {
    pub ns: String,
    pub idx: u32,
    pub host: String,
    pub guest: String,
}

impl Net {
    /// Tries a few subnets 10.77.IDX.0/24 (a concurrent run may hold one).
    pub fn up() -> Net {
        static TAKEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let first =
            std::process::id() % 200 + 20 + TAKEN.fetch_add(7, std::sync::atomic::Ordering::SeqCst);
        let mut last = String::new();
        for idx in (0..8).map(|i| (first + i * 17) % 230 + 20) {
            let ns = format!("brickfs-knc-{}-{idx}", std::process::id());
            let out = Command::new(script())
                .args(["net-up", &ns, &idx.to_string()])
                .output()
                .expect("run nlm-check.sh net-up");
            if out.status.success() {
                let line = String::from_utf8_lossy(&out.stdout).into_owned();
                let mut words = line.split_whitespace();
                let host = words.next().expect("host ip").to_string();
                let guest = words.next().expect("guest ip").to_string();
                return Net {
                    ns,
                    idx,
                    host,
                    guest,
                };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("cannot set up a test network namespace: {last}");
    }

    /// The guest's network, as a tenant registers it.
    pub fn guest_network(&self) -> String {
        format!("{}/32", self.guest)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["net-down", &self.ns, &self.idx.to_string()])
            .status();
    }
}

/// The VM: the script's process (qemu after its exec) and qemu's pid file;
/// killed on drop.
struct Vm {
    child: Child,
    pidfile: PathBuf,
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pidfile) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill(2) of the qemu we started, by its pid.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the guest reported.
#[derive(Debug, Default)]
pub struct GuestRun {
    pub passes: Vec<String>,
    pub fails: Vec<String>,
    /// `None`: no RESULT line within the timeout.
    pub result: Option<String>,
    /// The last console lines, for a failure's message.
    pub tail: Vec<String>,
}

impl GuestRun {
    pub fn passed(&self) -> bool {
        self.fails.is_empty()
            && self
                .result
                .as_deref()
                .is_some_and(|r| r.starts_with("PASS"))
    }

    pub fn has_pass(&self, prefix: &str) -> bool {
        self.passes.iter().any(|p| p.starts_with(prefix))
    }

    /// Panics unless every check passed and each of `wanted` is among the
    /// passes, with what the guest said and the server's `log`.
    #[track_caller]
    pub fn assert_passed(&self, wanted: &[&str], log: &Path) {
        assert!(
            self.passed(),
            "guest checks failed: {:#?}\nresult: {:?}\nlast console lines:\n{}\nlog {}:\n{}",
            self.fails,
            self.result,
            self.tail.join("\n"),
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        for want in wanted {
            assert!(
                self.has_pass(want),
                "no PASS {want:?} among {:#?}",
                self.passes
            );
        }
    }
}

/// Boots the guest in `net` against the gateway's `port` and `export`,
/// with extra `knc.KEY=VALUE` parameters `extra`; answers each `ASK` with
/// `answer`; returns what it reported once it says RESULT (or `timeout`
/// passed). `work` holds qemu's pid file.
pub fn run_guest(
    net: &Net,
    port: u16,
    export: &str,
    extra: &[String],
    work: &Path,
    timeout: Duration,
    mut answer: impl FnMut(&str) -> String,
) -> GuestRun {
    let pidfile = work.join(format!("qemu-{}.pid", net.idx));
    let mut args = vec![
        "boot".to_string(),
        net.ns.clone(),
        net.idx.to_string(),
        port.to_string(),
        export.to_string(),
    ];
    args.extend(extra.iter().cloned());
    let child = Command::new(script())
        .args(&args)
        .env("KNC_PIDFILE", &pidfile)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("boot the VM");
    let mut vm = Vm { child, pidfile };
    let mut console = vm.child.stdin.take().expect("console in");
    let out = vm.child.stdout.take().expect("console out");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line.trim_end_matches('\r').to_string()).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut run = GuestRun::default();
    while run.result.is_none() {
        let left = timeout.saturating_sub(started.elapsed());
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        run.tail.push(line.clone());
        if run.tail.len() > 40 {
            run.tail.remove(0);
        }
        let Some(msg) = line.find("KNC: ").map(|i| line[i + 5..].to_string()) else {
            continue;
        };
        eprintln!("[{:6.1}s] KNC: {msg}", started.elapsed().as_secs_f64());
        if let Some(action) = msg.strip_prefix("ASK ") {
            let reply = answer(action.trim());
            eprintln!("[{:6.1}s] host: {reply}", started.elapsed().as_secs_f64());
            // The serial line: the guest reads it from /dev/console.
            let _ = console.write_all(format!("{reply}\n").as_bytes());
            let _ = console.flush();
        } else if let Some(p) = msg.strip_prefix("PASS ") {
            run.passes.push(p.to_string());
        } else if let Some(p) = msg.strip_prefix("FAIL ") {
            run.fails.push(p.to_string());
        } else if let Some(r) = msg.strip_prefix("RESULT ") {
            run.result = Some(r.to_string());
        }
    }
    drop(vm);
    run
}

/// Mounts a PersistentVolume's nfs source in the guest as kubelet would
/// (`mount -t nfs -o OPTIONS SERVER:PATH`) and checks the sub-volume behind
/// it (`pv-guest.sh`): df shows `limit` as the size, writing past it fails
/// with EDQUOT, a lock works, freeing works.
pub fn check_pv(
    net: &Net,
    server: &str,
    path: &str,
    mount_options: &[String],
    limit: u64,
    work: &Path,
) -> GuestRun {
    let extra = vec![
        "mode=pv".to_string(),
        format!("server={server}"),
        format!("opts={}", mount_options.join(",")),
        format!("limit={limit}"),
    ];
    run_guest(net, 0, path, &extra, work, Duration::from_secs(280), |a| {
        format!("unknown action {a}")
    })
}
