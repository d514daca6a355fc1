//! Attributes between the client stack (`proto::Attr`, `SetAttr`) and NFS
//! (`fattr3`, `sattr3`, `wcc_data`).

use nfs3_types::nfs3::{
    fattr3, ftype3, nfstime3, post_op_attr, sattr3, set_atime, set_mtime, specdata3, wcc_data,
    Nfs3Option,
};
use proto::{Attr, FileKind, SetAttr, TimeSet, Timespec};

pub fn ftype(kind: FileKind) -> ftype3 {
    match kind {
        FileKind::File => ftype3::NF3REG,
        FileKind::Dir => ftype3::NF3DIR,
        FileKind::Symlink => ftype3::NF3LNK,
        FileKind::Fifo => ftype3::NF3FIFO,
        FileKind::Socket => ftype3::NF3SOCK,
        FileKind::CharDev => ftype3::NF3CHR,
        FileKind::BlockDev => ftype3::NF3BLK,
    }
}

fn time(t: Timespec) -> nfstime3 {
    nfstime3 {
        // NFSv3 times are unsigned 32-bit seconds: clamp what does not fit.
        seconds: u32::try_from(t.secs.max(0)).unwrap_or(u32::MAX),
        nseconds: t.nsecs.min(999_999_999),
    }
}

fn timespec(t: nfstime3) -> Timespec {
    Timespec {
        secs: i64::from(t.seconds),
        nsecs: t.nseconds.min(999_999_999),
    }
}

/// `fsid` is the volume's, so every object of a volume (and no other)
/// shares it.
pub fn fattr(a: &Attr, fsid: u64) -> fattr3 {
    let major = libc::major(a.rdev);
    let minor = libc::minor(a.rdev);
    fattr3 {
        type_: ftype(a.kind),
        mode: a.perm & 0o7777,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        used: a.blocks.saturating_mul(512),
        rdev: specdata3 {
            specdata1: major,
            specdata2: minor,
        },
        fsid,
        fileid: a.gfid.ino(),
        atime: time(a.atime),
        mtime: time(a.mtime),
        ctime: time(a.ctime),
    }
}

pub fn post_op(a: Option<&Attr>, fsid: u64) -> post_op_attr {
    match a {
        Some(a) => Nfs3Option::Some(fattr(a, fsid)),
        None => Nfs3Option::None,
    }
}

/// After-only weak cache consistency data: the client then revalidates
/// what it cached of the object, which is always safe.
pub fn wcc_after(a: Option<&Attr>, fsid: u64) -> wcc_data {
    wcc_data {
        before: Nfs3Option::None,
        after: post_op(a, fsid),
    }
}

pub fn set_attr(s: &sattr3) -> SetAttr {
    let opt = |o: &Nfs3Option<u32>| match o {
        Nfs3Option::Some(v) => Some(*v),
        Nfs3Option::None => None,
    };
    SetAttr {
        perm: opt(&s.mode).map(|m| m & 0o7777),
        uid: opt(&s.uid),
        gid: opt(&s.gid),
        size: match s.size {
            Nfs3Option::Some(v) => Some(v),
            Nfs3Option::None => None,
        },
        atime: match s.atime {
            set_atime::DONT_CHANGE => None,
            set_atime::SET_TO_SERVER_TIME => Some(TimeSet::Now),
            set_atime::SET_TO_CLIENT_TIME(t) => Some(TimeSet::At(timespec(t))),
        },
        mtime: match s.mtime {
            set_mtime::DONT_CHANGE => None,
            set_mtime::SET_TO_SERVER_TIME => Some(TimeSet::Now),
            set_mtime::SET_TO_CLIENT_TIME(t) => Some(TimeSet::At(timespec(t))),
        },
    }
}

pub fn is_empty(s: &SetAttr) -> bool {
    *s == SetAttr::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sattr_maps_every_field() {
        let s = sattr3 {
            mode: Nfs3Option::Some(0o104755),
            uid: Nfs3Option::Some(7),
            gid: Nfs3Option::None,
            size: Nfs3Option::Some(9),
            atime: set_atime::SET_TO_SERVER_TIME,
            mtime: set_mtime::SET_TO_CLIENT_TIME(nfstime3 {
                seconds: 5,
                nseconds: 6,
            }),
        };
        let set = set_attr(&s);
        assert_eq!(set.perm, Some(0o4755));
        assert_eq!((set.uid, set.gid, set.size), (Some(7), None, Some(9)));
        assert_eq!(set.atime, Some(TimeSet::Now));
        assert_eq!(set.mtime, Some(TimeSet::At(Timespec { secs: 5, nsecs: 6 })));
        assert!(is_empty(&set_attr(&sattr3::default())));
    }
}
