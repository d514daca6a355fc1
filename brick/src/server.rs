//! The tarpc side of the brick: accepting connections, one `Brick` service
//! instance per connection (its id scopes locks), running fops on blocking
//! threads, and releasing a connection's locks once it is gone.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use proto::{
    Attr, Brick, BrickInfo, BrickRequest, BrickResponse, Bytes, Checksums, ClientId, DirPage, Done,
    EntryFix, FsError, FsResult, Gfid, HealPage, LockGrant, LockMode, Looked, Name, NewObject,
    PendingCounts, PendingKind, Pong, Purpose, QuotaUse, RecordLock, RenameReq, ReplicaIndex,
    SetAttr, StatFs, Txn,
};
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::data::{self, Sessions};
use crate::error::{join_error, BrickError};
use crate::limits::{HANDSHAKE_TIMEOUT, HEAVY_IO};
use crate::locks::ConnId;
use crate::ops::Backend;
use crate::scope::{ScopeSlot, Squash};

/// How long a client may be without any connection before the files it
/// kept open-unlinked are dropped.
const CLIENT_GRACE: Duration = Duration::from_secs(30);

/// A client connection with no request (not even a ping) for this long is
/// closed and its locks released.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a shutdown waits for connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Configuration of one brick daemon.
#[derive(Clone, Debug)]
pub struct BrickConfig {
    /// The brick directory: the volume root as plain files, plus `.brickfs/`.
    pub dir: PathBuf,
    /// Volume this brick must belong to; bound on first start if unset.
    pub volume: Option<String>,
    /// The management API's public keys for scope tokens
    /// (`tls::scope::VERIFY_KEYS`); without them tenants' hosts are
    /// refused.
    pub scope_keys: Option<PathBuf>,
}

type ServerTransport = tarpc::serde_transport::Transport<
    tls::BoxStream,
    tarpc::ClientMessage<BrickRequest>,
    tarpc::Response<BrickResponse>,
    // tarpc's bincode plus the deadline check it lacks (proto::wire).
    proto::wire::ServerCodec,
>;

/// Serves a brick on an already-bound listener until `shutdown` completes,
/// then stops accepting, lets connections finish in-flight requests and
/// returns.
pub async fn serve(
    listener: TcpListener,
    config: BrickConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BrickError> {
    let init = config.clone();
    let backend = tokio::task::spawn_blocking(move || open_backend(&init))
        .await
        .map_err(|e| BrickError::Internal(e.to_string()))??;
    let backend = Arc::new(backend);
    let brick = backend.store.id;
    let addr = listener
        .local_addr()
        .map_err(|e| BrickError::io("listen", e))?;
    tracing::info!(%brick, %addr, dir = %config.dir.display(), "brick serving");
    crate::stats::mark_started();
    let sessions = Arc::new(Sessions::default());
    let scope_keys = config.scope_keys.clone().map(Arc::new);

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut next_id: ConnId = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    next_id += 1;
                    // Replies are small and latency-bound: never let Nagle hold one back.
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "set_nodelay");
                    }
                    conns.spawn(classify(
                        backend.clone(),
                        sessions.clone(),
                        scope_keys.clone(),
                        next_id,
                        peer,
                        stream,
                        stop_rx.clone(),
                    ));
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    tracing::info!(%brick, connections = conns.len(), "shutting down");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections did not finish in time; aborting them");
        conns.abort_all();
    }
    Ok(())
}

/// After a client's last connection ends, waits for it to come back before
/// dropping the files it kept open-unlinked: a reconnect after a timeout
/// must not cost an application its open file.
fn forget_client_later(backend: Arc<Backend>, sessions: Arc<Sessions>, client: proto::ClientId) {
    tokio::spawn(async move {
        tokio::time::sleep(CLIENT_GRACE).await;
        if sessions.has_client(client) {
            return;
        }
        let purge = tokio::task::spawn_blocking(move || {
            backend.orphans.release_client(&backend.store, client)
        });
        if let Err(e) = purge.await {
            tracing::warn!(error = %e, "purging a gone client's open-unlinked files");
        }
    });
}

