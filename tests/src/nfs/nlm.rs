//! NLM v4 and NSM by hand, for the lock manager tests: an [`NlmClient`]
//! that calls the gateway as a client host's lockd would (TEST, LOCK,
//! CANCEL, UNLOCK, FREE_ALL, and SM_NOTIFY to its NSM), and a
//! [`FakeLockd`]: the client host's side of the callbacks, a portmapper and
//! a lockd and statd on one port of 127.0.0.1 and 127.0.0.2, which the gateway is pointed at
//! with `--callback-rpcbind-port`. It records the GRANTED callbacks and
//! SM_NOTIFYs it receives and answers NULL probes until it is stopped.
//!
//! XDR as in [`super::rpc`]: written here, not shared with the gateway.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::rpc::{read_record, record, Auth, Reply, RpcClient, XdrIn, XdrOut};

pub const PROG_NLM: u32 = 100_021;
pub const PROG_NSM: u32 = 100_024;

pub const NLM4_GRANTED: u32 = 0;
pub const NLM4_DENIED: u32 = 1;
pub const NLM4_DENIED_NOLOCKS: u32 = 2;
pub const NLM4_BLOCKED: u32 = 3;
pub const NLM4_DENIED_GRACE_PERIOD: u32 = 4;
pub const NLM4_STALE_FH: u32 = 7;

const NLMPROC4_TEST: u32 = 1;
const NLMPROC4_LOCK: u32 = 2;
const NLMPROC4_CANCEL: u32 = 3;
const NLMPROC4_UNLOCK: u32 = 4;
const NLMPROC4_GRANTED: u32 = 5;
const NLMPROC4_TEST_MSG: u32 = 6;
const NLMPROC4_LOCK_MSG: u32 = 7;
const NLMPROC4_TEST_RES: u32 = 11;
const NLMPROC4_UNLOCK_RES: u32 = 14;
const NLMPROC4_FREE_ALL: u32 = 23;
const SM_NOTIFY: u32 = 6;

/// `nlm4_lock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NlmLock {
    pub caller_name: String,
    pub fh: Vec<u8>,
    pub oh: Vec<u8>,
    pub svid: i32,
    pub offset: u64,
    /// 0: to the end of the file.
    pub len: u64,
}

impl NlmLock {
    /// A lock of `fh` by owner `svid` of host `caller`, as Linux names it
    /// (`oh` = "svid@host").
    pub fn new(caller: &str, fh: &[u8], svid: i32, offset: u64, len: u64) -> NlmLock {
        NlmLock {
            caller_name: caller.to_string(),
            fh: fh.to_vec(),
            oh: format!("{svid}@{caller}").into_bytes(),
            svid,
            offset,
            len,
        }
    }

    fn encode(&self, o: &mut XdrOut) {
        o.opaque(self.caller_name.as_bytes())
            .opaque(&self.fh)
            .opaque(&self.oh)
            .u32(self.svid as u32)
            .u64(self.offset)
            .u64(self.len);
    }

    fn decode(r: &mut XdrIn<'_>) -> io::Result<NlmLock> {
        Ok(NlmLock {
            caller_name: String::from_utf8_lossy(&r.opaque()?).into_owned(),
            fh: r.opaque()?,
            oh: r.opaque()?,
            svid: r.u32()? as i32,
            offset: r.u64()?,
            len: r.u64()?,
        })
    }
}

/// `nlm4_holder`, from a DENIED TEST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub exclusive: bool,
    pub svid: i32,
    pub oh: Vec<u8>,
    pub offset: u64,
    pub len: u64,
}

/// NLM v4 and NSM v1 calls to the gateway from one client host.
pub struct NlmClient {
    pub rpc: RpcClient,
    next_cookie: u32,
}

fn success(what: &str, r: Reply) -> io::Result<Vec<u8>> {
    match r {
        Reply::Success(body) => Ok(body),
        other => Err(io::Error::other(format!("{what}: {other:?}"))),
    }
}

impl NlmClient {
    pub fn connect(addr: SocketAddr) -> io::Result<NlmClient> {
        Ok(NlmClient {
            rpc: RpcClient::connect(addr, Duration::from_secs(10))?,
            next_cookie: 1,
        })
    }

    /// Connects from another loopback address (127.0.0.2, …): another
    /// client host as far as the gateway can tell.
    pub fn connect_from(addr: SocketAddr, from: IpAddr) -> io::Result<NlmClient> {
        Ok(NlmClient {
            rpc: RpcClient::connect_from(addr, from, Duration::from_secs(10))?,
            next_cookie: 1,
        })
    }

    fn cookie(&mut self, o: &mut XdrOut) {
        self.next_cookie += 1;
        o.opaque(&self.next_cookie.to_be_bytes());
    }

    fn call(&mut self, prog: u32, vers: u32, procedure: u32, args: &XdrOut) -> io::Result<Vec<u8>> {
        let r = self
            .rpc
            .call(prog, vers, procedure, &Auth::root(), args.bytes())?;
        success(&format!("program {prog} procedure {procedure}"), r)
    }

