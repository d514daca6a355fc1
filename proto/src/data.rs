//! The bulk data path: reads and writes on a second connection per brick,
//! framed by hand so a payload crosses the client with no copy of its own.
//!
//! Why not tarpc: every write went through three clones and two
//! serialisation copies per brick (measured: memmove was a third of the
//! client's CPU and sequential writes ran at 0.6x GlusterFS). Here a write
//! is one header plus the payload, written with one vectored send.
//!
//! A connection starts with [`MAGIC`] and the session token the brick gave in
//! `hello` (so locks and contention hints belong to the same client); then
//! request frames go one way and response frames the other, matched by id.
//! All integers are little-endian.
//!
//! ```text
//! request:  len u32 | id u64 | op u8 | gfid [16] | offset u64 | size u32 | nblame u8 | blame [nblame] | payload
//! response: len u32 | id u64 | status u8 | body (write: bincode Done<Attr>; read: data; error: bincode FsError)
//! ```
//! `len` counts the bytes after itself.
//!
//! A [`OP_WRITEV`] payload is several writes of one file at offsets,
//! applied in order by the brick (a client's write-behind queue in one
//! round trip):
//! ```text
//! count u32 | (offset u64 | len u32) [count] | data of each, in order
//! ```

use crate::{FsError, Gfid, ReplicaIndex, MAX_FRAME};

/// Opens a data connection. As a tarpc length prefix it would announce a
/// frame over 1 GiB, which tarpc refuses, so the brick can tell the two
/// apart from the first four bytes.
pub const MAGIC: [u8; 4] = *b"BFSD";

pub const OP_WRITE: u8 = 1;
pub const OP_READ: u8 = 2;
/// A write at the file's end as the brick sees it (`offset` ignored): the
/// O_APPEND writes of several clients never land on each other.
pub const OP_APPEND: u8 = 3;

/// Writes at several offsets of one file, in order ([`encode_extents`]).
pub const OP_WRITEV: u8 = 4;
/// Most writes in one [`OP_WRITEV`] frame.
pub const MAX_EXTENTS: usize = 1024;

/// The payload of an [`OP_WRITEV`] frame: the extents' index, then their data.
pub fn encode_extents(extents: &[(u64, &[u8])]) -> Vec<u8> {
    let data: usize = extents.iter().map(|(_, d)| d.len()).sum();
    let mut out = Vec::with_capacity(4 + 12 * extents.len() + data);
    out.extend_from_slice(&(extents.len() as u32).to_le_bytes());
    for (offset, d) in extents {
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&(d.len() as u32).to_le_bytes());
    }
    for (_, d) in extents {
        out.extend_from_slice(d);
    }
    out
}

/// The extents of an [`OP_WRITEV`] payload: every length accounted for,
/// nothing left over, no offset whose end passes `u64::MAX`.
pub fn decode_extents(payload: &[u8]) -> Result<Vec<(u64, &[u8])>, FsError> {
    let bad = || FsError::Invalid("malformed vectored write".into());
    let count_bytes: [u8; 4] = payload
        .get(..4)
        .ok_or_else(bad)?
        .try_into()
        .map_err(|_| bad())?;
    let count = u32::from_le_bytes(count_bytes) as usize;
    if count == 0 || count > MAX_EXTENTS {
        return Err(bad());
    }
    let index_end = 4 + 12 * count;
    let index = payload.get(4..index_end).ok_or_else(bad)?;
    let mut data = payload.get(index_end..).ok_or_else(bad)?;
    let mut out = Vec::with_capacity(count);
    for entry in index.chunks_exact(12) {
        let mut o = [0u8; 8];
        o.copy_from_slice(&entry[..8]);
        let mut l = [0u8; 4];
        l.copy_from_slice(&entry[8..]);
        let (offset, len) = (u64::from_le_bytes(o), u32::from_le_bytes(l) as usize);
        if len > data.len() || offset.checked_add(len as u64).is_none() {
            return Err(bad());
        }
        let (here, rest) = data.split_at(len);
        out.push((offset, here));
        data = rest;
    }
    if !data.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Where a write goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteAt {
    Offset(u64),
    /// At the end of the file as the brick has it (O_APPEND).
    End,
}

impl WriteAt {
    /// The frame's op and offset field.
    pub fn op_and_offset(self) -> (u8, u64) {
        match self {
            WriteAt::Offset(o) => (OP_WRITE, o),
            WriteAt::End => (OP_APPEND, 0),
        }
    }
}

pub const STATUS_OK: u8 = 0;
pub const STATUS_ERR: u8 = 1;

pub const REQ_FIXED: usize = 8 + 1 + 16 + 8 + 4 + 1;
pub const RESP_FIXED: usize = 8 + 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub id: u64,
    pub op: u8,
    pub gfid: Gfid,
    pub offset: u64,
    /// Bytes to read, or bytes of payload that follow a write.
    pub size: u32,
    pub blame: Vec<ReplicaIndex>,
}