/// Admits one connection, in its own task: the TLS handshake (under a
/// deadline, so a slow or garbled one holds nothing but itself), then the
/// kind of connection: on TLS the protocol named in the handshake; in
/// plaintext (`--insecure`) its first four bytes, the data-path magic or
/// anything else for the RPC service.
async fn classify(
    backend: Arc<Backend>,
    sessions: Arc<Sessions>,
    scope_keys: Option<Arc<PathBuf>>,
    id: ConnId,
    peer: SocketAddr,
    stream: TcpStream,
    stop: watch::Receiver<bool>,
) {
    let plain_kind = if tls::is_tls() {
        None
    } else {
        match peek_kind(&stream).await {
            Some(kind) => Some(kind),
            None => {
                tracing::debug!(%peer, "connection closed before saying anything");
                return;
            }
        }
    };
    let accepted = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls::accept(stream)).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "connection refused: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, timeout = ?HANDSHAKE_TIMEOUT, "connection refused: TLS handshake too slow");
            return;
        }
    };
    if !accepted.peer.may_use_files() {
        tracing::warn!(%peer, who = %accepted.peer, "connection refused: this role does not use bricks");
        return;
    }
    let who = Arc::new(accepted.peer);
    match plain_kind.or(accepted.alpn) {
        Some(tls::Alpn::BrickRpc) => {}
        Some(tls::Alpn::BrickData) => {
            data::connection(backend, sessions, accepted.stream, peer, who, stop).await;
            return;
        }
        other => {
            tracing::warn!(%peer, protocol = ?other, "connection refused: not a brick protocol");
            return;
        }
    }
    let framed = tarpc::tokio_util::codec::LengthDelimitedCodec::builder()
        .max_frame_length(proto::MAX_FRAME)
        .new_framed(accepted.stream);
    let transport = tarpc::serde_transport::new(framed, proto::wire::ServerCodec::default());
    let conn = Conn {
        backend,
        sessions,
        id,
        scope: Arc::new(ScopeSlot::new(&who)),
        who,
        scope_keys,
    };
    connection(conn, Some(peer), transport, stop).await;
}

/// A plaintext connection's kind from its first four bytes; `None` if it
/// closed (or said nothing in time) first.
async fn peek_kind(stream: &TcpStream) -> Option<tls::Alpn> {
    let mut first = [0u8; 4];
    let peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        loop {
            match stream.peek(&mut first).await {
                Ok(n) if n >= 4 => return true,
                Ok(0) | Err(_) => return false,
                // A partial first segment: wait for the rest.
                Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    })
    .await;
    if peeked != Ok(true) {
        return None;
    }
    Some(if first == proto::data::MAGIC {
        tls::Alpn::BrickData
    } else {
        tls::Alpn::BrickRpc
    })
}

/// Opens (initialising on first start) the brick directory and checks that
/// it belongs to the configured volume. `serve` does this itself; a daemon
/// calls it first to fail before announcing its address.
pub fn check(config: &BrickConfig) -> Result<(), BrickError> {
    open_backend(config).map(drop)
}

fn open_backend(config: &BrickConfig) -> Result<Backend, BrickError> {
    let backend = Backend::open(&config.dir)?;
    if let Some(volume) = config.volume.as_deref() {
        backend
            .store
            .check_volume(volume, true)
            .map_err(|e| match e {
                FsError::Refused(msg) => BrickError::Refused(msg),
                e => BrickError::BadDir {
                    dir: config.dir.display().to_string(),
                    why: e.to_string(),
                },
            })?;
    }
    Ok(backend)
}

