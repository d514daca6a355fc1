//! The protocol layer: one tarpc connection per brick, kept alive by a
//! background task that reconnects and pings. The only place that calls tarpc.
//!
//! A brick that misses a deadline is marked down at once, so one hung brick
//! (SIGSTOP) costs one timeout, not one per operation; the ping task marks it
//! up again as soon as it answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use proto::backoff::Backoff;
use proto::data::{self, RequestHeader, WriteAt};
use proto::{
    Attr, BrickClient, BrickId, ClientId, Done, FsError, FsResult, Gfid, ReplicaIndex, Txn,
};
use tarpc::client::RpcError;
use tarpc::context::Context;
use tarpc::tokio_serde::formats::Bincode;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::data::DataConn;

/// The RPC connection to the brick at `addr` (TCP, then TLS per the
/// process's mode), within `timeout`. Every tarpc client of a brick starts
/// here.
pub async fn connect_rpc(addr: SocketAddr, timeout: Duration) -> FsResult<BrickClient> {
    let stream = dial(addr, tls::Alpn::BrickRpc, timeout).await?;
    let framed = tarpc::tokio_util::codec::LengthDelimitedCodec::builder()
        .max_frame_length(proto::MAX_FRAME)
        .new_framed(stream);
    let transport = tarpc::serde_transport::new(framed, Bincode::default());
    Ok(BrickClient::new(tarpc::client::Config::default(), transport).spawn())
}

/// A connection to the brick at `addr` for `alpn`'s kind of traffic: TCP
/// without Nagle (replies are small and latency-bound), then TLS per the
/// process's mode, all within `timeout`.
pub(crate) async fn dial(
    addr: SocketAddr,
    alpn: tls::Alpn,
    timeout: Duration,
) -> FsResult<tls::BoxStream> {
    tokio::time::timeout(timeout, async move {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(brick = %addr, "set_nodelay: {e}");
        }
        tls::connect(tcp, addr, tls::Role::Brick, alpn).await
    })
    .await
    .map_err(|_| FsError::Timeout(addr.to_string()))?
    .map_err(|e| FsError::BrickDown(format!("{addr}: {e}")))
}

/// Connection to one brick of the replica set.
pub struct BrickConn {
    pub index: ReplicaIndex,
    pub addr: SocketAddr,
    volume: String,
    client_id: ClientId,
    /// Said in every `hello` (set once, before the first connect).
    maintenance: AtomicBool,
    /// Deadline of one operation, in microseconds (changed live when the
    /// volume's `network.op-timeout` option changes).
    op_timeout_us: AtomicU64,
    ping_interval: Duration,
    client: RwLock<Option<BrickClient>>,
    /// The bulk data connection (reads, writes) beside the RPC one.
    data: RwLock<Option<Arc<DataConn>>>,
    up: AtomicBool,
    /// Bumped on every (re)connect: a lock held on an older connection is gone.
    generation: AtomicU64,
    brick_id: RwLock<Option<BrickId>>,
    /// The identity the volume spec gives this brick, when known.
    expected_id: Option<BrickId>,
    /// Entries in the brick's heal index, as of its last ping answer.
    heal_entries: AtomicU64,
    /// Changes of the brick's heal index since it started, as of its last ping.
    index_changes: AtomicU64,
    /// The brick came back with another identity (its directory was wiped
    /// or another brick took its address): none of its replicas can be
    /// trusted until the others blame it and heal refills it.
    replaced: AtomicBool,
    /// Woken when the brick is found unresponsive so the pinger reconnects now.
    trouble: Notify,
    /// Woken when the brick comes (back) up.
    pub came_up: Notify,
    /// Closed for good ([`BrickConn::close`]): no reconnect, every call fails.
    closed: AtomicBool,
    /// Why the brick is down, as last seen (for quorum errors and logs).
    down_reason: RwLock<String>,
    /// The scope token the brick last accepted on this connection.
    scope_sent: std::sync::Mutex<Option<String>>,
}

/// This process's scope token, if it has one.
fn read_scope_token() -> FsResult<Option<String>> {
    tls::scope_token()
        .transpose()
        .map_err(|e| FsError::Refused(format!("scope token: {e}")))
}

impl BrickConn {
    pub fn set_purpose(&self, purpose: proto::Purpose) {
        self.maintenance
            .store(purpose == proto::Purpose::Maintenance, Ordering::Relaxed);
    }

    fn purpose(&self) -> proto::Purpose {
        if self.maintenance.load(Ordering::Relaxed) {
            proto::Purpose::Maintenance
        } else {
            proto::Purpose::Client
        }
    }