impl RequestHeader {
    /// The header bytes, length prefix included, for a frame carrying
    /// `payload_len` bytes after it.
    pub fn encode(&self, payload_len: usize) -> Vec<u8> {
        let body = REQ_FIXED + self.blame.len() + payload_len;
        let mut out = Vec::with_capacity(4 + REQ_FIXED + self.blame.len());
        out.extend_from_slice(&(body as u32).to_le_bytes());
        out.extend_from_slice(&self.id.to_le_bytes());
        out.push(self.op);
        out.extend_from_slice(&self.gfid.0);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.push(self.blame.len() as u8);
        out.extend_from_slice(&self.blame);
        out
    }

    /// Parses the fixed part of a request (the first [`REQ_FIXED`] bytes
    /// after the length prefix); returns the header without its blame list
    /// and how many blame bytes follow.
    pub fn decode_fixed(fixed: &[u8; REQ_FIXED]) -> (RequestHeader, usize) {
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&fixed[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let mut g = [0u8; 16];
        g.copy_from_slice(&fixed[9..25]);
        let mut s = [0u8; 4];
        s.copy_from_slice(&fixed[33..37]);
        let header = RequestHeader {
            id: u64_at(0),
            op: fixed[8],
            gfid: Gfid(g),
            offset: u64_at(25),
            size: u32::from_le_bytes(s),
            blame: Vec::new(),
        };
        (header, fixed[37] as usize)
    }

    /// Checks that a frame of `frame_len` bytes is exactly this request:
    /// its header, and for a write its payload.
    pub fn check(&self, frame_len: usize) -> Result<usize, FsError> {
        let head = REQ_FIXED + self.blame.len();
        let payload = frame_len
            .checked_sub(head)
            .ok_or_else(|| FsError::Invalid("malformed data request".into()))?;
        match self.op {
            OP_WRITE | OP_APPEND | OP_WRITEV if payload == self.size as usize => Ok(payload),
            OP_READ if payload == 0 => Ok(0),
            OP_WRITE | OP_APPEND | OP_WRITEV | OP_READ => {
                Err(FsError::Invalid("malformed data request".into()))
            }
            op => Err(FsError::NotSupported(format!("data op {op}"))),
        }
    }
}

/// The header of a response frame (length prefix included) whose body is
/// followed by `body_len` bytes.
pub fn response_header(id: u64, status: u8, body_len: usize) -> [u8; 4 + RESP_FIXED] {
    let mut out = [0u8; 4 + RESP_FIXED];
    out[..4].copy_from_slice(&((RESP_FIXED + body_len) as u32).to_le_bytes());
    out[4..12].copy_from_slice(&id.to_le_bytes());
    out[12] = status;
    out
}

/// Parses the fixed part of a response: id and status.
pub fn decode_response(fixed: &[u8; RESP_FIXED]) -> (u64, u8) {
    let mut b = [0u8; 8];
    b.copy_from_slice(&fixed[..8]);
    (u64::from_le_bytes(b), fixed[8])
}

/// Checks a frame length announced by a peer before anything is allocated.
pub fn check_frame_len(len: u32) -> Result<usize, FsError> {
    let len = len as usize;
    if len > MAX_FRAME {
        return Err(FsError::Invalid(format!(
            "data frame of {len} bytes exceeds {MAX_FRAME}"
        )));
    }
    Ok(len)
}

pub fn encode_value<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Serialising plain data structs into memory cannot fail; an empty body
    // would be answered as malformed by the peer rather than panic here.
    bincode::serialize(v).unwrap_or_default()
}