async fn connection(
    server: Conn,
    peer: Option<SocketAddr>,
    transport: ServerTransport,
    mut stop: watch::Receiver<bool>,
) {
    let (backend, sessions, id) = (server.backend.clone(), server.sessions.clone(), server.id);
    let span = tracing::info_span!("conn", conn = id, peer = ?peer, who = %server.who);
    async move {
        tracing::debug!("connection accepted");
        let mut requests = Box::pin(BaseChannel::with_defaults(transport).requests());
        let mut inflight = JoinSet::new();
        // Clients ping every second. A connection silent for much longer
        // belongs to a client whose host died or was cut off: its locks must
        // not outlive it (TCP alone would keep a half-open connection forever).
        let mut silent_until = tokio::time::Instant::now() + IDLE_TIMEOUT;
        loop {
            tokio::select! {
                next = requests.next() => match next {
                    Some(Ok(req)) => {
                        silent_until = tokio::time::Instant::now() + IDLE_TIMEOUT;
                        inflight.spawn(req.execute(server.clone().serve()));
                    }
                    Some(Err(e)) => {
                        // Garbage, an oversized frame or an undecodable request:
                        // only this connection is dropped.
                        tracing::warn!(error = %e, "dropping connection after transport error");
                        break;
                    }
                    None => break,
                },
                Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
                _ = tokio::time::sleep_until(silent_until), if inflight.is_empty() => {
                    tracing::warn!(timeout = ?IDLE_TIMEOUT, "client silent; closing its connection and releasing its locks");
                    break;
                }
                _ = stop.changed() => break,
            }
        }
        // Dropping the channel makes pending responses fail fast; the
        // requests themselves finish before the locks they may take go.
        drop(requests);
        while inflight.join_next().await.is_some() {}
        if let Some(client) = sessions.close(id) {
            forget_client_later(backend.clone(), sessions.clone(), client);
        }
        backend.release_conn(id);
        tracing::debug!("connection closed; its locks released");
    }
    .instrument(span)
    .await
}

/// The service as seen by one connection.
#[derive(Clone)]
struct Conn {
    backend: Arc<Backend>,
    sessions: Arc<Sessions>,
    id: ConnId,
    /// Who is connected, from its certificate: what it may call.
    who: Arc<tls::Peer>,
    /// Which objects it may reach (a tenant's: its sub-volumes only).
    scope: Arc<ScopeSlot>,
    scope_keys: Option<Arc<PathBuf>>,
}

impl Conn {
    /// Runs one fop inside its own span. Most fops are a handful of short
    /// syscalls: running them inline on the runtime costs far less than the
    /// two thread hand-offs of `spawn_blocking` (measured: creates/s doubled
    /// with three bricks and a client sharing two cores). Fops that can take
    /// long (fsync, big I/O, big directories, truncation and unlink or
    /// rename-over that may free a big file) go to the blocking pool so they
    /// never stall other requests, pings included.
    async fn run<T: Send + 'static>(
        &self,
        fop: &'static str,
        gfid: Gfid,
        f: impl FnOnce(&Backend) -> FsResult<T> + Send + 'static,
    ) -> FsResult<T> {
        self.run_as(fop, gfid, false, f).await
    }

    async fn run_as<T: Send + 'static>(
        &self,
        fop: &'static str,
        gfid: Gfid,
        heavy: bool,
        f: impl FnOnce(&Backend) -> FsResult<T> + Send + 'static,
    ) -> FsResult<T> {
        let span = tracing::debug_span!("fop", fop, %gfid);
        let started = std::time::Instant::now();
        let res = if heavy {
            let backend = self.backend.clone();
            let inner = span.clone();
            tokio::task::spawn_blocking(move || {
                let _entered = inner.enter();
                f(&backend)
            })
            .await
            .map_err(join_error)
            .and_then(|r| r)
        } else {
            let _entered = span.enter();
            f(&self.backend)
        };
        crate::stats::fops().record(fop, started.elapsed(), res.is_err());
        if let Err(e) = &res {
            span.in_scope(|| tracing::debug!(error = %e, "fop failed"));
        }
        res
    }

    /// Refuses what the caller's role does not allow, and says so in the log
    /// (the caller sees EPERM).
    fn require(&self, allowed: bool, what: &str) -> FsResult<()> {
        if allowed {
            return Ok(());
        }
        tracing::warn!(who = %self.who, what, "refused: the caller's role does not allow it");
        Err(FsError::Perm)
    }

    /// Refuses objects outside the connection's scope (`scope.rs`); the
    /// squash of the first one's sub-volume.
    fn in_scope(&self, gfids: &[Gfid]) -> FsResult<Squash> {
        self.scope.check(&self.backend, gfids)
    }

    /// Heal RPCs are for heal and admin roles only.
    fn maintainer(&self, what: &str) -> FsResult<()> {
        self.require(self.who.may_maintain(), what)
    }

    /// A sub-volume's limit is the admin's to set, and heal's to copy to a
    /// replica that missed it.
    fn limit_setter(&self, name: &Name) -> FsResult<()> {
        if name.as_bytes() == proto::QUOTA_XATTR {
            self.require(self.who.may_maintain(), "set a sub-volume limit")?;
        }
        Ok(())
    }

    fn done<T>(&self, res: FsResult<T>) -> FsResult<Done<T>> {
        self.done_with(res.map(|v| (v, Vec::new())))
    }

    fn done_with<T>(&self, res: FsResult<(T, Vec<Attr>)>) -> FsResult<Done<T>> {
        res.map(|(value, parents)| Done {
            value,
            contended: self.backend.inodelks.contended(self.id),
            parents,
        })
    }
}

