//! Tenant scope at the bricks: a tenant's host (certificate role tenant)
//! reaches only the sub-volumes a scope token of the management API names,
//! whatever gfid or name it sends; tokens expired, of another issuer or
//! cluster, badly signed, `alg: none`, or of another tenant are refused;
//! root squash on by default; a FUSE mount of a tenant's host works inside
//! its sub-volume and renews its token from its file.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proto::{
    FileKind, FsError, Gfid, LockMode, Name, NewObject, PendingKind, Purpose, RecordLock,
    RecordLockType, RenameReq, SetAttr, Txn,
};
use tests::cluster::{wait_until, TestCluster, VOLUME};
use tests::failpoints::gfid_of;
use tests::raw;
use tests::tls as harness;
use tests::volume::StoreVolume;
use tls::scope::{Claims, ScopeRoot};
use tls::Tls;

const T: Duration = Duration::from_secs(5);

fn gfid(path: &Path) -> Gfid {
    let hex = gfid_of(path).unwrap_or_else(|| panic!("no gfid on {}", path.display()));
    Gfid::from_hex(&hex).expect("hex gfid")
}

/// Everything a change would touch of the tree at `dir` on a brick: names,
/// kinds, sizes, contents, owners, modes, times (ctime moves with any
/// attribute or xattr change) and every xattr.
fn snapshot(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).expect("stat");
        let mut xattrs: Vec<String> = tests::xattr::list(&p)
            .into_iter()
            .map(|n| {
                let v = tests::xattr::get(&p, &n).unwrap_or_default();
                format!("{n}={}", blake3::hash(&v).to_hex())
            })
            .collect();
        xattrs.sort();
        let content = if md.is_file() {
            blake3::hash(&std::fs::read(&p).expect("read"))
                .to_hex()
                .to_string()
        } else {
            String::new()
        };
        out.push(format!(
            "{:?} {:o} {}:{} size={} mtime={}.{} ctime={}.{} {content} {xattrs:?}",
            p.strip_prefix(dir).unwrap_or(&p),
            md.mode(),
            md.uid(),
            md.gid(),
            md.size(),
            md.mtime(),
            md.mtime_nsec(),
            md.ctime(),
            md.ctime_nsec()
        ));
        if md.is_dir() {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                stack.push(e.expect("entry").path());
            }
        }
    }
    out.sort();
    out
}

/// A volume with sub-volume `a` of tenant acme and `b` of tenant globex,
/// each with a file written by the admin's mount.
struct Two<'a> {
    v: StoreVolume<'a>,
    a: Gfid,
    b: Gfid,
    b_file: Gfid,
    b_dir: Gfid,
}

fn two_tenants(cluster: &TestCluster) -> Two<'_> {
    let v = StoreVolume::create(cluster);
    v.tenant("acme", &["10.8.0.0/16"], false);
    v.tenant("globex", &["10.9.0.0/16"], false);
    for (name, tenant) in [("a", "acme"), ("b", "globex")] {
        v.ok(&[
            "subvolume",
            "create",
            VOLUME,
            name,
            "--size",
            "16Mi",
            "--tenant",
            tenant,
            "--mode",
            "0777",
        ]);
    }
    let m = v.mount();
    std::fs::write(m.join("a/mine"), b"acme's own").unwrap();
    std::fs::write(m.join("b/secret"), b"globex's data, not acme's").unwrap();
    std::fs::create_dir(m.join("b/dir")).unwrap();
    m.unmount();
    let brick = cluster.brick_dir(0);
    Two {
        a: gfid(&brick.join("a")),
        b: gfid(&brick.join("b")),
        b_file: gfid(&brick.join("b/secret")),
        b_dir: gfid(&brick.join("b/dir")),
        v,
    }
}

fn root(name: &str, id: Gfid) -> ScopeRoot {
    ScopeRoot {
        name: name.into(),
        id: id.to_hex(),
        squash: true,
    }
}

fn token_for(tenant: &str, roots: Vec<ScopeRoot>) -> String {
    harness::scope_signer()
        .issue(tenant, VOLUME, roots, tls::scope::now(), 600)
        .unwrap()
}

/// A connection as `who` that said hello.
async fn hello(who: &Tls, addr: std::net::SocketAddr) -> (proto::BrickClient, u64) {
    let c = raw::connect_as(who, addr).await.expect("connect");
    let info = c
        .hello(raw::context(T), 77, VOLUME.into(), Purpose::Client)
        .await
        .expect("answer")
        .expect("hello");
    (c, info.session)
}

