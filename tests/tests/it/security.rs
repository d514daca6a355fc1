//! Mutual TLS at the bricks: plaintext, strangers' and stale certificates
//! get nothing; each role calls only what it may; a CA rotation under a
//! streaming writer costs the writer nothing.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::{FsError, Gfid, Name, Purpose, Txn};
use tests::cluster::{log_count, wait_until, TestCluster, VOLUME};
use tests::raw;
use tests::tls::{self as harness, Security};
use tls::ca::{self, Request};
use tls::{Files, Role, Tls};

const T: Duration = Duration::from_secs(5);

/// `hello` on a fresh connection as `who`: what the brick answers, or why
/// there was no answer.
async fn hello_as(who: &Tls, addr: std::net::SocketAddr, purpose: Purpose) -> Result<(), String> {
    let c = raw::connect_as(who, addr)
        .await
        .map_err(|e| e.to_string())?;
    match c.hello(raw::context(T), 1, VOLUME.into(), purpose).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("refused: {e}")),
        Err(e) => Err(format!("no answer: {e}")),
    }
}

/// A certificate of role `role` issued by the CA in `ca_dir` into `out`,
/// trusting `bundle`.
fn issued(
    ca_dir: &Path,
    out: &Path,
    role: Role,
    name: &str,
    from_days: i64,
    days: u32,
    bundle: &Path,
) -> Arc<Tls> {
    let cert = ca::issue(
        ca_dir,
        out,
        &Request {
            role,
            name: name.into(),
            hosts: vec![],
            from_days,
            days,
            tenant: None,
        },
    )
    .expect("issue");
    Tls::open(Files {
        ca: bundle.to_path_buf(),
        cert,
        key: out.join(format!("{name}.key")),
    })
    .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_a_brick_gets_nothing_on_either_connection() {
    let cluster = TestCluster::start(1);
    let addr = cluster.brick_addr(0);
    // What an old (plaintext) client sends first on each connection: a
    // tarpc frame, and the data connection's magic with a session.
    let mut data_hello = proto::data::MAGIC.to_vec();
    data_hello.extend_from_slice(&7u64.to_le_bytes());
    for bytes in [raw::frame(b"\x00\x01\x02\x03hello"), data_hello] {
        let out = tokio::task::spawn_blocking(move || raw::send_plain(addr, &bytes, T))
            .await
            .unwrap()
            .unwrap();
        // At most a TLS alert (content type 21), never an answer.
        assert!(
            out.is_empty() || out[0] == 0x15,
            "plaintext was answered: {out:?}"
        );
    }
    assert!(
        wait_until(T, || log_count(
            &cluster.brick_log(0),
            "TLS handshake failed"
        ) >= 2),
        "the brick's log does not say it refused plaintext"
    );
    assert!(raw::answers_ping(addr, T).await, "brick stopped serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_and_stale_certificates_are_refused() {
    let cluster = TestCluster::start(1);
    let addr = cluster.brick_addr(0);
    let bundle = harness::dir().join(ca::BUNDLE);
    let tmp = tempfile::tempdir().unwrap();

    // A certificate of another CA, presented to our brick.
    let other = tmp.path().join("other-ca");
    ca::init(&other, "another cluster's CA", "other", 30).unwrap();
    let stranger = issued(&other, tmp.path(), Role::Admin, "stranger", 0, 5, &bundle);
    assert!(hello_as(&stranger, addr, Purpose::Client).await.is_err());
    // A client that trusts only the other CA does not take our brick for one.
    let misled = issued(
        &other,
        tmp.path(),
        Role::Admin,
        "misled",
        0,
        5,
        &other.join(ca::BUNDLE),
    );
    let e = hello_as(&misled, addr, Purpose::Client).await.unwrap_err();
    assert!(e.contains("invalid peer certificate"), "{e}");

    // Our CA's, but expired, or not valid yet.
    let expired = issued(
        harness::dir(),
        tmp.path(),
        Role::Admin,
        "expired",
        -30,
        10,
        &bundle,
    );
    let early = issued(
        harness::dir(),
        tmp.path(),
        Role::Admin,
        "early",
        3,
        10,
        &bundle,
    );
    for who in [&expired, &early] {
        assert!(hello_as(who, addr, Purpose::Client).await.is_err());
    }
    // The refusals so far: a stranger's CA both ways, then these two.
    let log = cluster.brick_log(0);
    assert!(
        wait_until(T, || log_count(&log, "TLS handshake failed") >= 4),
        "the brick's log does not say it refused them"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("Expired") || text.contains("expired"),
        "{text}"
    );
    assert!(
        text.contains("NotValidYet") || text.contains("not valid yet"),
        "{text}"
    );
    // And ours still works.
    let admin = harness::identity(Role::Admin);
    hello_as(&admin, addr, Purpose::Client).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_calls_only_what_it_may() {
    let cluster = TestCluster::start(1);
    let addr = cluster.brick_addr(0);
    let quota = Name::new(proto::QUOTA_XATTR);
    let limit = proto::Bytes::from(
        proto::QuotaLimit {
            bytes: 1 << 20,
            inodes: None,
        }
        .encode(),
    );

    for (role, may_heal, may_limit) in [
        (Role::Client, false, false),
        (Role::Gateway, false, false),
        (Role::Heal, true, true),
        (Role::Admin, true, true),
    ] {
        let who = harness::identity(role);
        let c = raw::connect_as(&who, addr).await.unwrap();
        c.hello(raw::context(T), 1, VOLUME.into(), Purpose::Client)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{role}: hello: {e}"));
        let healed = c.heal_index(raw::context(T), None, 10).await.unwrap();
        assert_eq!(healed.is_ok(), may_heal, "{role}: heal_index: {healed:?}");
        if !may_heal {
            assert!(matches!(healed, Err(FsError::Perm)), "{role}: {healed:?}");
        }
        // Which files are busy, and where a brick's time goes, are the
        // operators' to see (`volume top`, `volume profile`).
        let top = c.top(raw::context(T), 10, false).await.unwrap();
        assert_eq!(top.is_ok(), may_heal, "{role}: top: {top:?}");
        let profile = c
            .profile(raw::context(T), proto::ProfileCmd::Info)
            .await
            .unwrap();
        assert_eq!(profile.is_ok(), may_heal, "{role}: profile: {profile:?}");
        let maint = hello_as(&who, addr, Purpose::Maintenance).await;
        assert_eq!(
            maint.is_ok(),
            may_heal,
            "{role}: maintenance hello: {maint:?}"
        );

        // A sub-volume limit, on a directory of the role's own making.
        let dir = Gfid::random();
        let new = proto::NewObject {
            gfid: dir,
            ..raw::new_object(format!("d-{role}").as_bytes(), proto::FileKind::Dir, 0o755)
        };
        let made = c
            .create(raw::context(T), Txn::none(), Gfid::ROOT, new)
            .await
            .unwrap();
        assert!(made.is_ok(), "{role}: mkdir: {made:?}");
        let set = c
            .setxattr(
                raw::context(T),
                Txn::none(),
                dir,
                quota.clone(),
                limit.clone(),
                0,
            )
            .await
            .unwrap();
        assert_eq!(set.is_ok(), may_limit, "{role}: set a limit: {set:?}");
    }

    // Roles that never use bricks get no connection at all.
    for role in [Role::Provisioner, Role::Brick, Role::Api, Role::Store] {
        let who = harness::identity(role);
        assert!(
            hello_as(&who, addr, Purpose::Client).await.is_err(),
            "{role} was served"
        );
    }
    assert!(
        log_count(&cluster.brick_log(0), "this role does not use bricks") >= 4,
        "the brick's log does not say why"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_binds_a_brick_to_a_volume() {
    let cluster = TestCluster::start(0);
    let dir = cluster.root().join("fresh");
    let brick = tests::extra_brick::ExtraBrick::start(&cluster, &dir, None);
    let addr: std::net::SocketAddr = brick.addr.parse().unwrap();
    let client = harness::identity(Role::Client);
    let e = hello_as(&client, addr, Purpose::Client).await.unwrap_err();
    assert!(e.contains("only an admin binds it"), "{e}");
    let admin = harness::identity(Role::Admin);
    hello_as(&admin, addr, Purpose::Client).await.unwrap();
    // Bound now: the client is served.
    hello_as(&client, addr, Purpose::Client).await.unwrap();
}

/// Issues every role's certificate of `dir` again, from the CA in `ca_dir`.
fn reissue_all(ca_dir: &Path, dir: &Path) {
    for role in tls::role::ALL_ROLES {
        if role == Role::Tenant {
            continue;
        }
        ca::issue(
            ca_dir,
            dir,
            &Request {
                role,
                name: role.as_str().into(),
                hosts: vec!["127.0.0.1".into()],
                from_days: 0,
                days: 30,
                tenant: None,
            },
        )
        .unwrap();
    }
}

#[test]
fn a_ca_rotation_under_a_streaming_writer_costs_the_writer_nothing() {
    let creds = tempfile::tempdir().unwrap();
    ca::init_with_roles(creds.path(), &["127.0.0.1".into()]).unwrap();
    let cluster = TestCluster::start_with_security(3, Security::Dir(creds.path().to_path_buf()));
    let m = cluster.mount();
    let reloads = |want: usize| {
        let logs: Vec<_> = (0..3)
            .map(|i| cluster.brick_log(i))
            .chain([m.log().to_path_buf()])
            .collect();
        assert!(
            wait_until(Duration::from_secs(20), || logs
                .iter()
                .all(|l| log_count(l, "TLS credentials reloaded") >= want)),
            "not every process reloaded its credentials ({want})"
        );
    };

    // The writer: 64 KiB chunks of a known pattern, an fsync every 16.
    const CHUNK: usize = 64 * 1024;
    let stop = Arc::new(AtomicBool::new(false));
    let path = m.path().join("stream");
    let writer = {
        let stop = stop.clone();
        let path = path.clone();
        std::thread::spawn(move || -> Result<usize, String> {
            let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) || n < 64 {
                let chunk = vec![(n % 251) as u8; CHUNK];
                f.write_all(&chunk).map_err(|e| format!("write {n}: {e}"))?;
                n += 1;
                if n.is_multiple_of(16) {
                    f.sync_data().map_err(|e| format!("fsync at {n}: {e}"))?;
                }
            }
            f.sync_all().map_err(|e| format!("last fsync: {e}"))?;
            Ok(n)
        })
    };

    // 1. The new CA beside the old one.
    let new_ca = tempfile::tempdir().unwrap();
    ca::init(new_ca.path(), "rotated CA", "dev", 30).unwrap();
    let old_ca_cert = std::fs::read_to_string(creds.path().join(ca::CA_CERT)).unwrap();
    let new_ca_cert = std::fs::read_to_string(new_ca.path().join(ca::CA_CERT)).unwrap();
    let bundle = creds.path().join(ca::BUNDLE);
    ca::write_whole(
        &bundle,
        format!("{old_ca_cert}{new_ca_cert}").as_bytes(),
        false,
    )
    .unwrap();
    reloads(1);
    // 2. Every certificate from the new CA (the old admin's kept aside).
    let old = tempfile::tempdir().unwrap();
    for f in ["admin.pem", "admin.key"] {
        std::fs::copy(creds.path().join(f), old.path().join(f)).unwrap();
    }
    reissue_all(new_ca.path(), creds.path());
    reloads(2);
    // A brick restarted now meets the mount with new certificates only.
    cluster.restart_brick(0);
    // 3. The old CA goes.
    ca::write_whole(&bundle, new_ca_cert.as_bytes(), false).unwrap();
    reloads(3);
    assert!(
        wait_until(Duration::from_secs(20), || m.log_has("brick up")
            && log_count(m.log(), "brick up") >= 4),
        "the mount did not reconnect to the restarted brick"
    );
    cluster.restart_brick(1);
    assert!(
        wait_until(Duration::from_secs(20), || log_count(m.log(), "brick up")
            >= 5),
        "the mount did not reconnect to the second restarted brick"
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap().expect("the writer saw an error");

    let mut f = std::fs::File::open(&path).unwrap();
    assert_eq!(f.metadata().unwrap().len() as usize, written * CHUNK);
    let mut buf = vec![0u8; CHUNK];
    for n in 0..written {
        f.seek(SeekFrom::Start((n * CHUNK) as u64)).unwrap();
        f.read_exact(&mut buf).unwrap();
        assert!(
            buf.iter().all(|&b| b == (n % 251) as u8),
            "chunk {n} is wrong"
        );
    }

    // The old CA's admin is a stranger now.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let old_admin = Tls::open(Files {
        ca: bundle.clone(),
        cert: old.path().join("admin.pem"),
        key: old.path().join("admin.key"),
    })
    .unwrap();
    let addr = cluster.brick_addr(0);
    assert!(rt
        .block_on(hello_as(&old_admin, addr, Purpose::Client))
        .is_err());
}

/// Connections that open and then say nothing (or half a handshake) hold
/// only themselves: others are served at once, and the silent ones are
/// closed after the brick's handshake deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handshakes_do_not_stall_the_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = TestCluster::start(1);
    let addr = cluster.brick_addr(0);
    let mut silent = Vec::new();
    for half in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00][..]] {
        for _ in 0..3 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(half).await.unwrap();
            silent.push(s);
        }
    }
    let admin = harness::identity(Role::Admin);
    let served = tokio::time::timeout(T, hello_as(&admin, addr, Purpose::Client)).await;
    assert!(
        matches!(served, Ok(Ok(()))),
        "a real client waited: {served:?}"
    );
    // Each silent connection is closed by the brick, within its deadline
    // (10 s) and a margin.
    for mut s in silent {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a silent connection was kept open");
    }
    // The brick closes the socket before it writes the line that says why.
    assert!(
        wait_until(Duration::from_secs(5), || log_count(
            &cluster.brick_log(0),
            "TLS handshake too slow"
        ) >= 6),
        "the brick's log does not say why it closed them"
    );
}