impl Brick for Conn {
    async fn hello(
        self,
        _: Context,
        client: ClientId,
        volume: String,
        purpose: Purpose,
    ) -> FsResult<BrickInfo> {
        tracing::info!(client = %format!("{client:032x}"), %volume, ?purpose, "hello");
        if purpose == Purpose::Maintenance {
            self.require(
                self.who.may_maintain(),
                "connect for maintenance (heal, rebalance)",
            )?;
        }
        let may_bind = self.who.may_administer();
        let said = volume.clone();
        let mut info = self
            .run("hello", Gfid::ROOT, move |b| b.hello(&volume, may_bind))
            .await?;
        self.scope.said_hello(&said);
        info.session = self.sessions.open(
            self.id,
            client,
            purpose,
            self.who.clone(),
            self.scope.clone(),
        );
        Ok(info)
    }

    async fn scope(self, _: Context, token: String) -> FsResult<()> {
        if self.sessions.client_of(self.id).is_none() {
            return Err(FsError::Invalid("scope before hello".into()));
        }
        self.scope
            .install(&self.who, self.scope_keys.as_deref(), &token)
    }

    /// Answers with the size of the heal index: cheap, proves the brick's
    /// runtime (not just its socket) is alive, and tells clients whether
    /// any replica may be stale.
    async fn ping(self, _: Context) -> Pong {
        Pong {
            heal_entries: self.backend.changelog.heal_entries()
                + self.backend.changelog.unowned_dirty_count(),
            index_changes: self.backend.changelog.index_changes(),
        }
    }

    async fn lookup(self, _: Context, parent: Gfid, name: Name) -> FsResult<Looked> {
        let looked = self
            .run("lookup", parent, move |b| b.lookup(parent, &name))
            .await?;
        // The answer, not the parent: a mount finds its sub-volume by name
        // in the volume root, which is outside every scope.
        self.in_scope(&[looked.attr.gfid])?;
        Ok(looked)
    }

    async fn getattr(self, _: Context, gfid: Gfid) -> FsResult<Looked> {
        self.in_scope(&[gfid])?;
        self.run("getattr", gfid, move |b| b.getattr(gfid)).await
    }

    async fn setattr(
        self,
        _: Context,
        txn: Txn,
        gfid: Gfid,
        mut set: SetAttr,
    ) -> FsResult<Done<Attr>> {
        let squash = self.in_scope(&[gfid])?;
        set.uid = set.uid.map(|id| squash.id(id));
        set.gid = set.gid.map(|id| squash.id(id));
        let txn = self.sessions.stamp(self.id, txn);
        // Truncating a big file can take long: not on the connection thread.
        let heavy = set.size.is_some();
        let r = self
            .run_as("setattr", gfid, heavy, move |b| b.setattr(&txn, gfid, &set))
            .await;
        self.done(r)
    }

    async fn create(
        self,
        _: Context,
        txn: Txn,
        parent: Gfid,
        mut new: NewObject,
    ) -> FsResult<Done<Attr>> {
        for (name, _) in &new.xattrs {
            self.limit_setter(name)?;
        }
        let squash = self.in_scope(&[parent])?;
        new.uid = squash.id(new.uid);
        new.gid = squash.id(new.gid);
        let txn = self.sessions.stamp(self.id, txn);
        let conn = self.id;
        let r = self
            .run("create", parent, move |b| {
                let attr = b.create(&txn, parent, &new, conn)?;
                Ok((attr, b.dir_attrs(&[parent])))
            })
            .await;
        self.done_with(r)
    }

