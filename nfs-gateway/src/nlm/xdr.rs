//! NLM v4 on the wire (the Open Group's XNFS "Network Lock Manager
//! Protocol", version 4 as RFC 1813 section 6 describes it): the argument
//! and result types of the procedures we serve and of the GRANTED callback
//! we make.
//!
//! Every variable-length field is checked against its protocol maximum and
//! against the bytes present before it is taken (`XdrReader` refuses what
//! does not fit), so a decode costs at most a copy of bounded fields.

use crate::xdr::{XdrReader, XdrWriter};

pub const PROGRAM: u32 = 100_021;
pub const VERSION: u32 = 4;

/// `MAXNETOBJ_SZ`: cookies, file handles, owner handles.
pub const MAX_NETOBJ: usize = 1024;
/// `LM_MAXSTRLEN`: `caller_name`.
pub const MAX_STR: usize = 1024;
/// `LM_MAXNAMELEN`: the host name of `nlm4_notify`.
pub const MAX_NAME: usize = 1025;

/// The procedures of version 4.
pub mod procs {
    pub const NULL: u32 = 0;
    pub const TEST: u32 = 1;
    pub const LOCK: u32 = 2;
    pub const CANCEL: u32 = 3;
    pub const UNLOCK: u32 = 4;
    pub const GRANTED: u32 = 5;
    pub const TEST_MSG: u32 = 6;
    pub const LOCK_MSG: u32 = 7;
    pub const CANCEL_MSG: u32 = 8;
    pub const UNLOCK_MSG: u32 = 9;
    pub const GRANTED_MSG: u32 = 10;
    pub const TEST_RES: u32 = 11;
    pub const LOCK_RES: u32 = 12;
    pub const CANCEL_RES: u32 = 13;
    pub const UNLOCK_RES: u32 = 14;
    pub const GRANTED_RES: u32 = 15;
    pub const SHARE: u32 = 20;
    pub const UNSHARE: u32 = 21;
    pub const NM_LOCK: u32 = 22;
    pub const FREE_ALL: u32 = 23;
}

/// `nlm4_stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Stat {
    Granted = 0,
    Denied = 1,
    DeniedNoLocks = 2,
    Blocked = 3,
    DeniedGracePeriod = 4,
    Deadlock = 5,
    Rofs = 6,
    StaleFh = 7,
    Fbig = 8,
    Failed = 9,
}

impl Stat {
    pub fn from_u32(v: u32) -> Option<Stat> {
        Some(match v {
            0 => Stat::Granted,
            1 => Stat::Denied,
            2 => Stat::DeniedNoLocks,
            3 => Stat::Blocked,
            4 => Stat::DeniedGracePeriod,
            5 => Stat::Deadlock,
            6 => Stat::Rofs,
            7 => Stat::StaleFh,
            8 => Stat::Fbig,
            9 => Stat::Failed,
            _ => return None,
        })
    }
}

/// `nlm4_lock`: who locks which range of which file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    /// The client's host name as it gives it (Linux: its nodename).
    pub caller_name: Vec<u8>,
    /// The NFS file handle.
    pub fh: Vec<u8>,
    /// The owner handle: opaque, unique per owner on the client host.
    pub oh: Vec<u8>,
    /// The owner's number on the client (Linux: its lock owner's "pid").
    pub svid: i32,
    pub offset: u64,
    /// 0: to the end of the file, however far it grows.
    pub len: u64,
}

impl Lock {
    fn decode(r: &mut XdrReader<'_>) -> Option<Lock> {
        Some(Lock {
            caller_name: r.opaque(MAX_STR)?.to_vec(),
            fh: r.opaque(MAX_NETOBJ)?.to_vec(),
            oh: r.opaque(MAX_NETOBJ)?.to_vec(),
            svid: r.i32()?,
            offset: r.u64()?,
            len: r.u64()?,
        })
    }

    fn encode(&self, w: &mut XdrWriter) {
        w.opaque(&self.caller_name)
            .opaque(&self.fh)
            .opaque(&self.oh)
            .i32(self.svid)
            .u64(self.offset)
            .u64(self.len);
    }

    /// The range as first and last byte (inclusive; `u64::MAX` is "to the
    /// end"), as the brick's record locks take it. A range that would end
    /// past the largest offset runs to the end, as Linux's lockd reads it.
    pub fn range(&self) -> (u64, u64) {
        let end = match self.len {
            0 => u64::MAX,
            len => self.offset.saturating_add(len - 1),
        };
        (self.offset, end)
    }
}

/// `l_len` of an inclusive range.
pub fn len_of(start: u64, end: u64) -> u64 {
    if end == u64::MAX {
        0
    } else {
        end.saturating_sub(start).saturating_add(1)
    }
}

/// `nlm4_testargs` (TEST, and the GRANTED callback).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestArgs {
    pub cookie: Vec<u8>,
    pub exclusive: bool,
    pub lock: Lock,
}

