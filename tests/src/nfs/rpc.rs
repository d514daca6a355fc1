//! A minimal ONC RPC client (RFC 5531) over TCP with record marking, and
//! the few MOUNT v3 and NFS v3 procedures (RFC 1813) the tests call by
//! hand. XDR (RFC 4506) is encoded and decoded here, deliberately without
//! the `nfs3_types` crate the gateway uses: a shared codec would hide a
//! shared mistake.
//!
//! Nothing here trusts the server: every decode is bounds-checked and a
//! malformed reply is an `io::Error` (kind `InvalidData`), never a panic.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const PROG_PORTMAP: u32 = 100_000;
pub const PROG_NFS: u32 = 100_003;
pub const PROG_MOUNT: u32 = 100_005;

/// portmap v2 GETPORT.
pub const PMAPPROC_GETPORT: u32 = 3;
/// MOUNT v3 procedures.
pub const MOUNTPROC3_MNT: u32 = 1;
/// NFS v3 procedures.
pub const NFSPROC3_NULL: u32 = 0;
pub const NFSPROC3_GETATTR: u32 = 1;
pub const NFSPROC3_LOOKUP: u32 = 3;
pub const NFSPROC3_READ: u32 = 6;
pub const NFSPROC3_WRITE: u32 = 7;
pub const NFSPROC3_CREATE: u32 = 8;
pub const NFSPROC3_REMOVE: u32 = 12;
pub const NFSPROC3_FSSTAT: u32 = 18;
pub const NFSPROC3_COMMIT: u32 = 21;
pub const NFS3ERR_DQUOT: u32 = 69;

/// nfsstat3 values the tests look for.
pub const NFS3_OK: u32 = 0;
pub const NFS3ERR_NOENT: u32 = 2;
pub const NFS3ERR_IO: u32 = 5;
pub const NFS3ERR_ACCES: u32 = 13;
pub const NFS3ERR_ROFS: u32 = 30;
pub const NFS3ERR_NAMETOOLONG: u32 = 63;
pub const NFS3ERR_STALE: u32 = 70;
pub const NFS3ERR_BADHANDLE: u32 = 10001;
/// mountstat3 values.
pub const MNT3_OK: u32 = 0;
pub const MNT3ERR_NOENT: u32 = 2;
pub const MNT3ERR_ACCES: u32 = 13;

/// The largest reply record we accept (a READ of 1 MiB plus headers).
const MAX_RECORD: usize = 4 << 20;
const LAST_FRAGMENT: u32 = 0x8000_0000;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// XDR encoder: big-endian 4-byte units, opaques padded to 4 bytes.
#[derive(Clone, Debug, Default)]
pub struct XdrOut(Vec<u8>);

impl XdrOut {
    pub fn new() -> XdrOut {
        XdrOut::default()
    }

