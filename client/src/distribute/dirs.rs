//! Directories across sets: layouts, attributes merged from every copy,
//! mkdir on every set, rmdir only when every copy is empty, copies made
//! on sets that lack one.

use futures::future::join_all;
use proto::{Attr, FileKind, FsError, FsResult, Gfid, Name};
use tracing::{debug, info, warn};

use super::cache::Loc;
use super::layout::{Layout, LAYOUT_XATTR};
use super::links::{Entry, STALE_LINK_RECHECK};
use super::{is_gone, is_unreachable, Distribute, Found};
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
        self.dir_attr_missing(gfid).await.map(|(a, _)| a)
    }

    /// `dir_attr`, and the sets that said they have no such directory.
    async fn dir_attr_missing(&self, gfid: Gfid) -> FsResult<(Attr, Vec<usize>)> {
        let answers = join_all(self.sets.iter().map(|s| s.getattr(gfid))).await;
        let mut merged: Option<Attr> = None;
        let mut error = None;
        let mut missing = Vec::new();
        for (i, answer) in answers.into_iter().enumerate() {
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
                    if is_gone(&e) {
                        missing.push(i);
                    }
                    error.get_or_insert(e);
                }
            }
        }
        match merged {
            Some(a) => Ok((a, missing)),
            None => Err(error.unwrap_or(FsError::Stale(gfid.to_string()))),
        }
    }

    /// A directory just found by name: its attributes; and its copies on
    /// sets added since it was made (sets its layout does not name) are
    /// made now, as Gluster's lookup does, so that what is done in it next
    /// (a directory made or moved into it) finds it on every set. Copies
    /// missing from sets the layout names are left alone: that is a
    /// directory being removed or renamed right now.
    pub(crate) async fn looked_up_dir(
        &self,
        parent: Gfid,
        name: &Name,
        found: &Found,
    ) -> FsResult<Attr> {
        let dir = found.attr.gfid;
        let (attr, missing) = self.dir_attr_missing(dir).await?;
        if missing.is_empty() {
            return Ok(attr);
        }
        let named = self.layout(dir).await?.sets();
        let add: Vec<usize> = missing.into_iter().filter(|s| !named.contains(s)).collect();
        if !add.is_empty() {
            if let Err(e) = self
                .copy_dir(parent, name, dir, found.set, &add, None)
                .await
            {
                debug!(%parent, %name, error = %e, "directory not made on newer replica sets yet");
            }
        }
        Ok(attr)
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
        let targets = self.sets_with_dir(parent, &layout).await?;
        let xattrs = vec![(
            Name::new(LAYOUT_XATTR),
            proto::Bytes::from(Layout::even_over(&targets, true).encode()),
        )];
        let attr = self
            .make_over_stale(hashed, parent, &new.name, || {
                let (new, xattrs) = (new.clone(), xattrs.clone());
                async move {
                    self.sets[hashed]
                        .create_object(parent, new, gfid, xattrs)
                        .await
                }
            })
            .await?;
        let others = join_all(targets.iter().filter(|i| **i != hashed).map(|&i| {
            let new = new.clone();
            let xattrs = xattrs.clone();
            async move {
                (
                    i,
                    self.sets[i].create_object(parent, new, gfid, xattrs).await,
                )
            }
        }))
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

    /// The sets that have directory `dir`, whose layout is `layout`: all
    /// of them, but for directories made before replica sets were added
    /// and not yet rebalanced (their layouts name the old sets only).
    async fn sets_with_dir(&self, dir: Gfid, layout: &Layout) -> FsResult<Vec<usize>> {
        let n = self.sets.len();
        let mut have: Vec<usize> = layout.sets().into_iter().filter(|s| *s < n).collect();
        if have.len() == n {
            return Ok(have);
        }
        let unnamed: Vec<usize> = (0..n).filter(|s| !have.contains(s)).collect();
        let answers = join_all(
            unnamed
                .iter()
                .map(|&i| async move { (i, self.sets[i].getattr(dir).await) }),
        )
        .await;
        for (i, answer) in answers {
            match answer {
                Ok(_) => have.push(i),
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        have.sort_unstable();
        Ok(have)
    }

    /// rmdir: refused unless every copy is empty but for link files (left
    /// over by unlinks or renames cut short: in a directory with no file
    /// they point at nothing, and are removed); then removed from every
    /// other set and last from the hashed one, so a lookup finds it until
    /// it is gone everywhere. A set that refuses (a file was made in it
    /// meanwhile) gets the copies already removed made again.
    pub(crate) async fn remove_dir(&self, parent: Gfid, name: &Name) -> FsResult<()> {
        let found = self.find(parent, name).await?;
        if found.attr.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        let dir = found.attr.gfid;
        self.clear_empty_dir(dir).await?;
        let order: Vec<usize> = (0..self.sets.len())
            .filter(|i| *i != found.hashed)
            .chain([found.hashed])
            .collect();
        let mut removed = Vec::new();
        for i in order {
            match self.sets[i].rmdir(parent, name).await {
                Ok(()) => removed.push(i),
                Err(e) if is_gone(&e) => {
                    debug!(set = i, %parent, %name, "rmdir: no copy on this set")
                }
                Err(e) => {
                    if !removed.is_empty() {
                        warn!(%parent, %name, set = i, error = %e, "rmdir refused on a replica set; making the directory again where it was removed");
                        if let Err(undo) = self.copy_dir(parent, name, dir, i, &removed, None).await
                        {
                            warn!(%parent, %name, error = %undo, "directory left on some replica sets only");
                        }
                    }
                    return Err(e);
                }
            }
        }
        self.locations.forget(dir);
        self.layouts.forget(dir);
        Ok(())
    }

    /// Checks that directory `dir` holds no entry but link files on any
    /// set (ENOTEMPTY otherwise, before anything is changed), then removes
    /// those link files: with no file in the directory, they point at
    /// nothing.
    pub(crate) async fn clear_empty_dir(&self, dir: Gfid) -> FsResult<()> {
        let mut links = Vec::new();
        for (i, s) in self.sets.iter().enumerate() {
            let page = match s.readdir(dir, None, 64).await {
                Ok(p) => p,
                Err(e) if is_gone(&e) => continue,
                Err(e) => return Err(e),
            };
            for entry in page.entries {
                if self.linkto(i, &entry.attr).await?.is_none() {
                    return Err(FsError::NotEmpty);
                }
                links.push((i, entry.name));
            }
            if !page.eof {
                // More than a page of link files: not worth telling apart.
                return Err(FsError::NotEmpty);
            }
        }
        if links.is_empty() {
            return Ok(());
        }
        // A link file whose file is not there yet may be a rename into the
        // directory half done: looked at again a moment later.
        let mut stale = Vec::new();
        for (i, name) in links {
            match self.entry_state(i, dir, &name).await? {
                Entry::Free => {}
                Entry::Live => return Err(FsError::NotEmpty),
                Entry::StaleLink(g) => stale.push((i, name, g)),
            }
        }
        tokio::time::sleep(STALE_LINK_RECHECK).await;
        for (i, name, g) in stale {
            match self.entry_state(i, dir, &name).await? {
                Entry::StaleLink(now) if now == g => {
                    match self.sets[i].unlink(dir, &name, false).await {
                        Ok(_) | Err(FsError::NotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
                Entry::Free => {}
                _ => return Err(FsError::NotEmpty),
            }
        }
        Ok(())
    }

    /// Makes directory `gfid` (`name` in `parent`) on each set of `to`
    /// that lacks it, a copy of the one on set `from`: mode, owner and
    /// extended attributes (user attributes, ACLs, its layout unless
    /// `layout` replaces it). Used to undo a directory operation that only
    /// some sets applied, and by rebalance for sets added since the
    /// directory was made. Every set is tried; the first error is returned.
    pub(crate) async fn copy_dir(
        &self,
        parent: Gfid,
        name: &Name,
        gfid: Gfid,
        from: usize,
        to: &[usize],
        layout: Option<&Layout>,
    ) -> FsResult<()> {
        let source = &self.sets[from];
        let attr = source.getattr(gfid).await?;
        let mut xattrs = Vec::new();
        for x in source.listxattr(gfid).await? {
            if layout.is_some() && x.as_bytes() == LAYOUT_XATTR {
                continue;
            }
            match source.getxattr(gfid, &x).await {
                Ok(v) => xattrs.push((x, proto::Bytes::from(v))),
                Err(FsError::NoAttr) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(l) = layout {
            xattrs.push((Name::new(LAYOUT_XATTR), proto::Bytes::from(l.encode())));
        }
        let new = NewEntry {
            name: name.clone(),
            kind: FileKind::Dir,
            perm: attr.perm,
            rdev: 0,
            uid: attr.uid,
            gid: attr.gid,
            target: None,
        };
        let mut first_error = None;
        for &i in to {
            match self.sets[i]
                .create_object(parent, new.clone(), gfid, xattrs.clone())
                .await
            {
                Ok(_) | Err(FsError::Exists) => {
                    info!(set = i, %parent, %name, %gfid, "directory made on a replica set that lacked it")
                }
                Err(e) => {
                    warn!(set = i, %parent, %name, error = %e, "cannot make a directory copy");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
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
