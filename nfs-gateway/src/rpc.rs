//! ONC RPC over TCP (RFC 5531): record marking, the call header, and reply
//! encoding.
//!
//! Everything here reads bytes a client chose, so nothing trusts a length
//! from the wire: records are capped at [`MAX_RECORD`], buffers grow only
//! with bytes that actually arrived, and the call header is decoded by hand
//! with bounds checks (the `nfs3_types` decoders allocate whatever length
//! the wire announces, and know only four auth flavors, so an RPCSEC_GSS
//! call would be undecodable rather than answered with an auth error).
//!
//! Replies are encoded by hand too: their layout is fixed, and writing them
//! cannot fail, so there is no error path on the way out.

use std::net::SocketAddr;

use nfs3_types::rpc::{accept_stat, auth_stat, msg_type, reject_stat, reply_stat, RPC_VERSION_2};
use tokio::io::{AsyncRead, AsyncReadExt};

pub use crate::xdr::XdrReader;
use crate::xdr::XdrWriter;
use crate::{Caller, Outcome};

/// Largest record we accept: a 4 MiB WRITE plus room for its header.
pub const MAX_RECORD: usize = 4 * 1024 * 1024 + 64 * 1024;

/// Record-marking header: the high bit marks the last fragment of a record.
const LAST_FRAGMENT: u32 = 0x8000_0000;
const FRAGMENT_LEN: u32 = 0x7fff_ffff;

pub const AUTH_NULL: u32 = 0;
pub const AUTH_UNIX: u32 = 1;
/// RFC 5531: credential and verifier bodies are at most 400 bytes.
pub(crate) const MAX_AUTH_BYTES: usize = 400;
/// RFC 5531 appendix A: `machinename<255>`, `gids<16>`.
const MAX_MACHINE_NAME: usize = 255;
const MAX_GIDS: usize = 16;

/// Why a connection is given up (each of these ends that connection
/// only), or why a call we made to another host failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("record of at least {0} bytes is over the {MAX_RECORD}-byte limit")]
    TooLarge(usize),
    #[error("connection closed in the middle of a record")]
    Truncated,
    #[error("malformed call: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("malformed reply: {0}")]
    BadReply(&'static str),
    #[error("call refused: {0}")]
    Refused(String),
    #[error("program {prog} version {vers} is not registered with the portmapper at {at}")]
    NotRegistered {
        prog: u32,
        vers: u32,
        at: SocketAddr,
    },
}

/// Reads one record (all its fragments). `Ok(None)` is a clean end of the
/// stream between records.
///
/// The buffer is reserved per fragment from the fragment's announced length,
/// which is bounded by `max`; reserved but unwritten pages are not touched,
/// so a client that announces much and sends little costs address space,
/// not memory.
pub async fn read_record<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, RpcError> {
    let mut record: Vec<u8> = Vec::new();
    loop {
        let Some(mark) = read_mark(r, record.is_empty()).await? else {
            return Ok(None);
        };
        let len = (mark & FRAGMENT_LEN) as usize;
        let total = record.len().saturating_add(len);
        if total > max {
            return Err(RpcError::TooLarge(total));
        }
        record
            .try_reserve_exact(len)
            .map_err(|_| RpcError::TooLarge(total))?;
        let mut fragment = (&mut *r).take(len as u64);
        while record.len() < total {
            if fragment.read_buf(&mut record).await? == 0 {
                return Err(RpcError::Truncated);
            }
        }
        if mark & LAST_FRAGMENT != 0 {
            return Ok(Some(record));
        }
    }
}

/// The 4-byte fragment header; `None` on EOF before its first byte when
/// `may_end` (between records), `Truncated` anywhere else.
async fn read_mark<R: AsyncRead + Unpin>(
    r: &mut R,
    may_end: bool,
) -> Result<Option<u32>, RpcError> {
    let mut mark = [0u8; 4];
    let mut got = 0;
    while got < mark.len() {
        let n = r.read(&mut mark[got..]).await?;
        if n == 0 {
            return if got == 0 && may_end {
                Ok(None)
            } else {
                Err(RpcError::Truncated)
            };
        }
        got += n;
    }
    Ok(Some(u32::from_be_bytes(mark)))
}

