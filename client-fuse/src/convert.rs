//! Pure conversions between the client stack's types (`proto`) and fuser's:
//! attributes, times, file kinds from mode bits, lock types and ranges,
//! errno. No I/O here, so every rule is unit-tested.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo, TimeOrNow};
use proto::{Attr, FileKind, FsError, RecordLockType, TimeSet, Timespec};

/// The kernel's `OFFSET_MAX`: the end of a lock that runs to EOF.
pub(crate) const KERNEL_OFFSET_MAX: u64 = i64::MAX as u64;

/// The errno of an error, exactly as the stack reports it.
pub(crate) fn errno(err: &FsError) -> Errno {
    Errno::from_i32(err.errno())
}

pub(crate) fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::BlockDev => FileType::BlockDevice,
    }
}

pub(crate) fn system_time(t: Timespec) -> SystemTime {
    let secs = Duration::from_secs(t.secs.unsigned_abs());
    let base = if t.secs >= 0 {
        UNIX_EPOCH.checked_add(secs)
    } else {
        UNIX_EPOCH.checked_sub(secs)
    };
    // A nonsense time from a brick must not panic the mount.
    base.and_then(|b| b.checked_add(Duration::from_nanos(u64::from(t.nsecs))))
        .unwrap_or(UNIX_EPOCH)
}

pub(crate) fn timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec {
            secs: d.as_secs() as i64,
            nsecs: d.subsec_nanos(),
        },
        Err(before) => {
            // Before the epoch: secs rounds down, nsecs stays positive.
            let d = before.duration();
            let secs = -(d.as_secs() as i64);
            match d.subsec_nanos() {
                0 => Timespec { secs, nsecs: 0 },
                n => Timespec {
                    secs: secs - 1,
                    nsecs: 1_000_000_000 - n,
                },
            }
        }
    }
}

pub(crate) fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(timespec(t)),
    }
}

pub(crate) fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.gfid.ino()),
        size: a.size,
        blocks: a.blocks,
        atime: system_time(a.atime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.ctime),
        kind: file_type(a.kind),
        perm: (a.perm & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        // FUSE carries the kernel's 32-bit dev_t encoding, whose bits equal
        // the low 32 bits of glibc's 64-bit one for every real device.
        rdev: a.rdev as u32,
        blksize: if a.blksize == 0 { 4096 } else { a.blksize },
        flags: 0,
    }
}

/// A placeholder attribute for "." and ".." in readdirplus: the kernel
/// skips both names before looking at the attributes, so no round trip is
/// spent on them.
pub(crate) fn dot_attr(ino: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::Directory,
        perm: 0o755,
        nlink: 2,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// The kind of object mknod(2) asks for. As in the kernel's `may_mknod`,
/// a type of 0 means a regular file, a directory is EPERM and anything
/// else that is not a node type is EINVAL.
pub(crate) fn kind_from_mode(mode: u32) -> Result<FileKind, FsError> {
    match mode & libc::S_IFMT {
        0 | libc::S_IFREG => Ok(FileKind::File),
        libc::S_IFIFO => Ok(FileKind::Fifo),
        libc::S_IFSOCK => Ok(FileKind::Socket),
        libc::S_IFCHR => Ok(FileKind::CharDev),
        libc::S_IFBLK => Ok(FileKind::BlockDev),
        libc::S_IFDIR => Err(FsError::Perm),
        other => Err(FsError::Invalid(format!("mknod of file type {other:#o}"))),
    }
}

/// Permission bits of a new object. The kernel already masks the mode
/// unless the fs asked for FUSE_DONT_MASK; masking again is harmless and
/// keeps this correct either way.
pub(crate) fn new_perm(mode: u32, umask: u32) -> u32 {
    mode & !umask & 0o7777
}

pub(crate) fn lock_type(typ: i32) -> Result<RecordLockType, FsError> {
    match typ {
        libc::F_RDLCK => Ok(RecordLockType::Read),
        libc::F_WRLCK => Ok(RecordLockType::Write),
        libc::F_UNLCK => Ok(RecordLockType::Unlock),
        other => Err(FsError::Invalid(format!("lock type {other}"))),
    }
}

pub(crate) fn lock_type_to_kernel(typ: RecordLockType) -> i32 {
    match typ {
        RecordLockType::Read => libc::F_RDLCK,
        RecordLockType::Write => libc::F_WRLCK,
        RecordLockType::Unlock => libc::F_UNLCK,
    }
}

/// Lock ends are inclusive on both sides; "to EOF" is `OFFSET_MAX` in the
/// kernel and `u64::MAX` in `RecordLock`.
pub(crate) fn lock_end_from_kernel(end: u64) -> u64 {
    if end >= KERNEL_OFFSET_MAX {
        u64::MAX
    } else {
        end
    }
}

/// The kernel rejects a lock reply beyond `OFFSET_MAX` with EIO.
pub(crate) fn lock_end_to_kernel(end: u64) -> u64 {
    end.min(KERNEL_OFFSET_MAX)
}

/// How an xattr value (or name list) of `len` bytes answers a request
/// whose buffer holds `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum XattrFit {
    /// The caller only asked for the size.
    Size(u32),
    Data,
    TooSmall,
}

