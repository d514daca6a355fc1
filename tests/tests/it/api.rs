//! The management API (`brickfs-api`): tenants see and change only their
//! own sub-volumes, an admin sees all, every refusal has its status and
//! code, and revoking a tenant ends its token with the next request.

use std::time::Duration;

use serde_json::{json, Value};
use tests::http::request_raw;
use tests::volume::StoreVolume;
use tests::{wait_until, TestCluster, NO_CACHE};

const MIB: u64 = 1 << 20;
const SUBS: &str = "/v1/volumes/test/subvolumes";

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn tenants_see_and_change_only_their_own_subvolumes() {
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    let api = v.start_api();
    let a = v.tenant("team-a", &["10.1.0.0/16"], false);
    let b = v.tenant("team-b", &["10.2.0.0/16"], false);
    let admin = v.tenant("ops", &[], true);

    let who = api.call("GET", "/v1/whoami", &a, None);
    assert_eq!(who.status, 200, "{}", who.raw);
    assert_eq!(who.body["tenant"], "team-a");
    assert_eq!(who.body["networks"], json!(["10.1.0.0/16"]));

    let req = json!({"name": "a1", "bytes": 4 * MIB, "mode": 0o770, "uid": 1000, "gid": 1000,
                     "labels": {"k8s.pvc-uid": "u-1"}});
    let made = api.call("POST", SUBS, &a, Some(&req));
    assert_eq!(made.status, 201, "{}", made.raw);
    assert_eq!(made.body["tenant"], "team-a");
    assert_eq!(made.body["export"], "/test/a1");
    assert_eq!(made.body["state"], "ready");
    // The same request again is a no-op; other settings under the name are
    // a conflict.
    let again = api.call("POST", SUBS, &a, Some(&req));
    assert_eq!(again.status, 200, "{}", again.raw);
    let mut other = req.clone();
    other["labels"] = json!({"k8s.pvc-uid": "u-2"});
    let clash = api.call("POST", SUBS, &a, Some(&other));
    assert_eq!(
        (clash.status, clash.code()),
        (409, "exists"),
        "{}",
        clash.raw
    );
    let b1 = json!({"name": "b1", "bytes": MIB});
    assert_eq!(api.call("POST", SUBS, &b, Some(&b1)).status, 201);

    // Each tenant lists its own; the admin lists all.
    assert_eq!(names(&api.call("GET", SUBS, &a, None).body), ["a1"]);
    assert_eq!(names(&api.call("GET", SUBS, &b, None).body), ["b1"]);
    let mut all = names(&api.call("GET", SUBS, &admin, None).body);
    all.sort();
    assert_eq!(all, ["a1", "b1"]);

    // Another tenant's sub-volume is "not found", whatever b tries, and
    // taking its name says nothing about whose it is.
    let a1 = format!("{SUBS}/a1");
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"bytes": 64 * MIB}))),
        ("DELETE", None),
    ] {
        let r = api.call(method, &a1, &b, body.as_ref());
        assert_eq!(
            (r.status, r.code()),
            (404, "not_found"),
            "{method}: {}",
            r.raw
        );
    }
    let r = api.call("POST", &format!("{a1}/archive"), &b, None);
    assert_eq!(r.status, 404, "{}", r.raw);
    let steal = api.call("POST", SUBS, &b, Some(&req));
    assert_eq!(steal.status, 409, "{}", steal.raw);
    assert!(!steal.raw.contains("team-a"), "{}", steal.raw);
    let forged = json!({"name": "b2", "bytes": MIB, "tenant": "team-a"});
    let r = api.call("POST", SUBS, &b, Some(&forged));
    assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.raw);
    assert_eq!(api.call("GET", &a1, &a, None).status, 200);

    // Usage through a FUSE mount of the volume; shrinking below it is
    // refused, growing works.
    let m = v.mount_with_args(&NO_CACHE);
    std::fs::write(m.path().join("a1/f"), vec![7u8; 3 * MIB as usize]).expect("3 MiB of 4");
    assert!(
        wait_until(Duration::from_secs(10), || {
            api.call("GET", &a1, &a, None).body["usage"]["bytes"] == json!(3 * MIB)
        }),
        "usage never showed 3 MiB"
    );
    let r = api.call("PATCH", &a1, &a, Some(&json!({"bytes": MIB})));
    assert_eq!((r.status, r.code()), (422, "below_usage"), "{}", r.raw);
    let r = api.call("PATCH", &a1, &a, Some(&json!({"bytes": 8 * MIB})));
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.body["bytes"], json!(8 * MIB));
    let huge = json!({"name": "huge", "bytes": 1u64 << 50});
    let r = api.call("POST", SUBS, &a, Some(&huge));
    assert_eq!((r.status, r.code()), (507, "pool_full"), "{}", r.raw);

    // The admin may make one for a tenant; for one that does not exist,
    // it is told so.
    let for_b = json!({"name": "b3", "bytes": MIB, "tenant": "team-b"});
    assert_eq!(api.call("POST", SUBS, &admin, Some(&for_b)).status, 201);
    let for_nobody = json!({"name": "x", "bytes": MIB, "tenant": "nobody"});
    assert_eq!(
        api.call("POST", SUBS, &admin, Some(&for_nobody)).status,
        400
    );
    assert_eq!(
        names(&api.call("GET", SUBS, &b, None).body).len(),
        2,
        "b does not see what the admin made for it"
    );

    // Archive and delete.
    let r = api.call(
        "POST",
        &format!("{a1}/archive"),
        &a,
        Some(&json!({"keep_seconds": 3600})),
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(
        r.body["path"]
            .as_str()
            .unwrap_or("")
            .starts_with("/.archive/a1."),
        "{}",
        r.raw
    );
    assert!(names(&api.call("GET", SUBS, &a, None).body).is_empty());
    let b1p = format!("{SUBS}/b1");
    assert_eq!(api.call("DELETE", &b1p, &b, None).status, 204);
    assert_eq!(api.call("DELETE", &b1p, &b, None).status, 404);

    // Revoking ends the token with the next request.
    v.ok(&["tenant", "revoke", "team-b"]);
    let r = api.call("GET", SUBS, &b, None);
    assert_eq!((r.status, r.code()), (401, "unauthorized"), "{}", r.raw);
    assert_eq!(api.call("GET", SUBS, &a, None).status, 200);
}