impl TestArgs {
    pub fn decode(args: &[u8]) -> Option<TestArgs> {
        let mut r = XdrReader::new(args);
        Some(TestArgs {
            cookie: r.opaque(MAX_NETOBJ)?.to_vec(),
            exclusive: r.bool()?,
            lock: Lock::decode(&mut r)?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = XdrWriter::new();
        w.opaque(&self.cookie).bool(self.exclusive);
        self.lock.encode(&mut w);
        w.into_bytes()
    }
}

/// `nlm4_lockargs` (LOCK, LOCK_MSG, NM_LOCK).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockArgs {
    pub cookie: Vec<u8>,
    pub block: bool,
    pub exclusive: bool,
    pub lock: Lock,
    pub reclaim: bool,
    /// The client's NSM state number.
    pub state: i32,
}

impl LockArgs {
    pub fn decode(args: &[u8]) -> Option<LockArgs> {
        let mut r = XdrReader::new(args);
        Some(LockArgs {
            cookie: r.opaque(MAX_NETOBJ)?.to_vec(),
            block: r.bool()?,
            exclusive: r.bool()?,
            lock: Lock::decode(&mut r)?,
            reclaim: r.bool()?,
            state: r.i32()?,
        })
    }

    #[cfg(test)]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = XdrWriter::new();
        w.opaque(&self.cookie).bool(self.block).bool(self.exclusive);
        self.lock.encode(&mut w);
        w.bool(self.reclaim).i32(self.state);
        w.into_bytes()
    }
}

/// `nlm4_cancargs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelArgs {
    pub cookie: Vec<u8>,
    pub block: bool,
    pub exclusive: bool,
    pub lock: Lock,
}

impl CancelArgs {
    pub fn decode(args: &[u8]) -> Option<CancelArgs> {
        let mut r = XdrReader::new(args);
        Some(CancelArgs {
            cookie: r.opaque(MAX_NETOBJ)?.to_vec(),
            block: r.bool()?,
            exclusive: r.bool()?,
            lock: Lock::decode(&mut r)?,
        })
    }
}

/// `nlm4_unlockargs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnlockArgs {
    pub cookie: Vec<u8>,
    pub lock: Lock,
}

impl UnlockArgs {
    pub fn decode(args: &[u8]) -> Option<UnlockArgs> {
        let mut r = XdrReader::new(args);
        Some(UnlockArgs {
            cookie: r.opaque(MAX_NETOBJ)?.to_vec(),
            lock: Lock::decode(&mut r)?,
        })
    }
}

/// The cookie of `nlm4_shareargs` and its `reclaim` flag; the share
/// itself is not needed to refuse it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareArgs {
    pub cookie: Vec<u8>,
    pub reclaim: bool,
}

impl ShareArgs {
    pub fn decode(args: &[u8]) -> Option<ShareArgs> {
        let mut r = XdrReader::new(args);
        let cookie = r.opaque(MAX_NETOBJ)?.to_vec();
        // nlm4_share: caller_name, fh, oh, mode, access.
        r.opaque(MAX_STR)?;
        r.opaque(MAX_NETOBJ)?;
        r.opaque(MAX_NETOBJ)?;
        r.u32()?;
        r.u32()?;
        Some(ShareArgs {
            cookie,
            reclaim: r.bool()?,
        })
    }
}

/// `nlm4_notify` (FREE_ALL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    pub name: Vec<u8>,
    pub state: i32,
}

impl Notify {
    pub fn decode(args: &[u8]) -> Option<Notify> {
        let mut r = XdrReader::new(args);
        Some(Notify {
            name: r.opaque(MAX_NAME)?.to_vec(),
            state: r.i32()?,
        })
    }
}

/// `nlm4_holder`: the lock that stands in the way, for TEST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub exclusive: bool,
    pub svid: i32,
    pub oh: Vec<u8>,
    pub offset: u64,
    pub len: u64,
}

/// `nlm4_res`: a cookie and a status (LOCK, CANCEL, UNLOCK, GRANTED and
/// their `_RES` messages).
pub fn encode_res(cookie: &[u8], stat: Stat) -> Vec<u8> {
    let mut w = XdrWriter::new();
    w.opaque(cookie).u32(stat as u32);
    w.into_bytes()
}

/// `nlm4_res` decoded (the answer to our GRANTED callback).
pub fn decode_res(body: &[u8]) -> Option<(Vec<u8>, Stat)> {
    let mut r = XdrReader::new(body);
    let cookie = r.opaque(MAX_NETOBJ)?.to_vec();
    let stat = Stat::from_u32(r.u32()?)?;
    Some((cookie, stat))
}

/// `nlm4_testres`: DENIED carries the holder.
pub fn encode_testres(cookie: &[u8], result: Result<(), (Stat, Option<Holder>)>) -> Vec<u8> {
    let mut w = XdrWriter::new();
    w.opaque(cookie);
    match result {
        Ok(()) => {
            w.u32(Stat::Granted as u32);
        }
        Err((Stat::Denied, Some(h))) => {
            w.u32(Stat::Denied as u32)
                .bool(h.exclusive)
                .i32(h.svid)
                .opaque(&h.oh)
                .u64(h.offset)
                .u64(h.len);
        }
        // The union has an arm only for DENIED; a DENIED without a holder
        // cannot be said, so it is said as "no locks" instead.
        Err((Stat::Denied, None)) => {
            w.u32(Stat::DeniedNoLocks as u32);
        }
        Err((stat, _)) => {
            w.u32(stat as u32);
        }
    }
    w.into_bytes()
}

