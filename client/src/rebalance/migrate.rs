//! Moving one directory's files to the sets their names hash to.

use std::sync::Arc;

use proto::{Attr, FileKind, FsError, FsResult, Gfid, Name, SetAttr, TimeSet, DHT_XATTR_PREFIX};
use tracing::{debug, info, warn};

use super::Run;
use crate::distribute::layout::{encode_linkto, Layout, LINKTO_PERM, LINKTO_XATTR};
use crate::layer::{Layer, NewEntry};
use crate::replicate::Replicate;

/// Copy unit; also the largest read or write the stack takes.
const CHUNK: u32 = 1 << 20;
/// Copies made while the file kept changing before the last one is made
/// under the lock.
const UNLOCKED_TRIES: usize = 4;

enum Outcome {
    Moved(u64),
    /// Left where it is, with a link file on its hashed set.
    Stayed,
}

/// What a file looked like: if any of it changed, someone wrote, renamed
/// or linked it meanwhile.
fn same_version(a: &Attr, b: &Attr) -> bool {
    (a.size, a.mtime, a.ctime, a.nlink) == (b.size, b.mtime, b.ctime, b.nlink)
}

impl Run {
    /// Moves the files of `dir` that are not on their hashed set and
    /// removes link files that point nowhere useful. True when every file
    /// is where the new layout looks for it.
    pub(super) async fn migrate_dir(&self, dir: Gfid) -> FsResult<bool> {
        let layout = Layout::even(self.sets, true);
        let mut complete = true;
        let mut links = Vec::new();
        for s in 0..self.sets {
            let set = self.dht.set(s).clone();
            let mut after: Option<Name> = None;
            loop {
                let page = set.readdir(dir, after.clone(), 256).await?;
                for e in &page.entries {
                    if self.stopped() {
                        return Ok(false);
                    }
                    if e.attr.kind == FileKind::Dir {
                        continue;
                    }
                    if let Some(target) = self.dht.linkto(s, &e.attr).await? {
                        links.push((s, e.name.clone(), target));
                        continue;
                    }
                    self.update(|p| p.files_scanned += 1);
                    let hashed = layout.set_for(&e.name);
                    if hashed == s {
                        continue;
                    }
                    match self.migrate_file(dir, &e.name, &e.attr, s, hashed).await {
                        Ok(Outcome::Moved(bytes)) => self.update(|p| {
                            p.files_migrated += 1;
                            p.bytes_migrated += bytes;
                        }),
                        Ok(Outcome::Stayed) => self.update(|p| p.files_skipped += 1),
                        Err(e2) => {
                            warn!(%dir, name = %e.name, from = s, to = hashed, error = %e2, "rebalance: file not moved");
                            complete = false;
                            self.update(|p| p.failures += 1);
                        }
                    }
                }
                after = page.entries.last().map(|e| e.name.clone());
                if page.eof || after.is_none() {
                    break;
                }
            }
        }
        for (s, name, target) in links {
            self.tidy_link(dir, &name, s, target, &layout).await;
        }
        Ok(complete)
    }

    /// A link file is kept only on its name's hashed set, pointing at a set
    /// that still has the file.
    async fn tidy_link(&self, dir: Gfid, name: &Name, on: usize, target: usize, layout: &Layout) {
        let useful = on == layout.set_for(name)
            && target < self.sets
            && match self.dht.set(target).lookup(dir, name).await {
                Ok(a) => matches!(self.dht.linkto(target, &a).await, Ok(None)),
                Err(_) => false,
            };
        if !useful {
            debug!(%dir, %name, set = on, "rebalance: removing a link file no longer needed");
            self.dht.remove_link(on, dir, name).await;
        }
    }

