//! Moving one directory's files to the sets their names hash to.

use std::sync::Arc;

use proto::{Attr, FileKind, FsError, FsResult, Gfid, Name, SetAttr, TimeSet, DHT_XATTR_PREFIX};
use tracing::{debug, info, warn};

use super::Run;
use crate::distribute::is_gone;
use crate::distribute::layout::{encode_linkto, Layout, LINKTO_PERM, LINKTO_XATTR};
use crate::layer::{Layer, NewEntry};
use crate::replicate::Replicate;

/// Copy unit; also the largest read or write the stack takes.
const CHUNK: u32 = 1 << 20;
/// Passes that found the file changed before the last one is made under
/// its lock.
const UNLOCKED_TRIES: usize = 4;

enum Outcome {
    Moved(u64),
    /// Left where it is, with a link file on its hashed set.
    Stayed,
    /// Renamed, removed or replaced by a client meanwhile: what the name
    /// holds now was placed by that client, by the new layout.
    Raced,
}

/// What a file looked like: if any of it changed, someone wrote, renamed
/// or linked it meanwhile.
fn same_version(a: &Attr, b: &Attr) -> bool {
    (a.size, a.mtime, a.ctime, a.nlink) == (b.size, b.mtime, b.ctime, b.nlink)
}

impl Run {
    /// Moves the files of `dir` that are not on their hashed set and
    /// removes link files that point nowhere useful. True when every file
    /// is where the new layout looks for it. `strays_only`: the layout was
    /// complete already, so a file with a link file on its hashed set is
    /// where it belongs; only files with nothing there are moved.
    pub(super) async fn migrate_dir(
        &self,
        dir: Gfid,
        strays_only: bool,
        layout: &Layout,
    ) -> FsResult<bool> {
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
                    match self.dht.linkto(s, &e.attr).await {
                        Ok(Some(target)) => {
                            links.push((s, e.name.clone(), target));
                            continue;
                        }
                        Ok(None) => {}
                        // Removed since it was listed.
                        Err(err) if is_gone(&err) => continue,
                        Err(err) => {
                            warn!(%dir, name = %e.name, error = %err, "rebalance: cannot tell a link file");
                            complete = false;
                            self.update(|p| p.failures += 1);
                            continue;
                        }
                    }
                    self.update(|p| p.files_scanned += 1);
                    let hashed = layout.set_for(&e.name);
                    if hashed == s {
                        continue;
                    }
                    match self
                        .migrate_file(dir, &e.name, &e.attr, s, hashed, strays_only)
                        .await
                    {
                        Ok(Outcome::Moved(bytes)) => self.update(|p| {
                            p.files_migrated += 1;
                            p.bytes_migrated += bytes;
                        }),
                        Ok(Outcome::Stayed | Outcome::Raced) => {
                            self.update(|p| p.files_skipped += 1)
                        }
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
        for (s, name, _) in links {
            self.tidy_link(dir, &name, s, layout).await;
        }
        Ok(complete)
    }

    /// A link file is kept only on its name's hashed set, pointing at a set
    /// that still has the file. (One on the hashed set that points nowhere
    /// may be a client's rename half done: `clear_stale_link` looks twice.)
    async fn tidy_link(&self, dir: Gfid, name: &Name, on: usize, layout: &Layout) {
        if on != layout.set_for(name) {
            debug!(%dir, %name, set = on, "rebalance: removing a link file off its hashed set");
            self.dht.remove_link(on, dir, name).await;
            return;
        }
        if let Err(e) = self.dht.clear_stale_link(on, dir, name).await {
            debug!(%dir, %name, set = on, error = %e, "rebalance: link file left as it is");
        }
    }

    async fn migrate_file(
        &self,
        dir: Gfid,
        name: &Name,
        attr: &Attr,
        from: usize,
        to: usize,
        strays_only: bool,
    ) -> FsResult<Outcome> {
        let src = self.dht.set(from).clone();
        let dst = self.dht.set(to).clone();
        // Whatever the hashed set has under the name must be a link file
        // (to the file about to arrive); it makes room for the copy.
        match dst.lookup(dir, name).await {
            Ok(a) => {
                let why = match self.dht.link_info(to, &a).await?.map(|l| (l.set, l.gfid)) {
                    // A client's rename put another file of set `from` under
                    // the name since the listing: its link file is not ours
                    // to remove.
                    Some((t, Some(g))) if t == from && g != attr.gfid => {
                        return Ok(Outcome::Raced);
                    }
                    Some((t, _)) if t == from => None,
                    // A client's rename made the name another file's.
                    Some(_) => Some(FsError::Busy("the name points to another set".into())),
                    // A run stopped dead between making its copy the file
                    // and removing the source: clients may have written to
                    // either since, so which one to keep is not ours to say.
                    None if a.gfid == attr.gfid => Some(FsError::Busy(format!(
                        "two copies of {} (sets {from} and {to}) after an earlier run was cut \
                         short; compare them and remove one on the bricks",
                        attr.gfid
                    ))),
                    None => Some(FsError::Exists),
                };
                if let Some(e) = why {
                    return self.after_failure(dir, name, attr.gfid, from, to, e).await;
                }
                if strays_only || attr.kind != FileKind::File || attr.nlink > 1 {
                    // Already pointed to from the hashed set (and, in a
                    // directory with a complete layout, moving it would
                    // hide it between removing the link file and making
                    // the copy).
                    return Ok(Outcome::Stayed);
                }
                // The listing may be old: the name must still be this file,
                // or the link file belongs to whatever replaced it.
                match src.lookup(dir, name).await {
                    Ok(now) if now.gfid == attr.gfid => {}
                    Ok(_) | Err(FsError::NotFound) => return Ok(Outcome::Raced),
                    Err(e) => return Err(e),
                }
                dst.unlink(dir, name, false).await?;
            }
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        if attr.kind != FileKind::File || attr.nlink > 1 {
            // Hard links stay together; symlinks and devices are left with
            // a pointer too (they are small and rarely renamed).
            self.dht.make_link(to, dir, name, from, attr.gfid).await?;
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
            proto::Bytes::from(encode_linkto(from, attr.gfid)),
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
                // The copy is ours while the name still has its gfid (a
                // client may have removed it and made a new file there).
                let ours = match dst.lookup(dir, name).await {
                    Ok(a) => a.gfid == attr.gfid,
                    Err(_) => false,
                };
                if ours {
                    if let Err(e2) = dst.unlink(dir, name, false).await {
                        warn!(%dir, %name, set = to, error = %e2, "rebalance: cannot remove an unfinished copy");
                    }
                }
                self.after_failure(dir, name, attr.gfid, from, to, e).await
            }
        }
    }

    /// A move of `gfid` (`name` on set `from`) that failed with `e`: no
    /// failure if the name no longer is that file (a client renamed,
    /// removed or replaced it, and placed what it made by the new layout);
    /// a file hard-linked meanwhile stays, with a link file; else `e`.
    async fn after_failure(
        &self,
        dir: Gfid,
        name: &Name,
        gfid: Gfid,
        from: usize,
        to: usize,
        e: FsError,
    ) -> FsResult<Outcome> {
        let src = self.dht.set(from);
        match src.lookup(dir, name).await {
            Ok(a) if a.gfid == gfid => {}
            Ok(_) | Err(FsError::NotFound) => {
                debug!(%dir, %name, error = %e, "rebalance: file changed by a client while being moved");
                return Ok(Outcome::Raced);
            }
            Err(_) => return Err(e),
        }
        match src.getattr(gfid).await {
            Ok(a) if a.nlink > 1 && a.kind == FileKind::File => {
                self.dht.make_link(to, dir, name, from, gfid).await?;
                Ok(Outcome::Stayed)
            }
            _ => Err(e),
        }
    }

    /// Copies the file until a copy is known to match it under the lock,
    /// then gives the copy the file's attributes and removes the source.
    ///
    /// Each pass copies what changed since the last one (`Copied` remembers
    /// what the copy holds), then looks at the file again under its lock:
    /// unchanged means the copy is exact. After `UNLOCKED_TRIES` passes
    /// that kept missing writes, the last one runs under the lock, from
    /// the size read under the lock; clients' writes wait for it, but it
    /// only writes what changed since the pass before.
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
        let mut copied = Copied::default();
        let mut tries = 0;
        let (mut lock, now) = loop {
            let before = src.getattr(gfid).await?;
            if before.nlink > 1 {
                return Err(FsError::Busy("hard-linked while being moved".into()));
            }
            copied.sync(src, dst, gfid, before.size).await?;
            let mut lock = locker.lock(gfid).await?;
            let now = match src.getattr(gfid).await {
                Ok(a) => a,
                Err(e) => {
                    locker.unlock(&mut lock).await;
                    return Err(e);
                }
            };
            if same_version(&before, &now) {
                break (lock, now);
            }
            if tries >= UNLOCKED_TRIES {
                // Nobody can write now: what the file holds at `now.size`
                // is final until the lock goes.
                if let Err(e) = copied.sync(src, dst, gfid, now.size).await {
                    locker.unlock(&mut lock).await;
                    return Err(e);
                }
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
        // The name must still be this file, and its only name: a rename,
        // an unlink or a hard link is an entry change, which the file's
        // lock does not hold off. Looked at last thing before each step, so
        // that the window in which a client's rename onto the name could be
        // undone by ours, or its new link be left on the source with the
        // file's gfid on two sets, is a round trip.
        let still_here = || async {
            match src.lookup(dir, name).await {
                Ok(here) if here.gfid == gfid && here.nlink <= 1 => Ok(()),
                Ok(here) if here.gfid == gfid => {
                    Err(FsError::Busy("hard-linked while being moved".into()))
                }
                Ok(_) | Err(FsError::NotFound) => {
                    Err(FsError::Busy("renamed or removed while being moved".into()))
                }
                Err(e) => Err(e),
            }
        };
        still_here().await?;
        // From here the copy is the file for every lookup.
        match dst.removexattr(gfid, &Name::new(LINKTO_XATTR)).await {
            Ok(()) | Err(FsError::NoAttr) => {}
            Err(e) => return Err(e),
        }
        still_here().await?;
        src.unlink(dir, name, false).await?;
        info!(%dir, %name, bytes = now.size, "rebalance: file moved");
        Ok(())
    }
}

/// What the copy holds: the hash of each chunk as last written to it
/// (None: never written, a hole). The copy is a link file until the end,
/// so nobody but the rebalance writes to it.
#[derive(Default)]
struct Copied {
    chunks: Vec<Option<blake3::Hash>>,
}

impl Copied {
    /// Makes the first `size` bytes of the copy what the source holds now:
    /// reads every chunk of the source and writes those that differ from
    /// what the copy was given before. Chunks of zeros never written are
    /// left as holes (the final size makes them zeros), so sparse files
    /// stay sparse.
    async fn sync(
        &mut self,
        src: &Replicate,
        dst: &Replicate,
        gfid: Gfid,
        size: u64,
    ) -> FsResult<()> {
        let mut offset = 0u64;
        let mut k = 0usize;
        while offset < size {
            let want = (size - offset).min(u64::from(CHUNK)) as u32;
            let data = src.read(gfid, offset, want).await?;
            if data.is_empty() {
                // The file shrank since `size` was read: the next look at
                // its attributes sees that.
                break;
            }
            let hash = blake3::hash(&data);
            if self.chunks.len() <= k {
                self.chunks.resize(k + 1, None);
            }
            let unchanged = match self.chunks[k] {
                Some(h) => h == hash,
                None => data.iter().all(|b| *b == 0),
            };
            if !unchanged {
                dst.write_shared(gfid, proto::data::WriteAt::Offset(offset), Arc::new(data))
                    .await?;
                self.chunks[k] = Some(hash);
            }
            // Chunk k is always at k * CHUNK, whatever was read of it.
            offset += u64::from(want);
            k += 1;
        }
        Ok(())
    }
}