pub fn decode_value<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, FsError> {
    bincode::deserialize(b).map_err(|e| FsError::Invalid(format!("bad data response body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(frame: &[u8]) -> Result<RequestHeader, FsError> {
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let mut fixed = [0u8; REQ_FIXED];
        fixed.copy_from_slice(&frame[4..4 + REQ_FIXED]);
        let (mut h, nblame) = RequestHeader::decode_fixed(&fixed);
        h.blame = frame[4 + REQ_FIXED..4 + REQ_FIXED + nblame].to_vec();
        h.check(len)?;
        Ok(h)
    }

    #[test]
    fn request_round_trip() {
        let h = RequestHeader {
            id: 42,
            op: OP_WRITE,
            gfid: Gfid::random(),
            offset: 1 << 40,
            size: 3,
            blame: vec![2],
        };
        let mut frame = h.encode(3);
        frame.extend_from_slice(b"abc");
        assert_eq!(parse(&frame).unwrap(), h);
    }

    #[test]
    fn malformed_requests_are_errors() {
        let h = RequestHeader {
            id: 1,
            op: OP_WRITE,
            gfid: Gfid::ROOT,
            offset: 0,
            size: 10,
            blame: vec![],
        };
        // says 10 bytes of payload, carries 2
        let mut frame = h.encode(2);
        frame.extend_from_slice(b"ab");
        assert!(parse(&frame).is_err());
        let mut odd = h.encode(10);
        odd[12] = 99;
        odd.extend_from_slice(&[0; 10]);
        assert!(parse(&odd).is_err());
        assert!(check_frame_len(u32::MAX).is_err());
    }

    #[test]
    fn appends_carry_their_payload_and_ignore_the_offset() {
        let (op, offset) = WriteAt::End.op_and_offset();
        assert_eq!((op, offset), (OP_APPEND, 0));
        let h = RequestHeader {
            id: 9,
            op,
            gfid: Gfid([3; 16]),
            offset,
            size: 4,
            blame: vec![],
        };
        let mut frame = h.encode(4);
        frame.extend_from_slice(b"tail");
        assert_eq!(parse(&frame).unwrap(), h);
        assert_eq!(WriteAt::Offset(7).op_and_offset(), (OP_WRITE, 7));
    }

    #[test]
    fn response_round_trip() {
        let h = response_header(7, STATUS_ERR, 5);
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        assert_eq!(len, 9 + 5);
        let mut fixed = [0u8; RESP_FIXED];
        fixed.copy_from_slice(&h[4..]);
        assert_eq!(decode_response(&fixed), (7, STATUS_ERR));
    }

    #[test]
    fn extents_round_trip_and_bad_indexes_are_refused() {
        let a = vec![1u8; 10];
        let b = vec![2u8; 3];
        let payload = encode_extents(&[(100, &a), (7, &b)]);
        assert_eq!(
            decode_extents(&payload).unwrap(),
            vec![(100, &a[..]), (7, &b[..])]
        );
        // A byte short, a byte over, no extents, an index past the end.
        assert!(decode_extents(&payload[..payload.len() - 1]).is_err());
        let mut over = payload.clone();
        over.push(0);
        assert!(decode_extents(&over).is_err());
        assert!(decode_extents(&0u32.to_le_bytes()).is_err());
        assert!(decode_extents(&9u32.to_le_bytes()).is_err());
        let wraps = encode_extents(&[(u64::MAX, &b)]);
        assert!(decode_extents(&wraps).is_err());
    }
}