    pub fn u32(&mut self, v: u32) -> &mut XdrOut {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut XdrOut {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut XdrOut {
        self.u32(u32::from(v))
    }

    /// Variable-length opaque (also `string`): length, bytes, padding.
    pub fn opaque(&mut self, b: &[u8]) -> &mut XdrOut {
        let len = u32::try_from(b.len()).expect("opaque over 4 GiB");
        self.u32(len);
        self.fixed(b)
    }

    /// Fixed-length opaque: bytes and padding, no length.
    pub fn fixed(&mut self, b: &[u8]) -> &mut XdrOut {
        self.0.extend_from_slice(b);
        self.0.resize(self.0.len() + (4 - b.len() % 4) % 4, 0);
        self
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// XDR decoder over one reply; every read is bounds-checked.
#[derive(Debug)]
pub struct XdrIn<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> XdrIn<'a> {
    pub fn new(buf: &'a [u8]) -> XdrIn<'a> {
        XdrIn { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| {
                bad(format!(
                    "XDR: {n} bytes wanted at offset {} of a {}-byte reply",
                    self.pos,
                    self.buf.len()
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> io::Result<u64> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }

    pub fn bool(&mut self) -> io::Result<bool> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(bad(format!("XDR: bool {v}"))),
        }
    }

    pub fn opaque(&mut self) -> io::Result<Vec<u8>> {
        let len = self.u32()? as usize;
        self.fixed(len)
    }

    pub fn fixed(&mut self, len: usize) -> io::Result<Vec<u8>> {
        let padded = len
            .checked_add((4 - len % 4) % 4)
            .ok_or_else(|| bad("XDR: opaque length overflows"))?;
        let b = self.take(padded)?;
        Ok(b[..len].to_vec())
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// The credential of a call.
#[derive(Clone, Debug)]
pub enum Auth {
    Null,
    Unix { uid: u32, gid: u32, gids: Vec<u32> },
}

impl Auth {
    /// AUTH_UNIX uid 0, gid 0.
    pub fn root() -> Auth {
        Auth::Unix {
            uid: 0,
            gid: 0,
            gids: Vec::new(),
        }
    }

    fn encode(&self, out: &mut XdrOut) {
        match self {
            Auth::Null => {
                out.u32(0).opaque(&[]);
            }
            Auth::Unix { uid, gid, gids } => {
                let mut body = XdrOut::new();
                body.u32(0) // stamp
                    .opaque(b"brickfs-test")
                    .u32(*uid)
                    .u32(*gid)
                    .u32(gids.len() as u32);
                for g in gids {
                    body.u32(*g);
                }
                out.u32(1).opaque(body.bytes());
            }
        }
    }
}

/// What the server answered to a call, above the procedure's own result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// MSG_ACCEPTED, SUCCESS: the procedure's XDR-encoded results.
    Success(Vec<u8>),
    ProgUnavail,
    ProgMismatch {
        low: u32,
        high: u32,
    },
    ProcUnavail,
    GarbageArgs,
    SystemErr,
    /// MSG_DENIED, RPC_MISMATCH.
    RpcMismatch {
        low: u32,
        high: u32,
    },
    /// MSG_DENIED, AUTH_ERROR with its auth_stat.
    AuthError(u32),
}

/// One RPC call message (without the record mark).
pub fn call_message(
    xid: u32,
    prog: u32,
    vers: u32,
    procedure: u32,
    auth: &Auth,
    args: &[u8],
) -> Vec<u8> {
    let mut m = XdrOut::new();
    m.u32(xid).u32(0).u32(2).u32(prog).u32(vers).u32(procedure);
    auth.encode(&mut m);
    m.u32(0).opaque(&[]); // verifier: AUTH_NULL
    let mut bytes = m.into_bytes();
    bytes.extend_from_slice(args);
    bytes
}

/// `payload` as one record: a single last fragment.
pub fn record(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l < LAST_FRAGMENT)
        .expect("record over 2 GiB");
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(LAST_FRAGMENT | len).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes a reply message for `xid`.
pub fn parse_reply(xid: u32, msg: &[u8]) -> io::Result<Reply> {
    let mut r = XdrIn::new(msg);
    let got = r.u32()?;
    if got != xid {
        return Err(bad(format!("reply xid {got:#x}, expected {xid:#x}")));
    }
    if r.u32()? != 1 {
        return Err(bad("message is not a REPLY"));
    }
    match r.u32()? {
        0 => {
            let _flavor = r.u32()?;
            let _verf = r.opaque()?;
            Ok(match r.u32()? {
                0 => Reply::Success(msg[msg.len() - r.remaining()..].to_vec()),
                1 => Reply::ProgUnavail,
                2 => Reply::ProgMismatch {
                    low: r.u32()?,
                    high: r.u32()?,
                },
                3 => Reply::ProcUnavail,
                4 => Reply::GarbageArgs,
                5 => Reply::SystemErr,
                s => return Err(bad(format!("accept_stat {s}"))),
            })
        }
        1 => Ok(match r.u32()? {
            0 => Reply::RpcMismatch {
                low: r.u32()?,
                high: r.u32()?,
            },
            1 => Reply::AuthError(r.u32()?),
            s => return Err(bad(format!("reject_stat {s}"))),
        }),
        s => Err(bad(format!("reply_stat {s}"))),
    }
}

/// portmap v2 GETPORT for `prog`/`vers` over TCP: the port, 0 when not
/// registered.
pub fn getport(c: &mut RpcClient, prog: u32, vers: u32) -> io::Result<u32> {
    let mut a = XdrOut::new();
    a.u32(prog).u32(vers).u32(6).u32(0); // IPPROTO_TCP, port ignored
    match c.call(PROG_PORTMAP, 2, PMAPPROC_GETPORT, &Auth::Null, a.bytes())? {
        Reply::Success(body) => XdrIn::new(&body).u32(),
        other => Err(io::Error::other(format!("GETPORT: {other:?}"))),
    }
}

/// A blocking RPC client on one TCP connection; calls one at a time.
pub struct RpcClient {
    stream: TcpStream,
    next_xid: u32,
}

impl RpcClient {
    /// Connects; every later read and write gives up after `timeout`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<RpcClient> {
        RpcClient::over(TcpStream::connect_timeout(&addr, timeout)?, timeout)
    }

    fn over(stream: TcpStream, timeout: Duration) -> io::Result<RpcClient> {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        // Distinct xids per connection make a reply to another call visible.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        Ok(RpcClient {
            stream,
            next_xid: seed | 1,
        })
    }

    /// Connects from the local address `from` (another loopback address
    /// looks like another host to the server).
    pub fn connect_from(
        addr: SocketAddr,
        from: std::net::IpAddr,
        timeout: Duration,
    ) -> io::Result<RpcClient> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stream = rt.block_on(async {
            let sock = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            sock.bind(SocketAddr::new(from, 0))?;
            tokio::time::timeout(timeout, sock.connect(addr))
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
        })?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        RpcClient::over(stream, timeout)
    }

    /// Calls `prog`/`vers`/`procedure` with XDR-encoded `args`.
    pub fn call(
        &mut self,
        prog: u32,
        vers: u32,
        procedure: u32,
        auth: &Auth,
        args: &[u8],
    ) -> io::Result<Reply> {
        let xid = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1);
        let msg = call_message(xid, prog, vers, procedure, auth, args);
        self.stream.write_all(&record(&msg))?;
        let reply = self.read_record()?;
        parse_reply(xid, &reply)
    }

    /// Writes raw bytes (for bad-input tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one whole record (all its fragments).
    pub fn read_record(&mut self) -> io::Result<Vec<u8>> {
        read_record(&mut self.stream)
    }
}

/// Reads one whole record (all its fragments) from `r`.
pub fn read_record(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut h = [0u8; 4];
        r.read_exact(&mut h)?;
        let h = u32::from_be_bytes(h);
        let len = (h & !LAST_FRAGMENT) as usize;
        if out.len() + len > MAX_RECORD {
            return Err(bad(format!("record over {MAX_RECORD} bytes")));
        }
        let start = out.len();
        out.resize(start + len, 0);
        r.read_exact(&mut out[start..])?;
        if h & LAST_FRAGMENT != 0 {
            return Ok(out);
        }
    }
}

/// What came back on a connection that was sent raw bytes.
#[derive(Debug)]
pub struct RawExchange {
    /// Everything the server sent.
    pub received: Vec<u8>,
    /// The server closed (or reset) the connection; false: it was still
    /// open when the timeout passed.
    pub closed: bool,
}

/// Connects, writes `bytes`, half-closes when `half_close`, and reads until
/// the server closes or `timeout` passes. A write error after the server hung
/// up is not an error here; only failing to connect is.
pub fn exchange_raw(
    addr: SocketAddr,
    bytes: &[u8],
    half_close: bool,
    timeout: Duration,
) -> io::Result<RawExchange> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_write_timeout(Some(timeout))?;
    let _ = s.write_all(bytes);
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let deadline = Instant::now() + timeout;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(RawExchange {
                received,
                closed: false,
            });
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(RawExchange {
                    received,
                    closed: false,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        }
    }
    Ok(RawExchange {
        received,
        closed: true,
    })
}

