//! The gateway's lock manager (NLM v4, NSM) against real bricks, driven by
//! a hand-written NLM client (`tests::nfs::nlm`), with a FUSE mount of the
//! same volume taking fcntl locks on the same files: NFS and FUSE clients
//! exclude each other both ways. The client host's side of the callbacks is
//! a `FakeLockd` the gateway finds through `--callback-rpcbind-port`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use tests::nfs::nlm::{
    FakeLockd, NlmClient, NlmLock, NLM4_BLOCKED, NLM4_DENIED, NLM4_DENIED_GRACE_PERIOD,
    NLM4_GRANTED, NLM4_STALE_FH,
};
use tests::nfs::rpc::{Auth, Nfs3Client, Reply, XdrOut};
use tests::nfs::Gateway;
use tests::{wait_until, Mount, TestCluster};

/// fcntl(F_SETLK / F_SETLKW) on a FUSE file.
fn fuse_lock(f: &File, typ: libc::c_int, start: i64, len: i64, wait: bool) -> io::Result<()> {
    // SAFETY: a plain-data struct, all zeroes is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    let cmd = if wait { libc::F_SETLKW } else { libc::F_SETLK };
    // SAFETY: `fl` outlives the call; the fd is open.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), cmd, &fl) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits up to `within` for FUSE to take a whole-file write lock (and
/// keeps it): what was held over NFS has been given back.
fn fuse_gets_it(f: &File, within: Duration) -> bool {
    wait_until(within, || fuse_lock(f, libc::F_WRLCK, 0, 0, false).is_ok())
}

#[track_caller]
fn assert_would_block(r: io::Result<()>) {
    let e = r.expect_err("the lock should be refused");
    assert!(
        matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)),
        "expected EAGAIN, got {e}"
    );
}