#[test]
fn bad_requests_get_their_status_and_change_nothing() {
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    let api = v.start_api();
    let a = v.tenant("team-a", &[], false);
    // No token, a malformed one, a forged secret.
    for token in [None, Some("nonsense"), Some("bfs1.team-a.00")] {
        let r = request_raw(&api.target(), "GET", SUBS, token, "");
        assert_eq!(
            (r.status, r.code()),
            (401, "unauthorized"),
            "{token:?}: {}",
            r.raw
        );
        assert!(
            r.raw.contains("WWW-Authenticate: Bearer")
                || r.raw.contains("www-authenticate: Bearer"),
            "{}",
            r.raw
        );
    }
    // The real token with its last hex digit changed (to another digit:
    // one that was already 0 made this a 1-in-16 pass with the real one).
    let last = if a.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &a[..a.len() - 1]);
    assert_eq!(
        request_raw(&api.target(), "GET", SUBS, Some(&forged), "").status,
        401
    );
    for (body, why) in [
        ("{", "malformed JSON"),
        (r#"{"name": "x"}"#, "no size"),
        (r#"{"name": "x", "bytes": 0}"#, "size 0"),
        (r#"{"name": "../x", "bytes": 1}"#, "a path as name"),
        (r#"{"name": ".archive", "bytes": 1}"#, "a hidden name"),
        (
            r#"{"name": "x", "bytes": 1, "mode": 65535}"#,
            "a mode beyond 07777",
        ),
        (
            r#"{"name": "x", "bytes": 1, "colour": "red"}"#,
            "an unknown field",
        ),
        (r#"{"name": "x", "bytes": -1}"#, "a negative size"),
    ] {
        let r = request_raw(&api.target(), "POST", SUBS, Some(&a), body);
        assert_eq!(
            (r.status, r.code()),
            (400, "bad_request"),
            "{why}: {}",
            r.raw
        );
        assert!(
            r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{why}: {}",
            r.raw
        );
    }
    let r = request_raw(
        &api.target(),
        "GET",
        "/v1/volumes/nope/subvolumes",
        Some(&a),
        "",
    );
    assert_eq!((r.status, r.code()), (404, "unknown_volume"), "{}", r.raw);
    let r = request_raw(&api.target(), "GET", "/v1/elsewhere", Some(&a), "");
    assert_eq!(r.status, 404, "{}", r.raw);
    let r = request_raw(
        &api.target(),
        "GET",
        &format!("{SUBS}/missing"),
        Some(&a),
        "",
    );
    assert_eq!((r.status, r.code()), (404, "not_found"), "{}", r.raw);
    let r = request_raw(&api.target(), "GET", SUBS, Some(&a), "");
    assert_eq!(
        names(&r.body),
        Vec::<String>::new(),
        "a refused request made something"
    );
    // Bricks that do not answer: 503 "unavailable", and the same request
    // once they are back makes the sub-volume.
    let req = r#"{"name": "later", "bytes": 1048576}"#;
    assert_eq!(
        request_raw(&api.target(), "POST", SUBS, Some(&a), req).status,
        201
    );
    for i in 0..3 {
        cluster.kill_brick(i);
    }
    let r = request_raw(
        &api.target(),
        "POST",
        SUBS,
        Some(&a),
        r#"{"name": "while-down", "bytes": 1048576}"#,
    );
    assert_eq!((r.status, r.code()), (503, "unavailable"), "{}", r.raw);
    let r = request_raw(&api.target(), "GET", &format!("{SUBS}/later"), Some(&a), "");
    assert_eq!((r.status, r.code()), (503, "unavailable"), "{}", r.raw);
    for i in 0..3 {
        cluster.restart_brick(i);
    }
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            let r = request_raw(
                &api.target(),
                "POST",
                SUBS,
                Some(&a),
                r#"{"name": "while-down", "bytes": 1048576}"#,
            );
            let ok = matches!(r.status, 200 | 201);
            last = Some(r);
            ok
        }),
        "the sub-volume was never made once the bricks were back: {last:?}"
    );
    // A bad tenant on the command line is refused before anything is written.
    let r = v.cli(&["tenant", "create", "Bad_Name"]);
    assert!(!r.ok && r.err.contains("bad tenant name"), "{}", r.err);
    let r = v.cli(&["tenant", "create", "t", "--network", "10.0.0.0/33"]);
    assert!(!r.ok && r.err.contains("bad network"), "{}", r.err);
    let r = v.cli(&["tenant", "create", "team-a"]);
    assert!(!r.ok && r.err.contains("exists"), "{}", r.err);
    let list = v.ok(&["tenant", "list"]);
    assert!(list.contains("team-a") && !list.contains(&a), "{list}");
}

/// The gateway serves a tenant's sub-volumes only to the tenant's networks
/// (other loopback addresses stand for hosts of other networks): a client
/// of one tenant can mount only its own, on every call, also with a handle
/// copied from another tenant's client; the rest of the volume is not for
/// tenants; and a revoked tenant loses access within the refresh.
#[test]
fn the_gateway_serves_each_tenants_subvolumes_only_to_its_networks() {
    use tests::nfs::rpc::{Nfs3Client, MNT3ERR_ACCES, NFS3ERR_ACCES};
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    let api = v.start_api();
    let a = v.tenant("team-a", &["127.1.0.0/16"], false);
    let b = v.tenant("team-b", &["127.2.0.0/16"], false);
    for (token, name) in [(&a, "pa"), (&b, "pb")] {
        let r = api.call(
            "POST",
            SUBS,
            token,
            Some(&json!({"name": name, "bytes": 4 * MIB})),
        );
        assert_eq!(r.status, 201, "{}", r.raw);
    }
    let gw = cluster.start_gateway_from_store(&v.url);
    let from =
        |ip: &str| Nfs3Client::connect_from(gw.addr(), ip.parse().expect("ip")).expect("connect");
    let (mut ca, mut cb, mut other) = (from("127.1.0.5"), from("127.2.0.5"), from("127.0.0.1"));

    let pa = ca.mnt("/test/pa").expect("MNT").expect("a mounts its own");
    let pb = cb.mnt("/test/pb").expect("MNT").expect("b mounts its own");
    assert_eq!(ca.mnt("/test/pb").expect("MNT"), Err(MNT3ERR_ACCES));
    assert_eq!(cb.mnt("/test/pa").expect("MNT"), Err(MNT3ERR_ACCES));
    assert_eq!(
        ca.mnt("/test").expect("MNT"),
        Err(MNT3ERR_ACCES),
        "a tenant mounted the volume"
    );
    // Outside every tenant's network: the volume, but no tenant's sub-volume.
    assert_eq!(other.mnt("/test/pa").expect("MNT"), Err(MNT3ERR_ACCES));
    let root = other.mnt("/test").expect("MNT").expect("the volume root");
    assert_eq!(
        other.lookup(&root, b"pa").expect("LOOKUP"),
        Err(NFS3ERR_ACCES)
    );

    // Each works in its own; a handle of a's, copied to b, is refused on
    // every call, and so is the volume root's handle for a tenant.
    let fa = ca
        .create(&pa, b"f", 0o644)
        .expect("CREATE")
        .expect("created")
        .expect("handle");
    assert_eq!(ca.write(&fa, 0, b"a's data").expect("WRITE"), Ok(8));
    assert!(cb.create(&pb, b"g", 0o644).expect("CREATE").is_ok());
    for fh in [&pa, &fa] {
        assert_eq!(
            cb.getattr(fh).expect("GETATTR").map(drop),
            Err(NFS3ERR_ACCES)
        );
        assert_eq!(
            other.getattr(fh).expect("GETATTR").map(drop),
            Err(NFS3ERR_ACCES)
        );
    }
    assert_eq!(cb.write(&fa, 0, b"b's").expect("WRITE"), Err(NFS3ERR_ACCES));
    assert_eq!(
        ca.getattr(&root).expect("GETATTR").map(drop),
        Err(NFS3ERR_ACCES)
    );
    // FSSTAT inside shows the tenant's limit.
    assert_eq!(ca.fsstat(&fa).expect("FSSTAT").expect("ok").0, 4 * MIB);

    // A sub-volume made now is served within the refresh; a revoke ends
    // access within it.
    let r = api.call(
        "POST",
        SUBS,
        &a,
        Some(&json!({"name": "pa2", "bytes": MIB})),
    );
    assert_eq!(r.status, 201, "{}", r.raw);
    assert!(
        wait_until(Duration::from_secs(10), || ca
            .mnt("/test/pa2")
            .expect("MNT")
            .is_ok()),
        "a new sub-volume was never exported"
    );
    v.ok(&["tenant", "revoke", "team-a"]);
    assert!(
        wait_until(Duration::from_secs(10), || ca
            .getattr(&fa)
            .expect("GETATTR")
            .is_err()),
        "a revoked tenant kept access"
    );
    assert_eq!(ca.mnt("/test/pa").expect("MNT"), Err(MNT3ERR_ACCES));
    assert!(
        cb.getattr(&pb).expect("GETATTR").is_ok(),
        "b lost access with a's revoke"
    );
}