/// The caller's identity as the credential states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// AUTH_NULL: runs as nobody.
    Null,
    Unix {
        uid: u32,
        gid: u32,
        gids: Vec<u32>,
    },
}

impl Credential {
    /// `local` is our end of the connection: the address the client
    /// knows us by (NLM calls it back from there).
    pub fn caller(&self, peer: SocketAddr, local: SocketAddr) -> Caller {
        match self {
            Credential::Null => Caller {
                uid: Caller::NOBODY,
                gid: Caller::NOBODY,
                gids: Vec::new(),
                peer,
                local,
            },
            Credential::Unix { uid, gid, gids } => Caller {
                uid: *uid,
                gid: *gid,
                gids: gids.clone(),
                peer,
                local,
            },
        }
    }
}

/// A decoded call header; the procedure's arguments are the record's bytes
/// from `args_at` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallHeader {
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    pub cred: Credential,
    pub args_at: usize,
}

/// Why a call is refused before any program sees it (MSG_DENIED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The call is not ONC RPC version 2.
    RpcMismatch,
    Auth(auth_stat),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Call(CallHeader),
    Denied { xid: u32, why: Denial },
}

/// Decodes the call header of one record. `Err` means the record is not an
/// RPC call we can even answer (no xid, a REPLY, cut short): the caller
/// closes the connection.
pub fn decode_call(record: &[u8]) -> Result<Decoded, RpcError> {
    let mut r = XdrReader::new(record);
    let xid = r.u32().ok_or(RpcError::Malformed("no xid"))?;
    let mtype = r.u32().ok_or(RpcError::Malformed("no message type"))?;
    if mtype != msg_type::CALL as u32 {
        return Err(RpcError::Malformed("not a CALL"));
    }
    let rpcvers = r.u32().ok_or(RpcError::Malformed("no RPC version"))?;
    if rpcvers != RPC_VERSION_2 {
        // Nothing after the version is known to follow our layout.
        return Ok(Decoded::Denied {
            xid,
            why: Denial::RpcMismatch,
        });
    }
    let short = || RpcError::Malformed("call header cut short");
    let prog = r.u32().ok_or_else(short)?;
    let vers = r.u32().ok_or_else(short)?;
    let proc_ = r.u32().ok_or_else(short)?;
    let cred_flavor = r.u32().ok_or_else(short)?;
    // An over-long body is answered (we know the xid); a body running past
    // the record is not a call at all.
    let cred_len = peek_len(&r).ok_or_else(short)?;
    if cred_len > MAX_AUTH_BYTES {
        return Ok(Decoded::Denied {
            xid,
            why: Denial::Auth(auth_stat::AUTH_BADCRED),
        });
    }
    let cred_body = r
        .opaque(MAX_AUTH_BYTES)
        .ok_or(RpcError::Malformed("credential cut short"))?;
    let _verf_flavor = r.u32().ok_or(RpcError::Malformed("no verifier"))?;
    let verf_len = peek_len(&r).ok_or(RpcError::Malformed("no verifier"))?;
    if verf_len > MAX_AUTH_BYTES {
        return Ok(Decoded::Denied {
            xid,
            why: Denial::Auth(auth_stat::AUTH_BADVERF),
        });
    }
    // The verifier is not checked: neither AUTH_NULL nor AUTH_UNIX carries
    // one that proves anything.
    r.opaque(MAX_AUTH_BYTES)
        .ok_or(RpcError::Malformed("verifier cut short"))?;
    let cred = match cred_flavor {
        AUTH_NULL => Credential::Null,
        AUTH_UNIX => match decode_auth_unix(cred_body) {
            Some(c) => c,
            None => {
                return Ok(Decoded::Denied {
                    xid,
                    why: Denial::Auth(auth_stat::AUTH_BADCRED),
                })
            }
        },
        // RPCSEC_GSS, AUTH_DES, …: not ours. TOOWEAK makes the Linux client
        // fail the call at once instead of retrying the same credential.
        _ => {
            return Ok(Decoded::Denied {
                xid,
                why: Denial::Auth(auth_stat::AUTH_TOOWEAK),
            })
        }
    };
    Ok(Decoded::Call(CallHeader {
        xid,
        prog,
        vers,
        proc_,
        cred,
        args_at: r.position(),
    }))
}