/// The attributes (fattr3) the tests look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fattr3 {
    /// ftype3: 1 regular, 2 directory, 5 symlink, …
    pub ftype: u32,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub used: u64,
    pub fsid: u64,
    pub fileid: u64,
    /// Seconds, nanoseconds.
    pub mtime: (u32, u32),
    pub ctime: (u32, u32),
}

impl Fattr3 {
    fn decode(r: &mut XdrIn<'_>) -> io::Result<Fattr3> {
        let ftype = r.u32()?;
        let mode = r.u32()?;
        let nlink = r.u32()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let size = r.u64()?;
        let used = r.u64()?;
        let _rdev = (r.u32()?, r.u32()?);
        let fsid = r.u64()?;
        let fileid = r.u64()?;
        let _atime = (r.u32()?, r.u32()?);
        let mtime = (r.u32()?, r.u32()?);
        let ctime = (r.u32()?, r.u32()?);
        Ok(Fattr3 {
            ftype,
            mode,
            nlink,
            uid,
            gid,
            size,
            used,
            fsid,
            fileid,
            mtime,
            ctime,
        })
    }
}

fn post_op_attr(r: &mut XdrIn<'_>) -> io::Result<Option<Fattr3>> {
    if r.bool()? {
        Ok(Some(Fattr3::decode(r)?))
    } else {
        Ok(None)
    }
}