    async fn unlink(
        self,
        _: Context,
        txn: Txn,
        parent: Gfid,
        name: Name,
        is_dir: bool,
        keep_open: bool,
    ) -> FsResult<Done<Option<Gfid>>> {
        self.in_scope(&[parent])?;
        let txn = self.sessions.stamp(self.id, txn);
        let keep_for = keep_open
            .then(|| self.sessions.client_of(self.id))
            .flatten();
        let r = self
            .run_as("unlink", parent, true, move |b| {
                let kept = b.unlink(&txn, parent, &name, is_dir, keep_for)?;
                Ok((kept, b.dir_attrs(&[parent])))
            })
            .await;
        self.done_with(r)
    }

    async fn purge(self, _: Context, gfids: Vec<Gfid>) -> FsResult<()> {
        let Some(client) = self.sessions.client_of(self.id) else {
            return Err(FsError::Invalid("purge before hello".into()));
        };
        self.in_scope(&gfids)?;
        let first = gfids.first().copied().unwrap_or(Gfid::ROOT);
        self.run("purge", first, move |b| b.purge(client, &gfids))
            .await
    }

    async fn rename(self, _: Context, txn: Txn, req: RenameReq) -> FsResult<Done<()>> {
        self.in_scope(&[req.parent, req.new_parent])?;
        let txn = self.sessions.stamp(self.id, txn);
        let r = self
            .run_as("rename", req.parent, true, move |b| {
                b.rename(&txn, &req)?;
                Ok(((), b.dir_attrs(&[req.parent, req.new_parent])))
            })
            .await;
        self.done_with(r)
    }

    async fn link(
        self,
        _: Context,
        txn: Txn,
        gfid: Gfid,
        parent: Gfid,
        name: Name,
    ) -> FsResult<Done<Attr>> {
        self.in_scope(&[gfid, parent])?;
        let txn = self.sessions.stamp(self.id, txn);
        let r = self
            .run("link", gfid, move |b| {
                let attr = b.link(&txn, gfid, parent, &name)?;
                Ok((attr, b.dir_attrs(&[parent])))
            })
            .await;
        self.done_with(r)
    }

    async fn readlink(self, _: Context, gfid: Gfid) -> FsResult<Bytes> {
        self.in_scope(&[gfid])?;
        self.run("readlink", gfid, move |b| b.readlink(gfid).map(Bytes::from))
            .await
    }

    async fn read(self, _: Context, gfid: Gfid, offset: u64, size: u32) -> FsResult<Bytes> {
        self.in_scope(&[gfid])?;
        let counted = !self.sessions.is_maintenance(self.id);
        self.run_as("read", gfid, size as usize > HEAVY_IO, move |b| {
            let data = b.read(gfid, offset, size)?;
            if counted {
                b.hot.read(gfid, data.len());
            }
            Ok(Bytes::from(data))
        })
        .await
    }

    async fn write(
        self,
        _: Context,
        txn: Txn,
        gfid: Gfid,
        offset: u64,
        data: Bytes,
    ) -> FsResult<Done<Attr>> {
        self.in_scope(&[gfid])?;
        let txn = self.sessions.stamp(self.id, txn);
        let r = self
            .run_as("write", gfid, data.len() > HEAVY_IO, move |b| {
                b.write(&txn, gfid, proto::data::WriteAt::Offset(offset), &data)
            })
            .await;
        self.done(r)
    }

    async fn fsync(self, _: Context, gfid: Gfid, datasync: bool) -> FsResult<()> {
        self.in_scope(&[gfid])?;
        self.run_as("fsync", gfid, true, move |b| b.fsync(gfid, datasync))
            .await
    }

    async fn fallocate(
        self,
        _: Context,
        txn: Txn,
        gfid: Gfid,
        mode: i32,
        offset: u64,
        len: u64,
    ) -> FsResult<Done<Attr>> {
        self.in_scope(&[gfid])?;
        let txn = self.sessions.stamp(self.id, txn);
        let r = self
            .run_as("fallocate", gfid, true, move |b| {
                b.fallocate(&txn, gfid, mode, offset, len)
            })
            .await;
        self.done(r)
    }

    async fn copy_range(
        self,
        _: Context,
        txn: Txn,
        copy: proto::CopyRange,
    ) -> FsResult<Done<(u64, Attr)>> {
        self.in_scope(&[copy.src, copy.dst])?;
        let txn = self.sessions.stamp(self.id, txn);
        let r = self
            .run_as("copy_range", copy.dst, true, move |b| {
                b.copy_range(&txn, &copy)
            })
            .await;
        self.done(r)
    }

