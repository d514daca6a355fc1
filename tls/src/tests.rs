use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::ca::Request;

/// A CA in a temp dir, issuing into it.
struct TestCa(tempfile::TempDir);

impl TestCa {
    fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        ca::init(dir.path(), "test CA", "test", 30).unwrap();
        TestCa(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// The files of a certificate valid from `from_days` for `days`.
    fn files(&self, role: Role, name: &str, from_days: i64, days: u32) -> Files {
        let req = Request {
            role,
            name: name.into(),
            hosts: vec!["127.0.0.1".into()],
            from_days,
            days,
            tenant: None,
        };
        let cert = ca::issue(self.path(), self.path(), &req).unwrap();
        Files {
            ca: self.path().join(ca::BUNDLE),
            cert,
            key: self.path().join(format!("{name}.key")),
        }
    }

    fn tls_dated(&self, role: Role, name: &str, from_days: i64, days: u32) -> Arc<Tls> {
        open(self.files(role, name, from_days, days))
    }

    /// Credentials valid now.
    fn tls(&self, role: Role, name: &str) -> Arc<Tls> {
        self.tls_dated(role, name, 0, 5)
    }
}

/// One handshake between `server` and `client` (who expects a server of
/// role `wanted`); the peer the server saw, or the first error.
async fn handshake(server: &Tls, client: &Tls, wanted: Role) -> Result<Peer, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_side = async {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut acc = accept_tls(server, tcp).await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 2];
        acc.stream
            .read_exact(&mut b)
            .await
            .map_err(|e| e.to_string())?;
        acc.stream
            .write_all(b"ok")
            .await
            .map_err(|e| e.to_string())?;
        acc.stream.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((acc.peer, acc.alpn))
    };
    let client_side = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut s = connect_tls(client, tcp, addr, wanted, Alpn::BrickData)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(b"hi").await.map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    let (srv, cli) = tokio::join!(server_side, client_side);
    let ((peer, alpn), ()) = match (srv, cli) {
        (Ok(s), Ok(c)) => (s, c),
        (s, c) => return Err(format!("server: {:?}; client: {:?}", s.err(), c.err())),
    };
    assert_eq!(alpn, Some(Alpn::BrickData));
    Ok(peer)
}

fn open(files: Files) -> Arc<Tls> {
    Tls::open(files).unwrap()
}

#[tokio::test]
async fn peers_of_one_ca_meet_and_see_each_others_role() {
    let d = TestCa::new();
    let brick = d.tls(Role::Brick, "b1");
    let client = d.tls(Role::Client, "m1");
    let peer = handshake(&brick, &client, Role::Brick).await.unwrap();
    assert_eq!(
        peer,
        Peer::Certified {
            role: Role::Client,
            name: "m1".into(),
            tenant: None,
        }
    );
}

#[tokio::test]
async fn a_tenant_certificate_names_its_tenant_and_only_tenants_do() {
    let d = TestCa::new();
    let req = |role, tenant: Option<&str>| Request {
        role,
        name: "h1".into(),
        hosts: vec!["127.0.0.1".into()],
        from_days: 0,
        days: 5,
        tenant: tenant.map(str::to_string),
    };
    let cert = ca::issue(d.path(), d.path(), &req(Role::Tenant, Some("acme"))).unwrap();
    let host = open(Files {
        ca: d.path().join(ca::BUNDLE),
        cert,
        key: d.path().join("h1.key"),
    });
    let brick = d.tls(Role::Brick, "b1");
    let peer = handshake(&brick, &host, Role::Brick).await.unwrap();
    assert_eq!(peer.tenant(), Some("acme"));
    assert!(peer.needs_scope() && peer.may_use_files());
    assert!(!peer.may_maintain());

    let no_tenant = ca::issue(d.path(), d.path(), &req(Role::Tenant, None));
    assert!(no_tenant.unwrap_err().to_string().contains("--tenant"));
    let client_with_tenant = ca::issue(d.path(), d.path(), &req(Role::Client, Some("acme")));
    assert!(client_with_tenant.is_err());
    let bad_name = ca::issue(d.path(), d.path(), &req(Role::Tenant, Some("a/b")));
    assert!(bad_name.is_err());
}

#[tokio::test]
async fn another_cas_certificates_are_refused_both_ways() {
    let d = TestCa::new();
    let other = TestCa::new();
    let brick = d.tls(Role::Brick, "b1");
    let client = d.tls(Role::Client, "m1");
    let stranger = other.tls(Role::Admin, "x");
    let fake_brick = other.tls(Role::Brick, "fb");
    let e = handshake(&brick, &stranger, Role::Brick).await.unwrap_err();
    assert!(e.contains("invalid peer certificate"), "{e}");
    let e = handshake(&fake_brick, &client, Role::Brick)
        .await
        .unwrap_err();
    assert!(e.contains("invalid peer certificate"), "{e}");
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    let d = TestCa::new();
    let brick = d.tls(Role::Brick, "b1");
    let expired = d.tls_dated(Role::Client, "old", -10, 5);
    let early = d.tls_dated(Role::Client, "early", 3, 5);
    for c in [&expired, &early] {
        let e = handshake(&brick, c, Role::Brick).await.unwrap_err();
        assert!(
            e.contains("Expired")
                || e.contains("NotValidYet")
                || e.contains("expired")
                || e.contains("not valid"),
            "{e}"
        );
    }
    let expired_brick = d.tls_dated(Role::Brick, "ob", -10, 5);
    let client = d.tls(Role::Client, "m1");
    let e = handshake(&expired_brick, &client, Role::Brick)
        .await
        .unwrap_err();
    assert!(e.contains("xpired"), "{e}");
}

