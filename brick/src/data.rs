//! The brick end of the bulk data path (`proto::data`): reads and writes
//! framed by hand on their own connection, payloads read straight into the
//! buffer that `pwrite` takes and sent straight from the one `pread` filled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use proto::data::{
    self, RequestHeader, WriteAt, OP_APPEND, OP_READ, OP_WRITE, OP_WRITEV, REQ_FIXED, RESP_FIXED,
};
use proto::{Done, FsError, FsResult, Txn};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::limits::{HANDSHAKE_TIMEOUT, HEAVY_IO};
use crate::locks::ConnId;
use crate::ops::Backend;
use crate::scope::ScopeSlot;

/// Responses queued for the socket before request handling waits.
const QUEUE: usize = 64;
/// Requests of one data connection handled at once (each up to a frame).
const MAX_INFLIGHT: usize = 16;

/// Session tokens handed out by `hello`, naming the RPC connection a data
/// connection belongs to.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<u64, ConnId>>,
    /// Who is behind each RPC connection, as its `hello` said.
    peers: Mutex<HashMap<ConnId, Peer>>,
}

#[derive(Clone)]
struct Peer {
    /// The client (mount or gateway process).
    client: proto::ClientId,
    /// Its certificate's identity: a data connection of this session must
    /// present the same one.
    who: Arc<tls::Peer>,
    /// Heal or rebalance (`Purpose::Maintenance`): quotas count its
    /// changes but never refuse them.
    maintenance: bool,
    /// What the session may reach (`scope.rs`).
    scope: Arc<ScopeSlot>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, ConnId>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, Peer>> {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn open(
        &self,
        conn: ConnId,
        client: proto::ClientId,
        purpose: proto::Purpose,
        who: Arc<tls::Peer>,
        scope: Arc<ScopeSlot>,
    ) -> u64 {
        let token = uuid::Uuid::new_v4().as_u64_pair().0;
        self.lock().insert(token, conn);
        let maintenance = purpose == proto::Purpose::Maintenance;
        self.peers().insert(
            conn,
            Peer {
                client,
                who,
                maintenance,
                scope,
            },
        );
        token
    }

    /// True for a connection of heal or rebalance.
    pub fn is_maintenance(&self, conn: ConnId) -> bool {
        self.peers().get(&conn).is_some_and(|p| p.maintenance)
    }

    /// `txn` as this connection may run it.
    pub fn stamp(&self, conn: ConnId, mut txn: Txn) -> Txn {
        txn.maintenance = self.is_maintenance(conn);
        txn
    }

    pub fn client_of(&self, conn: ConnId) -> Option<proto::ClientId> {
        self.peers().get(&conn).map(|p| p.client)
    }

    pub fn has_client(&self, client: proto::ClientId) -> bool {
        self.peers().values().any(|p| p.client == client)
    }

    /// Ends a connection's session; returns its client when that was the
    /// client's last connection here.
    pub fn close(&self, conn: ConnId) -> Option<proto::ClientId> {
        self.lock().retain(|_, c| *c != conn);
        let client = self.peers().remove(&conn)?.client;
        (!self.has_client(client)).then_some(client)
    }

    fn is_open(&self, conn: ConnId) -> bool {
        self.lock().values().any(|c| *c == conn)
    }

    fn find(&self, token: u64) -> Option<ConnId> {
        self.lock().get(&token).copied()
    }

    fn who(&self, conn: ConnId) -> Option<Arc<tls::Peer>> {
        self.peers().get(&conn).map(|p| p.who.clone())
    }

    fn scope(&self, conn: ConnId) -> Option<Arc<ScopeSlot>> {
        self.peers().get(&conn).map(|p| p.scope.clone())
    }
}

struct Response {
    header: [u8; 4 + RESP_FIXED],
    body: Vec<u8>,
}

/// Serves one data connection whose first four bytes (the magic) were seen.
pub async fn connection(
    backend: Arc<Backend>,
    sessions: Arc<Sessions>,
    mut stream: tls::BoxStream,
    peer: std::net::SocketAddr,
    who: Arc<tls::Peer>,
    mut stop: watch::Receiver<bool>,
) {
    let mut hello = [0u8; 12];
    let read = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut hello)).await;
    if !matches!(read, Ok(Ok(_))) {
        tracing::warn!(%peer, "data connection closed before its handshake");
        return;
    }
    let mut token = [0u8; 8];
    token.copy_from_slice(&hello[4..]);
    let Some(conn) = sessions.find(u64::from_le_bytes(token)) else {
        tracing::warn!(%peer, "data connection with an unknown session; closing it");
        return;
    };
    if sessions.who(conn).as_deref() != Some(&*who) {
        tracing::warn!(%peer, %who, "data connection from another identity than its session's; closing it");
        return;
    }
    // Said by the hello that handed out the token, before this connection
    // could open: no need to ask again for every request.
    let maintenance = sessions.is_maintenance(conn);
    let Some(scope) = sessions.scope(conn) else {
        tracing::debug!(%peer, "session ended before its data connection started");
        return;
    };
    let span = tracing::info_span!("data", conn, %peer);
    async move {
        let (rd, wr) = tokio::io::split(stream);
        // A small request (header + 4 KiB) is one read, not four.
        let mut rd = BufReader::with_capacity(64 * 1024, rd);
        let (tx, rx) = mpsc::channel::<Response>(QUEUE);
        let writer = tokio::spawn(write_responses(wr, rx));
        let mut inflight = JoinSet::new();
        // Bounds what one client can make the brick hold in memory.
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_INFLIGHT));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let frame = tokio::select! {
                f = read_request(&mut rd) => f,
                _ = stop.changed() => break,
            };
            // Reaped here rather than in the select: a frame half read must
            // never be abandoned, or the stream loses its framing.
            while inflight.try_join_next().is_some() {}
            if !sessions.is_open(conn) {
                tracing::debug!("session ended; closing its data connection");
                break;
            }
            let (header, payload) = match frame {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "dropping data connection after a bad frame");
                    break;
                }
            };
            let backend = backend.clone();
            let tx = tx.clone();
            let scope = scope.clone();
            inflight.spawn(async move {
                let _slot = slot;
                let id = header.id;
                let started = std::time::Instant::now();
                let fop = match header.op {
                    OP_WRITE => "write",
                    OP_APPEND => "append",
                    OP_WRITEV => "writev",
                    OP_READ => "read",
                    _ => telemetry::ops::OTHER,
                };
                let res = match scope.check(&backend, &[header.gfid]) {
                    Ok(_) => handle(&backend, conn, maintenance, header, payload).await,
                    Err(e) => Err(e),
                };
                crate::stats::fops().record(fop, started.elapsed(), res.is_err());
                let response = match res {
                    Ok(body) => Response {
                        header: data::response_header(id, data::STATUS_OK, body.len()),
                        body,
                    },
                    Err(e) => {
                        let body = data::encode_value(&e);
                        Response {
                            header: data::response_header(id, data::STATUS_ERR, body.len()),
                            body,
                        }
                    }
                };
                let _ = tx.send(response).await;
            });
        }
        while inflight.join_next().await.is_some() {}
        drop(tx);
        let _ = writer.await;
        tracing::debug!("data connection closed");
    }
    .instrument(span)
    .await
}