    pub fn new(
        index: ReplicaIndex,
        addr: SocketAddr,
        volume: String,
        client_id: ClientId,
        op_timeout: Duration,
        ping_interval: Duration,
        expected_id: Option<BrickId>,
    ) -> Arc<BrickConn> {
        Arc::new(BrickConn {
            index,
            addr,
            volume,
            client_id,
            maintenance: AtomicBool::new(false),
            op_timeout_us: AtomicU64::new(op_timeout.as_micros().min(u128::from(u64::MAX)) as u64),
            ping_interval,
            client: RwLock::new(None),
            data: RwLock::new(None),
            up: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            brick_id: RwLock::new(None),
            expected_id,
            heal_entries: AtomicU64::new(u64::MAX),
            index_changes: AtomicU64::new(0),
            scope_sent: std::sync::Mutex::new(None),
            replaced: AtomicBool::new(false),
            trouble: Notify::new(),
            came_up: Notify::new(),
            closed: AtomicBool::new(false),
            down_reason: RwLock::new("not connected yet".into()),
        })
    }

    pub fn op_timeout(&self) -> Duration {
        Duration::from_micros(self.op_timeout_us.load(Ordering::Relaxed))
    }

    pub fn set_op_timeout(&self, t: Duration) {
        let us = t.as_micros().min(u128::from(u64::MAX)) as u64;
        self.op_timeout_us.store(us, Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn closed_error(&self) -> FsError {
        FsError::BrickDown(format!(
            "{} (closed: this client replaced its graph)",
            self.addr
        ))
    }

    /// Closes the connection for good: the keepalive task ends, both
    /// connections to the brick are dropped (so the brick releases what
    /// this client held there at once), and every later call fails at once.
    pub fn close(&self) {
        {
            // Under the slot's lock, so a connect finishing now either
            // installs before this (and is torn down here) or sees `closed`.
            let mut client = self.client.write().unwrap_or_else(PoisonError::into_inner);
            self.closed.store(true, Ordering::Release);
            self.up.store(false, Ordering::Release);
            // A late "connection closed" from the data reader is not news.
            self.generation.fetch_add(1, Ordering::AcqRel);
            // The last handle: tarpc's dispatch task ends and closes the socket.
            *client = None;
        }
        let data = self
            .data
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(data) = data {
            data.close();
        }
        self.trouble.notify_one();
        debug!(brick = %self.addr, index = self.index, "connection closed");
    }

    pub fn is_replaced(&self) -> bool {
        self.replaced.load(Ordering::Acquire)
    }

    /// The others now blame this brick for what it lost.
    pub fn clear_replaced(&self) {
        self.replaced.store(false, Ordering::Release);
    }

    /// The brick's identity as of the last connection.
    pub fn brick_id(&self) -> Option<BrickId> {
        self.brick_id.read().ok().and_then(|id| *id)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The brick's heal index is empty: it blames no replica for anything.
    pub fn blames_nobody(&self) -> bool {
        self.heal_entries.load(Ordering::Acquire) == 0
    }

    /// Size of the brick's heal index as last reported (0 before the first
    /// answer is known).
    pub fn heal_entries(&self) -> u64 {
        match self.heal_entries.load(Ordering::Acquire) {
            u64::MAX => 0,
            n => n,
        }
    }

    /// Moves whenever the brick's heal index changes.
    pub fn index_changes(&self) -> u64 {
        self.index_changes.load(Ordering::Acquire)
    }

    /// This client just made the brick blame another one: until its next
    /// ping answer says so itself, count its heal index as not empty, so
    /// nobody takes the replicas for clean in between.
    pub fn note_blame_made(&self) {
        let _ = self
            .heal_entries
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n == 0).then_some(1)
            });
    }

    fn note_pong(&self, pong: proto::Pong) {
        self.index_changes
            .store(pong.index_changes, Ordering::Release);
        self.heal_entries
            .store(pong.heal_entries, Ordering::Release);
    }

    /// Connects and says hello; on success the brick counts as up, on
    /// failure the reason is kept ([`BrickConn::down_reason`]).
    pub async fn connect_once(self: &Arc<Self>) -> FsResult<()> {
        let r = self.try_connect().await;
        if let Err(e) = &r {
            self.set_down_reason(e);
        }
        r
    }