#[tokio::test]
async fn a_server_of_another_role_is_not_taken_for_a_brick() {
    let d = TestCa::new();
    let imposter = d.tls(Role::Client, "m2");
    let client = d.tls(Role::Client, "m1");
    let e = handshake(&imposter, &client, Role::Brick)
        .await
        .unwrap_err();
    assert!(e.contains("not a brick"), "{e}");
}

#[tokio::test]
async fn plaintext_to_a_tls_listener_gets_nothing() {
    let d = TestCa::new();
    let brick = d.tls(Role::Brick, "b1");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // A tarpc frame header and some bytes, as a plaintext client sends.
        tcp.write_all(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tcp.read_to_end(&mut buf).await;
        buf
    };
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        accept_tls(&brick, tcp).await.map(|_| ())
    };
    let (reply, accepted) = tokio::join!(client, server);
    assert!(accepted.is_err());
    // At most a TLS alert, never an answer of the service.
    assert!(reply.is_empty() || reply[0] == 0x15, "{reply:?}");
}

#[tokio::test]
async fn a_ca_rotation_is_picked_up_without_a_restart() {
    let d = TestCa::new();
    let new = TestCa::new();
    let brick_files = d.files(Role::Brick, "b1", 0, 5);
    let brick = open(brick_files.clone());
    let old_client = d.tls(Role::Client, "m1");
    let new_client_files = new.files(Role::Client, "m2", 0, 5);
    // Before the bundle has the new CA, its clients are strangers.
    let new_client = open(Files {
        ca: d.path().join(ca::BUNDLE),
        ..new_client_files.clone()
    });
    assert!(handshake(&brick, &new_client, Role::Brick).await.is_err());
    // Both CAs in the bundle the brick reads.
    let both = format!(
        "{}{}",
        std::fs::read_to_string(d.path().join(ca::CA_CERT)).unwrap(),
        std::fs::read_to_string(new.path().join(ca::CA_CERT)).unwrap()
    );
    ca::write_whole(&brick_files.ca, both.as_bytes(), false).unwrap();
    brick.reload();
    handshake(&brick, &old_client, Role::Brick).await.unwrap();
    handshake(&brick, &new_client, Role::Brick).await.unwrap();
}

#[tokio::test]
async fn a_broken_set_of_files_keeps_the_one_in_use() {
    let ca = TestCa::new();
    let files = ca.files(Role::Brick, "b1", 0, 5);
    let brick = open(files.clone());
    let client = ca.tls(Role::Client, "m1");
    // Half a rotation: a new certificate, still the old key beside it.
    let old_key = std::fs::read(&files.key).unwrap();
    ca.files(Role::Brick, "b1", 0, 5);
    ca::write_whole(&files.key, &old_key, true).unwrap();
    brick.reload();
    handshake(&brick, &client, Role::Brick).await.unwrap();
    // A certificate file that is no PEM at all.
    let new_cert = std::fs::read(&files.cert).unwrap();
    ca::write_whole(&files.cert, b"not a certificate", false).unwrap();
    brick.reload();
    handshake(&brick, &client, Role::Brick).await.unwrap();
    // The rotation completes: the new pair is taken.
    let new = ca.files(Role::Brick, "b2", 0, 5);
    std::fs::copy(&new.key, &files.key).unwrap();
    std::fs::copy(&new.cert, &files.cert).unwrap();
    assert_ne!(std::fs::read(&files.cert).unwrap(), new_cert);
    brick.reload();
    assert_eq!(
        brick.me(),
        Peer::Certified {
            role: Role::Brick,
            name: "b2".into(),
            tenant: None,
        }
    );
    handshake(&brick, &client, Role::Brick).await.unwrap();
}

#[test]
fn a_certificate_without_a_role_is_refused() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let e = identity::of_cert(cert.der()).unwrap_err().to_string();
    assert!(e.contains("no brickfs role"), "{e}");
}

#[test]
fn the_mode_needs_credentials_or_an_explicit_insecure() {
    let none = TlsArgs::default();
    let e = none.files(Role::Client).unwrap();
    assert!(e.is_none());
    let half = TlsArgs {
        tls_ca: Some("ca.pem".into()),
        ..Default::default()
    };
    assert!(half.files(Role::Client).is_err());
    let dir = TlsArgs {
        tls_dir: Some("/d".into()),
        ..Default::default()
    };
    let f = dir.files(Role::Heal).unwrap().unwrap();
    assert_eq!(f.cert, Path::new("/d/heal.pem"));
    assert_eq!(f.key, Path::new("/d/heal.key"));
    assert_eq!(f.ca, Path::new("/d/ca.pem"));
}