/// The length word of the next opaque, without consuming it.
fn peek_len(r: &XdrReader<'_>) -> Option<usize> {
    r.peek_u32().map(|l| l as usize)
}

/// `authsys_parms`: stamp, machinename<255>, uid, gid, gids<16>.
fn decode_auth_unix(body: &[u8]) -> Option<Credential> {
    let mut r = XdrReader::new(body);
    let _stamp = r.u32()?;
    let _machine = r.opaque(MAX_MACHINE_NAME)?;
    let uid = r.u32()?;
    let gid = r.u32()?;
    let n = r.u32()? as usize;
    if n > MAX_GIDS {
        return None;
    }
    let mut gids = Vec::with_capacity(n);
    for _ in 0..n {
        gids.push(r.u32()?);
    }
    Some(Credential::Unix { uid, gid, gids })
}

/// How an accepted call is answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    /// SUCCESS with the procedure's XDR-encoded result.
    Success(Vec<u8>),
    ProgUnavail,
    ProgMismatch {
        low: u32,
        high: u32,
    },
    ProcUnavail,
    GarbageArgs,
    SystemErr,
}

impl From<Outcome> for Accepted {
    fn from(o: Outcome) -> Accepted {
        match o {
            Outcome::Reply(body) => Accepted::Success(body),
            Outcome::ProcUnavail => Accepted::ProcUnavail,
            Outcome::GarbageArgs => Accepted::GarbageArgs,
            Outcome::SystemErr => Accepted::SystemErr,
        }
    }
}

/// One reply record: `head` is the record mark and the reply header, `body`
/// the procedure's result, kept apart so a large READ result is written
/// from where the handler left it instead of being copied behind a header.
#[derive(Debug)]
pub struct Reply {
    head: Vec<u8>,
    body: Vec<u8>,
}

impl Reply {
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The reply as a UDP datagram: no record mark.
    pub fn datagram(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.head.len() + self.body.len());
        v.extend_from_slice(self.head.get(4..).unwrap_or_default());
        v.extend_from_slice(&self.body);
        v
    }

    /// The whole record in one buffer (tests, small replies).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.head.len() + self.body.len());
        v.extend_from_slice(&self.head);
        v.extend_from_slice(&self.body);
        v
    }
}

/// The record mark of a record sent as one fragment, the last; `None` if
/// `len` cannot be one fragment (over 2 GiB; nothing we send is).
pub(crate) fn single_fragment_mark(len: usize) -> Option<[u8; 4]> {
    let len = u32::try_from(len).ok().filter(|l| *l <= FRAGMENT_LEN)?;
    Some((LAST_FRAGMENT | len).to_be_bytes())
}

/// Head of a reply: a placeholder record mark (filled in by `finish`),
/// xid, REPLY, and the reply status.
fn reply_head(xid: u32, stat: reply_stat) -> XdrWriter {
    let mut h = XdrWriter::new();
    h.u32(0)
        .u32(xid)
        .u32(msg_type::REPLY as u32)
        .u32(stat as u32);
    h
}

