//! The accept loop, one task per connection, and dispatch by program.
//!
//! Each connection reads records in order but runs up to
//! [`MAX_CALLS_PER_CONNECTION`] calls at once (the Linux client pipelines
//! its requests over one connection and matches replies by xid, so they
//! may go out in any order); a writer sends each reply as one record. All
//! connections together run at most [`MAX_CALLS`] calls. A call holds its
//! permits until its reply is written, so the memory of a connection is
//! bounded by its permits, whatever the client sends or fails to read.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::portmap::Served;
use crate::rpc::{self, Accepted, Decoded, Reply, RpcError, MAX_RECORD};
use crate::{mount, nfs, nlm, nsm, portmap, Caller, Gateway, GatewayError};

/// Calls one connection runs at once; further records wait in the socket.
pub const MAX_CALLS_PER_CONNECTION: usize = 16;
/// Calls all connections together run at once.
pub const MAX_CALLS: usize = 256;
/// Connections beyond this are closed at once: each may hold a record
/// being read, so their number bounds memory too.
pub const MAX_CONNECTIONS: usize = 1024;
/// Pause after a failed accept (EMFILE, ENFILE, ENOBUFS…): the condition
/// is usually gone soon, and retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long calls in flight may take to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(5);
/// A client that reads none of a reply for this long is gone; its
/// connection and the replies it holds are dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the gateway serves: its one port (TCP, and UDP for NSM and
/// portmap), and portmap alone on more addresses (port 111).
pub struct Listeners {
    pub tcp: TcpListener,
    pub udp: Option<UdpSocket>,
    pub portmap_tcp: Vec<TcpListener>,
    pub portmap_udp: Vec<UdpSocket>,
}

impl Listeners {
    /// Just the one TCP port.
    pub fn tcp(tcp: TcpListener) -> Listeners {
        Listeners {
            tcp,
            udp: None,
            portmap_tcp: Vec::new(),
            portmap_udp: Vec::new(),
        }
    }

    /// What portmap says is served where.
    pub fn served(&self) -> Result<Served, GatewayError> {
        let port = self
            .tcp
            .local_addr()
            .map_err(|source| GatewayError::Io {
                context: "local address of the listener".to_string(),
                source,
            })?
            .port();
        Ok(Served {
            port,
            udp: self.udp.is_some(),
        })
    }
}

/// Serves NFS v3, MOUNT v3, NLM v4, NSM v1 and portmap v2 until `shutdown`
/// completes; then stops accepting, lets calls in flight finish (at most
/// 5 s) and returns.
pub async fn serve(
    gw: Arc<Gateway>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    let served = listeners.served()?;
    let all = Arc::new(GatewayPrograms { gw, served });
    let portmap = Arc::new(PortmapOnly { served });
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut servers = JoinSet::new();
    servers.spawn(serve_programs(all.clone(), listeners.tcp, stopped()));
    if let Some(udp) = listeners.udp {
        servers.spawn(crate::udp::serve_udp(all.clone(), udp, stopped()));
    }
    for l in listeners.portmap_tcp {
        servers.spawn(serve_programs(portmap.clone(), l, stopped()));
    }
    for u in listeners.portmap_udp {
        servers.spawn(crate::udp::serve_udp(portmap.clone(), u, stopped()));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while let Some(done) = servers.join_next().await {
        log_task_end("server", done);
    }
    Ok(())
}

/// What runs an accepted call: the gateway's programs, or a stub in tests
/// of the connection machinery.
pub(crate) trait Programs: Send + Sync + 'static {
    fn call<'a>(
        &'a self,
        caller: &'a Caller,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &'a [u8],
    ) -> impl Future<Output = Accepted> + Send + 'a;

    /// Whether `prog` is served over UDP (only small, idempotent or
    /// one-way calls are: portmap and NSM).
    fn over_udp(&self, prog: u32) -> bool {
        prog == nfs3_types::portmap::PROGRAM || prog == crate::nsm::PROGRAM
    }
}