fn open_rw(mount: &Mount, name: &str) -> File {
    let path = mount.join(name);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// The NFS handle of `name` in the volume root.
fn handle(gw: &Gateway, name: &str) -> Vec<u8> {
    let mut c = Nfs3Client::connect(gw.addr()).expect("connect");
    let root = c.mnt("/test").expect("MNT").expect("MNT OK");
    c.lookup(&root, name.as_bytes())
        .expect("LOOKUP")
        .unwrap_or_else(|s| panic!("LOOKUP {name}: nfsstat3 {s}"))
}

/// SM_NOTIFY as one UDP datagram from `from`, as sm-notify sends it; waits
/// for the (empty) reply.
fn sm_notify_udp(gw: &Gateway, from: std::net::IpAddr, mon_name: &str, state: u32) {
    let sock = std::net::UdpSocket::bind((from, 0)).expect("bind UDP");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut args = XdrOut::new();
    args.opaque(mon_name.as_bytes()).u32(state);
    let msg = tests::nfs::rpc::call_message(0x5eed, 100_024, 1, 6, &Auth::Null, args.bytes());
    sock.send_to(&msg, gw.addr()).expect("send SM_NOTIFY");
    let mut buf = [0u8; 512];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer over UDP");
    assert_eq!(
        tests::nfs::rpc::parse_reply(0x5eed, &buf[..n]).expect("reply"),
        Reply::Success(Vec::new())
    );
}

fn nlm(gw: &Gateway) -> NlmClient {
    NlmClient::connect(gw.addr()).expect("connect NLM")
}

#[test]
fn locks_exclude_fuse_clients_both_ways() {
    let cluster = TestCluster::start(3);
    let mount = cluster.mount();
    let gw = cluster.start_gateway(&[]);
    let f = open_rw(&mount, "shared");
    let fh = handle(&gw, "shared");
    let mut c = nlm(&gw);
    let a = NlmLock::new("alpha", &fh, 11, 0, 0);
    let b = NlmLock::new("alpha", &fh, 12, 0, 100);

    // NFS holds a whole-file write lock: FUSE is refused, another NLM
    // owner too (its TEST names the holder), the same owner may re-lock.
    assert_eq!(c.lock(&a, true, false, false).expect("LOCK"), NLM4_GRANTED);
    assert_eq!(c.lock(&a, true, false, false).expect("LOCK"), NLM4_GRANTED);
    assert_would_block(fuse_lock(&f, libc::F_WRLCK, 10, 5, false));
    assert_would_block(fuse_lock(&f, libc::F_RDLCK, 0, 0, false));
    assert_eq!(c.lock(&b, false, false, false).expect("LOCK"), NLM4_DENIED);
    let (stat, holder) = c.test(&b, true).expect("TEST").expect("a conflict");
    assert_eq!(stat, NLM4_DENIED);
    let holder = holder.expect("holder");
    assert_eq!((holder.svid, holder.oh.as_slice()), (11, &b"11@alpha"[..]));
    assert!(holder.exclusive);
    assert_eq!((holder.offset, holder.len), (0, 0));
    assert_eq!(c.test(&a, true).expect("TEST"), None, "its own lock");

    // Unlocked: FUSE gets it, and now NFS is refused.
    assert_eq!(c.unlock(&a).expect("UNLOCK"), NLM4_GRANTED);
    fuse_lock(&f, libc::F_WRLCK, 50, 10, false).expect("FUSE lock after UNLOCK");
    assert_eq!(c.lock(&a, true, false, false).expect("LOCK"), NLM4_DENIED);
    let (_, holder) = c.test(&b, false).expect("TEST").expect("a conflict");
    let holder = holder.expect("holder");
    assert_eq!(holder.svid as u32, std::process::id(), "the FUSE process");
    assert_eq!((holder.offset, holder.len), (50, 10));
    // Outside FUSE's range, a shared NFS lock is fine.
    let low = NlmLock::new("alpha", &fh, 13, 0, 50);
    assert_eq!(
        c.lock(&low, false, false, false).expect("LOCK"),
        NLM4_GRANTED
    );
    assert_would_block(fuse_lock(&f, libc::F_WRLCK, 40, 20, false));
    fuse_lock(&f, libc::F_UNLCK, 0, 0, false).expect("FUSE unlock");
    assert_eq!(c.unlock(&low).expect("UNLOCK"), NLM4_GRANTED);
    assert_eq!(c.lock(&a, true, false, false).expect("LOCK"), NLM4_GRANTED);
    assert_eq!(c.unlock(&a).expect("UNLOCK"), NLM4_GRANTED);

    // A handle that is not ours, and arguments cut short.
    let bogus = NlmLock::new("alpha", &[1, 2, 3], 11, 0, 0);
    assert_eq!(
        c.lock(&bogus, true, false, false).expect("LOCK"),
        NLM4_STALE_FH
    );
    let mut cut = XdrOut::new();
    cut.opaque(b"ck")
        .u32(0)
        .u32(1)
        .opaque(b"alpha")
        .u32(u32::MAX);
    let r = c.rpc.call(100_021, 4, 2, &Auth::root(), cut.bytes());
    assert_eq!(r.expect("call"), Reply::GarbageArgs);
    assert_eq!(
        c.rpc.call(100_021, 1, 0, &Auth::root(), &[]).expect("call"),
        Reply::ProgMismatch { low: 4, high: 4 }
    );
    // The connection is still served.
    assert_eq!(c.lock(&a, true, false, false).expect("LOCK"), NLM4_GRANTED);
}

#[test]
fn blocked_lock_is_granted_by_callback_and_cancel_ends_the_wait() {
    let cluster = TestCluster::start(3);
    let mount = cluster.mount();
    let lockd = FakeLockd::start();
    let port = lockd.port().to_string();
    let gw = cluster.start_gateway(&["--callback-rpcbind-port", &port]);
    let f = open_rw(&mount, "queue");
    let fh = handle(&gw, "queue");
    let mut c = nlm(&gw);
    let l = NlmLock::new("beta", &fh, 21, 0, 0);

    // FUSE holds it; a blocking NLM lock waits.
    fuse_lock(&f, libc::F_WRLCK, 0, 0, false).expect("FUSE lock");
    assert_eq!(c.lock(&l, true, true, false).expect("LOCK"), NLM4_BLOCKED);
    // Resent (Linux does every 30 s): still the same wait.
    assert_eq!(c.lock(&l, true, true, false).expect("LOCK"), NLM4_BLOCKED);
    std::thread::sleep(Duration::from_millis(500));
    assert!(lockd.granted().is_empty(), "granted while FUSE holds it");
    let released = Instant::now();
    fuse_lock(&f, libc::F_UNLCK, 0, 0, false).expect("FUSE unlock");
    let g = lockd
        .wait_granted(1, Duration::from_secs(10))
        .expect("a GRANTED callback");
    eprintln!(
        "GRANTED callback {:?} after the FUSE unlock",
        released.elapsed()
    );
    assert_eq!(g.lock, l, "the client's lock, as it sent it");
    assert!(g.exclusive);
    assert_eq!(
        g.from.ip().to_string(),
        "127.0.0.1",
        "from the address locked with"
    );
    // The lock is the client's now.
    assert_would_block(fuse_lock(&f, libc::F_WRLCK, 0, 1, false));
    assert_eq!(c.lock(&l, true, true, false).expect("LOCK"), NLM4_GRANTED);
    assert_eq!(lockd.granted().len(), 1, "one callback");

    // A FUSE waiter (F_SETLKW) gets it when NFS unlocks.
    let f2 = open_rw(&mount, "queue");
    let waiter = std::thread::spawn(move || fuse_lock(&f2, libc::F_WRLCK, 0, 0, true).map(|()| f2));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiter.is_finished(), "FUSE waits while NFS holds");
    assert_eq!(c.unlock(&l).expect("UNLOCK"), NLM4_GRANTED);
    let f2 = waiter
        .join()
        .expect("waiter")
        .expect("FUSE F_SETLKW granted");

    // CANCEL ends a wait: no callback, and the lock is not taken for it.
    assert_eq!(c.lock(&l, true, true, false).expect("LOCK"), NLM4_BLOCKED);
    assert_eq!(c.cancel(&l, true).expect("CANCEL"), NLM4_GRANTED);
    assert_eq!(
        c.cancel(&l, true).expect("CANCEL"),
        NLM4_DENIED,
        "nothing left to cancel"
    );
    fuse_lock(&f2, libc::F_UNLCK, 0, 0, false).expect("FUSE unlock");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lockd.granted().len(), 1, "no callback after CANCEL");
    fuse_lock(&f, libc::F_WRLCK, 0, 0, false).expect("nobody took it");

    // The _MSG variants answer through the client's lockd (_RES calls).
    let free = NlmLock::new("beta", &fh, 22, 0, 0);
    c.test_msg(&free, true).expect("TEST_MSG");
    c.lock_msg(&l, true).expect("LOCK_MSG");
    assert!(
        wait_until(Duration::from_secs(5), || lockd.results().len() == 2),
        "TEST_RES and LOCK_RES: {:?}",
        lockd.results()
    );
    let mut results = lockd.results();
    results.sort();
    // FUSE holds the file: TEST finds it, LOCK is denied.
    assert_eq!(results, vec![(11, NLM4_DENIED), (12, NLM4_DENIED)]);

    // A client that no longer wants the lock answers DENIED: given back.
    lockd.answer_granted_with(NLM4_DENIED);
    assert_eq!(c.lock(&l, true, true, false).expect("LOCK"), NLM4_BLOCKED);
    fuse_lock(&f, libc::F_UNLCK, 0, 0, false).expect("FUSE unlock");
    lockd
        .wait_granted(2, Duration::from_secs(10))
        .expect("a second callback");
    assert!(
        fuse_gets_it(&f, Duration::from_secs(5)),
        "the refused grant was given back"
    );
}

