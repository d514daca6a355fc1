//! The API's port: HTTPS with client certificates of the cluster CA (or
//! plain HTTP with `--insecure`). Each connection's handshake runs in its
//! own task under [`HANDSHAKE_TIMEOUT`], so a client that stalls or sends
//! garbage holds only its own task; connections that got through are
//! handed to axum with who they are ([`Remote`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use tls::{BoxStream, Peer, Tls};

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections handshaken but not yet taken by axum; beyond it the
/// handshake tasks wait, and the kernel's backlog holds the rest.
const READY_QUEUE: usize = 64;

/// The other end of a connection, in every request's extensions
/// (`ConnectInfo<Remote>`).
#[derive(Clone, Debug)]
pub struct Remote {
    pub addr: SocketAddr,
    pub peer: Peer,
}

impl Connected<IncomingStream<'_, Handshaken>> for Remote {
    fn connect_info(stream: IncomingStream<'_, Handshaken>) -> Remote {
        stream.remote_addr().clone()
    }
}

/// The listener axum serves: connections whose handshake is done.
pub struct Handshaken {
    ready: mpsc::Receiver<(BoxStream, Remote)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for Handshaken {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Handshaken {
    /// Starts accepting on `tcp`: with `server` (the API's own
    /// certificate, role api) only TLS 1.3 with a client certificate of a
    /// trusted CA gets through; without it, plain TCP.
    pub fn start(tcp: TcpListener, server: Option<Arc<Tls>>) -> std::io::Result<Handshaken> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accepting = tokio::spawn(accept_loop(tcp, server, tx));
        Ok(Handshaken {
            ready,
            local,
            accepting,
        })
    }
}

impl axum::serve::Listener for Handshaken {
    type Io = BoxStream;
    type Addr = Remote;

    async fn accept(&mut self) -> (BoxStream, Remote) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ended (only at shutdown): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Remote> {
        Ok(Remote {
            addr: self.local,
            peer: Peer::Insecure,
        })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    server: Option<Arc<Tls>>,
    ready: mpsc::Sender<(BoxStream, Remote)>,
) {
    loop {
        let (stream, addr) = match tcp.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let server = server.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            if let Some(conn) = admit(stream, addr, server.as_deref()).await {
                let _ = ready.send(conn).await;
            }
        });
    }
}

async fn admit(
    stream: TcpStream,
    addr: SocketAddr,
    server: Option<&Tls>,
) -> Option<(BoxStream, Remote)> {
    let Some(server) = server else {
        return Some((
            Box::new(stream),
            Remote {
                addr,
                peer: Peer::Insecure,
            },
        ));
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls::accept_tls(server, stream)).await {
        Ok(Ok(accepted)) => Some((
            accepted.stream,
            Remote {
                addr,
                peer: accepted.peer,
            },
        )),
        Ok(Err(e)) => {
            tracing::warn!(peer = %addr, error = %e, "connection refused: TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::warn!(peer = %addr, timeout = ?HANDSHAKE_TIMEOUT,
                "connection refused: TLS handshake too slow");
            None
        }
    }
}