    async fn migrate_file(
        &self,
        dir: Gfid,
        name: &Name,
        attr: &Attr,
        from: usize,
        to: usize,
    ) -> FsResult<Outcome> {
        let src = self.dht.set(from).clone();
        let dst = self.dht.set(to).clone();
        // Whatever the hashed set has under the name must be a link file
        // (to the file about to arrive); it makes room for the copy.
        match dst.lookup(dir, name).await {
            Ok(a) => {
                if self.dht.linkto(to, &a).await?.is_none() {
                    return Err(FsError::Exists);
                }
                if attr.kind != FileKind::File || attr.nlink > 1 {
                    // Already pointed to from the hashed set.
                    return Ok(Outcome::Stayed);
                }
                dst.unlink(dir, name, false).await?;
            }
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        if attr.kind != FileKind::File || attr.nlink > 1 {
            // Hard links stay together; symlinks and devices are left with
            // a pointer too (they are small and rarely renamed).
            self.dht.make_link(to, dir, name, from).await?;
            return Ok(Outcome::Stayed);
        }
        let copy = NewEntry {
            name: name.clone(),
            kind: FileKind::File,
            perm: LINKTO_PERM,
            rdev: 0,
            uid: attr.uid,
            gid: attr.gid,
            target: None,
        };
        let xattrs = vec![(
            Name::new(LINKTO_XATTR),
            proto::Bytes::from(encode_linkto(from)),
        )];
        dst.create_object(dir, copy, attr.gfid, xattrs).await?;
        match self
            .fill_and_switch(dir, name, attr.gfid, &src, &dst, from)
            .await
        {
            Ok(bytes) => {
                debug!(%dir, %name, from, to, bytes, "rebalance: moved");
                Ok(Outcome::Moved(bytes))
            }
            Err(e) => {
                // The copy was never used by anyone: it was a link file.
                if let Err(e2) = dst.unlink(dir, name, false).await {
                    warn!(%dir, %name, set = to, error = %e2, "rebalance: cannot remove an unfinished copy");
                }
                Err(e)
            }
        }
    }

    /// Copies the file until a copy is known to match it under the lock,
    /// then gives the copy the file's attributes and removes the source.
    async fn fill_and_switch(
        &self,
        dir: Gfid,
        name: &Name,
        gfid: Gfid,
        src: &Arc<Replicate>,
        dst: &Arc<Replicate>,
        from: usize,
    ) -> FsResult<u64> {
        let locker = &self.lockers[from];
        let mut tries = 0;
        let (mut lock, now) = loop {
            let before = src.getattr(gfid).await?;
            if before.nlink > 1 {
                return Err(FsError::Busy("hard-linked while being moved".into()));
            }
            let locked_copy = tries >= UNLOCKED_TRIES;
            let mut lock = if locked_copy {
                Some(locker.lock(gfid).await?)
            } else {
                None
            };
            let copied = copy_data(src, dst, gfid, before.size).await;
            if lock.is_none() {
                lock = Some(locker.lock(gfid).await?);
            }
            let mut lock = lock.ok_or_else(|| FsError::Busy("no lock".into()))?;
            if let Err(e) = copied {
                locker.unlock(&mut lock).await;
                return Err(e);
            }
            let now = match src.getattr(gfid).await {
                Ok(a) => a,
                Err(e) => {
                    locker.unlock(&mut lock).await;
                    return Err(e);
                }
            };
            if locked_copy || same_version(&before, &now) {
                break (lock, now);
            }
            locker.unlock(&mut lock).await;
            tries += 1;
        };
        let res = self
            .switch_over(dir, name, gfid, src, dst, &now)
            .await
            .map(|()| now.size);
        locker.unlock(&mut lock).await;
        res
    }

    /// Under the source's lock: the copy gets the file's attributes and
    /// becomes the file; the source's name goes.
    async fn switch_over(
        &self,
        dir: Gfid,
        name: &Name,
        gfid: Gfid,
        src: &Arc<Replicate>,
        dst: &Arc<Replicate>,
        now: &Attr,
    ) -> FsResult<()> {
        if now.nlink > 1 {
            return Err(FsError::Busy("hard-linked while being moved".into()));
        }
        // The name must still be this file (a rename is an entry change
        // the file's lock does not hold off).
        let here = src.lookup(dir, name).await?;
        if here.gfid != gfid {
            return Err(FsError::Busy("renamed while being moved".into()));
        }
        for x in src.listxattr(gfid).await? {
            if x.as_bytes().starts_with(DHT_XATTR_PREFIX) {
                continue;
            }
            match src.getxattr(gfid, &x).await {
                Ok(v) => dst.setxattr(gfid, &x, v, 0).await?,
                Err(FsError::NoAttr) => {}
                Err(e) => return Err(e),
            }
        }
        dst.setattr(
            gfid,
            SetAttr {
                perm: Some(now.perm),
                uid: Some(now.uid),
                gid: Some(now.gid),
                size: Some(now.size),
                atime: Some(TimeSet::At(now.atime)),
                mtime: Some(TimeSet::At(now.mtime)),
            },
        )
        .await?;
        // From here the copy is the file for every lookup.
        match dst.removexattr(gfid, &Name::new(LINKTO_XATTR)).await {
            Ok(()) | Err(FsError::NoAttr) => {}
            Err(e) => return Err(e),
        }
        src.unlink(dir, name, false).await?;
        info!(%dir, %name, bytes = now.size, "rebalance: file moved");
        Ok(())
    }
}

/// Copies `size` bytes of `gfid` from one set to another, a chunk at a
/// time; holes are written as zeros.
async fn copy_data(src: &Replicate, dst: &Replicate, gfid: Gfid, size: u64) -> FsResult<()> {
    let mut offset = 0u64;
    while offset < size {
        let want = (size - offset).min(u64::from(CHUNK)) as u32;
        let data = src.read(gfid, offset, want).await?;
        if data.is_empty() {
            break;
        }
        let n = data.len() as u64;
        dst.write_shared(gfid, offset, Arc::new(data)).await?;
        offset += n;
    }
    Ok(())
}