/// One request frame; `None` at a clean end of stream. Generic over the
/// reader so the fuzz target (`fuzz/`) runs this very function on bytes
/// in memory.
pub async fn read_request<R: AsyncRead + Unpin>(
    rd: &mut R,
) -> FsResult<Option<(RequestHeader, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = data::check_frame_len(u32::from_le_bytes(len))?;
    if len < REQ_FIXED {
        return Err(FsError::Invalid("short data request".into()));
    }
    let mut fixed = [0u8; REQ_FIXED];
    rd.read_exact(&mut fixed).await?;
    let (mut header, nblame) = RequestHeader::decode_fixed(&fixed);
    if nblame > len - REQ_FIXED {
        return Err(FsError::Invalid("short data request".into()));
    }
    header.blame = vec![0u8; nblame];
    rd.read_exact(&mut header.blame).await?;
    let payload_len = header.check(len)?;
    let mut payload = vec![0u8; payload_len];
    rd.read_exact(&mut payload).await?;
    Ok(Some((header, payload)))
}

async fn handle(
    backend: &Arc<Backend>,
    conn: ConnId,
    maintenance: bool,
    header: RequestHeader,
    payload: Vec<u8>,
) -> FsResult<Vec<u8>> {
    let gfid = header.gfid;
    match header.op {
        OP_WRITE | OP_APPEND => {
            let txn = Txn {
                blame: header.blame,
                maintenance,
            };
            let at = match header.op {
                OP_APPEND => WriteAt::End,
                _ => WriteAt::Offset(header.offset),
            };
            let attr = if payload.len() > HEAVY_IO {
                let b = backend.clone();
                tokio::task::spawn_blocking(move || b.write(&txn, gfid, at, &payload))
                    .await
                    .map_err(crate::error::join_error)??
            } else {
                backend.write(&txn, gfid, at, &payload)?
            };
            let done = Done {
                value: attr,
                contended: backend.inodelks.contended(conn),
                parents: Vec::new(),
            };
            Ok(data::encode_value(&done))
        }
        OP_WRITEV => {
            let txn = Txn {
                blame: header.blame,
                maintenance,
            };
            // In order, as the client queued them: they may overlap. One op
            // carries one blame, as a single write does (a client takes back
            // exactly that when the op fails on a minority).
            let rest = Txn {
                blame: Vec::new(),
                maintenance,
            };
            let write_all = move |b: &Backend| -> FsResult<proto::Attr> {
                let mut last = None;
                for (k, (offset, d)) in data::decode_extents(&payload)?.into_iter().enumerate() {
                    let txn = if k == 0 { &txn } else { &rest };
                    last = Some(b.write(txn, gfid, WriteAt::Offset(offset), d)?);
                }
                last.ok_or_else(|| FsError::Invalid("empty vectored write".into()))
            };
            let b = backend.clone();
            let attr = tokio::task::spawn_blocking(move || write_all(&b))
                .await
                .map_err(crate::error::join_error)??;
            let done = Done {
                value: attr,
                contended: backend.inodelks.contended(conn),
                parents: Vec::new(),
            };
            Ok(data::encode_value(&done))
        }
        OP_READ => {
            let (offset, size) = (header.offset, header.size);
            let data = if size as usize > HEAVY_IO {
                let b = backend.clone();
                tokio::task::spawn_blocking(move || b.read(gfid, offset, size))
                    .await
                    .map_err(crate::error::join_error)?
            } else {
                backend.read(gfid, offset, size)
            }?;
            if !maintenance {
                backend.hot.read(gfid, data.len());
            }
            Ok(data)
        }
        op => Err(FsError::NotSupported(format!("data op {op}"))),
    }
}