#[test]
fn a_grant_whose_callback_cannot_be_delivered_waits_for_the_resent_lock() {
    let cluster = TestCluster::start(3);
    let mount = cluster.mount();
    // Nothing answers there: the client host's portmapper and lockd are
    // unreachable, so every GRANTED callback fails.
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let gw = cluster.start_gateway(&["--callback-rpcbind-port", &unreachable]);
    let f = open_rw(&mount, "undelivered");
    let fh = handle(&gw, "undelivered");
    let mut c = nlm(&gw);
    let l = NlmLock::new("eta", &fh, 71, 0, 0);
    let other = NlmLock::new("eta", &fh, 72, 0, 0);

    fuse_lock(&f, libc::F_WRLCK, 0, 0, false).expect("FUSE lock");
    assert_eq!(c.lock(&l, true, true, false).expect("LOCK"), NLM4_BLOCKED);
    fuse_lock(&f, libc::F_UNLCK, 0, 0, false).expect("FUSE unlock");
    // The bricks grant it to the gateway for the waiting owner (TEST by
    // another owner names it, without taking anything)...
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            last = Some(c.test(&other, true).expect("TEST"));
            matches!(&last, Some(Some((NLM4_DENIED, Some(h)))) if h.svid == 71)
        }),
        "the blocked lock was not taken for its owner: {last:?}"
    );
    // ...and keeps it for the client while the callbacks fail.
    std::thread::sleep(Duration::from_secs(2));
    assert_would_block(fuse_lock(&f, libc::F_WRLCK, 0, 0, false));
    // The client's resent LOCK picks it up.
    assert_eq!(c.lock(&l, true, true, false).expect("LOCK"), NLM4_GRANTED);
    assert_would_block(fuse_lock(&f, libc::F_WRLCK, 0, 0, false));
    assert_eq!(c.unlock(&l).expect("UNLOCK"), NLM4_GRANTED);
    fuse_lock(&f, libc::F_WRLCK, 0, 0, false).expect("FUSE lock after UNLOCK");
}

