//! The one trait every layer of the client stack implements. A layer only
//! knows the layer below it through this trait, so the volume graph can
//! switch layers on and off.

use async_trait::async_trait;
use proto::{
    Attr, CopyRange, DirPage, FileKind, FsError, FsResult, Gfid, Name, RecordLock, RenameReq,
    SetAttr, StatFs,
};

/// A new object as a front-end asks for it; the stack picks its gfid.
#[derive(Clone, Debug)]
pub struct NewEntry {
    pub name: Name,
    pub kind: FileKind,
    /// Permission bits with the caller's umask already applied.
    pub perm: u32,
    pub rdev: u64,
    pub uid: u32,
    pub gid: u32,
    /// Target of a symlink.
    pub target: Option<Vec<u8>>,
}

#[async_trait]
pub trait Layer: Send + Sync + 'static {
    /// A new deadline for one operation on one brick, applied from the next
    /// operation on (the volume's `network.op-timeout` changed). Layers that
    /// talk to no brick pass it down or ignore it.
    fn set_op_timeout(&self, timeout: std::time::Duration) {
        let _ = timeout;
    }

    /// The graph this layer belongs to is being replaced: give back locks,
    /// stop background work and close connections. Called once no
    /// operation runs on the layer any more.
    async fn close(&self) {}

    /// The graph this layer belongs to is about to be replaced: creates
    /// held back for their first data (`replicate/held.rs`) go to the bricks
    /// now, and no more are held, so that the new graph finds every file
    /// this one answered for. Layers holding none pass it down.
    async fn send_held(&self) {}

    async fn lookup(&self, parent: Gfid, name: &Name) -> FsResult<Attr>;
    async fn getattr(&self, gfid: Gfid) -> FsResult<Attr>;
    /// As `getattr`, for an open (close-to-open): what every other client
    /// closed before it, never an answer this client cached or a replica
    /// another client's writes missed (asked of enough bricks to meet every
    /// write quorum: `replicate/reads.rs: read_quorum`, `validate_now`).
    async fn getattr_to_open(&self, gfid: Gfid) -> FsResult<Attr>;
    /// Returns the exact attributes after the change.
    async fn setattr(&self, gfid: Gfid, set: SetAttr) -> FsResult<Attr>;
    async fn create(&self, parent: Gfid, new: NewEntry) -> FsResult<Attr>;
    /// `keep_open`: the caller has files open; a file that loses its last
    /// name stays readable until `purge`, and its gfid is returned.
    async fn unlink(&self, parent: Gfid, name: &Name, keep_open: bool) -> FsResult<Option<Gfid>>;
    /// The last close of a file kept by `unlink`.
    async fn purge(&self, gfid: Gfid) -> FsResult<()>;
    async fn rmdir(&self, parent: Gfid, name: &Name) -> FsResult<()>;
    async fn rename(&self, req: RenameReq) -> FsResult<()>;
    async fn link(&self, gfid: Gfid, parent: Gfid, name: &Name) -> FsResult<Attr>;
    async fn readlink(&self, gfid: Gfid) -> FsResult<Vec<u8>>;

    async fn read(&self, gfid: Gfid, offset: u64, size: u32) -> FsResult<Vec<u8>>;
    /// Returns the exact attributes after the write.
    async fn write(&self, gfid: Gfid, offset: u64, data: Vec<u8>) -> FsResult<Attr>;
    /// Writes at several offsets of one file, in order (they may overlap):
    /// what a write-behind queue sends as one call. Returns the attributes
    /// after the last. Layers that can send them in one round trip do.
    async fn write_extents(&self, gfid: Gfid, extents: Vec<(u64, Vec<u8>)>) -> FsResult<Attr> {
        let mut last = None;
        for (offset, data) in extents {
            last = Some(self.write(gfid, offset, data).await?);
        }
        last.ok_or_else(|| proto::FsError::Invalid("a vectored write of nothing".into()))
    }
    /// Writes `data` at the end of the file as the bricks have it (an
    /// O_APPEND write: whatever size this client last saw, no other
    /// client's append is overwritten). The attributes after it: the data
    /// is at `size - data.len()`.
    async fn append(&self, gfid: Gfid, data: Vec<u8>) -> FsResult<Attr>;
    /// Called when a file handle that may have written is flushed (close);
    /// lets buffering layers drain.
    async fn flush(&self, gfid: Gfid) -> FsResult<()>;
    /// The last open handle of `gfid` in this client was closed: buffering
    /// layers may forget the file (and an error every close reported).
    async fn released(&self, gfid: Gfid) {
        let _ = gfid;
    }
    async fn fsync(&self, gfid: Gfid, datasync: bool) -> FsResult<()>;
    async fn fallocate(&self, gfid: Gfid, mode: i32, offset: u64, len: u64) -> FsResult<Attr>;

    /// Copies the range `copy` names on the bricks themselves
    /// (copy_file_range); fewer bytes past the source's end. The bytes copied and `dst`'s attributes after.
    /// `NotSupported` where it cannot be done there (the files on
    /// different replica sets, a stale source copy): the caller copies.
    async fn copy_range(&self, copy: CopyRange) -> FsResult<(u64, Attr)> {
        let _ = copy;
        Err(FsError::NotSupported("copy_file_range".into()))
    }

    /// Entries in name order after `after`, at most `max`.
    async fn readdir(&self, gfid: Gfid, after: Option<Name>, max: u32) -> FsResult<DirPage>;
    /// The file system `at` is on; for an object in a sub-volume, with the
    /// sub-volume's limits and usage (`StatFs::quota`).
    async fn statfs(&self, at: Gfid) -> FsResult<StatFs>;
    /// Gives the directory `gfid` sub-volume limits (`None`: takes them
    /// away). The admin's way to set `proto::QUOTA_XATTR`, which front-ends
    /// never pass through.
    async fn set_quota(&self, gfid: Gfid, limit: Option<proto::QuotaLimit>) -> FsResult<()> {
        let _ = (gfid, limit);
        Err(proto::FsError::NotSupported(
            "sub-volume limits on this layer".into(),
        ))
    }

    /// Every sub-volume's limits and usage (summed over replica sets).
    async fn quota_usage(&self) -> FsResult<Vec<proto::QuotaUse>> {
        Err(proto::FsError::NotSupported(
            "sub-volume usage on this layer".into(),
        ))
    }

    async fn getxattr(&self, gfid: Gfid, name: &Name) -> FsResult<Vec<u8>>;
    async fn listxattr(&self, gfid: Gfid) -> FsResult<Vec<Name>>;
    async fn setxattr(&self, gfid: Gfid, name: &Name, value: Vec<u8>, flags: i32) -> FsResult<()>;
    async fn removexattr(&self, gfid: Gfid, name: &Name) -> FsResult<()>;

    /// F_GETLK: the first conflicting lock, if any.
    async fn getlk(&self, gfid: Gfid, lock: RecordLock) -> FsResult<Option<RecordLock>>;
    /// F_SETLK / F_SETLKW / flock; `wait` blocks until granted.
    async fn setlk(&self, gfid: Gfid, lock: RecordLock, wait: bool) -> FsResult<()>;
}