/// A setuid file owned by root: what root squash must not let through.
fn file(name: &str) -> NewObject {
    raw::new_object(name.as_bytes(), FileKind::File, 0o4755)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_host_with_forged_gfids_changes_nothing_of_another_tenant() {
    let cluster = TestCluster::start(3);
    let two = two_tenants(&cluster);
    let bricks: Vec<PathBuf> = (0..3).map(|i| cluster.brick_dir(i)).collect();
    let before: Vec<Vec<String>> = bricks.iter().map(|b| snapshot(&b.join("b"))).collect();

    let acme = harness::tenant_identity("acme");
    let addr = cluster.brick_addr(0);
    let (c, session) = hello(&acme, addr).await;
    // Nothing at all before a scope token.
    let r = c.getattr(raw::context(T), two.a).await.unwrap();
    assert!(matches!(r, Err(FsError::Perm)), "unscoped: {r:?}");
    c.scope(raw::context(T), token_for("acme", vec![root("a", two.a)]))
        .await
        .unwrap()
        .expect("acme's token for a");

    // Its own sub-volume: found by name from the volume root, usable.
    let ctx = || raw::context(T);
    let found = c.lookup(ctx(), Gfid::ROOT, Name::from("a")).await.unwrap();
    assert_eq!(found.expect("lookup a").attr.gfid, two.a);
    c.lookup(ctx(), two.a, Name::from("mine"))
        .await
        .unwrap()
        .expect("lookup a/mine");
    // Root squash: what acme's root makes is nobody's, setuid or not.
    c.create(ctx(), Txn::none(), two.a, file("made"))
        .await
        .unwrap()
        .expect("create in a");
    let made = std::fs::metadata(bricks[0].join("a/made")).unwrap();
    assert_eq!(
        (made.uid(), made.gid()),
        (65534, 65534),
        "root was not squashed"
    );

    // The other tenant's: by name, by gfid, through every operation.
    let mut served = Vec::new();
    macro_rules! refused {
        ($what:expr, $call:expr) => {
            match $call.await {
                Ok(Ok(v)) => served.push(format!("{}: {v:?}", $what)),
                Ok(Err(_)) => {}
                Err(e) => panic!("{}: no answer: {e}", $what),
            }
        };
    }
    let (bf, bd, broot) = (two.b_file, two.b_dir, two.b);
    refused!("lookup b", c.lookup(ctx(), Gfid::ROOT, Name::from("b")));
    refused!(
        "lookup b/secret",
        c.lookup(ctx(), broot, Name::from("secret"))
    );
    refused!("getattr", c.getattr(ctx(), bf));
    refused!("read", c.read(ctx(), bf, 0, 64));
    refused!(
        "write",
        c.write(ctx(), Txn::none(), bf, 0, b"owned".to_vec().into())
    );
    let trunc = SetAttr {
        size: Some(0),
        uid: Some(0),
        perm: Some(0o4777),
        ..SetAttr::default()
    };
    refused!("setattr", c.setattr(ctx(), Txn::none(), bf, trunc));
    refused!(
        "fallocate",
        c.fallocate(ctx(), Txn::none(), bf, 0, 0, 1 << 20)
    );
    refused!("fsync", c.fsync(ctx(), bf, false));
    refused!("getxattr", c.getxattr(ctx(), bf, Name::from("user.x")));
    refused!("listxattr", c.listxattr(ctx(), bf));
    refused!(
        "setxattr",
        c.setxattr(
            ctx(),
            Txn::none(),
            bf,
            Name::from("user.x"),
            b"1".to_vec().into(),
            0
        )
    );
    refused!(
        "removexattr",
        c.removexattr(ctx(), Txn::none(), bf, Name::from("user.x"))
    );
    refused!("readdir", c.readdir(ctx(), broot, None, 100));
    refused!("readdir dir", c.readdir(ctx(), bd, None, 100));
    refused!("statfs", c.statfs(ctx(), broot));
    refused!(
        "create",
        c.create(ctx(), Txn::none(), broot, file("planted"))
    );
    refused!(
        "mkdir in dir",
        c.create(ctx(), Txn::none(), bd, file("planted"))
    );
    refused!(
        "unlink",
        c.unlink(
            ctx(),
            Txn::none(),
            broot,
            Name::from("secret"),
            false,
            false
        )
    );
    refused!(
        "rmdir",
        c.unlink(ctx(), Txn::none(), broot, Name::from("dir"), true, false)
    );
    let steal = RenameReq {
        parent: broot,
        name: Name::from("secret"),
        new_parent: two.a,
        new_name: Name::from("stolen"),
        flags: 0,
    };
    refused!("rename out", c.rename(ctx(), Txn::none(), steal));
    let plant = RenameReq {
        parent: two.a,
        name: Name::from("made"),
        new_parent: broot,
        new_name: Name::from("planted"),
        flags: 0,
    };
    refused!("rename in", c.rename(ctx(), Txn::none(), plant));
    refused!(
        "link out",
        c.link(ctx(), Txn::none(), bf, two.a, Name::from("stolen"))
    );
    refused!(
        "inodelk",
        c.inodelk(ctx(), bf, LockMode::Acquire { wait_ms: 0 })
    );
    refused!(
        "mark_pending",
        c.mark_pending(ctx(), bf, vec![1], PendingKind::Data)
    );
    let lock = RecordLock {
        owner: 1,
        pid: 1,
        start: 0,
        end: u64::MAX,
        typ: RecordLockType::Write,
        flock: false,
    };
    refused!("setlk", c.setlk(ctx(), bf, lock));
    refused!("getlk", c.getlk(ctx(), bf, lock));
    refused!("purge", c.purge(ctx(), vec![bf]));
    // A new object in its own sub-volume under the gfid of globex's file
    // or directory: the gfid is taken, so nothing is made.
    let mut twin = file("twin-file");
    twin.gfid = bf;
    refused!(
        "create with b's file gfid",
        c.create(ctx(), Txn::none(), two.a, twin)
    );
    let mut twin_dir = file("twin-dir");
    twin_dir.kind = FileKind::Dir;
    twin_dir.gfid = bd;
    refused!(
        "mkdir with b's dir gfid",
        c.create(ctx(), Txn::none(), two.a, twin_dir)
    );
    refused!("getattr after the twins", c.getattr(ctx(), bf));
    assert!(served.is_empty(), "served outside the scope: {served:#?}");

    // Its quota view holds its own sub-volume only.
    let usages = c.quota_usage(ctx()).await.unwrap().unwrap();
    assert!(usages.iter().all(|u| u.subvol == two.a), "{usages:?}");
    assert!(!usages.is_empty());

    // The data connection of its session: a write to b's file.
    use proto::data::{RequestHeader, MAGIC, OP_WRITE};
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&session.to_le_bytes());
    let payload = b"overwritten through the data path";
    let w = RequestHeader {
        id: 1,
        op: OP_WRITE,
        gfid: bf,
        offset: 0,
        size: payload.len() as u32,
        blame: vec![],
    };
    bytes.extend_from_slice(&w.encode(payload.len()));
    bytes.extend_from_slice(payload);
    let who = acme.clone();
    tokio::task::spawn_blocking(move || raw::send_raw_data_as(&who, addr, &bytes, T))
        .await
        .unwrap()
        .unwrap();

    let after: Vec<Vec<String>> = bricks.iter().map(|b| snapshot(&b.join("b"))).collect();
    assert_eq!(before, after, "globex's sub-volume changed on a brick");
    assert!(tests::log_has(
        &cluster.brick_log(0),
        "outside the connection's scope"
    ));
    drop(two.v);
}

