//! Directories across sets: layouts, attributes merged from every copy,
//! mkdir on every set, rmdir only when every copy is empty, link files.

use futures::future::join_all;
use proto::{Attr, FileKind, FsError, FsResult, Gfid, Name};
use tracing::{debug, warn};

use super::cache::Loc;
use super::layout::{encode_linkto, Layout, LAYOUT_XATTR, LINKTO_PERM, LINKTO_XATTR};
use super::{is_gone, is_unreachable, Distribute};
use crate::layer::{Layer, NewEntry};

impl Distribute {
    /// The layout of directory `dir`: from the cache while fresh, else from
    /// the first set that has the directory.
    pub(crate) async fn layout(&self, dir: Gfid) -> FsResult<Layout> {
        if let Some(l) = self.layouts.fresh(dir) {
            return Ok(l);
        }
        let layout = self.read_layout(dir).await?;
        self.layouts.put(dir, layout.clone());
        Ok(layout)
    }

    pub(crate) async fn read_layout(&self, dir: Gfid) -> FsResult<Layout> {
        let key = Name::new(LAYOUT_XATTR);
        let mut error = None;
        for s in &self.sets {
            match s.getxattr(dir, &key).await {
                Ok(v) => {
                    return Ok(Layout::decode(&v).unwrap_or_else(|| {
                        warn!(%dir, "damaged directory layout; looking for names on every set");
                        Layout::even(self.sets.len(), false)
                    }))
                }
                Err(FsError::NoAttr) => return Ok(Layout::legacy()),
                Err(e) if is_gone(&e) || is_unreachable(&e) => {
                    error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(error.unwrap_or(FsError::Stale(dir.to_string())))
    }

    /// Writes `layout` on every set's copy of `dir`.
    pub(crate) async fn write_layout(&self, dir: Gfid, layout: &Layout) -> FsResult<()> {
        let key = Name::new(LAYOUT_XATTR);
        let value = layout.encode();
        let answers = join_all(
            self.sets
                .iter()
                .map(|s| s.setxattr(dir, &key, value.clone(), 0)),
        )
        .await;
        self.layouts.forget(dir);
        answers.into_iter().collect::<FsResult<Vec<()>>>()?;
        Ok(())
    }

    /// A directory's attributes: the first set's copy, with the latest
    /// times of any copy (an entry added on one set changes only that
    /// copy's mtime, and NFS clients watch the mtime to see new entries).
    pub(crate) async fn dir_attr(&self, gfid: Gfid) -> FsResult<Attr> {
        let answers = join_all(self.sets.iter().map(|s| s.getattr(gfid))).await;
        let mut merged: Option<Attr> = None;
        let mut error = None;
        for answer in answers {
            match answer {
                Ok(a) => match &mut merged {
                    None => merged = Some(a),
                    Some(m) => {
                        m.mtime = m.mtime.max(a.mtime);
                        m.ctime = m.ctime.max(a.ctime);
                        m.atime = m.atime.max(a.atime);
                    }
                },
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        merged.ok_or_else(|| error.unwrap_or(FsError::Stale(gfid.to_string())))
    }

    /// mkdir: the directory is made under one gfid on every set, each copy
    /// born with the layout, first on the set its name hashes to (where
    /// lookups will look for it). If any set refuses, the copies made are
    /// taken back.
    pub(crate) async fn mkdir(&self, parent: Gfid, new: NewEntry) -> FsResult<Attr> {
        let (hashed, layout) = self.hashed(parent, &new.name).await?;
        if !layout.complete {
            match self.lookup_everywhere(parent, &new.name).await {
                Ok(_) => return Err(FsError::Exists),
                Err(FsError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        let gfid = Gfid::random();
        let xattrs = vec![(
            Name::new(LAYOUT_XATTR),
            proto::Bytes::from(Layout::even(self.sets.len(), true).encode()),
        )];
        let attr = self.sets[hashed]
            .create_object(parent, new.clone(), gfid, xattrs.clone())
            .await?;
        let others = join_all(
            self.sets
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != hashed)
                .map(|(i, s)| {
                    let new = new.clone();
                    let xattrs = xattrs.clone();
                    async move { (i, s.create_object(parent, new, gfid, xattrs).await) }
                }),
        )
        .await;
        if let Some((_, Err(e))) = others.iter().find(|(_, r)| r.is_err()) {
            let e = e.clone();
            warn!(%parent, name = %new.name, error = %e, "mkdir failed on a replica set; taking it back");
            let made = others
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(i, _)| *i)
                .chain([hashed]);
            for i in made {
                if let Err(undo) = self.sets[i].rmdir(parent, &new.name).await {
                    warn!(set = i, %parent, name = %new.name, error = %undo, "cannot take back a half-made directory");
                }
            }
            return Err(e);
        }
        self.locations.put(gfid, Loc::Dir);
        Ok(attr)
    }

    /// rmdir: refused unless every copy is empty (link files left over
    /// are removed); then removed from every other set and last from the
    /// hashed one, so a lookup finds it until it is gone everywhere.
    pub(crate) async fn remove_dir(&self, parent: Gfid, name: &Name) -> FsResult<()> {
        let found = self.find(parent, name).await?;
        if found.attr.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        let dir = found.attr.gfid;
        for (i, s) in self.sets.iter().enumerate() {
            let page = match s.readdir(dir, None, 64).await {
                Ok(p) => p,
                Err(e) if is_gone(&e) => continue,
                Err(e) => return Err(e),
            };
            for entry in &page.entries {
                if self.linkto(i, &entry.attr).await?.is_none() {
                    return Err(FsError::NotEmpty);
                }
            }
            if !page.eof {
                // More than a page of link files: not worth telling apart.
                return Err(FsError::NotEmpty);
            }
            for entry in &page.entries {
                s.unlink(dir, &entry.name, false).await?;
            }
        }
        let order = (0..self.sets.len())
            .filter(|i| *i != found.hashed)
            .chain([found.hashed]);
        for i in order {
            match self.sets[i].rmdir(parent, name).await {
                Ok(()) => {}
                Err(FsError::NotFound) => {
                    debug!(set = i, %parent, %name, "rmdir: no copy on this set")
                }
                Err(e) => return Err(e),
            }
        }
        self.locations.forget(dir);
        self.layouts.forget(dir);
        Ok(())
    }

    /// Makes a link file `name` in `parent` on `set`, pointing at `target`.
    pub(crate) async fn make_link(
        &self,
        set: usize,
        parent: Gfid,
        name: &Name,
        target: usize,
    ) -> FsResult<()> {
        let new = NewEntry {
            name: name.clone(),
            kind: FileKind::File,
            perm: LINKTO_PERM,
            rdev: 0,
            uid: 0,
            gid: 0,
            target: None,
        };
        let xattrs = vec![(
            Name::new(LINKTO_XATTR),
            proto::Bytes::from(encode_linkto(target)),
        )];
        self.sets[set]
            .create_object(parent, new, Gfid::random(), xattrs)
            .await
            .map(|_| ())
    }

    /// Removes link file `name` on `set` if that is what is there.
    pub(crate) async fn remove_link(&self, set: usize, parent: Gfid, name: &Name) {
        let res = async {
            let attr = self.sets[set].lookup(parent, name).await?;
            if self.linkto(set, &attr).await?.is_some() {
                self.sets[set].unlink(parent, name, false).await?;
            }
            Ok::<(), FsError>(())
        }
        .await;
        match res {
            Ok(()) | Err(FsError::NotFound) => {}
            Err(e) => {
                warn!(set, %parent, %name, error = %e, "cannot remove a link file; lookups will skip it")
            }
        }
    }

    /// Gives the root of a volume born with several sets its layout over
    /// all of them. Only while the root is empty everywhere: a root that
    /// has files but no layout grew from one set, its files are all on set
    /// 0, and only rebalance may widen its layout.
    pub async fn init_root_layout(&self) -> FsResult<()> {
        if self.sets.len() < 2 {
            return Ok(());
        }
        let key = Name::new(LAYOUT_XATTR);
        if self.sets[0].getxattr(Gfid::ROOT, &key).await.is_ok() {
            return Ok(());
        }
        for s in &self.sets {
            let page = s.readdir(Gfid::ROOT, None, 1).await?;
            if !page.entries.is_empty() {
                return Ok(());
            }
        }
        let value = Layout::even(self.sets.len(), true).encode();
        for s in &self.sets {
            // Create-only: of two clients starting at once, one writes and
            // the other finds the same layout there.
            match s
                .setxattr(Gfid::ROOT, &key, value.clone(), libc::XATTR_CREATE)
                .await
            {
                Ok(()) | Err(FsError::Exists) => {}
                Err(e) => return Err(e),
            }
        }
        self.layouts.forget(Gfid::ROOT);
        Ok(())
    }
}
