//! Translation of `stat(2)` results into wire attributes.

use proto::{Attr, FileKind, Gfid, Timespec};
use rustix::fs::{FileType, Stat};

pub fn kind_of(mode: u32) -> FileKind {
    match FileType::from_raw_mode(mode as _) {
        FileType::Directory => FileKind::Dir,
        FileType::Symlink => FileKind::Symlink,
        FileType::Fifo => FileKind::Fifo,
        FileType::Socket => FileKind::Socket,
        FileType::CharacterDevice => FileKind::CharDev,
        FileType::BlockDevice => FileKind::BlockDev,
        _ => FileKind::File,
    }
}

pub fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// Field widths of `struct stat` differ between architectures, hence the
/// casts (some of which are no-ops on x86_64).
#[allow(clippy::unnecessary_cast)]
pub fn attr_from_stat(gfid: Gfid, st: &Stat) -> Attr {
    let kind = kind_of(st.st_mode as u32);
    let nlink = st.st_nlink as u64;
    // Every non-directory has one extra hard link: its gfid index entry.
    let nlink = if kind == FileKind::Dir {
        nlink
    } else {
        nlink.saturating_sub(1)
    };
    Attr {
        gfid,
        kind,
        perm: (st.st_mode as u32) & 0o7777,
        nlink: u32::try_from(nlink).unwrap_or(u32::MAX),
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        blksize: st.st_blksize as u32,
        rdev: st.st_rdev as u64,
        atime: ts(st.st_atime as i64, st.st_atime_nsec as i64),
        mtime: ts(st.st_mtime as i64, st.st_mtime_nsec as i64),
        ctime: ts(st.st_ctime as i64, st.st_ctime_nsec as i64),
    }
}

fn ts(secs: i64, nsecs: i64) -> Timespec {
    Timespec {
        secs,
        nsecs: u32::try_from(nsecs).unwrap_or(0),
    }
}