/// A scope token signed by the harness's key with `edit` applied to its
/// claims.
fn forged(edit: impl FnOnce(&mut Claims), a: Gfid) -> String {
    let good = token_for("acme", vec![root("a", a)]);
    let mut claims = tls::scope::peek(&good).unwrap();
    edit(&mut claims);
    harness::scope_signer().sign(&claims).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_scope_tokens_are_refused_and_leave_the_connection_with_nothing() {
    let cluster = TestCluster::start(3);
    let two = two_tenants(&cluster);
    let a = two.a;
    let addr = cluster.brick_addr(0);
    let acme = harness::tenant_identity("acme");
    let now = tls::scope::now();

    let good = token_for("acme", vec![root("a", a)]);
    let parts: Vec<&str> = good.split('.').collect();
    let other_key = tempfile::tempdir().unwrap();
    tls::scope::generate(other_key.path(), "dev").unwrap();
    let other_issuer = tls::scope::Signer::load(&other_key.path().join(tls::scope::SIGNING_KEY))
        .unwrap()
        .issue("acme", VOLUME, vec![root("a", a)], now, 600)
        .unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[0] ^= 0x80;
    let bad_sig = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{}.", parts[1]);

    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            forged(
                |c| {
                    c.iat = now - 7200;
                    c.nbf = now - 7200;
                    c.exp = now - 3600;
                },
                a,
            ),
        ),
        ("not yet valid", forged(|c| c.nbf = now + 3600, a)),
        ("another issuer's key", other_issuer),
        (
            "another issuer name",
            forged(|c| c.iss = "mallory".into(), a),
        ),
        ("another cluster", forged(|c| c.aud = "prod-eu".into(), a)),
        ("badly signed", bad_sig),
        ("alg none", alg_none),
        ("another tenant's", forged(|c| c.sub = "globex".into(), a)),
        ("another volume's", forged(|c| c.vol = "other".into(), a)),
        ("garbage", "not.a.token".into()),
    ];
    for (what, token) in cases {
        let (c, _) = hello(&acme, addr).await;
        let r = c.scope(raw::context(T), token).await.unwrap();
        assert!(matches!(r, Err(FsError::Perm)), "{what}: {r:?}");
        let g = c.getattr(raw::context(T), a).await.unwrap();
        assert!(
            matches!(g, Err(FsError::Perm)),
            "{what}: then getattr {g:?}"
        );
    }
    // The good one still works, and a token of globex's sub-volume under
    // acme's certificate (globex's token stolen) does not.
    let (c, _) = hello(&acme, addr).await;
    c.scope(raw::context(T), good)
        .await
        .unwrap()
        .expect("good token");
    c.getattr(raw::context(T), a)
        .await
        .unwrap()
        .expect("in scope");
    let stolen = token_for("globex", vec![root("b", two.b)]);
    let (c, _) = hello(&acme, addr).await;
    let r = c.scope(raw::context(T), stolen).await.unwrap();
    assert!(matches!(r, Err(FsError::Perm)), "stolen token: {r:?}");
    assert!(tests::log_has(&cluster.brick_log(0), "scope token refused"));
}