#[test]
fn after_a_restart_clients_are_notified_and_only_reclaims_are_granted() {
    let cluster = TestCluster::start(3);
    let mount = cluster.mount();
    let lockd = FakeLockd::start();
    let port = lockd.port().to_string();
    let gw = cluster.start_gateway(&["--callback-rpcbind-port", &port, "--grace", "10"]);
    let f = open_rw(&mount, "kept");
    let _other = open_rw(&mount, "other");
    let fh = handle(&gw, "kept");
    let other_fh = handle(&gw, "other");
    let held = NlmLock::new("gamma", &fh, 31, 0, 0);
    let fresh = NlmLock::new("gamma", &other_fh, 32, 0, 0);
    {
        let mut c = nlm(&gw);
        assert_eq!(
            c.lock(&held, true, false, false).expect("LOCK"),
            NLM4_GRANTED
        );
    }
    assert!(lockd.notified().is_empty(), "no restart yet");

    gw.restart();
    let restarted = Instant::now();
    // The old process's locks went with its connections to the bricks.
    assert!(
        wait_until(Duration::from_secs(5), || lockd.notified().len() == 1),
        "SM_NOTIFY to the host that held a lock"
    );
    let (mon_name, state) = lockd.notified()[0].clone();
    assert_eq!(mon_name, "127.0.0.1", "names us as the client reached us");
    assert!(state % 2 == 1 && state >= 3, "a new odd state: {state}");

    let mut c = nlm(&gw);
    assert_eq!(
        c.lock(&fresh, true, false, false).expect("LOCK"),
        NLM4_DENIED_GRACE_PERIOD,
        "a new lock in the grace period"
    );
    assert_eq!(
        c.test(&fresh, true).expect("TEST").map(|(s, _)| s),
        Some(NLM4_DENIED_GRACE_PERIOD)
    );
    assert_eq!(
        c.lock(&held, true, false, true).expect("reclaim"),
        NLM4_GRANTED
    );
    assert_would_block(fuse_lock(&f, libc::F_WRLCK, 0, 0, false));
    assert!(
        restarted.elapsed() < Duration::from_secs(10),
        "checked within the grace period"
    );

    // After the grace period: new locks again, reclaims no more.
    std::thread::sleep(
        Duration::from_secs(10).saturating_sub(restarted.elapsed()) + Duration::from_millis(500),
    );
    assert_eq!(
        c.lock(&fresh, true, false, false).expect("LOCK"),
        NLM4_GRANTED
    );
    assert_eq!(
        c.lock(&fresh, true, false, true).expect("late reclaim"),
        NLM4_DENIED_GRACE_PERIOD
    );
    assert_eq!(c.unlock(&held).expect("UNLOCK"), NLM4_GRANTED);
    fuse_lock(&f, libc::F_WRLCK, 0, 0, false).expect("FUSE lock after UNLOCK");
}