/// `nlm4_shareres`: cookie, status, sequence.
pub fn encode_shareres(cookie: &[u8], stat: Stat) -> Vec<u8> {
    let mut w = XdrWriter::new();
    w.opaque(cookie).u32(stat as u32).i32(0);
    w.into_bytes()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn lock() -> Lock {
        Lock {
            caller_name: b"client1".to_vec(),
            fh: vec![7; 29],
            oh: b"42@client1".to_vec(),
            svid: 42,
            offset: 10,
            len: 5,
        }
    }

    #[test]
    fn lockargs_round_trip_and_cuts() {
        let a = LockArgs {
            cookie: vec![1, 2, 3, 4],
            block: true,
            exclusive: true,
            lock: lock(),
            reclaim: false,
            state: 3,
        };
        let bytes = a.encode();
        assert_eq!(LockArgs::decode(&bytes), Some(a.clone()));
        // Every cut is refused, none panics.
        for cut in 0..bytes.len() {
            assert_eq!(LockArgs::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        // The same bytes read as the shorter argument types.
        let t = TestArgs {
            cookie: a.cookie.clone(),
            exclusive: true,
            lock: lock(),
        };
        assert_eq!(TestArgs::decode(&t.encode()), Some(t));
    }

    #[test]
    fn lengths_over_the_limits_are_refused() {
        // A cookie announcing 4 GiB, and one just over MAXNETOBJ_SZ.
        assert_eq!(LockArgs::decode(&u32::MAX.to_be_bytes()), None);
        let mut w = XdrWriter::new();
        w.opaque(&[0; MAX_NETOBJ + 1]).bool(false).bool(false);
        assert_eq!(TestArgs::decode(&w.into_bytes()), None);
        // caller_name over LM_MAXSTRLEN.
        let mut long = lock();
        long.caller_name = vec![b'a'; MAX_STR + 1];
        let t = TestArgs {
            cookie: vec![],
            exclusive: false,
            lock: long,
        };
        assert_eq!(TestArgs::decode(&t.encode()), None);
        // A bool that is neither 0 nor 1.
        let mut w = XdrWriter::new();
        w.opaque(&[]).u32(2);
        assert_eq!(TestArgs::decode(&w.into_bytes()), None);
    }

    #[test]
    fn ranges() {
        let mut l = lock();
        assert_eq!(l.range(), (10, 14));
        assert_eq!(len_of(10, 14), 5);
        l.len = 0;
        assert_eq!(l.range(), (10, u64::MAX));
        assert_eq!(len_of(10, u64::MAX), 0);
        l.offset = u64::MAX - 1;
        l.len = 10;
        assert_eq!(l.range(), (u64::MAX - 1, u64::MAX));
    }

    #[test]
    fn results() {
        assert_eq!(
            encode_res(&[9, 9], Stat::Blocked),
            [0, 0, 0, 2, 9, 9, 0, 0, 0, 0, 0, 3]
        );
        assert_eq!(
            decode_res(&encode_res(&[1], Stat::Granted)),
            Some((vec![1], Stat::Granted))
        );
        assert_eq!(decode_res(&[0, 0, 0, 0, 0, 0, 0, 99]), None);
        let h = Holder {
            exclusive: true,
            svid: 7,
            oh: b"x".to_vec(),
            offset: 0,
            len: 0,
        };
        let body = encode_testres(&[], Err((Stat::Denied, Some(h))));
        let mut r = XdrReader::new(&body);
        assert_eq!(r.opaque(8), Some(&[][..]));
        assert_eq!(r.u32(), Some(1));
        assert_eq!(r.bool(), Some(true));
        assert_eq!(r.i32(), Some(7));
        assert_eq!(r.opaque(8), Some(&b"x"[..]));
        assert_eq!((r.u64(), r.u64()), (Some(0), Some(0)));
        assert_eq!(r.remaining(), 0);
        assert_eq!(encode_testres(&[], Ok(())), [0, 0, 0, 0, 0, 0, 0, 0]);
        let mut w = XdrWriter::new();
        w.opaque(b"c").opaque(b"host").opaque(&[1; 29]).opaque(b"o");
        w.u32(1).u32(3).bool(true);
        assert_eq!(
            ShareArgs::decode(&w.into_bytes()),
            Some(ShareArgs {
                cookie: b"c".to_vec(),
                reclaim: true
            })
        );
        let mut w = XdrWriter::new();
        w.opaque(b"client1").i32(5);
        assert_eq!(
            Notify::decode(&w.into_bytes()),
            Some(Notify {
                name: b"client1".to_vec(),
                state: 5
            })
        );
    }
}