struct GatewayPrograms {
    gw: Arc<Gateway>,
    /// Our port and protocols, which portmap hands out.
    served: Served,
}

/// Portmap alone (port 111), pointing at the gateway's port.
struct PortmapOnly {
    served: Served,
}

impl Programs for PortmapOnly {
    async fn call(
        &self,
        _caller: &Caller,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &[u8],
    ) -> Accepted {
        match route(prog, vers) {
            Ok(Program::Portmap) => portmap::handle_portmap(&self.served, proc_, args).into(),
            Ok(_) => Accepted::ProgUnavail,
            Err(refusal) => refusal,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Program {
    Nfs,
    Mount,
    Portmap,
    Nlm,
    Nsm,
}

/// The program a call is for; PROG_UNAVAIL or PROG_MISMATCH (with the one
/// version we serve) if we cannot run it.
fn route(prog: u32, vers: u32) -> Result<Program, Accepted> {
    let (program, served) = match prog {
        nfs3_types::nfs3::PROGRAM => (Program::Nfs, nfs3_types::nfs3::VERSION),
        nfs3_types::mount::PROGRAM => (Program::Mount, nfs3_types::mount::VERSION),
        nfs3_types::portmap::PROGRAM => (Program::Portmap, nfs3_types::portmap::VERSION),
        crate::nlm::xdr::PROGRAM => (Program::Nlm, crate::nlm::xdr::VERSION),
        crate::nsm::PROGRAM => (Program::Nsm, crate::nsm::VERSION),
        _ => return Err(Accepted::ProgUnavail),
    };
    if vers != served {
        return Err(Accepted::ProgMismatch {
            low: served,
            high: served,
        });
    }
    Ok(program)
}

impl Programs for GatewayPrograms {
    async fn call(
        &self,
        caller: &Caller,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &[u8],
    ) -> Accepted {
        match route(prog, vers) {
            Err(refusal) => refusal,
            Ok(Program::Nfs) => nfs::handle_nfs(&self.gw, caller, proc_, args).await.into(),
            Ok(Program::Mount) => mount::handle_mount(&self.gw, caller, proc_, args)
                .await
                .into(),
            Ok(Program::Portmap) => portmap::handle_portmap(&self.served, proc_, args).into(),
            Ok(Program::Nlm) => nlm::procs::handle_nlm(&self.gw, caller, proc_, args)
                .await
                .into(),
            Ok(Program::Nsm) => nsm::handle_nsm(&self.gw, caller, proc_, args).into(),
        }
    }
}

pub(crate) async fn serve_programs<P: Programs>(
    programs: Arc<P>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let calls = Arc::new(Semaphore::new(MAX_CALLS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => log_task_end("connection", done),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if conns.len() >= MAX_CONNECTIONS {
                        warn!(%peer, limit = MAX_CONNECTIONS, "too many connections; closing the new one");
                        continue;
                    }
                    let conn = connection(programs.clone(), stream, peer, calls.clone(), stop_rx.clone());
                    conns.spawn(conn.instrument(info_span!("conn", %peer)));
                }
                Err(e) => {
                    warn!(error = %e, "accept failed; retrying in 100 ms");
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        _ = &mut shutdown => break,
                    }
                }
            },
        }
    }
    // Closing the listener makes the kernel refuse new connections.
    drop(listener);
    let _ = stop_tx.send(true);
    info!(
        connections = conns.len(),
        "shutting down: finishing calls in flight"
    );
    let drained = tokio::time::timeout(DRAIN, async {
        while let Some(done) = conns.join_next().await {
            log_task_end("connection", done);
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            connections = conns.len(),
            "calls still running after {DRAIN:?}; abandoning them"
        );
        conns.shutdown().await;
    }
}

fn log_task_end(what: &str, done: Result<(), JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            error!(error = %e, "{what} task panicked");
        }
    }
}

/// A reply on its way to the socket, with the permits of its call: they
/// are released once it is written.
struct Outgoing {
    reply: Reply,
    _permits: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
}