/// Result of an NFS or MOUNT procedure: the outer error is the transport
/// or RPC layer (connection dropped, PROG_UNAVAIL, undecodable reply); the
/// inner one the procedure's status (nfsstat3 / mountstat3) when not OK.
pub type ProcResult<T> = io::Result<Result<T, u32>>;

/// MOUNT v3 and NFS v3 calls on one connection (the gateway serves both on
/// one port), with one credential.
pub struct Nfs3Client {
    pub rpc: RpcClient,
    pub auth: Auth,
}

impl Nfs3Client {
    /// Connects with AUTH_UNIX uid 0, gid 0 and a 10 s timeout per call.
    pub fn connect(addr: SocketAddr) -> io::Result<Nfs3Client> {
        Ok(Nfs3Client {
            rpc: RpcClient::connect(addr, Duration::from_secs(10))?,
            auth: Auth::root(),
        })
    }

    /// [`connect`](Self::connect) from local address `from` (another
    /// loopback address stands for a host of another network).
    pub fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> io::Result<Nfs3Client> {
        Ok(Nfs3Client {
            rpc: RpcClient::connect_from(addr, from, Duration::from_secs(10))?,
            auth: Auth::root(),
        })
    }

    fn call(&mut self, prog: u32, procedure: u32, args: &XdrOut) -> io::Result<Vec<u8>> {
        match self
            .rpc
            .call(prog, 3, procedure, &self.auth, args.bytes())?
        {
            Reply::Success(body) => Ok(body),
            other => Err(io::Error::other(format!(
                "program {prog} procedure {procedure}: {other:?}"
            ))),
        }
    }

    /// NFS v3 NULL.
    pub fn null(&mut self) -> io::Result<()> {
        self.call(PROG_NFS, NFSPROC3_NULL, &XdrOut::new()).map(drop)
    }

    /// MOUNT v3 MNT: the export's root handle, or the mountstat3.
    pub fn mnt(&mut self, path: &str) -> ProcResult<Vec<u8>> {
        let mut a = XdrOut::new();
        a.opaque(path.as_bytes());
        let body = self.call(PROG_MOUNT, MOUNTPROC3_MNT, &a)?;
        let mut r = XdrIn::new(&body);
        match r.u32()? {
            MNT3_OK => {
                let fh = r.opaque()?;
                let n = r.u32()? as usize;
                if n > r.remaining() / 4 {
                    return Err(bad("MNT: auth flavour count beyond the reply"));
                }
                for _ in 0..n {
                    r.u32()?;
                }
                Ok(Ok(fh))
            }
            stat => Ok(Err(stat)),
        }
    }

    /// GETATTR.
    pub fn getattr(&mut self, fh: &[u8]) -> ProcResult<Fattr3> {
        let mut a = XdrOut::new();
        a.opaque(fh);
        let body = self.call(PROG_NFS, NFSPROC3_GETATTR, &a)?;
        let mut r = XdrIn::new(&body);
        match r.u32()? {
            NFS3_OK => Ok(Ok(Fattr3::decode(&mut r)?)),
            stat => Ok(Err(stat)),
        }
    }

