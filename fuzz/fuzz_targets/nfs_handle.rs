//! NFS file handles (nfs-gateway/src/handles.rs): every NFS, MOUNT and NLM
//! call brings one. First byte even: the bytes as a handle; whatever
//! decodes must be exactly what we would have made (a MAC over all of it),
//! and no other volume's or key's codec takes it. Odd: a handle made from
//! the bytes (export, gfid, sub-volume) decodes back to itself.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nfs_gateway::handles::{Codec, Handle};
use proto::Gfid;

fn codecs() -> &'static (Codec, Codec, Codec) {
    static CODECS: OnceLock<(Codec, Codec, Codec)> = OnceLock::new();
    CODECS.get_or_init(|| {
        (
            Codec::new("gv0", [7; 32]),
            Codec::new("gv1", [7; 32]),
            Codec::new("gv0", [8; 32]),
        )
    })
}

fn gfid(b: &[u8]) -> Gfid {
    let mut g = [0u8; 16];
    g.copy_from_slice(b);
    Gfid(g)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (ours, other_volume, other_key) = codecs();
    if which & 1 == 0 {
        if let Ok(h) = ours.decode_bytes(rest) {
            assert_eq!(ours.encode(h).data.as_ref(), rest);
            assert!(other_volume.decode_bytes(rest).is_err());
            assert!(other_key.decode_bytes(rest).is_err());
        }
    } else if rest.len() >= 34 {
        let h = Handle {
            export: rest[0],
            gfid: gfid(&rest[1..17]),
            subvol: (rest[17] & 1 == 1).then(|| gfid(&rest[18..34])),
        };
        let fh = ours.encode(h);
        assert_eq!(ours.decode(&fh), Ok(h));
        assert!(other_volume.decode(&fh).is_err());
        assert!(other_key.decode(&fh).is_err());
    }
});
