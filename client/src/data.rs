//! The client end of the bulk data path (`proto::data`): one connection per
//! brick beside the RPC one, many requests in flight, matched by id. A
//! write's payload is shared by the three bricks' sends, never copied.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::data::{self, RequestHeader, RESP_FIXED};
use proto::{FsError, FsResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<FsResult<(u8, Vec<u8>)>>;

/// Payloads up to this size are copied behind their header and sent at once.
const COALESCE: usize = 64 * 1024;
/// Buffer of the response reader: a small response is one read, not three.
const READ_BUFFER: usize = 64 * 1024;

/// Marks the connection dead if dropped while a frame is still being sent.
struct Unfinished<'a>(&'a DataConn, bool);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.dead.store(true, Ordering::Release);
        }
    }
}

pub struct DataConn {
    addr: SocketAddr,
    writer: tokio::sync::Mutex<WriteHalf<tls::BoxStream>>,
    pending: Mutex<HashMap<u64, Waiter>>,
    next_id: AtomicU64,
    dead: AtomicBool,
    on_close: Box<dyn Fn() + Send + Sync>,
}

impl DataConn {
    /// `on_close` runs once when the brick closes or breaks the connection.
    pub async fn connect(
        addr: SocketAddr,
        session: u64,
        timeout: Duration,
        on_close: Box<dyn Fn() + Send + Sync>,
    ) -> FsResult<Arc<DataConn>> {
        let stream = crate::protocol::dial(addr, tls::Alpn::BrickData, timeout).await?;
        let (rd, mut wr) = tokio::io::split(stream);
        let mut hello = Vec::with_capacity(12);
        hello.extend_from_slice(&data::MAGIC);
        hello.extend_from_slice(&session.to_le_bytes());
        wr.write_all(&hello)
            .await
            .and(wr.flush().await)
            .map_err(|e| FsError::BrickDown(format!("{addr}: {e}")))?;
        let conn = Arc::new(DataConn {
            addr,
            writer: tokio::sync::Mutex::new(wr),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            dead: AtomicBool::new(false),
            on_close,
        });
        tokio::spawn(
            conn.clone()
                .read_responses(BufReader::with_capacity(READ_BUFFER, rd)),
        );
        Ok(conn)
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends one request and waits for its answer: status and body.
    pub async fn call(&self, mut header: RequestHeader, payload: &[u8]) -> FsResult<(u8, Vec<u8>)> {
        if self.is_dead() {
            return Err(FsError::BrickDown(self.addr.to_string()));
        }
        header.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = header.id;
        let (tx, rx) = oneshot::channel();
        self.waiters().insert(id, tx);
        // Forget the waiter if this call is dropped (its deadline passed).
        struct Forget<'a>(&'a DataConn, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.waiters().remove(&self.1);
            }
        }
        let _forget = Forget(self, id);
        let head = header.encode(payload.len());
        let sent = {
            let mut w = self.writer.lock().await;
            // A frame abandoned half-sent (its caller's deadline passed)
            // leaves the stream unframed: nothing may follow it.
            if self.is_dead() {
                return Err(FsError::BrickDown(self.addr.to_string()));
            }
            let mut unfinished = Unfinished(self, true);
            // Small frames go out in one send: half the syscalls of 4 KiB I/O.
            let r = if payload.len() <= COALESCE {
                let mut frame = head;
                frame.extend_from_slice(payload);
                w.write_all(&frame).await
            } else {
                match w.write_all(&head).await {
                    Ok(()) => w.write_all(payload).await,
                    Err(e) => Err(e),
                }
            };
            // TLS may hold the end of a record back until flushed.
            let r = match r {
                Ok(()) => w.flush().await,
                Err(e) => Err(e),
            };
            unfinished.1 = false;
            r
        };
        if let Err(e) = sent {
            self.fail_all(&format!("send failed: {e}"));
            return Err(FsError::BrickDown(format!("{}: {e}", self.addr)));
        }
        rx.await
            .unwrap_or_else(|_| Err(FsError::BrickDown(self.addr.to_string())))
    }

    /// Fails what is in flight and half-closes the connection, so the brick
    /// ends it once it answers (at once, unless it is hung).
    pub fn close(self: &Arc<Self>) {
        self.fail_all("closed by the client");
        let me = self.clone();
        tokio::spawn(async move {
            let _ = me.writer.lock().await.shutdown().await;
        });
    }

    fn fail_all(&self, why: &str) {
        self.dead.store(true, Ordering::Release);
        let waiters: Vec<Waiter> = self.waiters().drain().map(|(_, w)| w).collect();
        for w in waiters {
            let _ = w.send(Err(FsError::BrickDown(format!("{}: {why}", self.addr))));
        }
    }

    async fn read_responses(self: Arc<Self>, mut rd: BufReader<ReadHalf<tls::BoxStream>>) {
        let why = loop {
            let mut len = [0u8; 4];
            if let Err(e) = rd.read_exact(&mut len).await {
                break e.to_string();
            }
            let len = match data::check_frame_len(u32::from_le_bytes(len)) {
                Ok(l) if l >= RESP_FIXED => l,
                _ => break "malformed response frame".to_string(),
            };
            let mut fixed = [0u8; RESP_FIXED];
            if let Err(e) = rd.read_exact(&mut fixed).await {
                break e.to_string();
            }
            let (id, status) = data::decode_response(&fixed);
            let mut body = vec![0u8; len - RESP_FIXED];
            if let Err(e) = rd.read_exact(&mut body).await {
                break e.to_string();
            }
            if let Some(w) = self.waiters().remove(&id) {
                let _ = w.send(Ok((status, body)));
            }
        };
        self.fail_all(&why);
        (self.on_close)();
    }
}
