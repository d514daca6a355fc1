use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::ca::Request;

fn issue(ca_dir: &Path, out: &Path, role: Role, name: &str, from_days: i64, days: u32) -> Files {
    let req = Request {
        role,
        name: name.into(),
        hosts: vec!["127.0.0.1".into()],
        from_days,
        days,
    };
    let cert = ca::issue(ca_dir, out, &req).unwrap();
    Files {
        ca: ca_dir.join(ca::BUNDLE),
        cert,
        key: out.join(format!("{name}.key")),
    }
}

fn new_ca(dir: &Path) {
    ca::init(dir, "test CA", 30).unwrap();
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
    let d = tempfile::tempdir().unwrap();
    new_ca(d.path());
    let brick = open(issue(d.path(), d.path(), Role::Brick, "b1", 0, 5));
    let client = open(issue(d.path(), d.path(), Role::Client, "m1", 0, 5));
    let peer = handshake(&brick, &client, Role::Brick).await.unwrap();
    assert_eq!(
        peer,
        Peer::Certified {
            role: Role::Client,
            name: "m1".into()
        }
    );
}

#[tokio::test]
async fn another_cas_certificates_are_refused_both_ways() {
    let d = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    new_ca(d.path());
    new_ca(other.path());
    let brick = open(issue(d.path(), d.path(), Role::Brick, "b1", 0, 5));
    let client = open(issue(d.path(), d.path(), Role::Client, "m1", 0, 5));
    let stranger = open(issue(other.path(), other.path(), Role::Admin, "x", 0, 5));
    let fake_brick = open(issue(other.path(), other.path(), Role::Brick, "fb", 0, 5));
    let e = handshake(&brick, &stranger, Role::Brick).await.unwrap_err();
    assert!(e.contains("invalid peer certificate"), "{e}");
    let e = handshake(&fake_brick, &client, Role::Brick)
        .await
        .unwrap_err();
    assert!(e.contains("invalid peer certificate"), "{e}");
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    let d = tempfile::tempdir().unwrap();
    new_ca(d.path());
    let brick = open(issue(d.path(), d.path(), Role::Brick, "b1", 0, 5));
    let expired = open(issue(d.path(), d.path(), Role::Client, "old", -10, 5));
    let early = open(issue(d.path(), d.path(), Role::Client, "early", 3, 5));
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
    let expired_brick = open(issue(d.path(), d.path(), Role::Brick, "ob", -10, 5));
    let client = open(issue(d.path(), d.path(), Role::Client, "m1", 0, 5));
    let e = handshake(&expired_brick, &client, Role::Brick)
        .await
        .unwrap_err();
    assert!(e.contains("xpired"), "{e}");
}

#[tokio::test]
async fn a_server_of_another_role_is_not_taken_for_a_brick() {
    let d = tempfile::tempdir().unwrap();
    new_ca(d.path());
    let imposter = open(issue(d.path(), d.path(), Role::Client, "m2", 0, 5));
    let client = open(issue(d.path(), d.path(), Role::Client, "m1", 0, 5));
    let e = handshake(&imposter, &client, Role::Brick)
        .await
        .unwrap_err();
    assert!(e.contains("not a brick"), "{e}");
}

#[tokio::test]
async fn plaintext_to_a_tls_listener_gets_nothing() {
    let d = tempfile::tempdir().unwrap();
    new_ca(d.path());
    let brick = open(issue(d.path(), d.path(), Role::Brick, "b1", 0, 5));
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
    let d = tempfile::tempdir().unwrap();
    let new = tempfile::tempdir().unwrap();
    new_ca(d.path());
    new_ca(new.path());
    let brick_files = issue(d.path(), d.path(), Role::Brick, "b1", 0, 5);
    let brick = open(brick_files.clone());
    let old_client = open(issue(d.path(), d.path(), Role::Client, "m1", 0, 5));
    let new_client_files = issue(new.path(), new.path(), Role::Client, "m2", 0, 5);
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