/// A token that runs out under an open connection ends that connection's
/// access at once; a brick whose key file is gone refuses even good
/// tokens (it cannot check them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_and_a_brick_without_keys_leave_nothing_reachable() {
    let cluster = TestCluster::start(3);
    let two = two_tenants(&cluster);
    let a = two.a;
    let addr = cluster.brick_addr(0);
    let acme = harness::tenant_identity("acme");

    let short = harness::scope_signer()
        .issue("acme", VOLUME, vec![root("a", a)], tls::scope::now(), 2)
        .unwrap();
    let (c, _) = hello(&acme, addr).await;
    c.scope(raw::context(T), short)
        .await
        .unwrap()
        .expect("a 2 s token");
    c.getattr(raw::context(T), a)
        .await
        .unwrap()
        .expect("in scope while valid");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.getattr(raw::context(T), a).await.unwrap();
        if matches!(r, Err(FsError::Perm)) {
            break;
        }
        r.expect("in scope until it expires");
        assert!(
            std::time::Instant::now() < deadline,
            "the token never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(tests::log_has(
        &cluster.brick_log(0),
        "the scope token expired"
    ));

    let gone = cluster.root().join("no-such-scope-keys.json");
    cluster.restart_brick_with(
        0,
        &cluster.binaries().brickd,
        &[("BRICKFS_SCOPE_KEYS", gone.to_str().unwrap())],
    );
    let (c, _) = hello(&acme, addr).await;
    let r = c
        .scope(raw::context(T), token_for("acme", vec![root("a", a)]))
        .await
        .unwrap();
    assert!(matches!(r, Err(FsError::Perm)), "without keys: {r:?}");
    let g = c.getattr(raw::context(T), a).await.unwrap();
    assert!(matches!(g, Err(FsError::Perm)), "without keys, then: {g:?}");
}

