//! The calls the gateway makes to other hosts, over TCP: GRANTED callbacks
//! and NULL probes to a client's lockd, SM_NOTIFY to its statd, portmap
//! GETPORT to find those, and SET/UNSET to this host's rpcbind.
//!
//! One connection per call: they are rare (a grant, a probe every few
//! seconds per host, a notify after a restart), and a fresh connection
//! never finds a half-dead one. Every call has a deadline, and the reply is
//! read with the same bounds as the calls we serve.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nfs3_types::portmap::{
    IPPROTO_TCP, PMAP_PROG, PROGRAM as PMAP_PROGRAM, VERSION as PMAP_VERSION,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::rpc::{self, RpcError, AUTH_NULL, AUTH_UNIX, MAX_AUTH_BYTES};
use crate::xdr::{XdrReader, XdrWriter};

/// Replies to our calls are small (an `nlm4_res`, a port number).
const MAX_REPLY: usize = 64 * 1024;

/// The credential of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    Null,
    /// AUTH_UNIX uid 0: registration with rpcbind, which serves root.
    Root,
}

/// Where a call goes, and from which of our addresses: a Linux client
/// accepts a GRANTED callback only from the address it locked with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub to: SocketAddr,
    pub from: Option<IpAddr>,
    /// From a port below 1024 if we may bind one: rpcbind takes
    /// registrations from root's ports only, when built to check.
    pub reserved_port: bool,
}

impl Target {
    pub fn new(to: SocketAddr, from: Option<IpAddr>) -> Target {
        Target {
            to,
            from,
            reserved_port: false,
        }
    }
}

static NEXT_XID: AtomicU32 = AtomicU32::new(0);

fn next_xid() -> u32 {
    // Seeded from the clock once, so two gateway runs do not reuse xids
    // a client's duplicate-request cache might still remember.
    if NEXT_XID.load(Ordering::Relaxed) == 0 {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() | 1)
            .unwrap_or(1);
        let _ = NEXT_XID.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    NEXT_XID.fetch_add(1, Ordering::Relaxed)
}

/// The call as one record: record mark, call header, `args`. Built in
/// place, so the arguments are copied once, into the record.
pub fn call_record(
    xid: u32,
    prog: u32,
    vers: u32,
    proc_: u32,
    auth: Auth,
    args: &[u8],
) -> Result<Vec<u8>, RpcError> {
    let mut w = XdrWriter::new();
    // The record mark, written once the length is known.
    w.u32(0);
    w.u32(xid).u32(0).u32(2).u32(prog).u32(vers).u32(proc_);
    match auth {
        Auth::Null => {
            w.u32(AUTH_NULL).u32(0);
        }
        Auth::Root => {
            let mut body = XdrWriter::new();
            body.u32(0).opaque(b"brickfs-nfs").u32(0).u32(0).u32(0);
            let body = body.into_bytes();
            w.u32(AUTH_UNIX).opaque(&body);
        }
    }
    w.u32(AUTH_NULL).u32(0);
    let mut rec = w.into_bytes();
    rec.extend_from_slice(args);
    let len = rec.len() - 4;
    let mark = rpc::single_fragment_mark(len).ok_or(RpcError::TooLarge(len))?;
    rec[..4].copy_from_slice(&mark);
    Ok(rec)
}

/// The procedure's result from a reply to `xid`.
pub fn parse_reply(xid: u32, rec: &[u8]) -> Result<Vec<u8>, RpcError> {
    let mut r = XdrReader::new(rec);
    let bad = RpcError::BadReply;
    if r.u32().ok_or(bad("no xid"))? != xid {
        return Err(bad("reply to another call"));
    }
    if r.u32().ok_or(bad("no message type"))? != 1 {
        return Err(bad("not a REPLY"));
    }
    match r.u32().ok_or(bad("no reply status"))? {
        0 => {}
        1 => {
            let why = match r.u32() {
                Some(0) => "RPC version mismatch".to_string(),
                Some(1) => format!("authentication error {}", r.u32().unwrap_or(0)),
                _ => "denied".to_string(),
            };
            return Err(RpcError::Refused(why));
        }
        _ => return Err(bad("unknown reply status")),
    }
    r.u32().ok_or(bad("no verifier"))?;
    r.opaque(MAX_AUTH_BYTES).ok_or(bad("verifier"))?;
    match r.u32().ok_or(bad("no accept status"))? {
        0 => Ok(rec[r.position()..].to_vec()),
        1 => Err(RpcError::Refused("PROG_UNAVAIL".into())),
        2 => Err(RpcError::Refused("PROG_MISMATCH".into())),
        3 => Err(RpcError::Refused("PROC_UNAVAIL".into())),
        4 => Err(RpcError::Refused("GARBAGE_ARGS".into())),
        _ => Err(RpcError::Refused("SYSTEM_ERR".into())),
    }
}

fn socket_for(to: SocketAddr) -> std::io::Result<TcpSocket> {
    if to.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
}