    /// FSSTAT of the file system `fh` is on: (total, free, available)
    /// bytes.
    pub fn fsstat(&mut self, fh: &[u8]) -> ProcResult<(u64, u64, u64)> {
        let mut a = XdrOut::new();
        a.opaque(fh);
        let body = self.call(PROG_NFS, NFSPROC3_FSSTAT, &a)?;
        let mut r = XdrIn::new(&body);
        let stat = r.u32()?;
        post_op_attr(&mut r)?;
        if stat != NFS3_OK {
            return Ok(Err(stat));
        }
        Ok(Ok((r.u64()?, r.u64()?, r.u64()?)))
    }

    /// LOOKUP `name` in `dir`: the object's handle.
    pub fn lookup(&mut self, dir: &[u8], name: &[u8]) -> ProcResult<Vec<u8>> {
        let mut a = XdrOut::new();
        a.opaque(dir).opaque(name);
        let body = self.call(PROG_NFS, NFSPROC3_LOOKUP, &a)?;
        let mut r = XdrIn::new(&body);
        match r.u32()? {
            NFS3_OK => {
                let fh = r.opaque()?;
                post_op_attr(&mut r)?;
                post_op_attr(&mut r)?;
                Ok(Ok(fh))
            }
            stat => Ok(Err(stat)),
        }
    }

    /// READ: the data and the eof flag.
    pub fn read(&mut self, fh: &[u8], offset: u64, count: u32) -> ProcResult<(Vec<u8>, bool)> {
        let mut a = XdrOut::new();
        a.opaque(fh).u64(offset).u32(count);
        let body = self.call(PROG_NFS, NFSPROC3_READ, &a)?;
        let mut r = XdrIn::new(&body);
        match r.u32()? {
            NFS3_OK => {
                post_op_attr(&mut r)?;
                let count = r.u32()? as usize;
                let eof = r.bool()?;
                let data = r.opaque()?;
                if data.len() != count {
                    return Err(bad(format!(
                        "READ: count {count} but {} data bytes",
                        data.len()
                    )));
                }
                Ok(Ok((data, eof)))
            }
            stat => Ok(Err(stat)),
        }
    }

    /// WRITE with FILE_SYNC: the count written.
    pub fn write(&mut self, fh: &[u8], offset: u64, data: &[u8]) -> ProcResult<u32> {
        Ok(self.write_how(fh, offset, data, 2)?.map(|w| w.count))
    }

    /// WRITE with `stable` (0 UNSTABLE, 1 DATA_SYNC, 2 FILE_SYNC): what
    /// the server answered.
    pub fn write_how(
        &mut self,
        fh: &[u8],
        offset: u64,
        data: &[u8],
        stable: u32,
    ) -> ProcResult<Written> {
        let mut a = XdrOut::new();
        a.opaque(fh)
            .u64(offset)
            .u32(data.len() as u32)
            .u32(stable)
            .opaque(data);
        let body = self.call(PROG_NFS, NFSPROC3_WRITE, &a)?;
        let mut r = XdrIn::new(&body);
        let stat = r.u32()?;
        let size = wcc_data(&mut r)?;
        if stat != NFS3_OK {
            return Ok(Err(stat));
        }
        let count = r.u32()?;
        let committed = r.u32()?;
        let verf = verifier(&mut r)?;
        Ok(Ok(Written {
            count,
            committed,
            verf,
            size,
        }))
    }

    /// COMMIT of the whole file: the server's write verifier.
    pub fn commit(&mut self, fh: &[u8]) -> ProcResult<[u8; 8]> {
        let mut a = XdrOut::new();
        a.opaque(fh).u64(0).u32(0);
        let body = self.call(PROG_NFS, NFSPROC3_COMMIT, &a)?;
        let mut r = XdrIn::new(&body);
        let stat = r.u32()?;
        wcc_data(&mut r)?;
        if stat != NFS3_OK {
            return Ok(Err(stat));
        }
        Ok(Ok(verifier(&mut r)?))
    }

