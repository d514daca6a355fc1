//! The stats layer: on top of a client stack, counts and times every call
//! the front-end (FUSE, NFS, heal) makes of it, by operation, into a
//! [`telemetry::OpTable`] that the daemon shows on `/metrics`. It passes
//! every call through unchanged; the cost is a clock read and a few atomic
//! adds per call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use proto::{
    Attr, CopyRange, DirPage, FsResult, Gfid, Name, QuotaLimit, QuotaUse, RecordLock, RenameReq,
    SetAttr, StatFs,
};
use telemetry::OpTable;

use crate::layer::{Layer, NewEntry};

/// The operations of the [`Layer`] trait.
pub const OPS: &[&str] = &[
    "lookup",
    "getattr",
    "setattr",
    "create",
    "unlink",
    "purge",
    "rmdir",
    "rename",
    "link",
    "readlink",
    "read",
    "write",
    "append",
    "flush",
    "fsync",
    "fallocate",
    "copy_range",
    "readdir",
    "statfs",
    "set_quota",
    "quota_usage",
    "getxattr",
    "listxattr",
    "setxattr",
    "removexattr",
    "getlk",
    "setlk",
];

/// A table for the calls into a client stack; `name` is the metric's
/// (`brickfs_mount_op`, `brickfs_nfs_op`, ...).
pub fn table(name: &'static str, help: &'static str) -> Arc<OpTable> {
    Arc::new(OpTable::new(name, help, OPS))
}

pub struct Stats {
    below: Arc<dyn Layer>,
    table: Arc<OpTable>,
}

impl Stats {
    pub fn new(below: Arc<dyn Layer>, table: Arc<OpTable>) -> Arc<Stats> {
        Arc::new(Stats { below, table })
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = FsResult<T>>,
    ) -> FsResult<T> {
        let started = Instant::now();
        let res = call.await;
        self.table.record(op, started.elapsed(), res.is_err());
        res
    }
}

#[async_trait]
impl Layer for Stats {
    fn set_op_timeout(&self, timeout: Duration) {
        self.below.set_op_timeout(timeout);
    }

    async fn send_held(&self) {
        self.below.send_held().await;
    }

    async fn close(&self) {
        self.below.close().await;
    }

    async fn lookup(&self, parent: Gfid, name: &Name) -> FsResult<Attr> {
        self.timed("lookup", self.below.lookup(parent, name)).await
    }

    async fn getattr(&self, gfid: Gfid) -> FsResult<Attr> {
        self.timed("getattr", self.below.getattr(gfid)).await
    }

    async fn getattr_to_open(&self, gfid: Gfid) -> FsResult<Attr> {
        self.timed("getattr_to_open", self.below.getattr_to_open(gfid))
            .await
    }

    async fn setattr(&self, gfid: Gfid, set: SetAttr) -> FsResult<Attr> {
        self.timed("setattr", self.below.setattr(gfid, set)).await
    }

    async fn create(&self, parent: Gfid, new: NewEntry) -> FsResult<Attr> {
        self.timed("create", self.below.create(parent, new)).await
    }

    async fn unlink(&self, parent: Gfid, name: &Name, keep_open: bool) -> FsResult<Option<Gfid>> {
        self.timed("unlink", self.below.unlink(parent, name, keep_open))
            .await
    }

    async fn purge(&self, gfid: Gfid) -> FsResult<()> {
        self.timed("purge", self.below.purge(gfid)).await
    }

    async fn rmdir(&self, parent: Gfid, name: &Name) -> FsResult<()> {
        self.timed("rmdir", self.below.rmdir(parent, name)).await
    }

    async fn rename(&self, req: RenameReq) -> FsResult<()> {
        self.timed("rename", self.below.rename(req)).await
    }

    async fn link(&self, gfid: Gfid, parent: Gfid, name: &Name) -> FsResult<Attr> {
        self.timed("link", self.below.link(gfid, parent, name))
            .await
    }

    async fn readlink(&self, gfid: Gfid) -> FsResult<Vec<u8>> {
        self.timed("readlink", self.below.readlink(gfid)).await
    }

    async fn read(&self, gfid: Gfid, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        self.timed("read", self.below.read(gfid, offset, size))
            .await
    }

    async fn write(&self, gfid: Gfid, offset: u64, data: Vec<u8>) -> FsResult<Attr> {
        self.timed("write", self.below.write(gfid, offset, data))
            .await
    }

    async fn append(&self, gfid: Gfid, data: Vec<u8>) -> FsResult<Attr> {
        self.timed("append", self.below.append(gfid, data)).await
    }

    async fn flush(&self, gfid: Gfid) -> FsResult<()> {
        self.timed("flush", self.below.flush(gfid)).await
    }

    async fn released(&self, gfid: Gfid) {
        self.below.released(gfid).await
    }

    async fn fsync(&self, gfid: Gfid, datasync: bool) -> FsResult<()> {
        self.timed("fsync", self.below.fsync(gfid, datasync)).await
    }

    async fn fallocate(&self, gfid: Gfid, mode: i32, offset: u64, len: u64) -> FsResult<Attr> {
        self.timed("fallocate", self.below.fallocate(gfid, mode, offset, len))
            .await
    }

    async fn copy_range(&self, copy: CopyRange) -> FsResult<(u64, Attr)> {
        self.timed("copy_range", self.below.copy_range(copy)).await
    }

    async fn readdir(&self, gfid: Gfid, after: Option<Name>, max: u32) -> FsResult<DirPage> {
        self.timed("readdir", self.below.readdir(gfid, after, max))
            .await
    }

    async fn statfs(&self, at: Gfid) -> FsResult<StatFs> {
        self.timed("statfs", self.below.statfs(at)).await
    }

    async fn set_quota(&self, gfid: Gfid, limit: Option<QuotaLimit>) -> FsResult<()> {
        self.timed("set_quota", self.below.set_quota(gfid, limit))
            .await
    }

    async fn quota_usage(&self) -> FsResult<Vec<QuotaUse>> {
        self.timed("quota_usage", self.below.quota_usage()).await
    }

    async fn getxattr(&self, gfid: Gfid, name: &Name) -> FsResult<Vec<u8>> {
        self.timed("getxattr", self.below.getxattr(gfid, name))
            .await
    }

    async fn listxattr(&self, gfid: Gfid) -> FsResult<Vec<Name>> {
        self.timed("listxattr", self.below.listxattr(gfid)).await
    }

    async fn setxattr(&self, gfid: Gfid, name: &Name, value: Vec<u8>, flags: i32) -> FsResult<()> {
        self.timed("setxattr", self.below.setxattr(gfid, name, value, flags))
            .await
    }

    async fn removexattr(&self, gfid: Gfid, name: &Name) -> FsResult<()> {
        self.timed("removexattr", self.below.removexattr(gfid, name))
            .await
    }

    async fn getlk(&self, gfid: Gfid, lock: RecordLock) -> FsResult<Option<RecordLock>> {
        self.timed("getlk", self.below.getlk(gfid, lock)).await
    }

    async fn setlk(&self, gfid: Gfid, lock: RecordLock, wait: bool) -> FsResult<()> {
        self.timed("setlk", self.below.setlk(gfid, lock, wait))
            .await
    }
}