async fn write_responses(mut wr: WriteHalf<tls::BoxStream>, mut rx: mpsc::Receiver<Response>) {
    while let Some(r) = rx.recv().await {
        let sent = if r.body.len() <= 64 * 1024 {
            // Small answers go out as one segment.
            let mut buf = Vec::with_capacity(r.header.len() + r.body.len());
            buf.extend_from_slice(&r.header);
            buf.extend_from_slice(&r.body);
            wr.write_all(&buf).await
        } else {
            match wr.write_all(&r.header).await {
                Ok(()) => wr.write_all(&r.body).await,
                Err(e) => Err(e),
            }
        };
        // TLS may hold the end of a record back until flushed.
        let sent = match sent {
            Ok(()) => wr.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "data connection write failed");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unscoped() -> Arc<ScopeSlot> {
        Arc::new(ScopeSlot::new(&tls::Peer::Insecure))
    }

    #[test]
    fn a_client_is_gone_only_with_its_last_connection() {
        let s = Sessions::default();
        let t1 = s.open(
            1,
            7,
            proto::Purpose::Client,
            Arc::new(tls::Peer::Insecure),
            unscoped(),
        );
        let _t2 = s.open(
            2,
            7,
            proto::Purpose::Client,
            Arc::new(tls::Peer::Insecure),
            unscoped(),
        );
        assert_eq!(s.find(t1), Some(1));
        assert_eq!(
            s.close(1),
            None,
            "connection 2 of the same client is still up"
        );
        assert!(s.has_client(7));
        assert_eq!(s.find(t1), None);
        assert_eq!(s.close(2), Some(7));
        assert!(!s.has_client(7));
    }

    #[test]
    fn only_the_connection_says_it_is_maintenance_never_the_wire() {
        let s = Sessions::default();
        s.open(
            1,
            7,
            proto::Purpose::Client,
            Arc::new(tls::Peer::Insecure),
            unscoped(),
        );
        s.open(
            2,
            8,
            proto::Purpose::Maintenance,
            Arc::new(tls::Peer::Insecure),
            unscoped(),
        );
        let claims = |maintenance| Txn {
            maintenance,
            ..Txn::none()
        };
        assert!(!s.stamp(1, claims(true)).maintenance);
        assert!(s.stamp(2, claims(false)).maintenance);
        // A connection that has not said hello (or has closed) is no heal.
        assert!(!s.stamp(3, claims(true)).maintenance);
        s.close(2);
        assert!(!s.stamp(2, claims(true)).maintenance);
    }
}
