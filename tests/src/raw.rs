//! Straight to one brick's RPC port, bypassing the client stack: for
//! bad-input tests (bad names, unknown gfids, garbage and oversized frames).
//! Inside TLS with the harness's admin certificate (`crate::tls`), so the
//! garbage reaches the brick's decoder, not just its handshake;
//! [`send_plain`] sends it without TLS.
//!
//! The wire is tarpc over TCP with the Bincode codec, each frame prefixed by
//! its length as a 4-byte big-endian integer (tokio-util's length-delimited
//! codec, as tarpc's serde transport uses it), frames up to
//! [`proto::MAX_FRAME`].

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use tarpc::tokio_serde::formats::Bincode;

/// A new object for `create`: a fresh gfid, owner 0, no xattrs, no lock.
pub fn new_object(name: &[u8], kind: proto::FileKind, perm: u32) -> proto::NewObject {
    proto::NewObject {
        name: proto::Name::new(name),
        gfid: proto::Gfid::random(),
        kind,
        perm,
        rdev: 0,
        uid: 0,
        gid: 0,
        target: None,
        lock: false,
        data: Default::default(),
        times: Default::default(),
        xattrs: Vec::new(),
    }
}

/// A tarpc client for one brick. Needs a tokio runtime (`#[tokio::test]`).
/// Call `hello` first, as the client stack does.
pub async fn connect(addr: SocketAddr) -> io::Result<proto::BrickClient> {
    connect_as(&crate::tls::identity(tls::Role::Admin), addr).await
}

/// As [`connect`], with the credentials `who`.
pub async fn connect_as(who: &tls::Tls, addr: SocketAddr) -> io::Result<proto::BrickClient> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let stream = tls::connect_tls(who, tcp, addr, tls::Role::Brick, tls::Alpn::BrickRpc).await?;
    let framed = tarpc::tokio_util::codec::LengthDelimitedCodec::builder()
        .max_frame_length(proto::MAX_FRAME)
        .new_framed(stream);
    let transport = tarpc::serde_transport::new(framed, Bincode::default());
    Ok(proto::BrickClient::new(tarpc::client::Config::default(), transport).spawn())
}

/// A tarpc context whose deadline is `timeout` from now.
pub fn context(timeout: Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = std::time::Instant::now() + timeout;
    ctx
}

/// True when the brick answers `ping` on a fresh connection within `timeout`:
/// "the brick keeps serving" after bad input.
pub async fn answers_ping(addr: SocketAddr, timeout: Duration) -> bool {
    let attempt = async {
        let client = connect(addr).await.ok()?;
        client.ping(context(timeout)).await.ok()
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(_)))
}

/// `payload` behind the 4-byte big-endian length prefix of one frame.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame payload over 4 GiB");
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A frame header announcing `len` bytes (for oversized-frame tests: the
/// brick must refuse it without reading or allocating that much).
pub fn frame_header(len: u32) -> [u8; 4] {
    len.to_be_bytes()
}

/// Connects, writes `bytes`, half-closes, and returns whatever the brick
/// sends back until it closes the connection or `timeout` passes. A write
/// error after the brick hung up is not an error here (the brick may close
/// as soon as it sees garbage); only failing to connect is.
pub fn send_raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    send_raw_on(
        &crate::tls::identity(tls::Role::Admin),
        tls::Alpn::BrickRpc,
        addr,
        bytes,
        timeout,
    )
}

/// As [`send_raw`], on the data connection.
pub fn send_raw_data(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    send_raw_data_as(
        &crate::tls::identity(tls::Role::Admin),
        addr,
        bytes,
        timeout,
    )
}

/// As [`send_raw_data`], with the credentials `who`.
pub fn send_raw_data_as(
    who: &tls::Tls,
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    send_raw_on(who, tls::Alpn::BrickData, addr, bytes, timeout)
}

fn send_raw_on(
    who: &tls::Tls,
    alpn: tls::Alpn,
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let tcp = TcpStream::connect_timeout(&addr, timeout)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let config = who
        .client_config(tls::Role::Brick, alpn)
        .ok_or_else(|| io::Error::other("no client configuration"))?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let _ = s.write_all(bytes).and_then(|()| s.flush());
    s.conn.send_close_notify();
    let _ = s.flush();
    read_all(s)
}

/// As [`send_raw`], in plaintext: what a client without TLS gets.
pub fn send_plain(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    read_all(s)
}

fn read_all(mut s: impl Read) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::InvalidData
                ) =>
            {
                break
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
