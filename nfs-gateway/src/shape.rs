//! A bounds check of NFS v3 arguments before they are decoded: the XDR
//! decoder allocates whatever length a variable-length field announces
//! before reading it, so every such length is first checked against its
//! protocol maximum and against the bytes actually present.

use crate::rpc::XdrReader;

const FH_MAX: usize = nfs3_types::nfs3::NFS3_FHSIZE;
/// Names and symlink targets (NFS's `filename3`/`nfspath3` are unbounded
/// strings; Linux's limits are far below this).
const NAME_MAX: usize = 4096;
const DATA_MAX: usize = 4 << 20;

fn fh(r: &mut XdrReader<'_>) -> Option<()> {
    r.opaque(FH_MAX).map(drop)
}

fn diropargs(r: &mut XdrReader<'_>) -> Option<()> {
    fh(r)?;
    r.opaque(NAME_MAX).map(drop)
}

fn skip(r: &mut XdrReader<'_>, words: usize) -> Option<()> {
    for _ in 0..words {
        r.u32()?;
    }
    Some(())
}

/// `set_*` options of `sattr3`: a discriminant, then the value if set.
fn sattr(r: &mut XdrReader<'_>) -> Option<()> {
    for value_words in [1, 1, 1, 2] {
        if r.u32()? != 0 {
            skip(r, value_words)?;
        }
    }
    for _ in 0..2 {
        // DONT_CHANGE, SET_TO_SERVER_TIME, SET_TO_CLIENT_TIME(nfstime3)
        if r.u32()? == 2 {
            skip(r, 2)?;
        }
    }
    Some(())
}

/// True when the arguments of procedure `proc_` are well formed as far as
/// lengths go (the decoder checks the rest).
pub fn plausible(proc_: u32, args: &[u8]) -> bool {
    let mut r = XdrReader::new(args);
    let r = &mut r;
    let ok = match proc_ {
        // GETATTR, ACCESS, READLINK, READ, FSSTAT, FSINFO, PATHCONF, COMMIT,
        // SETATTR: a handle first; their other fields are fixed-size.
        1 | 2 | 4 | 5 | 6 | 18 | 19 | 20 | 21 | 16 | 17 => fh(r),
        // WRITE: handle, offset, count, stable, data.
        7 => fh(r)
            .and_then(|_| skip(r, 4))
            .and_then(|_| r.opaque(DATA_MAX).map(drop)),
        // LOOKUP, CREATE, MKDIR, MKNOD, REMOVE, RMDIR: diropargs first.
        3 | 8 | 9 | 11 | 12 | 13 => diropargs(r),
        // SYMLINK: diropargs, sattr3, target.
        10 => diropargs(r)
            .and_then(|_| sattr(r))
            .and_then(|_| r.opaque(NAME_MAX).map(drop)),
        // RENAME: two diropargs.
        14 => diropargs(r).and_then(|_| diropargs(r)),
        // LINK: handle, diropargs.
        15 => fh(r).and_then(|_| diropargs(r)),
        _ => Some(()),
    };
    ok.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opaque(out: &mut Vec<u8>, data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
        out.resize(out.len() + (4 - data.len() % 4) % 4, 0);
    }

    #[test]
    fn announced_lengths_are_checked_against_what_is_there() {
        let mut ok = Vec::new();
        opaque(&mut ok, &[7u8; 29]);
        opaque(&mut ok, b"name");
        assert!(plausible(3, &ok));
        let mut huge = Vec::new();
        opaque(&mut huge, &[7u8; 29]);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(!plausible(3, &huge));
        let mut big_fh = Vec::new();
        opaque(&mut big_fh, &[7u8; 100]);
        assert!(!plausible(1, &big_fh));
        assert!(!plausible(1, &[]));
    }
}