    async fn try_connect(self: &Arc<Self>) -> FsResult<()> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        let client = connect_rpc(self.addr, self.op_timeout()).await?;
        let info = client
            .hello(
                self.deadline(self.op_timeout()),
                self.client_id,
                self.volume.clone(),
                self.purpose(),
            )
            .await
            .map_err(|e| self.rpc_error(e))??;
        if let Some(want) = self.expected_id {
            if want != info.id {
                return Err(FsError::Refused(format!(
                    "{} is brick {} but volume {} has brick {} there (a wiped or swapped disk?); \
                     not used until the volume's spec names it",
                    self.addr, info.id, self.volume, want
                )));
            }
        }
        if let Ok(mut id) = self.brick_id.write() {
            if let Some(old) = *id {
                if old != info.id {
                    warn!(brick = %self.addr, old = %old, new = %info.id,
                        "brick at this address has a new identity (replaced or wiped)");
                    self.replaced.store(true, Ordering::Release);
                }
            }
            *id = Some(info.id);
        }
        if let Some(token) = read_scope_token()? {
            client
                .scope(self.deadline(self.op_timeout()), token.clone())
                .await
                .map_err(|e| self.rpc_error(e))?
                .map_err(|e| self.scope_refused(e))?;
            *self
                .scope_sent
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(token);
        }
        let pong = client
            .ping(self.deadline(self.op_timeout()))
            .await
            .map_err(|e| self.rpc_error(e))?;
        self.note_pong(pong);
        // A brick that dies resets its connections: the data connection's
        // reader sees that at once, long before a deadline would.
        let me = Arc::downgrade(self);
        let generation = self.generation() + 1;
        let on_close = move || {
            if let Some(b) = me.upgrade() {
                if b.generation() == generation {
                    b.mark_down("connection closed by the brick");
                }
            }
        };
        let data = DataConn::connect(
            self.addr,
            info.session,
            self.op_timeout(),
            Box::new(on_close),
        )
        .await?;
        {
            let mut slot = self.client.write().unwrap_or_else(PoisonError::into_inner);
            if self.is_closed() {
                data.close();
                return Err(self.closed_error());
            }
            *self.data.write().unwrap_or_else(PoisonError::into_inner) = Some(data);
            *slot = Some(client);
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.up.store(true, Ordering::Release);
        }
        info!(brick = %self.addr, id = %info.id, index = self.index, "brick up");
        self.came_up.notify_waiters();
        Ok(())
    }

    /// Marks the brick down only if the failure happened on the current
    /// connection: a late error from a replaced one says nothing about it.
    fn mark_down_if(&self, generation: u64, why: &str) {
        if self.generation() == generation {
            self.mark_down(why);
        }
    }

    pub fn mark_down(&self, why: &str) {
        *self
            .down_reason
            .write()
            .unwrap_or_else(PoisonError::into_inner) = why.to_string();
        if self.up.swap(false, Ordering::AcqRel) {
            warn!(brick = %self.addr, index = self.index, "brick down: {why}");
        }
        if let Ok(mut slot) = self.client.write() {
            *slot = None;
        }
        let data = self.data.write().ok().and_then(|mut slot| slot.take());
        if let Some(data) = data {
            data.close();
        }
        self.trouble.notify_one();
    }

    /// Why the brick is down (its last failure), for error messages.
    pub fn down_reason(&self) -> String {
        self.down_reason
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_down_reason(&self, e: &FsError) {
        *self
            .down_reason
            .write()
            .unwrap_or_else(PoisonError::into_inner) = e.to_string();
    }

    fn deadline(&self, timeout: Duration) -> Context {
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now() + timeout;
        ctx
    }

    fn rpc_error(&self, e: RpcError) -> FsError {
        match e {
            RpcError::DeadlineExceeded => FsError::Timeout(self.addr.to_string()),
            other => FsError::BrickDown(format!("{}: {other}", self.addr)),
        }
    }

    /// Calls the brick with the standard deadline. Transport failures mark
    /// the brick down and come back as `Timeout`/`BrickDown`.
    pub async fn call<T, F, Fut>(&self, f: F) -> FsResult<T>
    where
        F: FnOnce(BrickClient, Context) -> Fut,
        Fut: std::future::Future<Output = Result<FsResult<T>, RpcError>>,
    {
        self.call_with_timeout(self.op_timeout(), f).await
    }

    pub async fn call_with_timeout<T, F, Fut>(&self, timeout: Duration, f: F) -> FsResult<T>
    where
        F: FnOnce(BrickClient, Context) -> Fut,
        Fut: std::future::Future<Output = Result<FsResult<T>, RpcError>>,
    {
        let generation = self.generation();
        let client = match self.client.read().ok().and_then(|c| c.clone()) {
            Some(c) if self.is_up() => c,
            _ if self.is_closed() => return Err(self.closed_error()),
            _ => return Err(FsError::BrickDown(self.addr.to_string())),
        };
        // tarpc enforces the deadline on the server side too; the local
        // timeout is the backstop for a brick that stopped reading.
        let ctx = self.deadline(timeout);
        match tokio::time::timeout(timeout + Duration::from_millis(50), f(client, ctx)).await {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => {
                let err = self.rpc_error(e);
                self.mark_down_if(generation, &err.to_string());
                Err(err)
            }
            Err(_) => {
                let err = FsError::Timeout(self.addr.to_string());
                self.mark_down_if(generation, "operation deadline passed");
                Err(err)
            }
        }
    }

    /// One request on the data connection, under the same deadline and
    /// down-marking rules as RPCs.
    async fn call_data(&self, header: RequestHeader, payload: &[u8]) -> FsResult<Vec<u8>> {
        // Read before the connection: a reconnect in between then counts as
        // a newer connection, whose failure this is not.
        let generation = self.generation();
        let conn = match self.data.read().ok().and_then(|c| c.clone()) {
            Some(c) if self.is_up() && !c.is_dead() => c,
            _ if self.is_closed() => return Err(self.closed_error()),
            Some(_) => {
                self.mark_down("data connection lost");
                return Err(FsError::BrickDown(self.addr.to_string()));
            }
            None => return Err(FsError::BrickDown(self.addr.to_string())),
        };
        match tokio::time::timeout(self.op_timeout(), conn.call(header, payload)).await {
            Ok(Ok((data::STATUS_OK, body))) => Ok(body),
            Ok(Ok((_, body))) => Err(data::decode_value::<FsError>(&body)?),
            Ok(Err(e)) => {
                self.mark_down_if(generation, &e.to_string());
                Err(e)
            }
            Err(_) => {
                self.mark_down_if(generation, "data operation deadline passed");
                Err(FsError::Timeout(self.addr.to_string()))
            }
        }
    }

    pub async fn write(
        &self,
        txn: Txn,
        gfid: Gfid,
        at: WriteAt,
        payload: &[u8],
    ) -> FsResult<Done<Attr>> {
        let (op, offset) = at.op_and_offset();
        let header = RequestHeader {
            id: 0,
            op,
            gfid,
            offset,
            size: payload.len() as u32,
            blame: txn.blame,
        };
        let body = self.call_data(header, payload).await?;
        data::decode_value(&body)
    }

    /// Writes at several offsets of one file in one frame, applied in
    /// order; `payload` is [`data::encode_extents`]'s.
    pub async fn write_extents(
        &self,
        txn: Txn,
        gfid: Gfid,
        payload: &[u8],
    ) -> FsResult<Done<Attr>> {
        let header = RequestHeader {
            id: 0,
            op: data::OP_WRITEV,
            gfid,
            offset: 0,
            size: payload.len() as u32,
            blame: txn.blame,
        };
        let body = self.call_data(header, payload).await?;
        data::decode_value(&body)
    }

    pub async fn read(&self, gfid: Gfid, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let header = RequestHeader {
            id: 0,
            op: data::OP_READ,
            gfid,
            offset,
            size,
            blame: Vec::new(),
        };
        self.call_data(header, &[]).await
    }

    fn scope_refused(&self, e: FsError) -> FsError {
        FsError::Refused(format!(
            "brick {} refused this process's scope token ({e}); its log says why",
            self.addr
        ))
    }

    /// Sends the scope token again when its file changed (a renewal before
    /// the old one expires).
    async fn renew_scope(&self) {
        let token = match read_scope_token() {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                warn!(brick = %self.addr, "{e}");
                return;
            }
        };
        let sent = self
            .scope_sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if sent.as_deref() == Some(token.as_str()) {
            return;
        }
        let t = token.clone();
        let res = self
            .call_with_timeout(
                self.op_timeout(),
                |c, ctx| async move { c.scope(ctx, t).await },
            )
            .await;
        match res {
            Ok(()) => {
                info!(brick = %self.addr, "scope token renewed");
                *self
                    .scope_sent
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(token);
            }
            Err(e) => warn!(brick = %self.addr, "{}", self.scope_refused(e)),
        }
    }

    /// Keeps the connection alive until it is closed: reconnects with
    /// backoff while down, pings while up.
    pub async fn run_keepalive(self: Arc<Self>) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            if self.is_closed() {
                return;
            }
            if !self.is_up() {
                match self.connect_once().await {
                    Ok(()) => backoff.reset(),
                    Err(e) => {
                        debug!(brick = %self.addr, "connect failed: {e}");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.next_pause()) => {}
                            _ = self.trouble.notified() => {}
                        }
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.ping_interval) => {}
                _ = self.trouble.notified() => continue,
            }
            let ping_timeout = self.op_timeout().min(Duration::from_secs(5));
            let res = self
                .call_with_timeout(
                    ping_timeout,
                    |c, ctx| async move { c.ping(ctx).await.map(Ok) },
                )
                .await;
            match res {
                Ok(pong) => {
                    self.note_pong(pong);
                    self.renew_scope().await;
                }
                Err(e) => debug!(brick = %self.addr, "ping failed: {e}"),
            }
        }
    }
}