/// A session number alone lets nobody in: a data connection must show the
/// certificate of the RPC connection whose session it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_connection_must_show_its_sessions_certificate() {
    use proto::data::{RequestHeader, MAGIC, OP_READ};
    let cluster = TestCluster::start(1);
    let addr = cluster.brick_addr(0);
    let ask = |session: u64| {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&session.to_le_bytes());
        let read = RequestHeader {
            id: 1,
            op: OP_READ,
            gfid: Gfid::random(),
            offset: 0,
            size: 16,
            blame: vec![],
        };
        b.extend_from_slice(&read.encode(0));
        b
    };
    let session_of = |who: Arc<Tls>| async move {
        let c = raw::connect_as(&who, addr).await.unwrap();
        let s = c
            .hello(raw::context(T), 5, VOLUME.into(), Purpose::Client)
            .await
            .unwrap()
            .unwrap()
            .session;
        (c, s)
    };
    // raw::send_raw_data speaks as the harness's admin.
    let (_own, own) = session_of(harness::identity(Role::Admin)).await;
    let (_other, other) = session_of(harness::identity(Role::Client)).await;
    let answer =
        |bytes: Vec<u8>| tokio::task::spawn_blocking(move || raw::send_raw_data(addr, &bytes, T));
    let served = answer(ask(own)).await.unwrap().unwrap();
    assert!(!served.is_empty(), "its own session was not served");
    let refused = answer(ask(other)).await.unwrap().unwrap();
    assert!(
        refused.is_empty(),
        "another certificate's session was served"
    );
    assert!(
        log_count(
            &cluster.brick_log(0),
            "data connection from another identity than its session's"
        ) >= 1
    );
}