    /// The status of an `nlm4_res`.
    fn res(body: &[u8]) -> io::Result<u32> {
        let mut r = XdrIn::new(body);
        r.opaque()?;
        r.u32()
    }

    /// TEST: `Ok(None)` when the lock could be granted, else the status
    /// and, for DENIED, the holder.
    pub fn test(
        &mut self,
        l: &NlmLock,
        exclusive: bool,
    ) -> io::Result<Option<(u32, Option<Holder>)>> {
        let mut a = XdrOut::new();
        self.cookie(&mut a);
        a.bool(exclusive);
        l.encode(&mut a);
        let body = self.call(PROG_NLM, 4, NLMPROC4_TEST, &a)?;
        let mut r = XdrIn::new(&body);
        r.opaque()?;
        match r.u32()? {
            NLM4_GRANTED => Ok(None),
            NLM4_DENIED => Ok(Some((
                NLM4_DENIED,
                Some(Holder {
                    exclusive: r.bool()?,
                    svid: r.u32()? as i32,
                    oh: r.opaque()?,
                    offset: r.u64()?,
                    len: r.u64()?,
                }),
            ))),
            stat => Ok(Some((stat, None))),
        }
    }

    /// LOCK: the nlm4_stats.
    pub fn lock(
        &mut self,
        l: &NlmLock,
        exclusive: bool,
        block: bool,
        reclaim: bool,
    ) -> io::Result<u32> {
        let mut a = XdrOut::new();
        self.cookie(&mut a);
        a.bool(block).bool(exclusive);
        l.encode(&mut a);
        a.bool(reclaim).u32(1); // our NSM state
        Self::res(&self.call(PROG_NLM, 4, NLMPROC4_LOCK, &a)?)
    }

    pub fn cancel(&mut self, l: &NlmLock, exclusive: bool) -> io::Result<u32> {
        let mut a = XdrOut::new();
        self.cookie(&mut a);
        a.bool(true).bool(exclusive);
        l.encode(&mut a);
        Self::res(&self.call(PROG_NLM, 4, NLMPROC4_CANCEL, &a)?)
    }

    pub fn unlock(&mut self, l: &NlmLock) -> io::Result<u32> {
        let mut a = XdrOut::new();
        self.cookie(&mut a);
        l.encode(&mut a);
        Self::res(&self.call(PROG_NLM, 4, NLMPROC4_UNLOCK, &a)?)
    }

    /// LOCK_MSG (non-blocking): answered at once with nothing; the result
    /// comes as LOCK_RES to the host's lockd.
    pub fn lock_msg(&mut self, l: &NlmLock, exclusive: bool) -> io::Result<()> {
        let mut a = XdrOut::new();
        self.cookie(&mut a);
        a.bool(false).bool(exclusive);
        l.encode(&mut a);
        a.bool(false).u32(1);
        let body = self.call(PROG_NLM, 4, NLMPROC4_LOCK_MSG, &a)?;
        if body.is_empty() {
            Ok(())
        } else {
            Err(io::Error::other("LOCK_MSG answered with a result"))
        }
    }

    /// TEST_MSG: the result comes as TEST_RES.
    pub fn test_msg(&mut self, l: &NlmLock, exclusive: bool) -> io::Result<()> {
        let mut a = XdrOut::new();
        self.cookie(&mut a);
        a.bool(exclusive);
        l.encode(&mut a);
        self.call(PROG_NLM, 4, NLMPROC4_TEST_MSG, &a).map(drop)
    }

    /// FREE_ALL for this host (`name` = its caller_name).
    pub fn free_all(&mut self, name: &str) -> io::Result<()> {
        let mut a = XdrOut::new();
        a.opaque(name.as_bytes()).u32(1);
        self.call(PROG_NLM, 4, NLMPROC4_FREE_ALL, &a).map(drop)
    }

    /// SM_NOTIFY to the gateway's NSM: "`mon_name` rebooted, now `state`".
    pub fn sm_notify(&mut self, mon_name: &str, state: u32) -> io::Result<()> {
        let mut a = XdrOut::new();
        a.opaque(mon_name.as_bytes()).u32(state);
        self.call(PROG_NSM, 1, SM_NOTIFY, &a).map(drop)
    }
}

/// A GRANTED callback as the fake lockd received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    pub from: SocketAddr,
    pub exclusive: bool,
    pub lock: NlmLock,
}

#[derive(Default)]
struct Seen {
    granted: Vec<Granted>,
    /// SM_NOTIFY: (mon_name, state).
    notified: Vec<(String, u32)>,
    /// TEST_RES … UNLOCK_RES: (procedure, status).
    results: Vec<(u32, u32)>,
    probes: usize,
}

