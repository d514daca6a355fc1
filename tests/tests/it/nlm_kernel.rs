//! The real Linux kernel NFS client with its lock manager against the
//! gateway: Debian's stock kernel in qemu (`tests/qemu-nfs/nlm-check.sh`,
//! TCG here: about a minute), on a tap device in a network namespace of
//! our own, mounts the gateway without `nolock`, and its fcntl locks meet a
//! FUSE client's on the host: F_SETLK gets EAGAIN while FUSE holds the
//! lock, F_SETLKW is granted by the gateway's GRANTED callback once FUSE
//! unlocks, and FUSE's F_SETLK gets EAGAIN while the guest holds it.
//!
//! Needs root, /dev/net/tun and the packages the script installs when they
//! are missing (qemu-system-x86, linux-image-amd64, busybox-static, …;
//! `scripts/test.sh` installs them too). Everything it creates (namespace,
//! veth, qemu) is removed when the test ends, passed or not.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tests::TestCluster;

/// The whole VM run, boot included (TCG: boot ~15 s, checks ~15 s).
const VM_TIMEOUT: Duration = Duration::from_secs(280);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("qemu-nfs/nlm-check.sh")
}

fn fuse_lock(f: &File, typ: libc::c_int) -> io::Result<()> {
    // SAFETY: plain data; all zeroes is valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: `fl` outlives the call; the fd is open.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The namespace and veth of one run, removed on drop.
struct Net {
    ns: String,
    idx: u32,
    host: String,
}

impl Net {
    /// Tries a few subnets 10.77.IDX.0/24 (a concurrent run may hold one).
    fn up() -> Net {
        let first = std::process::id() % 200 + 20;
        let mut last = String::new();
        for idx in (0..8).map(|i| (first + i * 17) % 230 + 20) {
            let ns = format!("brickfs-nlm-{}-{idx}", std::process::id());
            let out = Command::new(script())
                .args(["net-up", &ns, &idx.to_string()])
                .output()
                .expect("run nlm-check.sh net-up");
            if out.status.success() {
                let line = String::from_utf8_lossy(&out.stdout).into_owned();
                let host = line.split_whitespace().next().expect("host ip").to_string();
                return Net { ns, idx, host };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("cannot set up a test network namespace: {last}");
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

#[test]
fn linux_kernel_client_locks_exclude_fuse_locks_and_blocked_locks_are_granted_by_callback() {
    assert_eq!(
        // SAFETY: no preconditions.
        unsafe { libc::geteuid() },
        0,
        "the kernel NLM test needs root (network namespaces, tap devices)"
    );
    assert!(
        std::path::Path::new("/dev/net/tun").exists(),
        "the kernel NLM test needs /dev/net/tun"
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

    let cluster = TestCluster::start(3);
    let mount = cluster.mount();
    std::fs::write(mount.join("nlm-target"), b"locked by two worlds\n").expect("create the file");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(mount.join("nlm-target"))
        .expect("open via FUSE");

    let net = Net::up();
    let listen: SocketAddr = format!("{}:0", net.host).parse().expect("address");
    let portmap = format!("{}:111", net.host);
    // Our portmap on the host address's port 111 is where the guest's
    // lockd looks for NLM; the guest's own rpcbind (port 111) is where the
    // gateway looks for the guest's lockd.
    let gw = cluster.start_gateway_on(listen, &["--portmap-listen", &portmap]);
    eprintln!(
        "gateway on {} (portmap {portmap}), netns {}",
        gw.addr(),
        net.ns
    );

    let pidfile = cluster.root().join("qemu.pid");
    let child = Command::new(script())
        .args([
            "boot",
            &net.ns,
            &net.idx.to_string(),
            &gw.port().to_string(),
            "/test",
        ])
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
    let mut passes = Vec::new();
    let mut fails = Vec::new();
    let mut result = None;
    let mut tail: Vec<String> = Vec::new();
    while result.is_none() {
        let left = VM_TIMEOUT.saturating_sub(started.elapsed());
        let line = match rx.recv_timeout(left) {
            Ok(l) => l,
            Err(_) => break,
        };
        tail.push(line.clone());
        if tail.len() > 40 {
            tail.remove(0);
        }
        let Some(msg) = line.find("KNC: ").map(|i| line[i + 5..].to_string()) else {
            continue;
        };
        eprintln!("[{:6.1}s] KNC: {msg}", started.elapsed().as_secs_f64());
        if let Some(action) = msg.strip_prefix("ASK ") {
            let answer = match action.trim() {
                "fuse-lock" => match fuse_lock(&f, libc::F_WRLCK) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("error {e}"),
                },
                "fuse-unlock" => match fuse_lock(&f, libc::F_UNLCK) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("error {e}"),
                },
                "fuse-try" => match fuse_lock(&f, libc::F_WRLCK) {
                    Ok(()) => {
                        let _ = fuse_lock(&f, libc::F_UNLCK);
                        "granted".to_string()
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => "EAGAIN".to_string(),
                    Err(e) => format!("error {e}"),
                },
                other => format!("unknown action {other}"),
            };
            eprintln!("[{:6.1}s] host: {answer}", started.elapsed().as_secs_f64());
            // The serial line: the guest reads it from /dev/console.
            let _ = console.write_all(format!("{answer}\n").as_bytes());
            let _ = console.flush();
        } else if let Some(p) = msg.strip_prefix("PASS ") {
            passes.push(p.to_string());
        } else if let Some(p) = msg.strip_prefix("FAIL ") {
            fails.push(p.to_string());
        } else if let Some(r) = msg.strip_prefix("RESULT ") {
            result = Some(r.to_string());
        }
    }
    drop(vm);
    let Some(result) = result else {
        panic!(
            "no RESULT from the guest within {VM_TIMEOUT:?}; last console lines:\n{}",
            tail.join("\n")
        );
    };
    assert!(
        fails.is_empty() && result.starts_with("PASS"),
        "guest checks failed: {fails:#?}\nresult: {result}\ngateway log:\n{}",
        std::fs::read_to_string(gw.log()).unwrap_or_default()
    );
    for want in [
        "mount without nolock",
        "F_SETLK while FUSE holds the lock -> EAGAIN",
        "F_SETLKW granted",
        "FUSE F_SETLK while the guest holds the lock -> EAGAIN",
        "FUSE F_SETLK after the guest unlocked -> granted",
    ] {
        assert!(
            passes.iter().any(|p| p.starts_with(want)),
            "no PASS {want:?} among {passes:#?}"
        );
    }
    let log = std::fs::read_to_string(gw.log()).unwrap_or_default();
    assert!(
        log.contains("client took the granted lock"),
        "the grant went by the GRANTED callback; gateway log:\n{log}"
    );
}
