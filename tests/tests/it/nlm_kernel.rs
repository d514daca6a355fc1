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
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tests::kernel_nfs::{self, Net};
use tests::TestCluster;

/// The whole VM run, boot included (TCG: boot ~15 s, checks ~15 s).
const VM_TIMEOUT: Duration = Duration::from_secs(280);

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

#[test]
fn linux_kernel_client_locks_exclude_fuse_locks_and_blocked_locks_are_granted_by_callback() {
    kernel_nfs::prepare();
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
    let run = kernel_nfs::run_guest(
        &net,
        gw.port(),
        "/test",
        &[],
        cluster.root(),
        VM_TIMEOUT,
        |action| match action {
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
        },
    );
    let Some(result) = &run.result else {
        panic!(
            "no RESULT from the guest within {VM_TIMEOUT:?}; last console lines:\n{}",
            run.tail.join("\n")
        );
    };
    assert!(
        run.passed(),
        "guest checks failed: {:#?}\nresult: {result}\ngateway log:\n{}",
        run.fails,
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
            run.has_pass(want),
            "no PASS {want:?} among {:#?}",
            run.passes
        );
    }
    let log = std::fs::read_to_string(gw.log()).unwrap_or_default();
    assert!(
        log.contains("client took the granted lock"),
        "the grant went by the GRANTED callback; gateway log:\n{log}"
    );
}
