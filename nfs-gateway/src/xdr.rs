//! XDR (RFC 4506) by hand for the programs whose types `nfs3_types` does
//! not have (NLM, NSM, the calls we make ourselves) and for the RPC header.
//!
//! Decoding never trusts a length from the wire: every variable-length
//! field is checked against its protocol maximum and against the bytes
//! actually there before anything is taken, and nothing is allocated from
//! an announced length. Encoding cannot fail.

/// Bounds-checked XDR decoding from a borrowed buffer. Lengths come from
/// the network: nothing is allocated from them and nothing reads past the
/// end; `None` means the data ran out or broke a limit.
pub struct XdrReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> XdrReader<'a> {
    pub fn new(buf: &'a [u8]) -> XdrReader<'a> {
        XdrReader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn u32(&mut self) -> Option<u32> {
        let v = self.peek_u32()?;
        self.pos += 4;
        Some(v)
    }

    /// The next word, without consuming it.
    pub fn peek_u32(&self) -> Option<u32> {
        let b = self.buf.get(self.pos..self.pos.checked_add(4)?)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i32(&mut self) -> Option<i32> {
        self.u32().map(|v| v as i32)
    }

    pub fn u64(&mut self) -> Option<u64> {
        let hi = u64::from(self.u32()?);
        let lo = u64::from(self.u32()?);
        Some(hi << 32 | lo)
    }

    /// An XDR bool: 0 or 1, anything else is malformed.
    pub fn bool(&mut self) -> Option<bool> {
        match self.u32()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    /// Variable-length `opaque<max>` (also `string<max>`); the padding to
    /// a multiple of four is skipped.
    pub fn opaque(&mut self, max: usize) -> Option<&'a [u8]> {
        let len = self.peek_u32()? as usize;
        if len > max {
            return None;
        }
        let start = self.pos.checked_add(4)?;
        let padded = len.checked_add(3)? & !3;
        let data = self.buf.get(start..start.checked_add(len)?)?;
        self.buf.get(start..start.checked_add(padded)?)?;
        self.pos = start + padded;
        Some(data)
    }

    /// Fixed-length `opaque[n]`.
    pub fn fixed(&mut self, n: usize) -> Option<&'a [u8]> {
        let padded = n.checked_add(3)? & !3;
        let data = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.buf.get(self.pos..self.pos.checked_add(padded)?)?;
        self.pos += padded;
        Some(data)
    }
}

/// XDR encoding into a growing buffer.
#[derive(Clone, Debug, Default)]
pub struct XdrWriter(Vec<u8>);

impl XdrWriter {
    pub fn new() -> XdrWriter {
        XdrWriter::default()
    }

    pub fn u32(&mut self, v: u32) -> &mut XdrWriter {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn i32(&mut self, v: i32) -> &mut XdrWriter {
        self.u32(v as u32)
    }

    pub fn u64(&mut self, v: u64) -> &mut XdrWriter {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut XdrWriter {
        self.u32(u32::from(v))
    }

    /// Variable-length opaque or string. Every caller passes data that
    /// came through a bounded decoder or is ours, far below 4 GiB; a longer
    /// one would be cut to its first 4 GiB rather than panic.
    pub fn opaque(&mut self, b: &[u8]) -> &mut XdrWriter {
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.fixed(&b[..len as usize])
    }

    /// Fixed-length opaque: the bytes and the padding, no length.
    pub fn fixed(&mut self, b: &[u8]) -> &mut XdrWriter {
        self.0.extend_from_slice(b);
        self.0.resize(self.0.len() + (4 - b.len() % 4) % 4, 0);
        self
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(ws: &[u32]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    #[test]
    fn reader_bounds() {
        let buf = words(&[
            5,
            u32::from_be_bytes(*b"hell"),
            u32::from_be_bytes(*b"o\0\0\0"),
        ]);
        assert_eq!(XdrReader::new(&buf).opaque(10), Some(&b"hello"[..]));
        assert_eq!(XdrReader::new(&buf).opaque(4), None);
        assert_eq!(XdrReader::new(&buf[..9]).opaque(10), None);
        assert_eq!(XdrReader::new(&words(&[u32::MAX])).opaque(usize::MAX), None);
        // A refused opaque consumes nothing.
        let mut r = XdrReader::new(&buf);
        assert_eq!(r.opaque(4), None);
        assert_eq!(r.position(), 0);
        assert_eq!(XdrReader::new(&words(&[2])).bool(), None);
        assert_eq!(XdrReader::new(&words(&[1, 2])).u64(), Some(1 << 32 | 2));
        assert_eq!(XdrReader::new(&words(&[1])).u64(), None);
    }

    #[test]
    fn writer_round_trips() {
        let mut w = XdrWriter::new();
        w.u32(7)
            .i32(-2)
            .u64(1 << 40)
            .bool(true)
            .opaque(b"abcde")
            .fixed(b"xy");
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), 4 + 4 + 8 + 4 + 12 + 4);
        let mut r = XdrReader::new(&bytes);
        assert_eq!(r.u32(), Some(7));
        assert_eq!(r.i32(), Some(-2));
        assert_eq!(r.u64(), Some(1 << 40));
        assert_eq!(r.bool(), Some(true));
        assert_eq!(r.opaque(5), Some(&b"abcde"[..]));
        assert_eq!(r.fixed(2), Some(&b"xy"[..]));
        assert_eq!(r.remaining(), 0);
    }
}