/// Writes the record mark over the placeholder.
fn finish(head: XdrWriter, body: Vec<u8>) -> Option<Reply> {
    let mut head = head.into_bytes();
    let mark = single_fragment_mark((head.len() - 4).checked_add(body.len())?)?;
    head[..4].copy_from_slice(&mark);
    Some(Reply { head, body })
}

/// MSG_ACCEPTED, verifier AUTH_NULL, and the accept status with its data.
pub fn accepted(xid: u32, a: Accepted) -> Reply {
    let mut head = reply_head(xid, reply_stat::MSG_ACCEPTED);
    head.u32(AUTH_NULL).u32(0);
    let body = match a {
        Accepted::Success(body) => {
            head.u32(accept_stat::SUCCESS as u32);
            body
        }
        Accepted::ProgUnavail => status_only(&mut head, accept_stat::PROG_UNAVAIL),
        Accepted::ProgMismatch { low, high } => {
            head.u32(accept_stat::PROG_MISMATCH as u32)
                .u32(low)
                .u32(high);
            Vec::new()
        }
        Accepted::ProcUnavail => status_only(&mut head, accept_stat::PROC_UNAVAIL),
        Accepted::GarbageArgs => status_only(&mut head, accept_stat::GARBAGE_ARGS),
        Accepted::SystemErr => status_only(&mut head, accept_stat::SYSTEM_ERR),
    };
    match finish(head, body) {
        Some(reply) => reply,
        None => accepted(xid, Accepted::SystemErr),
    }
}

fn status_only(head: &mut XdrWriter, stat: accept_stat) -> Vec<u8> {
    head.u32(stat as u32);
    Vec::new()
}