pub(crate) fn xattr_fit(len: usize, size: u32) -> XattrFit {
    if size == 0 {
        match u32::try_from(len) {
            Ok(len) => XattrFit::Size(len),
            Err(_) => XattrFit::TooSmall,
        }
    } else if len <= size as usize {
        XattrFit::Data
    } else {
        XattrFit::TooSmall
    }
}

/// listxattr(2) format: every name followed by a NUL.
pub(crate) fn xattr_list(names: &[proto::Name]) -> Vec<u8> {
    let mut out = Vec::with_capacity(names.iter().map(|n| n.0.len() + 1).sum());
    for n in names {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
    }
    out
}

/// The mode an unprivileged write leaves behind: setuid dropped, and setgid
/// when the group may execute (as the kernel does for local files); `None`
/// when nothing changes.
pub fn killed_privs(perm: u32) -> Option<u32> {
    let mut out = perm & !libc::S_ISUID;
    if perm & libc::S_IXGRP != 0 {
        out &= !libc::S_ISGID;
    }
    (out != perm).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{Gfid, Name};

    fn attr(kind: FileKind) -> Attr {
        Attr {
            gfid: Gfid::random(),
            kind,
            perm: 0o4755,
            nlink: 3,
            uid: 1000,
            gid: 100,
            size: 12345,
            blocks: 24,
            blksize: 4096,
            rdev: (8 << 8) | 1,
            atime: Timespec { secs: 10, nsecs: 5 },
            mtime: Timespec {
                secs: 1_700_000_000,
                nsecs: 999_999_999,
            },
            ctime: Timespec { secs: -2, nsecs: 0 },
        }
    }

    #[test]
    fn attr_conversion_keeps_every_field() {
        let a = attr(FileKind::BlockDev);
        let f = file_attr(&a);
        assert_eq!(f.ino, INodeNo(a.gfid.ino()));
        assert_eq!(f.kind, FileType::BlockDevice);
        assert_eq!(f.perm, 0o4755);
        assert_eq!((f.nlink, f.uid, f.gid), (3, 1000, 100));
        assert_eq!((f.size, f.blocks, f.blksize), (12345, 24, 4096));
        assert_eq!(f.rdev, (8 << 8) | 1);
        assert_eq!(f.atime, UNIX_EPOCH + Duration::new(10, 5));
        assert_eq!(
            f.mtime,
            UNIX_EPOCH + Duration::new(1_700_000_000, 999_999_999)
        );
        assert_eq!(f.ctime, UNIX_EPOCH - Duration::from_secs(2));
    }

    #[test]
    fn root_attr_is_inode_one() {
        let mut a = attr(FileKind::Dir);
        a.gfid = Gfid::ROOT;
        assert_eq!(file_attr(&a).ino, INodeNo::ROOT);
        assert_eq!(file_attr(&a).kind, FileType::Directory);
    }

    #[test]
    fn every_kind_maps() {
        for (k, t) in [
            (FileKind::File, FileType::RegularFile),
            (FileKind::Dir, FileType::Directory),
            (FileKind::Symlink, FileType::Symlink),
            (FileKind::Fifo, FileType::NamedPipe),
            (FileKind::Socket, FileType::Socket),
            (FileKind::CharDev, FileType::CharDevice),
            (FileKind::BlockDev, FileType::BlockDevice),
        ] {
            assert_eq!(file_type(k), t);
        }
    }

    #[test]
    fn times_round_trip_including_before_the_epoch() {
        for ts in [
            Timespec { secs: 0, nsecs: 0 },
            Timespec {
                secs: 1_700_000_000,
                nsecs: 123_456_789,
            },
            Timespec { secs: -1, nsecs: 1 },
            Timespec {
                secs: -100,
                nsecs: 999_999_999,
            },
        ] {
            assert_eq!(timespec(system_time(ts)), ts, "{ts:?}");
        }
        assert_eq!(time_set(TimeOrNow::Now), TimeSet::Now);
        // Absurd times from a brick do not panic.
        let _ = system_time(Timespec {
            secs: i64::MAX,
            nsecs: 999_999_999,
        });
        let _ = system_time(Timespec {
            secs: i64::MIN,
            nsecs: 0,
        });
    }

    #[test]
    fn mknod_kind_from_mode_bits() {
        assert_eq!(kind_from_mode(libc::S_IFIFO | 0o644), Ok(FileKind::Fifo));
        assert_eq!(kind_from_mode(libc::S_IFSOCK | 0o644), Ok(FileKind::Socket));
        assert_eq!(kind_from_mode(libc::S_IFCHR | 0o600), Ok(FileKind::CharDev));
        assert_eq!(
            kind_from_mode(libc::S_IFBLK | 0o600),
            Ok(FileKind::BlockDev)
        );
        assert_eq!(kind_from_mode(libc::S_IFREG | 0o600), Ok(FileKind::File));
        assert_eq!(kind_from_mode(0o600), Ok(FileKind::File));
        assert_eq!(
            kind_from_mode(libc::S_IFDIR | 0o755).map_err(|e| e.errno()),
            Err(libc::EPERM)
        );
        assert_eq!(
            kind_from_mode(libc::S_IFLNK | 0o777).map_err(|e| e.errno()),
            Err(libc::EINVAL)
        );
    }

    #[test]
    fn umask_and_type_bits_are_stripped() {
        assert_eq!(new_perm(libc::S_IFREG | 0o666, 0o022), 0o644);
        assert_eq!(new_perm(0o4777, 0o077), 0o4700);
        assert_eq!(new_perm(libc::S_IFDIR | 0o1777, 0), 0o1777);
    }

    #[test]
    fn lock_types_and_ranges_map_both_ways() {
        for t in [
            RecordLockType::Read,
            RecordLockType::Write,
            RecordLockType::Unlock,
        ] {
            assert_eq!(lock_type(lock_type_to_kernel(t)), Ok(t));
        }
        assert_eq!(lock_type(libc::F_RDLCK), Ok(RecordLockType::Read));
        assert_eq!(lock_type(libc::F_WRLCK), Ok(RecordLockType::Write));
        assert_eq!(lock_type(libc::F_UNLCK), Ok(RecordLockType::Unlock));
        assert_eq!(lock_type(42).map_err(|e| e.errno()), Err(libc::EINVAL));

        assert_eq!(lock_end_from_kernel(KERNEL_OFFSET_MAX), u64::MAX);
        assert_eq!(lock_end_from_kernel(99), 99);
        assert_eq!(lock_end_to_kernel(u64::MAX), KERNEL_OFFSET_MAX);
        assert_eq!(lock_end_to_kernel(99), 99);
    }

    #[test]
    fn xattr_buffers() {
        assert_eq!(xattr_fit(10, 0), XattrFit::Size(10));
        assert_eq!(xattr_fit(0, 0), XattrFit::Size(0));
        assert_eq!(xattr_fit(10, 10), XattrFit::Data);
        assert_eq!(xattr_fit(11, 10), XattrFit::TooSmall);
        assert_eq!(
            xattr_list(&[Name::from("user.a"), Name::from("user.bc")]),
            b"user.a\0user.bc\0".to_vec()
        );
        assert!(xattr_list(&[]).is_empty());
    }

    #[test]
    fn errno_is_passed_through() {
        assert_eq!(errno(&FsError::NoSpace).code(), libc::ENOSPC);
        assert_eq!(
            errno(&FsError::ReadOnly {
                need: 2,
                down: String::new()
            })
            .code(),
            libc::EROFS
        );
        assert_eq!(
            errno(&FsError::Os {
                errno: libc::EDQUOT,
                msg: String::new()
            })
            .code(),
            libc::EDQUOT
        );
    }
}