    async fn readdir(
        self,
        _: Context,
        gfid: Gfid,
        after: Option<Name>,
        max: u32,
    ) -> FsResult<DirPage> {
        self.in_scope(&[gfid])?;
        self.run_as("readdir", gfid, true, move |b| {
            b.readdir(gfid, after.as_ref(), max)
        })
        .await
    }

    async fn statfs(self, _: Context, at: Gfid) -> FsResult<StatFs> {
        self.in_scope(&[at])?;
        self.run("statfs", at, move |b| b.statfs(at)).await
    }

    async fn quota_usage(self, _: Context) -> FsResult<Vec<QuotaUse>> {
        let mut usages = self.backend.quotas.usages();
        // A tenant learns nothing of other tenants' sub-volumes.
        if let Some(roots) = self.scope.roots()? {
            usages.retain(|u| roots.contains(&u.subvol));
        }
        Ok(usages)
    }

    async fn quota_elsewhere(self, _: Context, mut others: Vec<QuotaUse>) -> FsResult<()> {
        // Nor may it fill another tenant's sub-volume with made-up usage.
        if let Some(roots) = self.scope.roots()? {
            others.retain(|u| roots.contains(&u.subvol));
        }
        self.backend.quotas.set_elsewhere(&others);
        Ok(())
    }

    async fn getxattr(self, _: Context, gfid: Gfid, name: Name) -> FsResult<Bytes> {
        self.in_scope(&[gfid])?;
        self.run("getxattr", gfid, move |b| {
            b.getxattr(gfid, &name).map(Bytes::from)
        })
        .await
    }

    async fn listxattr(self, _: Context, gfid: Gfid) -> FsResult<Vec<Name>> {
        self.in_scope(&[gfid])?;
        self.run("listxattr", gfid, move |b| b.listxattr(gfid))
            .await
    }

    async fn setxattr(
        self,
        _: Context,
        txn: Txn,
        gfid: Gfid,
        name: Name,
        value: Bytes,
        flags: i32,
    ) -> FsResult<Done<()>> {
        self.limit_setter(&name)?;
        self.in_scope(&[gfid])?;
        let txn = self.sessions.stamp(self.id, txn);
        let r = self
            .run("setxattr", gfid, move |b| {
                b.setxattr(&txn, gfid, &name, &value, flags)
            })
            .await;
        self.done(r)
    }

    async fn removexattr(self, _: Context, txn: Txn, gfid: Gfid, name: Name) -> FsResult<Done<()>> {
        self.limit_setter(&name)?;
        self.in_scope(&[gfid])?;
        let txn = self.sessions.stamp(self.id, txn);
        let r = self
            .run("removexattr", gfid, move |b| {
                b.removexattr(&txn, gfid, &name)
            })
            .await;
        self.done(r)
    }

    async fn inodelk(self, _: Context, gfid: Gfid, mode: LockMode) -> FsResult<LockGrant> {
        if matches!(mode, LockMode::Acquire { .. }) {
            self.in_scope(&[gfid])?;
        }
        let span = tracing::debug_span!("fop", fop = "inodelk", %gfid);
        async {
            let granted = match mode {
                LockMode::Acquire { wait_ms } => {
                    self.backend
                        .inodelks
                        .acquire(gfid, self.id, Duration::from_millis(wait_ms.into()))
                        .await
                }
                LockMode::Release => {
                    // A release without the post-op: the op it guarded failed,
                    // so its dirty mark is heal's to resolve.
                    self.backend.changelog.disown_dirty(gfid, self.id);
                    self.backend.inodelks.release(gfid, self.id);
                    false
                }
            };
            tracing::debug!(?mode, granted, "inodelk");
            Ok(LockGrant { granted })
        }
        .instrument(span)
        .await
    }

    async fn unlock_batch(self, _: Context, gfids: Vec<Gfid>) -> FsResult<()> {
        // Only this connection's own locks are released: nothing to scope.
        let conn = self.id;
        let first = gfids.first().copied().unwrap_or(Gfid::ROOT);
        self.run("unlock_batch", first, move |b| b.unlock_batch(conn, &gfids))
            .await
    }

