//! NFS file handles, 62 bytes: `"BFH" | version 3 | export index | volume
//! key (8) | gfid (16) | in a sub-volume? (1) | sub-volume root gfid (16) |
//! MAC (16)`. The MAC is a keyed blake3 of everything before it under the
//! cluster's handle key (`handle_key`), so a handle cannot be guessed,
//! altered (another gfid, another export rule, another sub-volume) or made
//! up by a client: such a handle is BADHANDLE. Everything in it is stable
//! (the gfid is the same on every replica, the volume key comes from the
//! volume's name, the handle key from the store), so a handle stays valid
//! across gateway restarts and on every gateway of the cluster; a deleted
//! object's gfid is unknown to the bricks, which makes its handle stale.
//! The sub-volume root is what the tenant check of every call reads
//! (`tenancy`); the export index ties a handle to its export's rules.

use nfs3_types::nfs3::{nfs_fh3, nfsstat3};
use nfs3_types::xdr_codec::Opaque;
use proto::Gfid;

const MAGIC: &[u8; 3] = b"BFH";
const VERSION: u8 = 3;
const MAC_LEN: usize = 16;
const SIGNED_LEN: usize = 3 + 1 + 1 + 8 + 16 + 1 + 16;
pub const HANDLE_LEN: usize = SIGNED_LEN + MAC_LEN;
pub const KEY_LEN: usize = 32;
// NFS3_FHSIZE.
const _: () = assert!(HANDLE_LEN <= 64);

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

/// Makes and checks the handles of one volume.
pub struct Codec {
    volume: [u8; 8],
    mac_key: [u8; KEY_LEN],
}

impl Codec {
    pub fn new(volume: &str, mac_key: [u8; KEY_LEN]) -> Codec {
        Codec {
            volume: volume_key(volume),
            mac_key,
        }
    }

    /// The volume key as the file system id clients see.
    pub fn fsid(&self) -> u64 {
        u64::from_be_bytes(self.volume)
    }

