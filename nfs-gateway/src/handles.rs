//! NFS file handles: `"BFH" | version | export index | volume key (8) |
//! gfid (16)`, 29 bytes; inside a sub-volume, version 2 adds the gfid of
//! the sub-volume's root (16), 45 bytes, which the tenant check of every
//! call reads (`tenancy`). Everything in them is stable (the gfid is the
//! same on every replica, the volume key is derived from the volume name),
//! so a handle stays valid across gateway restarts and on every gateway of
//! the volume; a deleted object's gfid is unknown to the bricks, which makes
//! its handle stale. The export index ties a handle to the rules of the
//! export it was reached through.

use nfs3_types::nfs3::{nfs_fh3, nfsstat3};
use nfs3_types::xdr_codec::Opaque;
use proto::Gfid;

const MAGIC: &[u8; 3] = b"BFH";
const VERSION: u8 = 1;
const VERSION_IN_SUBVOL: u8 = 2;
pub const HANDLE_LEN: usize = 29;
const HANDLE_IN_SUBVOL_LEN: usize = HANDLE_LEN + 16;

/// What a handle names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    pub export: u8,
    pub gfid: Gfid,
    /// The root of the sub-volume it was reached in.
    pub subvol: Option<Gfid>,
}

pub fn volume_key(volume: &str) -> [u8; 8] {
    let h = blake3::hash(format!("brickfs volume {volume}").as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&h.as_bytes()[..8]);
    key
}

pub fn encode(key: &[u8; 8], h: Handle) -> nfs_fh3 {
    let mut data = Vec::with_capacity(HANDLE_IN_SUBVOL_LEN);
    data.extend_from_slice(MAGIC);
    data.push(if h.subvol.is_some() {
        VERSION_IN_SUBVOL
    } else {
        VERSION
    });
    data.push(h.export);
    data.extend_from_slice(key);
    data.extend_from_slice(&h.gfid.0);
    if let Some(root) = h.subvol {
        data.extend_from_slice(&root.0);
    }
    nfs_fh3 {
        data: Opaque::owned(data),
    }
}

/// `BADHANDLE` for anything we never made; `STALE` for a handle of
/// another volume (a client pointed at the wrong gateway after a move).
pub fn decode(key: &[u8; 8], fh: &nfs_fh3) -> Result<Handle, nfsstat3> {
    decode_bytes(key, fh.data.as_ref())
}

/// [`decode`] of the handle's bytes (NLM carries handles as a `netobj`).
pub fn decode_bytes(key: &[u8; 8], d: &[u8]) -> Result<Handle, nfsstat3> {
    let shape_ok = match d.get(3) {
        Some(&VERSION) => d.len() == HANDLE_LEN,
        Some(&VERSION_IN_SUBVOL) => d.len() == HANDLE_IN_SUBVOL_LEN,
        _ => false,
    };
    if !shape_ok || &d[..3] != MAGIC {
        return Err(nfsstat3::NFS3ERR_BADHANDLE);
    }
    if d[5..13] != key[..] {
        return Err(nfsstat3::NFS3ERR_STALE);
    }
    let gfid_at = |at: usize| {
        let mut g = [0u8; 16];
        g.copy_from_slice(&d[at..at + 16]);
        Gfid(g)
    };
    Ok(Handle {
        export: d[4],
        gfid: gfid_at(13),
        subvol: (d.len() == HANDLE_IN_SUBVOL_LEN).then(|| gfid_at(29)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let key = volume_key("gv0");
        let g = Gfid::random();
        let h = Handle {
            export: 3,
            gfid: g,
            subvol: None,
        };
        let fh = encode(&key, h);
        assert_eq!(decode(&key, &fh), Ok(h));
        let inside = Handle {
            subvol: Some(Gfid::random()),
            ..h
        };
        let fh2 = encode(&key, inside);
        assert_eq!(fh2.data.as_ref().len(), HANDLE_IN_SUBVOL_LEN);
        assert_eq!(decode(&key, &fh2), Ok(inside));
        let mut cut = fh2.data.as_ref().to_vec();
        cut.pop();
        assert_eq!(decode_bytes(&key, &cut), Err(nfsstat3::NFS3ERR_BADHANDLE));
        assert_eq!(
            decode(&volume_key("other"), &fh),
            Err(nfsstat3::NFS3ERR_STALE)
        );
        let short = nfs_fh3 {
            data: Opaque::owned(vec![1, 2, 3]),
        };
        assert_eq!(decode(&key, &short), Err(nfsstat3::NFS3ERR_BADHANDLE));
        // Stable: the same inputs give the same bytes (no start time in it).
        assert_eq!(encode(&key, h), fh);
    }
}