/// A client host's portmapper, lockd and statd on one port of 127.0.0.1.
pub struct FakeLockd {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    /// What GRANTED is answered with.
    answer: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeLockd {
    /// Listens on 127.0.0.1 and 127.0.0.2, one port: the callbacks of
    /// client hosts at either address reach it.
    pub fn start() -> FakeLockd {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind fake lockd");
        let addr = first.local_addr().expect("addr");
        let second =
            TcpListener::bind(("127.0.0.2", addr.port())).expect("bind fake lockd on 127.0.0.2");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let answer = Arc::new(AtomicU32::new(NLM4_GRANTED));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, answer, stop) = (seen.clone(), answer.clone(), stop.clone());
            std::thread::spawn(move || {
                let listeners = [first, second];
                for l in &listeners {
                    l.set_nonblocking(true).expect("nonblocking");
                }
                while !stop.load(Ordering::SeqCst) {
                    let mut idle = true;
                    for l in &listeners {
                        if let Ok((s, peer)) = l.accept() {
                            idle = false;
                            let (seen, answer, stop) = (seen.clone(), answer.clone(), stop.clone());
                            std::thread::spawn(move || {
                                let _ = serve(s, peer, addr.port(), &seen, &answer, &stop);
                            });
                        }
                    }
                    if idle {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        };
        FakeLockd {
            addr,
            seen,
            answer,
            stop,
            thread: Some(thread),
        }
    }

    /// The port the gateway's `--callback-rpcbind-port` names.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// GRANTED callbacks are answered with `stat` from now on.
    pub fn answer_granted_with(&self, stat: u32) {
        self.answer.store(stat, Ordering::SeqCst);
    }

    pub fn granted(&self) -> Vec<Granted> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .granted
            .clone()
    }

    pub fn notified(&self) -> Vec<(String, u32)> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .notified
            .clone()
    }

    /// The `_RES` calls received: (procedure, nlm4_stats).
    pub fn results(&self) -> Vec<(u32, u32)> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .results
            .clone()
    }

    pub fn probes(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).probes
    }

    /// Waits up to `timeout` for the `n`th GRANTED callback.
    pub fn wait_granted(&self, n: usize, timeout: Duration) -> Option<Granted> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(g) = self.granted().get(n - 1) {
                return Some(g.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops answering anything: a host that crashed.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FakeLockd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves one connection: portmap GETPORT (everything is on `port`), NLM
/// NULL and GRANTED, NSM SM_NOTIFY.
fn serve(
    mut s: TcpStream,
    peer: SocketAddr,
    port: u16,
    seen: &Mutex<Seen>,
    answer: &AtomicU32,
    stop: &AtomicBool,
) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    loop {
        let msg = match read_record(&mut s) {
            Ok(m) => m,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut r = XdrIn::new(&msg);
        let xid = r.u32()?;
        let _call = r.u32()?;
        let _rpcvers = r.u32()?;
        let (prog, vers, procedure) = (r.u32()?, r.u32()?, r.u32()?);
        let _cred = (r.u32()?, r.opaque()?);
        let _verf = (r.u32()?, r.opaque()?);
        let mut res = XdrOut::new();
        let mut ok = true;
        match (prog, vers, procedure) {
            (100_000, 2, 0) | (PROG_NSM, 1, 0) => {}
            (100_000, 2, 3) => {
                let (p, v, prot) = (r.u32()?, r.u32()?, r.u32()?);
                let served = prot == 6 && ((p == PROG_NLM && v == 4) || (p == PROG_NSM && v == 1));
                res.u32(if served { u32::from(port) } else { 0 });
            }
            (PROG_NLM, 4, 0) => {
                seen.lock().unwrap_or_else(|e| e.into_inner()).probes += 1;
            }
            (PROG_NLM, 4, NLMPROC4_GRANTED) => {
                let cookie = r.opaque()?;
                let exclusive = r.bool()?;
                let lock = NlmLock::decode(&mut r)?;
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .granted
                    .push(Granted {
                        from: peer,
                        exclusive,
                        lock,
                    });
                res.opaque(&cookie).u32(answer.load(Ordering::SeqCst));
            }
            (PROG_NLM, 4, NLMPROC4_TEST_RES..=NLMPROC4_UNLOCK_RES) => {
                let _cookie = r.opaque()?;
                let stat = r.u32()?;
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .results
                    .push((procedure, stat));
            }
            (PROG_NSM, 1, SM_NOTIFY) => {
                let name = String::from_utf8_lossy(&r.opaque()?).into_owned();
                let state = r.u32()?;
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .notified
                    .push((name, state));
            }
            _ => ok = false,
        }
        let mut reply = XdrOut::new();
        reply.u32(xid).u32(1).u32(0).u32(0).opaque(&[]);
        reply.u32(if ok { 0 } else { 1 });
        let mut bytes = reply.into_bytes();
        bytes.extend_from_slice(res.bytes());
        s.write_all(&record(&bytes))?;
    }
}