    fn mac(&self, signed: &[u8]) -> [u8; MAC_LEN] {
        let full = blake3::keyed_hash(&self.mac_key, signed);
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&full.as_bytes()[..MAC_LEN]);
        mac
    }

    pub fn encode(&self, h: Handle) -> nfs_fh3 {
        let mut data = Vec::with_capacity(HANDLE_LEN);
        data.extend_from_slice(MAGIC);
        data.push(VERSION);
        data.push(h.export);
        data.extend_from_slice(&self.volume);
        data.extend_from_slice(&h.gfid.0);
        data.push(u8::from(h.subvol.is_some()));
        data.extend_from_slice(&h.subvol.unwrap_or(Gfid([0; 16])).0);
        let mac = self.mac(&data);
        data.extend_from_slice(&mac);
        nfs_fh3 {
            data: Opaque::owned(data),
        }
    }

    /// `BADHANDLE` for anything we never made (or made under another
    /// handle key); `STALE` for a handle of another volume (a client
    /// pointed at the wrong gateway after a move).
    pub fn decode(&self, fh: &nfs_fh3) -> Result<Handle, nfsstat3> {
        self.decode_bytes(fh.data.as_ref())
    }

    /// [`decode`](Self::decode) of the handle's bytes (NLM carries handles
    /// as a `netobj`).
    pub fn decode_bytes(&self, d: &[u8]) -> Result<Handle, nfsstat3> {
        if d.len() != HANDLE_LEN || &d[..3] != MAGIC || d[3] != VERSION {
            return Err(nfsstat3::NFS3ERR_BADHANDLE);
        }
        let (signed, mac) = d.split_at(SIGNED_LEN);
        if !constant_time_eq(&self.mac(signed), mac) {
            return Err(nfsstat3::NFS3ERR_BADHANDLE);
        }
        if d[5..13] != self.volume[..] {
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        let gfid_at = |at: usize| {
            let mut g = [0u8; 16];
            g.copy_from_slice(&d[at..at + 16]);
            Gfid(g)
        };
        let subvol = match d[29] {
            0 => None,
            1 => Some(gfid_at(30)),
            _ => return Err(nfsstat3::NFS3ERR_BADHANDLE),
        };
        Ok(Handle {
            export: d[4],
            gfid: gfid_at(13),
            subvol,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The handle key: the same for every gateway of a cluster and across
/// restarts, or handles would go bad. From the store (`cluster/nfs-handle-key`,
/// made by the first gateway), or without a store from `KEY_FILE` in the
/// gateway's state directory (made on first start, mode 0600).
pub mod handle_key {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    use rand::RngCore;

    use super::KEY_LEN;

    pub const STORE_KEY: &str = "cluster/nfs-handle-key";
    pub const KEY_FILE: &str = "handle.key";

    fn parse(hex: &str) -> Option<[u8; KEY_LEN]> {
        let hex = hex.trim();
        if hex.len() != KEY_LEN * 2 {
            return None;
        }
        let mut k = [0u8; KEY_LEN];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(k)
    }

    fn fresh() -> ([u8; KEY_LEN], String) {
        let mut k = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut k);
        let hex = k.iter().map(|b| format!("{b:02x}")).collect();
        (k, hex)
    }

    pub async fn from_store(store: &dyn store::Store) -> Result<[u8; KEY_LEN], String> {
        for _ in 0..3 {
            if let Some(e) = store.get(STORE_KEY).await.map_err(|e| e.to_string())? {
                let text = String::from_utf8_lossy(&e.value);
                return parse(&text).ok_or_else(|| {
                    format!("{STORE_KEY} in the store is not {KEY_LEN} bytes of hex")
                });
            }
            let (key, hex) = fresh();
            match store.put(STORE_KEY, hex.as_bytes(), None).await {
                Ok(_) => {
                    tracing::info!("made the cluster's NFS handle key ({STORE_KEY})");
                    return Ok(key);
                }
                // Another gateway made it first: use theirs.
                Err(store::StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!("{STORE_KEY} keeps changing in the store"))
    }

    pub fn from_dir(dir: &Path) -> Result<[u8; KEY_LEN], String> {
        let path = dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return parse(&text)
                    .ok_or_else(|| format!("{} is not {KEY_LEN} bytes of hex", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        }
        let (key, hex) = fresh();
        let tmp = dir.join(format!("{KEY_FILE}.tmp"));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(hex.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        written.map_err(|e| format!("writing {}: {e}", path.display()))?;
        tracing::info!(file = %path.display(), "made the NFS handle key");
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let codec = Codec::new("gv0", [7; KEY_LEN]);
        let g = Gfid::random();
        let h = Handle {
            export: 3,
            gfid: g,
            subvol: None,
        };
        let fh = codec.encode(h);
        assert_eq!(fh.data.as_ref().len(), HANDLE_LEN);
        assert_eq!(codec.decode(&fh), Ok(h));
        let inside = Handle {
            subvol: Some(Gfid::random()),
            ..h
        };
        assert_eq!(codec.decode(&codec.encode(inside)), Ok(inside));
        // Stable: the same inputs give the same bytes (no start time in it).
        assert_eq!(codec.encode(h), fh);
        // Another volume of the cluster: stale. Another cluster's key, any
        // changed byte, a cut or an old-layout handle: bad.
        let other = Codec::new("other", [7; KEY_LEN]).encode(h);
        assert_eq!(codec.decode(&other), Err(nfsstat3::NFS3ERR_STALE));
        let foreign = Codec::new("gv0", [8; KEY_LEN]).encode(h);
        assert_eq!(codec.decode(&foreign), Err(nfsstat3::NFS3ERR_BADHANDLE));
        let bytes = fh.data.as_ref().to_vec();
        for i in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[i] ^= 0x01;
            assert_eq!(
                codec.decode_bytes(&changed),
                Err(nfsstat3::NFS3ERR_BADHANDLE),
                "byte {i} changed"
            );
        }
        assert_eq!(
            codec.decode_bytes(&bytes[..bytes.len() - 1]),
            Err(nfsstat3::NFS3ERR_BADHANDLE)
        );
        assert_eq!(
            codec.decode_bytes(&[b'B', b'F', b'H', 1, 0]),
            Err(nfsstat3::NFS3ERR_BADHANDLE)
        );
    }

    #[test]
    fn the_key_file_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = handle_key::from_dir(dir.path()).expect("made");
        let b = handle_key::from_dir(dir.path()).expect("read");
        assert_eq!(a, b);
        std::fs::write(dir.path().join(handle_key::KEY_FILE), "short").expect("spoil");
        assert!(handle_key::from_dir(dir.path()).is_err());
    }
}