async fn connection<P: Programs>(
    programs: Arc<P>,
    stream: TcpStream,
    peer: SocketAddr,
    calls: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) {
    // Replies are whole records written at once; Nagle would only delay
    // the small ones behind unacknowledged data.
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "cannot set TCP_NODELAY");
    }
    debug!("connection opened");
    // The address the client reached us by (the listener may be 0.0.0.0).
    let local_addr = match stream.local_addr() {
        Ok(a) => a,
        Err(e) => {
            debug!(error = %e, "no local address; closing");
            return;
        }
    };
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(MAX_CALLS_PER_CONNECTION);
    tokio::join!(
        read_side(programs, rd, peer, local_addr, calls, stop, tx),
        write_side(wr, rx)
    );
    debug!("connection closed");
}

/// Reads records and starts their calls until the client closes, sends
/// something that is not RPC, the writer gives up, or the server stops;
/// then waits for the calls it started.
async fn read_side<P: Programs>(
    programs: Arc<P>,
    rd: OwnedReadHalf,
    peer: SocketAddr,
    local_addr: SocketAddr,
    calls: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    tx: mpsc::Sender<Outgoing>,
) {
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let local = Arc::new(Semaphore::new(MAX_CALLS_PER_CONNECTION));
    let mut running = JoinSet::new();
    let stopped = async move {
        // An error means the server is gone: stop as well.
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        while let Some(done) = running.try_join_next() {
            log_task_end("call", done);
        }
        // Taken before reading, so a connection with all its calls running
        // leaves further records in the socket (TCP pushes back).
        let local_permit = tokio::select! {
            p = local.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut stopped => break,
            _ = tx.closed() => break,
        };
        let record = tokio::select! {
            r = rpc::read_record(&mut rd, MAX_RECORD) => r,
            _ = &mut stopped => break,
            _ = tx.closed() => break,
        };
        let record = match record {
            Ok(Some(record)) => record,
            Ok(None) => break,
            // Resets and the like: routine for a client that went away.
            Err(RpcError::Io(e)) => {
                debug!(error = %e, "read failed; closing");
                break;
            }
            Err(e) => {
                warn!(%peer, error = %e, "closing connection");
                break;
            }
        };
        let header = match rpc::decode_call(&record) {
            Ok(Decoded::Call(header)) => header,
            Ok(Decoded::Denied { xid, why }) => {
                info!(%peer, xid = %Xid(xid), ?why, "call denied");
                let out = Outgoing {
                    reply: rpc::denied(xid, why),
                    _permits: (local_permit, None),
                };
                if tx.send(out).await.is_err() {
                    break;
                }
                continue;
            }
            Err(e) => {
                warn!(%peer, error = %e, "closing connection");
                break;
            }
        };
        let global_permit = tokio::select! {
            p = calls.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut stopped => break,
            _ = tx.closed() => break,
        };
        let span = info_span!(
            "call",
            xid = %Xid(header.xid),
            prog = header.prog,
            vers = header.vers,
            "proc" = header.proc_
        );
        let programs = programs.clone();
        let tx = tx.clone();
        running.spawn(
            async move {
                let caller = header.cred.caller(peer, local_addr);
                let args = record.get(header.args_at..).unwrap_or_default();
                let started = Instant::now();
                let accepted = programs
                    .call(&caller, header.prog, header.vers, header.proc_, args)
                    .await;
                debug!(
                    result = %Describe(&accepted),
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "call done"
                );
                let reply = rpc::accepted(header.xid, accepted);
                // The arguments (a WRITE's data) are not needed while the
                // reply waits for the socket.
                drop(record);
                let out = Outgoing {
                    reply,
                    _permits: (local_permit, Some(global_permit)),
                };
                if tx.send(out).await.is_err() {
                    debug!("connection gone; reply dropped");
                }
            }
            .instrument(span),
        );
    }
    while let Some(done) = running.join_next().await {
        log_task_end("call", done);
    }
    // Dropping `tx` (the last sender once the calls are done) lets the
    // writer finish the queue and close.
}