#[test]
fn hosts_that_go_silent_reboot_or_free_all_lose_their_locks() {
    let cluster = TestCluster::start(3);
    let mount = cluster.mount();
    let mut lockd = FakeLockd::start();
    let port = lockd.port().to_string();
    let gw = cluster.start_gateway(&[
        "--callback-rpcbind-port",
        &port,
        "--nlm-probe-every",
        "1",
        "--nlm-host-timeout",
        "3",
    ]);
    let names = ["silent", "rebooted", "freed"];
    let files: Vec<File> = names.iter().map(|n| open_rw(&mount, n)).collect();
    let fhs: Vec<Vec<u8>> = names.iter().map(|n| handle(&gw, n)).collect();

    // A host at another address (127.0.0.2) reboots: its SM_NOTIFY frees
    // what it held, but only with a new state number.
    let mut r =
        NlmClient::connect_from(gw.addr(), "127.0.0.2".parse().expect("ip")).expect("connect");
    let rl = NlmLock::new("delta", &fhs[1], 41, 0, 0);
    assert_eq!(r.lock(&rl, true, false, false).expect("LOCK"), NLM4_GRANTED);
    r.sm_notify("delta", 1).expect("SM_NOTIFY");
    std::thread::sleep(Duration::from_millis(300));
    assert_would_block(fuse_lock(&files[1], libc::F_WRLCK, 0, 0, false));
    // sm-notify sends over UDP: the gateway's port answers NSM there too.
    sm_notify_udp(&gw, "127.0.0.2".parse().expect("ip"), "delta", 3);
    assert!(
        fuse_gets_it(&files[1], Duration::from_secs(5)),
        "freed by SM_NOTIFY"
    );

    // FREE_ALL frees the calling host's locks.
    let mut c = nlm(&gw);
    let fl = NlmLock::new("epsilon", &fhs[2], 51, 0, 0);
    assert_eq!(c.lock(&fl, true, false, false).expect("LOCK"), NLM4_GRANTED);
    c.free_all("epsilon").expect("FREE_ALL");
    assert!(
        fuse_gets_it(&files[2], Duration::from_secs(5)),
        "freed by FREE_ALL"
    );

    // A host whose lockd answers the probes keeps its lock...
    let sl = NlmLock::new("zeta", &fhs[0], 61, 0, 0);
    assert_eq!(c.lock(&sl, true, false, false).expect("LOCK"), NLM4_GRANTED);
    drop(c);
    assert!(
        wait_until(Duration::from_secs(5), || lockd.probes() >= 2),
        "the gateway probes the host"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_would_block(fuse_lock(&files[0], libc::F_WRLCK, 0, 0, false));
    // ...until it stops answering.
    lockd.stop();
    let stopped = Instant::now();
    assert!(
        fuse_gets_it(&files[0], Duration::from_secs(10)),
        "freed after the host went silent"
    );
    eprintln!(
        "silent host freed {:?} after it stopped answering",
        stopped.elapsed()
    );
}