    async fn mark_pending(
        self,
        _: Context,
        gfid: Gfid,
        blame: Vec<ReplicaIndex>,
        kind: PendingKind,
    ) -> FsResult<()> {
        self.in_scope(&[gfid])?;
        self.run("mark_pending", gfid, move |b| {
            b.mark_pending(gfid, &blame, kind)
        })
        .await
    }

    async fn retract_pending(
        self,
        _: Context,
        gfid: Gfid,
        blame: Vec<ReplicaIndex>,
        kind: PendingKind,
    ) -> FsResult<()> {
        self.in_scope(&[gfid])?;
        if self.backend.inodelks.holder(gfid) != Some(self.id) {
            return Err(FsError::Invalid(format!(
                "retracting blame on {gfid} without holding its replication lock"
            )));
        }
        self.run("retract_pending", gfid, move |b| {
            b.retract_pending(gfid, &blame, kind)
        })
        .await
    }

    async fn getlk(self, _: Context, gfid: Gfid, lock: RecordLock) -> FsResult<Option<RecordLock>> {
        self.in_scope(&[gfid])?;
        let _span = tracing::debug_span!("fop", fop = "getlk", %gfid).entered();
        self.backend.records.getlk(gfid, self.id, &lock)
    }

    async fn setlk(self, _: Context, gfid: Gfid, lock: RecordLock) -> FsResult<()> {
        self.in_scope(&[gfid])?;
        let _span = tracing::debug_span!("fop", fop = "setlk", %gfid).entered();
        self.backend.records.setlk(gfid, self.id, &lock)
    }

    async fn heal_index(self, _: Context, after: Option<Gfid>, max: u32) -> FsResult<HealPage> {
        self.maintainer("heal_index")?;
        self.run_as("heal_index", Gfid::ROOT, true, move |b| {
            b.heal_index(after, max)
        })
        .await
    }

    async fn checksums(
        self,
        _: Context,
        gfid: Gfid,
        offset: u64,
        block: u32,
        count: u32,
    ) -> FsResult<Checksums> {
        self.maintainer("checksums")?;
        self.run_as("checksums", gfid, true, move |b| {
            b.checksums(gfid, offset, block, count)
        })
        .await
    }

    async fn heal_entry(self, _: Context, parent: Gfid, name: Name, fix: EntryFix) -> FsResult<()> {
        self.maintainer("heal_entry")?;
        self.run_as("heal_entry", parent, true, move |b| {
            b.heal_entry(parent, &name, &fix)
        })
        .await
    }

    async fn heal_done(
        self,
        _: Context,
        gfid: Gfid,
        seen: Vec<(ReplicaIndex, PendingCounts)>,
    ) -> FsResult<()> {
        self.maintainer("heal_done")?;
        self.run("heal_done", gfid, move |b| b.heal_done(gfid, &seen))
            .await
    }

    async fn locate(self, _: Context, gfid: Gfid) -> FsResult<Option<(Gfid, Name)>> {
        self.maintainer("locate")?;
        self.run("locate", gfid, move |b| b.locate(gfid)).await
    }

    async fn heal_note(self, _: Context, gfid: Gfid, note: String) -> FsResult<()> {
        self.maintainer("heal_note")?;
        self.run("heal_note", gfid, move |b| b.heal_note(gfid, note))
            .await
    }
    async fn profile(self, _: Context, cmd: proto::ProfileCmd) -> FsResult<proto::ProfileReport> {
        self.maintainer("profile")?;
        if cmd != proto::ProfileCmd::Info {
            tracing::info!(who = %self.who, ?cmd, "volume profile");
        }
        Ok(crate::stats::profile(cmd))
    }

    async fn top(self, _: Context, limit: u32, clear: bool) -> FsResult<proto::TopReport> {
        self.maintainer("top")?;
        if clear {
            tracing::info!(who = %self.who, "volume top: counts cleared");
        }
        let limit = (limit as usize).min(crate::top::TRACKED_MAX);
        self.run_as("top", Gfid::ROOT, true, move |b| {
            let (files, tracked) = b.hot.top(&b.store, limit, clear);
            Ok(proto::TopReport {
                files,
                tracked: tracked as u64,
                tracked_max: crate::top::TRACKED_MAX as u64,
            })
        })
        .await
    }
}