/// Writes replies in the order they are ready, each record whole, so
/// records of concurrent calls never interleave.
async fn write_side(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(out) = rx.recv().await {
        match tokio::time::timeout(WRITE_TIMEOUT, write_reply(&mut wr, &out.reply)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "write failed; closing");
                return;
            }
            Err(_) => {
                warn!("client read no reply for {WRITE_TIMEOUT:?}; closing");
                return;
            }
        }
    }
    let _ = wr.shutdown().await;
}

/// Header and body in one vectored write (usually one syscall, one
/// segment for small replies), without copying the body behind the header.
async fn write_reply<W: AsyncWrite + Unpin>(w: &mut W, reply: &Reply) -> io::Result<()> {
    let (mut head, mut body) = (reply.head(), reply.body());
    while !head.is_empty() || !body.is_empty() {
        let n = w
            .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len());
        head = &head[from_head..];
        body = body.get(n - from_head..).unwrap_or_default();
    }
    Ok(())
}

/// An xid as packet captures show it.
struct Xid(u32);

impl fmt::Display for Xid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// The accept status of a reply, for the log.
struct Describe<'a>(&'a Accepted);

impl fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Accepted::Success(body) => write!(f, "SUCCESS ({} bytes)", body.len()),
            Accepted::ProgUnavail => f.write_str("PROG_UNAVAIL"),
            Accepted::ProgMismatch { low, high } => write!(f, "PROG_MISMATCH {low}..{high}"),
            Accepted::ProcUnavail => f.write_str("PROC_UNAVAIL"),
            Accepted::GarbageArgs => f.write_str("GARBAGE_ARGS"),
            Accepted::SystemErr => f.write_str("SYSTEM_ERR"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::AsyncReadExt;
    use tokio::sync::oneshot;

    use super::*;
    use crate::rpc::tests::{call, record, unix_cred, words};

    /// Program 1 v1: proc 1 sleeps for the milliseconds in its argument
    /// and echoes it; proc 2 reports the caller's uid. Counts how many
    /// calls run at once.
    #[derive(Default)]
    struct Stub {
        running: AtomicUsize,
        most: AtomicUsize,
    }

    impl Programs for Stub {
        async fn call(
            &self,
            caller: &Caller,
            prog: u32,
            _vers: u32,
            proc_: u32,
            args: &[u8],
        ) -> Accepted {
            if prog != 1 {
                return Accepted::ProgUnavail;
            }
            match proc_ {
                1 => {
                    let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                    self.most.fetch_max(now, Ordering::SeqCst);
                    let ms = args
                        .get(..4)
                        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
                    self.running.fetch_sub(1, Ordering::SeqCst);
                    Accepted::Success(args.to_vec())
                }
                2 => Accepted::Success(caller.uid.to_be_bytes().to_vec()),
                _ => Accepted::ProcUnavail,
            }
        }
    }

    struct Running {
        addr: SocketAddr,
        stub: Arc<Stub>,
        stop: Option<oneshot::Sender<()>>,
        server: tokio::task::JoinHandle<()>,
    }

    async fn start() -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stub = Arc::new(Stub::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_programs(stub.clone(), listener, async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            stub,
            stop: Some(stop),
            server,
        }
    }

    fn sleep_call(xid: u32, ms: u32) -> Vec<u8> {
        record(&call(xid, 2, 1, 1, 1, &[0, 0], &words(&[ms])))
    }

    /// The next reply's xid and its last word.
    async fn next_reply(s: &mut TcpStream) -> Option<(u32, u32)> {
        let rec = rpc::read_record(s, MAX_RECORD).await.ok().flatten()?;
        let w = |i: usize| u32::from_be_bytes([rec[i], rec[i + 1], rec[i + 2], rec[i + 3]]);
        Some((w(0), w(rec.len() - 4)))
    }

    async fn closed(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[test]
    fn routes() {
        assert_eq!(route(100003, 3), Ok(Program::Nfs));
        assert_eq!(route(100005, 3), Ok(Program::Mount));
        assert_eq!(route(100000, 2), Ok(Program::Portmap));
        assert_eq!(
            route(100003, 4),
            Err(Accepted::ProgMismatch { low: 3, high: 3 })
        );
        assert_eq!(
            route(100005, 1),
            Err(Accepted::ProgMismatch { low: 3, high: 3 })
        );
        assert_eq!(route(100021, 4), Ok(Program::Nlm));
        assert_eq!(
            route(100021, 1),
            Err(Accepted::ProgMismatch { low: 4, high: 4 })
        );
        assert_eq!(route(100024, 1), Ok(Program::Nsm));
        assert_eq!(route(100099, 1), Err(Accepted::ProgUnavail));
    }

    #[tokio::test]
    async fn replies_go_out_as_calls_finish() {
        let srv = start().await;
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        let mut both = sleep_call(1, 300);
        both.extend(sleep_call(2, 0));
        s.write_all(&both).await.expect("send");
        assert_eq!(next_reply(&mut s).await, Some((2, 0)));
        assert_eq!(next_reply(&mut s).await, Some((1, 300)));
        // The credential reaches the program.
        s.write_all(&record(&call(3, 2, 1, 1, 2, &unix_cred(1234, 5, &[]), &[])))
            .await
            .expect("send");
        assert_eq!(next_reply(&mut s).await, Some((3, 1234)));
    }

    #[tokio::test]
    async fn at_most_16_calls_per_connection() {
        let srv = start().await;
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        let calls: Vec<u8> = (0..40).flat_map(|x| sleep_call(x, 50)).collect();
        s.write_all(&calls).await.expect("send");
        for _ in 0..40 {
            assert!(next_reply(&mut s).await.is_some());
        }
        assert_eq!(
            srv.stub.most.load(Ordering::SeqCst),
            MAX_CALLS_PER_CONNECTION
        );
    }

    #[tokio::test]
    async fn refusals_keep_the_connection() {
        let srv = start().await;
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        // RPC version 3: RPC_MISMATCH (MSG_DENIED, reject 0, low 2, high 2).
        s.write_all(&record(&call(7, 3, 1, 1, 1, &[0, 0], &[])))
            .await
            .expect("send");
        assert_eq!(next_reply(&mut s).await, Some((7, 2)));
        // Unknown program.
        s.write_all(&record(&call(8, 2, 9, 1, 1, &[0, 0], &[])))
            .await
            .expect("send");
        assert_eq!(next_reply(&mut s).await, Some((8, 1)));
        // Still served.
        s.write_all(&sleep_call(9, 0)).await.expect("send");
        assert_eq!(next_reply(&mut s).await, Some((9, 0)));
    }

    #[tokio::test]
    async fn garbage_closes_only_that_connection() {
        let srv = start().await;
        let mut good = TcpStream::connect(srv.addr).await.expect("connect");
        let mut bad = TcpStream::connect(srv.addr).await.expect("connect");
        // A REPLY where a call belongs.
        bad.write_all(&record(&words(&[1, 1, 0])))
            .await
            .expect("send");
        assert!(closed(&mut bad).await);
        // A record over the limit.
        let mut bad = TcpStream::connect(srv.addr).await.expect("connect");
        bad.write_all(&(0x8000_0000u32 | (MAX_RECORD as u32 + 1)).to_be_bytes())
            .await
            .expect("send");
        assert!(closed(&mut bad).await);
        good.write_all(&sleep_call(1, 0)).await.expect("send");
        assert_eq!(next_reply(&mut good).await, Some((1, 0)));
    }

    #[tokio::test]
    async fn shutdown_finishes_calls_in_flight() {
        let mut srv = start().await;
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        s.write_all(&sleep_call(1, 300)).await.expect("send");
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(stop) = srv.stop.take() {
            let _ = stop.send(());
        }
        assert_eq!(next_reply(&mut s).await, Some((1, 300)));
        assert!(closed(&mut s).await);
        tokio::time::timeout(Duration::from_secs(2), srv.server)
            .await
            .expect("server returns")
            .expect("no panic");
        assert!(
            TcpStream::connect(srv.addr).await.is_err(),
            "no longer accepting"
        );
    }
}
