//! Mutual TLS at the management API: plaintext, strangers' and stale
//! certificates get no answer; a brick's or a gateway's certificate gets a
//! 403 whatever token comes with it; a tenant's certificate takes only its
//! own tenant's token; a stalled handshake holds up no one; the API will
//! not serve with a certificate clients would not take for the API's.

use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tests::cluster::log_count;
use tests::http::{request, try_request, Target};
use tests::tls as harness;
use tests::volume::StoreVolume;
use tests::{wait_until, TestCluster};
use tls::ca::{self, Request};
use tls::{Files, Role, Tls};

const WHOAMI: &str = "/v1/whoami";

/// A certificate of role `role` issued by the CA in `ca_dir`, trusting
/// `bundle`.
fn issued(
    ca_dir: &Path,
    out: &Path,
    role: Role,
    name: &str,
    from_days: i64,
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
            days: 10,
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

#[test]
fn the_api_answers_only_certified_callers_of_its_roles() {
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    let api = v.start_api();
    let a = v.tenant("team-a", &[], false);
    let b = v.tenant("team-b", &[], false);
    let admin = v.tenant("ops", &[], true);
    let who = |to: &Target, token: &str| try_request(to, "GET", WHOAMI, Some(token), "");

    // Plaintext HTTP: no HTTP answer at all (at most a TLS alert).
    let plain = who(&Target::plain(api.addr), &a);
    assert!(plain.is_err(), "plaintext was answered: {plain:?}");

    // Another CA's certificate; a client trusting only another CA; our
    // CA's, expired or not valid yet: no answer either.
    let tmp = tempfile::tempdir().unwrap();
    let bundle = harness::dir().join(ca::BUNDLE);
    let other = tmp.path().join("other-ca");
    ca::init(&other, "another cluster's CA", "other", 30).unwrap();
    let stranger = issued(
        &other,
        tmp.path(),
        Role::Provisioner,
        "stranger",
        0,
        &bundle,
    );
    let misled = issued(
        &other,
        tmp.path(),
        Role::Provisioner,
        "misled",
        0,
        &other.join(ca::BUNDLE),
    );
    let expired = issued(
        harness::dir(),
        tmp.path(),
        Role::Provisioner,
        "expired",
        -30,
        &bundle,
    );
    let early = issued(
        harness::dir(),
        tmp.path(),
        Role::Provisioner,
        "early",
        3,
        &bundle,
    );
    for (what, id) in [
        ("another CA's", &stranger),
        ("trusting another CA", &misled),
        ("expired", &expired),
        ("not yet valid", &early),
    ] {
        let r = who(&Target::as_identity(api.addr, id), &a);
        assert!(r.is_err(), "{what} certificate was answered: {r:?}");
    }
    assert!(
        wait_until(Duration::from_secs(5), || log_count(
            &api.log,
            "TLS handshake failed"
        ) >= 4),
        "the API's log does not say it refused them"
    );

    // Certificates of our CA whose role has no business here: 403, even
    // with an admin token.
    for role in [Role::Brick, Role::Gateway, Role::Client, Role::Heal] {
        let r = request(
            &Target::as_role(api.addr, role),
            "GET",
            WHOAMI,
            Some(&admin),
            None,
        );
        assert_eq!(
            (r.status, r.code()),
            (403, "forbidden"),
            "{role}: {}",
            r.raw
        );
        assert!(
            r.raw.contains(&format!("a {role} certificate")),
            "{}",
            r.raw
        );
    }

    // A provisioner's certificate with any tenant's token.
    let prov = Target::as_role(api.addr, Role::Provisioner);
    for (token, tenant) in [(&a, "team-a"), (&b, "team-b")] {
        let r = request(&prov, "GET", WHOAMI, Some(token), None);
        assert_eq!(
            (r.status, &r.body["tenant"]),
            (200, &serde_json::json!(tenant)),
            "{}",
            r.raw
        );
    }
    // A tenant's certificate with its own token only.
    let host_a = Target::as_identity(api.addr, &harness::tenant_identity("team-a"));
    let r = request(&host_a, "GET", WHOAMI, Some(&a), None);
    assert_eq!(r.status, 200, "{}", r.raw);
    for token in [&b, &admin] {
        let r = request(&host_a, "GET", WHOAMI, Some(token), None);
        assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.raw);
        assert!(r.raw.contains("tenant team-a's"), "{}", r.raw);
    }
    // Without a token, the certificate alone is nothing.
    let r = request(&prov, "GET", WHOAMI, None, None);
    assert_eq!(r.status, 401, "{}", r.raw);

    // A client that connects and never handshakes holds up nobody.
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(api.addr).expect("connect"))
        .collect();
    let r = request(&prov, "GET", WHOAMI, Some(&a), None);
    assert_eq!(r.status, 200, "{}", r.raw);
    drop(stalled);
}

#[test]
fn the_api_will_not_serve_with_a_certificate_not_of_role_api() {
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    let dir = harness::dir();
    let (cert, key) = (dir.join("brick.pem"), dir.join("brick.key"));
    match v.try_start_api(&[
        "--api-cert".as_ref(),
        cert.as_ref(),
        "--api-key".as_ref(),
        key.as_ref(),
    ]) {
        Err(why) => assert!(why.contains("not of role api"), "{why}"),
        Ok(api) => panic!(
            "brickfs-api served on {} with a brick's certificate",
            api.addr
        ),
    }
}
