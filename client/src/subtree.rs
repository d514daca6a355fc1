//! A directory of a volume shown as the whole volume (a FUSE mount of
//! `VOLUME/SUBDIR`, such as one sub-volume): the directory's gfid stands in
//! for the root on the way down and the root's on the way up, so the
//! front-end sees an ordinary root (inode 1) and nothing above it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use proto::{
    Attr, CopyRange, DirPage, FsResult, Gfid, Name, QuotaLimit, RecordLock, RenameReq, SetAttr,
    StatFs,
};

use crate::layer::{Layer, NewEntry};

pub struct Subtree {
    below: Arc<dyn Layer>,
    top: Gfid,
}

impl Subtree {
    pub fn new(below: Arc<dyn Layer>, top: Gfid) -> Arc<Subtree> {
        Arc::new(Subtree { below, top })
    }

    /// Resolves `path` (`a/b/c`, relative to the volume root) with lookups.
    pub async fn resolve(layer: &Arc<dyn Layer>, path: &str) -> FsResult<Attr> {
        // Lookups only, never a getattr of the volume root: a tenant's
        // host may look its sub-volume up by name there and see nothing
        // else of it (the bricks' scope check).
        let mut at: Option<Attr> = None;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let parent = at.as_ref().map_or(Gfid::ROOT, |a| a.gfid);
            at = Some(layer.lookup(parent, &Name::from(part)).await?);
        }
        match at {
            Some(a) => Ok(a),
            None => layer.getattr(Gfid::ROOT).await,
        }
    }

    fn down(&self, g: Gfid) -> Gfid {
        if g.is_root() {
            self.top
        } else {
            g
        }
    }

    fn up(&self, mut a: Attr) -> Attr {
        if a.gfid == self.top {
            a.gfid = Gfid::ROOT;
        }
        a
    }
}

#[async_trait]
impl Layer for Subtree {
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
        Ok(self.up(self.below.lookup(self.down(parent), name).await?))
    }
    async fn getattr(&self, gfid: Gfid) -> FsResult<Attr> {
        Ok(self.up(self.below.getattr(self.down(gfid)).await?))
    }
    async fn getattr_to_open(&self, gfid: Gfid) -> FsResult<Attr> {
        Ok(self.up(self.below.getattr_to_open(self.down(gfid)).await?))
    }
    async fn setattr(&self, gfid: Gfid, set: SetAttr) -> FsResult<Attr> {
        Ok(self.up(self.below.setattr(self.down(gfid), set).await?))
    }
    async fn create(&self, parent: Gfid, new: NewEntry) -> FsResult<Attr> {
        Ok(self.up(self.below.create(self.down(parent), new).await?))
    }
    async fn unlink(&self, parent: Gfid, name: &Name, keep_open: bool) -> FsResult<Option<Gfid>> {
        self.below.unlink(self.down(parent), name, keep_open).await
    }
    async fn purge(&self, gfid: Gfid) -> FsResult<()> {
        self.below.purge(self.down(gfid)).await
    }
    async fn rmdir(&self, parent: Gfid, name: &Name) -> FsResult<()> {
        self.below.rmdir(self.down(parent), name).await
    }
    async fn rename(&self, req: RenameReq) -> FsResult<()> {
        let req = RenameReq {
            parent: self.down(req.parent),
            new_parent: self.down(req.new_parent),
            ..req
        };
        self.below.rename(req).await
    }
    async fn link(&self, gfid: Gfid, parent: Gfid, name: &Name) -> FsResult<Attr> {
        let a = self
            .below
            .link(self.down(gfid), self.down(parent), name)
            .await?;
        Ok(self.up(a))
    }
    async fn readlink(&self, gfid: Gfid) -> FsResult<Vec<u8>> {
        self.below.readlink(self.down(gfid)).await
    }
    async fn read(&self, gfid: Gfid, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        self.below.read(self.down(gfid), offset, size).await
    }
    async fn write(&self, gfid: Gfid, offset: u64, data: Vec<u8>) -> FsResult<Attr> {
        Ok(self.up(self.below.write(self.down(gfid), offset, data).await?))
    }
    async fn append(&self, gfid: Gfid, data: Vec<u8>) -> FsResult<Attr> {
        Ok(self.up(self.below.append(self.down(gfid), data).await?))
    }
    async fn flush(&self, gfid: Gfid) -> FsResult<()> {
        self.below.flush(self.down(gfid)).await
    }
    async fn fsync(&self, gfid: Gfid, datasync: bool) -> FsResult<()> {
        self.below.fsync(self.down(gfid), datasync).await
    }
    async fn fallocate(&self, gfid: Gfid, mode: i32, offset: u64, len: u64) -> FsResult<Attr> {
        let a = self
            .below
            .fallocate(self.down(gfid), mode, offset, len)
            .await?;
        Ok(self.up(a))
    }
    async fn copy_range(&self, copy: CopyRange) -> FsResult<(u64, Attr)> {
        let copy = CopyRange {
            src: self.down(copy.src),
            dst: self.down(copy.dst),
            ..copy
        };
        let (n, a) = self.below.copy_range(copy).await?;
        Ok((n, self.up(a)))
    }
    async fn readdir(&self, gfid: Gfid, after: Option<Name>, max: u32) -> FsResult<DirPage> {
        let mut page = self.below.readdir(self.down(gfid), after, max).await?;
        for e in &mut page.entries {
            e.attr = self.up(e.attr.clone());
        }
        Ok(page)
    }
    async fn statfs(&self, at: Gfid) -> FsResult<StatFs> {
        self.below.statfs(self.down(at)).await
    }
    async fn set_quota(&self, gfid: Gfid, limit: Option<QuotaLimit>) -> FsResult<()> {
        self.below.set_quota(self.down(gfid), limit).await
    }
    async fn getxattr(&self, gfid: Gfid, name: &Name) -> FsResult<Vec<u8>> {
        self.below.getxattr(self.down(gfid), name).await
    }
    async fn listxattr(&self, gfid: Gfid) -> FsResult<Vec<Name>> {
        self.below.listxattr(self.down(gfid)).await
    }
    async fn setxattr(&self, gfid: Gfid, name: &Name, value: Vec<u8>, flags: i32) -> FsResult<()> {
        self.below
            .setxattr(self.down(gfid), name, value, flags)
            .await
    }
    async fn removexattr(&self, gfid: Gfid, name: &Name) -> FsResult<()> {
        self.below.removexattr(self.down(gfid), name).await
    }
    async fn getlk(&self, gfid: Gfid, lock: RecordLock) -> FsResult<Option<RecordLock>> {
        self.below.getlk(self.down(gfid), lock).await
    }
    async fn setlk(&self, gfid: Gfid, lock: RecordLock, wait: bool) -> FsResult<()> {
        self.below.setlk(self.down(gfid), lock, wait).await
    }
}
