//! Mutual TLS between brickfs processes (rustls, TLS 1.3 only).
//!
//! Every process has one identity: a certificate of the cluster CA whose
//! role (`role.rs`) says what it may do. A process chooses at start, once,
//! between TLS with its credentials and plaintext (`--insecure`), through
//! [`TlsArgs::install`]; there is no fallback from one to the other: a TLS
//! listener refuses a plaintext client and a TLS client refuses a plaintext
//! server. [`connect`] and [`accept`] are the only places streams are
//! wrapped.

pub mod args;
pub mod ca;
pub mod creds;
pub mod identity;
pub mod role;
pub mod scope;
pub mod verify;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub use args::TlsArgs;
pub use creds::{Files, Tls};
pub use role::{Peer, Role};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: {1}")]
    Pem(PathBuf, String),
    #[error("TLS: {0}")]
    Rustls(#[source] rustls::Error),
    #[error("issuing a certificate: {0}")]
    Issue(#[source] rcgen::Error),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Identity(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Scope(String),
}

impl TlsError {
    pub fn io(path: &Path, source: std::io::Error) -> TlsError {
        TlsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The application protocol a connection speaks, named in the handshake
/// (ALPN): on TLS the brick tells its two kinds of connection apart by it,
/// since the first bytes it sees are the handshake's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alpn {
    BrickRpc,
    BrickData,
    Http,
}

impl Alpn {
    pub const ALL: [Alpn; 3] = [Alpn::BrickRpc, Alpn::BrickData, Alpn::Http];

    pub fn name(self) -> &'static [u8] {
        match self {
            Alpn::BrickRpc => b"brickfs-rpc/1",
            Alpn::BrickData => b"brickfs-data/1",
            Alpn::Http => b"http/1.1",
        }
    }

    fn from_name(name: &[u8]) -> Option<Alpn> {
        Alpn::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Plaintext or TLS with this process's credentials.
#[derive(Clone)]
pub enum Mode {
    Tls(Arc<Tls>),
    Insecure,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Sets the process's mode; the first call wins (a process has one
/// identity).
pub fn install(mode: Mode) -> &'static Mode {
    MODE.get_or_init(|| mode)
}

/// The process's mode. A process that never chose (a unit test of a
/// library) is plaintext; every binary chooses at start.
pub fn mode() -> &'static Mode {
    MODE.get().unwrap_or(&Mode::Insecure)
}

/// This process as its peers see it.
pub fn me() -> Peer {
    match mode() {
        Mode::Tls(tls) => tls.me(),
        Mode::Insecure => Peer::Insecure,
    }
}

pub fn is_tls() -> bool {
    matches!(mode(), Mode::Tls(_))
}

static SCOPE_TOKEN: OnceLock<PathBuf> = OnceLock::new();

/// Sets the file this process's scope token is read from (`--scope-token`);
/// the first call wins.
pub fn set_scope_token_file(path: PathBuf) {
    let _ = SCOPE_TOKEN.set(path);
}

/// The scope token this process presents to bricks, read afresh from its
/// file (so a renewed token is sent without a restart); `None` without one.
/// Whether this process was given a scope token (without reading it).
pub fn has_scope_token() -> bool {
    SCOPE_TOKEN.get().is_some()
}

pub fn scope_token() -> Option<Result<String, TlsError>> {
    let path = SCOPE_TOKEN.get()?;
    Some(
        std::fs::read_to_string(path)
            .map(|t| t.trim().to_string())
            .map_err(|e| TlsError::io(path, e)),
    )
}

/// A byte stream, plain or encrypted.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}
pub type BoxStream = Box<dyn Stream>;

/// Wraps a connected stream to a server of role `server`, per the
/// process's mode. The caller bounds the time (the handshake is a round
/// trip).
pub async fn connect(
    tcp: TcpStream,
    addr: SocketAddr,
    server: Role,
    alpn: Alpn,
) -> std::io::Result<BoxStream> {
    match mode() {
        Mode::Insecure => Ok(Box::new(tcp)),
        Mode::Tls(tls) => connect_tls(tls, tcp, addr, server, alpn).await,
    }
}

/// [`connect`] with given credentials.
pub async fn connect_tls(
    tls: &Tls,
    tcp: TcpStream,
    addr: SocketAddr,
    server: Role,
    alpn: Alpn,
) -> std::io::Result<BoxStream> {
    let config = tls.current().client(server, alpn).ok_or_else(|| {
        std::io::Error::other(format!("no TLS client configuration for a {server}"))
    })?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let stream = connector
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("TLS handshake with {addr}: {e}")))?;
    Ok(Box::new(stream))
}

/// A connection accepted by a server: its stream, the protocol it named,
/// and who it is.
pub struct Accepted {
    pub stream: BoxStream,
    /// `None` on plaintext (the server looks at the first bytes instead).
    pub alpn: Option<Alpn>,
    pub peer: Peer,
}

/// Runs the server side of the handshake per the process's mode: with TLS
/// a client without a certificate of a trusted CA, or with one expired,
/// not yet valid or without a role, never gets through. The caller runs
/// it in the connection's own task, under a timeout.
pub async fn accept(tcp: TcpStream) -> std::io::Result<Accepted> {
    match mode() {
        Mode::Insecure => Ok(Accepted {
            stream: Box::new(tcp),
            alpn: None,
            peer: Peer::Insecure,
        }),
        Mode::Tls(tls) => accept_tls(tls, tcp).await,
    }
}

/// [`accept`] with given credentials.
pub async fn accept_tls(tls: &Tls, tcp: TcpStream) -> std::io::Result<Accepted> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current().server.clone());
    let stream = acceptor.accept(tcp).await?;
    let (_, conn) = stream.get_ref();
    let alpn = conn.alpn_protocol().and_then(Alpn::from_name);
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| std::io::Error::other("client sent no certificate"))?;
    let peer = identity::of_cert(cert).map_err(std::io::Error::other)?;
    Ok(Accepted {
        stream: Box::new(stream),
        alpn,
        peer,
    })
}

#[cfg(test)]
mod tests;