/// MSG_DENIED: RPC_MISMATCH (we speak version 2 only) or AUTH_ERROR.
pub fn denied(xid: u32, why: Denial) -> Reply {
    let mut head = reply_head(xid, reply_stat::MSG_DENIED);
    match why {
        Denial::RpcMismatch => {
            head.u32(reject_stat::RPC_MISMATCH as u32)
                .u32(RPC_VERSION_2)
                .u32(RPC_VERSION_2);
        }
        Denial::Auth(stat) => {
            head.u32(reject_stat::AUTH_ERROR as u32).u32(stat as u32);
        }
    }
    // A denial is a few words: always one fragment.
    finish(head, Vec::new()).unwrap_or_else(|| Reply {
        head: Vec::new(),
        body: Vec::new(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nfs3_types::rpc::{accept_stat_data, msg_body, rejected_reply, reply_body, rpc_msg};
    use nfs3_types::xdr_codec::Unpack;

    pub(crate) fn words(ws: &[u32]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    /// A call record body (no record mark).
    pub(crate) fn call(
        xid: u32,
        rpcvers: u32,
        prog: u32,
        vers: u32,
        proc_: u32,
        cred: &[u32],
        args: &[u8],
    ) -> Vec<u8> {
        let mut v = words(&[xid, 0, rpcvers, prog, vers, proc_]);
        v.extend_from_slice(&words(cred));
        v.extend_from_slice(&words(&[AUTH_NULL, 0]));
        v.extend_from_slice(args);
        v
    }

    /// AUTH_UNIX credential: machine "host", the given ids.
    pub(crate) fn unix_cred(uid: u32, gid: u32, gids: &[u32]) -> Vec<u32> {
        let host = u32::from_be_bytes(*b"host");
        let mut body = vec![7, 4, host, uid, gid, gids.len() as u32];
        body.extend_from_slice(gids);
        let mut c = vec![AUTH_UNIX, (body.len() * 4) as u32];
        c.extend(body);
        c
    }

    pub(crate) fn record(body: &[u8]) -> Vec<u8> {
        let mut v = (LAST_FRAGMENT | body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    const LOCAL: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        2049,
    ));

    fn parse_reply(rec: &[u8]) -> rpc_msg<'static, 'static> {
        let mark = u32::from_be_bytes([rec[0], rec[1], rec[2], rec[3]]);
        assert_eq!(mark, LAST_FRAGMENT | (rec.len() as u32 - 4));
        let (msg, _) = rpc_msg::unpack(&mut &rec[4..]).expect("reply decodes");
        msg
    }

    #[test]
    fn auth_unix_call() {
        let rec = call(7, 2, 100003, 3, 1, &unix_cred(1000, 100, &[4, 27]), b"ARGS");
        let Ok(Decoded::Call(h)) = decode_call(&rec) else {
            panic!("not a call");
        };
        assert_eq!((h.xid, h.prog, h.vers, h.proc_), (7, 100003, 3, 1));
        assert_eq!(&rec[h.args_at..], b"ARGS");
        let peer = "10.0.0.1:700".parse().expect("addr");
        let c = h.cred.caller(peer, peer);
        assert_eq!((c.uid, c.gid, c.gids.as_slice()), (1000, 100, &[4, 27][..]));
    }

    #[test]
    fn auth_null_is_nobody() {
        let rec = call(8, 2, 100005, 3, 0, &[AUTH_NULL, 0], &[]);
        let Ok(Decoded::Call(h)) = decode_call(&rec) else {
            panic!("not a call");
        };
        assert_eq!(h.cred, Credential::Null);
        assert_eq!(h.args_at, rec.len());
        let c = h.cred.caller(LOCAL, LOCAL);
        assert_eq!((c.uid, c.gid), (Caller::NOBODY, Caller::NOBODY));
    }

    #[test]
    fn refusals() {
        // Wrong RPC version: answered, with the xid.
        let rec = call(9, 3, 100003, 3, 0, &[AUTH_NULL, 0], &[]);
        assert_eq!(
            decode_call(&rec).ok(),
            Some(Decoded::Denied {
                xid: 9,
                why: Denial::RpcMismatch
            })
        );
        // RPCSEC_GSS: too weak a reason to retry.
        let rec = call(10, 2, 100003, 3, 0, &[6, 0], &[]);
        assert_eq!(
            decode_call(&rec).ok(),
            Some(Decoded::Denied {
                xid: 10,
                why: Denial::Auth(auth_stat::AUTH_TOOWEAK)
            })
        );
        // 17 supplementary groups: a bad credential.
        let gids: Vec<u32> = (0..17).collect();
        let rec = call(11, 2, 100003, 3, 0, &unix_cred(1, 1, &gids), &[]);
        assert_eq!(
            decode_call(&rec).ok(),
            Some(Decoded::Denied {
                xid: 11,
                why: Denial::Auth(auth_stat::AUTH_BADCRED)
            })
        );
        // A credential body announcing 4 GiB: refused without allocating.
        let rec = words(&[12, 0, 2, 100003, 3, 0, AUTH_UNIX, u32::MAX]);
        assert_eq!(
            decode_call(&rec).ok(),
            Some(Decoded::Denied {
                xid: 12,
                why: Denial::Auth(auth_stat::AUTH_BADCRED)
            })
        );
    }

    #[test]
    fn undecodable_headers() {
        let full = call(1, 2, 100003, 3, 0, &unix_cred(0, 0, &[]), &[]);
        for cut in [0, 3, 8, 20, 30, full.len() - 1] {
            assert!(
                matches!(decode_call(&full[..cut]), Err(RpcError::Malformed(_))),
                "cut at {cut}"
            );
        }
        // A REPLY sent to the server.
        assert!(decode_call(&words(&[1, 1, 0])).is_err());
    }

    #[test]
    fn reply_encodings_decode_with_nfs3_types() {
        let rec = accepted(5, Accepted::Success(vec![0, 0, 0, 42])).to_bytes();
        let msg = parse_reply(&rec);
        assert_eq!(msg.xid, 5);
        assert!(matches!(
            msg.body,
            msg_body::REPLY(reply_body::MSG_ACCEPTED(ref a)) if matches!(a.reply_data, accept_stat_data::SUCCESS)
        ));
        assert_eq!(&rec[rec.len() - 4..], &[0, 0, 0, 42]);

        let msg = parse_reply(&accepted(6, Accepted::ProgMismatch { low: 3, high: 3 }).to_bytes());
        assert!(matches!(
            msg.body,
            msg_body::REPLY(reply_body::MSG_ACCEPTED(ref a))
                if matches!(a.reply_data, accept_stat_data::PROG_MISMATCH { low: 3, high: 3 })
        ));
        for (a, want) in [
            (Accepted::ProgUnavail, accept_stat::PROG_UNAVAIL),
            (Accepted::ProcUnavail, accept_stat::PROC_UNAVAIL),
            (Accepted::GarbageArgs, accept_stat::GARBAGE_ARGS),
            (Accepted::SystemErr, accept_stat::SYSTEM_ERR),
        ] {
            let rec = accepted(1, a).to_bytes();
            parse_reply(&rec);
            assert_eq!(&rec[rec.len() - 4..], &(want as u32).to_be_bytes());
        }

        let msg = parse_reply(&denied(7, Denial::RpcMismatch).to_bytes());
        assert!(matches!(
            msg.body,
            msg_body::REPLY(reply_body::MSG_DENIED(rejected_reply::RPC_MISMATCH {
                low: 2,
                high: 2
            }))
        ));
        let msg = parse_reply(&denied(8, Denial::Auth(auth_stat::AUTH_TOOWEAK)).to_bytes());
        assert!(matches!(
            msg.body,
            msg_body::REPLY(reply_body::MSG_DENIED(rejected_reply::AUTH_ERROR(
                auth_stat::AUTH_TOOWEAK
            )))
        ));
    }

    #[tokio::test]
    async fn records_reassemble_and_end() {
        // Two fragments, then a one-fragment record, then a clean end.
        let mut wire = 3u32.to_be_bytes().to_vec();
        wire.extend_from_slice(b"abc");
        wire.extend_from_slice(&(LAST_FRAGMENT | 2).to_be_bytes());
        wire.extend_from_slice(b"de");
        wire.extend_from_slice(&record(b"xyz"));
        let mut r = &wire[..];
        assert_eq!(
            read_record(&mut r, 100).await.ok().flatten().as_deref(),
            Some(&b"abcde"[..])
        );
        assert_eq!(
            read_record(&mut r, 100).await.ok().flatten().as_deref(),
            Some(&b"xyz"[..])
        );
        assert!(matches!(read_record(&mut r, 100).await, Ok(None)));
    }

    #[tokio::test]
    async fn bad_records() {
        // Over the limit in one fragment, and over it across fragments;
        // neither allocates the announced size.
        let wire = (LAST_FRAGMENT | FRAGMENT_LEN).to_be_bytes();
        assert!(matches!(
            read_record(&mut &wire[..], MAX_RECORD).await,
            Err(RpcError::TooLarge(_))
        ));
        let mut wire = 60u32.to_be_bytes().to_vec();
        wire.extend_from_slice(&[0; 60]);
        wire.extend_from_slice(&(LAST_FRAGMENT | 60).to_be_bytes());
        assert!(matches!(
            read_record(&mut &wire[..], 100).await,
            Err(RpcError::TooLarge(120))
        ));
        // Cut short in the body, and in the record mark.
        let wire = record(b"abcdef");
        assert!(matches!(
            read_record(&mut &wire[..7], 100).await,
            Err(RpcError::Truncated)
        ));
        assert!(matches!(
            read_record(&mut &wire[..2], 100).await,
            Err(RpcError::Truncated)
        ));
        // A last fragment missing after a first one.
        let mut wire = 1u32.to_be_bytes().to_vec();
        wire.push(b'a');
        assert!(matches!(
            read_record(&mut &wire[..], 100).await,
            Err(RpcError::Truncated)
        ));
    }
}