    /// CREATE UNCHECKED with `mode`: the new file's handle when the server
    /// returned one.
    pub fn create(&mut self, dir: &[u8], name: &[u8], mode: u32) -> ProcResult<Option<Vec<u8>>> {
        let mut a = XdrOut::new();
        a.opaque(dir).opaque(name).u32(0); // UNCHECKED
                                           // sattr3: mode set; uid, gid, size not set; atime, mtime DONT_CHANGE.
        a.bool(true)
            .u32(mode)
            .bool(false)
            .bool(false)
            .bool(false)
            .u32(0)
            .u32(0);
        let body = self.call(PROG_NFS, NFSPROC3_CREATE, &a)?;
        let mut r = XdrIn::new(&body);
        match r.u32()? {
            NFS3_OK => {
                let fh = if r.bool()? { Some(r.opaque()?) } else { None };
                Ok(Ok(fh))
            }
            stat => Ok(Err(stat)),
        }
    }

    /// REMOVE `name` from `dir`.
    pub fn remove(&mut self, dir: &[u8], name: &[u8]) -> ProcResult<()> {
        let mut a = XdrOut::new();
        a.opaque(dir).opaque(name);
        let body = self.call(PROG_NFS, NFSPROC3_REMOVE, &a)?;
        let mut r = XdrIn::new(&body);
        match r.u32()? {
            NFS3_OK => Ok(Ok(())),
            stat => Ok(Err(stat)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdr_round_trip_and_padding() {
        let mut o = XdrOut::new();
        o.u32(7).u64(1 << 40).opaque(b"abcde").bool(true);
        assert_eq!(o.bytes().len(), 4 + 8 + 4 + 8 + 4);
        let mut i = XdrIn::new(o.bytes());
        assert_eq!(i.u32().unwrap(), 7);
        assert_eq!(i.u64().unwrap(), 1 << 40);
        assert_eq!(i.opaque().unwrap(), b"abcde");
        assert!(i.bool().unwrap());
        assert_eq!(i.remaining(), 0);
        assert!(i.u32().is_err(), "reading past the end is an error");
        // A length that points past the end is an error, not a panic.
        let mut huge = XdrIn::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(huge.opaque().is_err());
    }

    #[test]
    fn reply_decoding() {
        let mut m = XdrOut::new();
        m.u32(9)
            .u32(1)
            .u32(0)
            .u32(0)
            .opaque(&[])
            .u32(2)
            .u32(3)
            .u32(3);
        assert_eq!(
            parse_reply(9, m.bytes()).unwrap(),
            Reply::ProgMismatch { low: 3, high: 3 }
        );
        assert!(parse_reply(10, m.bytes()).is_err(), "wrong xid");
        let mut ok = XdrOut::new();
        ok.u32(9).u32(1).u32(0).u32(0).opaque(&[]).u32(0).u32(70);
        assert_eq!(
            parse_reply(9, ok.bytes()).unwrap(),
            Reply::Success(70u32.to_be_bytes().to_vec())
        );
    }
}

/// A WRITE's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub count: u32,
    /// How the server stored it: 0 UNSTABLE, 1 DATA_SYNC, 2 FILE_SYNC.
    pub committed: u32,
    pub verf: [u8; 8],
    /// The size in the reply's attributes, when it sent them.
    pub size: Option<u64>,
}

/// wcc_data: pre_op_attr (bool + size, mtime, ctime), then post_op_attr;
/// the size after, when given.
fn wcc_data(r: &mut XdrIn<'_>) -> io::Result<Option<u64>> {
    if r.bool()? {
        r.u64()?;
        r.u64()?;
        r.u64()?;
    }
    Ok(post_op_attr(r)?.map(|a| a.size))
}

fn verifier(r: &mut XdrIn<'_>) -> io::Result<[u8; 8]> {
    let v = r.fixed(8)?;
    let mut out = [0u8; 8];
    out.copy_from_slice(&v);
    Ok(out)
}