#[test]
fn a_tenant_mount_works_inside_its_subvolume_and_renews_its_token() {
    let cluster = TestCluster::start(3);
    let two = two_tenants(&cluster);
    let token_file = cluster.root().join("acme.token");
    let write_token = |ttl: u64| {
        let t = harness::scope_signer()
            .issue(
                "acme",
                VOLUME,
                vec![root("a", two.a)],
                tls::scope::now(),
                ttl,
            )
            .unwrap();
        tls::ca::write_whole(&token_file, t.as_bytes(), true).unwrap();
    };
    write_token(600);
    let tenant_dir = harness::tenant_dir("acme");
    let m = cluster.mount_from_store_with_args(
        &two.v.url,
        &format!("{VOLUME}/a"),
        &[
            "--tls-dir",
            tenant_dir.to_str().unwrap(),
            "--scope-token",
            token_file.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(m.join("mine")).unwrap(), b"acme's own");
    std::fs::write(m.join("new"), b"written by acme's host").unwrap();
    std::fs::create_dir(m.join("d")).unwrap();
    for i in 0..3 {
        let md = std::fs::metadata(cluster.brick_dir(i).join("a/new")).unwrap();
        assert_eq!(md.uid(), 65534, "root squash on brick {i}");
    }
    assert!(std::fs::read_dir(m.path()).unwrap().count() >= 3);

    // A renewal: the new token is sent on the running connections.
    write_token(900);
    assert!(
        wait_until(Duration::from_secs(10), || m.log_has("scope token renewed")),
        "the mount did not renew its token"
    );
    std::fs::write(m.join("after-renewal"), b"still works").unwrap();

    // A mount of the other tenant's sub-volume with acme's token fails.
    let never = cluster.root().join("never-mounted");
    std::fs::create_dir_all(&never).unwrap();
    let mut other = std::process::Command::new(&cluster.binaries().mount)
        .args(["--store", &two.v.url, &format!("{VOLUME}/b")])
        .arg(&never)
        .args(["--tls-dir", tenant_dir.to_str().unwrap()])
        .args(["--scope-token", token_file.to_str().unwrap()])
        .env_remove("BRICKFS_TLS_DIR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running brickfs-mount");
    let exited = wait_until(Duration::from_secs(20), || {
        matches!(other.try_wait(), Ok(Some(_)))
    });
    if !exited || tests::is_mounted(&never) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&never)
            .status();
        let _ = other.kill();
        let _ = other.wait();
        panic!("acme's host mounted globex's sub-volume");
    }
    let status = other.wait().unwrap();
    assert!(!status.success(), "acme's host mounted globex's sub-volume");
    m.unmount();
}

/// The API's scope tokens name only the caller's own ready sub-volumes.
#[test]
fn the_api_issues_scope_tokens_for_the_callers_own_subvolumes_only() {
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    let api = v.start_api();
    let acme = v.tenant("acme", &["10.8.0.0/16"], false);
    let globex = v.tenant("globex", &["10.9.0.0/16"], false);
    for (name, tenant) in [("a1", &acme), ("a2", &acme), ("g1", &globex)] {
        let body = serde_json::json!({"name": name, "bytes": 1 << 20});
        let r = api.call("POST", "/v1/volumes/test/subvolumes", tenant, Some(&body));
        assert_eq!(r.status, 201, "{}", r.raw);
    }
    let path = "/v1/volumes/test/scope-token";
    let r = api.call("POST", path, &acme, Some(&serde_json::json!({})));
    assert_eq!(r.status, 200, "{}", r.raw);
    let token = r.body["token"].as_str().unwrap().to_string();
    let claims = tls::scope::peek(&token).unwrap();
    let mut names: Vec<String> = claims.roots.iter().map(|r| r.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["a1", "a2"]);
    assert_eq!((claims.sub.as_str(), claims.vol.as_str()), ("acme", VOLUME));
    assert!(
        claims.roots.iter().all(|r| r.squash),
        "root squash is on by default"
    );
    let verifier =
        tls::scope::Verifier::load(&harness::dir().join(tls::scope::VERIFY_KEYS)).unwrap();
    verifier
        .verify(&token, tls::scope::now())
        .expect("verifies");

    // Another tenant's sub-volume by name: not found, as if it did not exist.
    let body = serde_json::json!({"subvolumes": ["a1", "g1"]});
    let r = api.call("POST", path, &acme, Some(&body));
    assert_eq!(r.status, 404, "{}", r.raw);
    let body = serde_json::json!({"ttl_secs": 0});
    assert_eq!(api.call("POST", path, &acme, Some(&body)).status, 400);
    assert_eq!(api.call("POST", path, "bfs1.nobody.0000", None).status, 401);
}