/// A socket bound to `from` (port 0, or a reserved one), if that works.
fn bound(t: &Target) -> std::io::Result<Option<TcpSocket>> {
    let from = match t.from {
        Some(f) if f.is_ipv4() == t.to.is_ipv4() => f,
        _ if t.reserved_port => {
            if t.to.is_ipv4() {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            }
        }
        _ => return Ok(None),
    };
    if t.reserved_port {
        for port in (600..1024).rev() {
            let s = socket_for(t.to)?;
            match s.bind(SocketAddr::new(from, port)) {
                Ok(()) => return Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                // Not root: an ordinary port it is.
                Err(_) => break,
            }
        }
    }
    let s = socket_for(t.to)?;
    match s.bind(SocketAddr::new(from, 0)) {
        Ok(()) => Ok(Some(s)),
        // An address that is no longer ours (the host moved): the call
        // still goes out from wherever the route says.
        Err(e) => {
            tracing::debug!(%from, error = %e, "cannot call from our address; using any");
            Ok(None)
        }
    }
}

async fn connect(t: Target) -> std::io::Result<TcpStream> {
    match bound(&t)? {
        Some(s) => s.connect(t.to).await,
        None => socket_for(t.to)?.connect(t.to).await,
    }
}

/// One call; the procedure's XDR result on SUCCESS.
pub async fn call(
    t: Target,
    prog: u32,
    vers: u32,
    proc_: u32,
    auth: Auth,
    args: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, RpcError> {
    let attempt = async {
        let mut s = connect(t).await?;
        let _ = s.set_nodelay(true);
        let xid = next_xid();
        let rec = call_record(xid, prog, vers, proc_, auth, args)?;
        s.write_all(&rec).await?;
        let reply = rpc::read_record(&mut s, MAX_REPLY)
            .await?
            .ok_or(RpcError::Truncated)?;
        parse_reply(xid, &reply)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| RpcError::Timeout(timeout))?
}

/// portmap v2 GETPORT at `rpcbind`: where `prog`/`vers` answers over `prot`.
pub async fn getport(
    rpcbind: Target,
    prog: u32,
    vers: u32,
    prot: u32,
    timeout: Duration,
) -> Result<u16, RpcError> {
    let mut a = XdrWriter::new();
    a.u32(prog).u32(vers).u32(prot).u32(0);
    let body = call(
        rpcbind,
        PMAP_PROGRAM,
        PMAP_VERSION,
        PMAP_PROG::PMAPPROC_GETPORT as u32,
        Auth::Null,
        &a.into_bytes(),
        timeout,
    )
    .await?;
    let port = XdrReader::new(&body)
        .u32()
        .ok_or(RpcError::BadReply("GETPORT without a port"))?;
    match u16::try_from(port) {
        Ok(0) => Err(RpcError::NotRegistered {
            prog,
            vers,
            at: rpcbind.to,
        }),
        Ok(p) => Ok(p),
        Err(_) => Err(RpcError::BadReply("GETPORT port over 65535")),
    }
}

/// Calls `prog`/`vers` on `host`, found through its portmapper on
/// `rpcbind_port`, from our address `from`.
#[allow(clippy::too_many_arguments)]
pub async fn call_via_portmap(
    host: IpAddr,
    rpcbind_port: u16,
    from: Option<IpAddr>,
    prog: u32,
    vers: u32,
    proc_: u32,
    args: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, RpcError> {
    let rpcbind = Target::new(SocketAddr::new(host, rpcbind_port), from);
    let port = getport(rpcbind, prog, vers, IPPROTO_TCP, timeout).await?;
    let t = Target::new(SocketAddr::new(host, port), from);
    call(t, prog, vers, proc_, Auth::Null, args, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_records_decode_as_calls() {
        for auth in [Auth::Null, Auth::Root] {
            let rec = call_record(9, 100_021, 4, 5, auth, b"ARGS").expect("small");
            let mark = u32::from_be_bytes([rec[0], rec[1], rec[2], rec[3]]);
            assert_eq!(
                mark,
                0x8000_0000 | (rec.len() as u32 - 4),
                "one last fragment"
            );
            let m = &rec[4..];
            let Ok(rpc::Decoded::Call(h)) = rpc::decode_call(m) else {
                panic!("not a call");
            };
            assert_eq!((h.xid, h.prog, h.vers, h.proc_), (9, 100_021, 4, 5));
            assert_eq!(&m[h.args_at..], b"ARGS");
        }
    }

    #[test]
    fn replies() {
        let ok = rpc::accepted(7, rpc::Accepted::Success(vec![0, 0, 0, 1])).to_bytes();
        assert_eq!(parse_reply(7, &ok[4..]).ok(), Some(vec![0, 0, 0, 1]));
        assert!(matches!(
            parse_reply(8, &ok[4..]),
            Err(RpcError::BadReply(_))
        ));
        let unavail = rpc::accepted(7, rpc::Accepted::ProgUnavail).to_bytes();
        assert!(matches!(
            parse_reply(7, &unavail[4..]),
            Err(RpcError::Refused(_))
        ));
        let denied = rpc::denied(7, rpc::Denial::RpcMismatch).to_bytes();
        assert!(matches!(
            parse_reply(7, &denied[4..]),
            Err(RpcError::Refused(_))
        ));
        // Cut anywhere in the 24 bytes before the result: refused.
        for cut in 0..24 {
            assert!(parse_reply(7, &ok[4..4 + cut]).is_err(), "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn a_silent_host_times_out() {
        // A listener that never answers.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let t = Target::new(
            l.local_addr().expect("addr"),
            Some("127.0.0.1".parse().expect("ip")),
        );
        let r = call(t, 1, 1, 0, Auth::Null, &[], Duration::from_millis(200)).await;
        assert!(matches!(r, Err(RpcError::Timeout(_))), "{r:?}");
    }
}
