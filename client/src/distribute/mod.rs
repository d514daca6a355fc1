//! The distribute layer: N replica sets presented as one volume, as
//! Gluster's DHT does it.
//!
//! - Every directory exists on every set, under one gfid, and carries a
//!   layout (`layout.rs`) mapping name hashes to sets. A directory made
//!   before sets were added gets its copies there from its first lookup
//!   by name, or from rebalance; until rebalance its layout names the old
//!   sets only, and directories made in it meanwhile span the sets that
//!   have it (`dirs.rs`).
//! - A file lives on one set: the one its name hashes to in its
//!   directory's layout, or, after a rename or hard link to a name hashing
//!   elsewhere, on another set with a *link file* on the hashed set naming
//!   where it is (mode `LINKTO_PERM` plus the `LINKTO_XATTR` attribute;
//!   `links.rs`).
//! - Entry operations that find the file gone from its set when they
//!   apply (rebalance moved it since the lookup) look again, a few times.
//! - Each set keeps its own quorum: a set that lost it makes only its own
//!   files read-only.
//!
//! Operations by gfid find the file's set from a bounded cache of where
//! files were seen, else by asking every set; an answer "no such gfid" from
//! the remembered set (rebalance moved the file) makes the layer look again.

mod cache;
mod dirs;
pub mod layout;
mod links;
mod quota;
mod readdir;
mod rename;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use proto::data::WriteAt;
use proto::{
    Attr, CopyRange, DirPage, FileKind, FsError, FsResult, Gfid, Name, RecordLock, RenameReq,
    SetAttr, StatFs,
};

use crate::layer::{Layer, NewEntry};
use crate::replicate::Replicate;
pub use cache::{Loc, LAYOUT_TTL};
use layout::{decode_linkto, Layout, LinkTo, LINKTO_PERM, LINKTO_XATTR};
use tracing::debug;

pub struct Distribute {
    sets: Vec<Arc<Replicate>>,
    locations: cache::Locations,
    layouts: cache::Layouts,
    /// Set by `close`: background work (the quota sync) stops.
    closed: std::sync::atomic::AtomicBool,
}

/// Where a name was found.
#[derive(Clone, Debug)]
pub(crate) struct Found {
    /// The set holding the object (any set, for a directory).
    pub set: usize,
    pub attr: Attr,
    /// The set the name hashes to in its directory's layout.
    pub hashed: usize,
    /// A link file for the name is on the hashed set (the object is not).
    pub link_on_hashed: bool,
}

/// Times an entry operation on a file starts again when the file's set
/// no longer has it (rebalance moved it between the lookup and the op).
const MOVE_RETRIES: usize = 2;

/// The object is not there (any more): no such name, or no such gfid.
pub(crate) fn is_gone(e: &FsError) -> bool {
    matches!(e, FsError::Stale(_) | FsError::NotFound)
}

fn is_unreachable(e: &FsError) -> bool {
    matches!(
        e,
        FsError::BrickDown(_) | FsError::Timeout(_) | FsError::Quorum { .. }
    )
}

/// Why `lookup_everywhere` found no object.
enum Missing {
    /// Link files only, no file they point to.
    OnlyLinks,
    Error(FsError),
}

impl Missing {
    fn into_error(self) -> FsError {
        match self {
            Missing::OnlyLinks => FsError::NotFound,
            Missing::Error(e) => e,
        }
    }
}

fn private_name(name: &Name) -> bool {
    proto::is_shared_private_xattr(name.as_bytes())
}

impl Distribute {
    pub fn new(sets: Vec<Arc<Replicate>>) -> Arc<Distribute> {
        Arc::new(Distribute {
            sets,
            locations: Default::default(),
            layouts: Default::default(),
            closed: Default::default(),
        })
    }

    /// A write or an append, on whichever set has the file. One buffer: a
    /// write that must be retried on the file's new set is sent again from
    /// it (the move's "no such gfid" comes before anything was written).
    async fn write_at(&self, gfid: Gfid, at: WriteAt, data: Vec<u8>) -> FsResult<Attr> {
        let data = Arc::new(data);
        if let Some(s) = self.single() {
            return s.write_shared(gfid, at, data).await;
        }
        self.on_file(gfid, |s| {
            let data = data.clone();
            async move { s.write_shared(gfid, at, data).await }
        })
        .await
    }

    pub(crate) fn closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_count(&self) -> usize {
        self.sets.len()
    }

    pub(crate) fn set(&self, i: usize) -> &Arc<Replicate> {
        &self.sets[i]
    }

    fn single(&self) -> Option<&Arc<Replicate>> {
        (self.sets.len() == 1).then(|| &self.sets[0])
    }

    /// The set a link file on `set` points to, or None for a real object.
    pub(crate) async fn linkto(&self, set: usize, attr: &Attr) -> FsResult<Option<usize>> {
        Ok(self.link_info(set, attr).await?.map(|l| l.set))
    }

    /// Where the link file `attr` on `set` points, if it is one.
    pub(crate) async fn link_info(&self, set: usize, attr: &Attr) -> FsResult<Option<LinkTo>> {
        if attr.kind != FileKind::File || attr.perm & 0o7777 != LINKTO_PERM {
            return Ok(None);
        }
        match self.sets[set]
            .getxattr(attr.gfid, &Name::new(LINKTO_XATTR))
            .await
        {
            Ok(v) => Ok(decode_linkto(&v)),
            Err(FsError::NoAttr) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `name` on `set`, following a link file to the set it names.
    async fn lookup_on(&self, set: usize, parent: Gfid, name: &Name) -> FsResult<(usize, Attr)> {
        let attr = self.sets[set].lookup(parent, name).await?;
        let target = match self.linkto(set, &attr).await? {
            None => return Ok((set, attr)),
            Some(target) if target != set && target < self.sets.len() => target,
            Some(_) => return Err(FsError::NotFound),
        };
        match self.sets[target].lookup(parent, name).await {
            Ok(found) if self.linkto(target, &found).await?.is_none() => {
                return Ok((target, found));
            }
            Ok(_) | Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        // Link files are never chained: one pointing at another is stale
        // (its file moved on), as is one whose file is gone. Unless a move
        // onto `set` finished between the two lookups: its copy there stops
        // being a link file before the source goes, so one more look at
        // `set` tells the two apart.
        let again = self.sets[set].lookup(parent, name).await?;
        match self.linkto(set, &again).await? {
            None => Ok((set, again)),
            Some(_) => Err(FsError::NotFound),
        }
    }

    /// `name` looked up on every set: for directories whose layout does not
    /// yet say where every file is.
    async fn lookup_everywhere(&self, parent: Gfid, name: &Name) -> FsResult<(usize, Attr)> {
        match self.lookup_everywhere_once(parent, name).await {
            // Only link files answered: a move may have finished between
            // the answers (the copy seen before it became the file, the
            // source after it went); the sets answer again.
            Err(Missing::OnlyLinks) => self.lookup_everywhere_once(parent, name).await,
            other => other,
        }
        .map_err(Missing::into_error)
    }

    async fn lookup_everywhere_once(
        &self,
        parent: Gfid,
        name: &Name,
    ) -> Result<(usize, Attr), Missing> {
        let answers = join_all(
            self.sets
                .iter()
                .map(|s| async move { s.lookup(parent, name).await }),
        )
        .await;
        let mut error = None;
        let mut links = false;
        for (i, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok(attr) if attr.kind == FileKind::Dir => return Ok((i, attr)),
                Ok(attr) => match self.linkto(i, &attr).await {
                    Ok(None) => return Ok((i, attr)),
                    Ok(Some(_)) => links = true,
                    // Removed since the lookup answered.
                    Err(e) if is_gone(&e) => {}
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                },
                // No such name, or a set added since the directory was made.
                Err(e) if is_gone(&e) => {}
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        Err(match error {
            Some(e) => Missing::Error(e),
            None if links => Missing::OnlyLinks,
            None => Missing::Error(FsError::NotFound),
        })
    }

    /// The hashed set of `name` in `parent`, and the layout it came from.
    pub(crate) async fn hashed(&self, parent: Gfid, name: &Name) -> FsResult<(usize, Layout)> {
        let layout = self.layout(parent).await?;
        let set = layout.set_for(name);
        if set >= self.sets.len() {
            return Err(FsError::Busy(format!(
                "the layout of directory {parent} names replica set {set} and this client \
                 knows {} sets (its volume graph is being updated)",
                self.sets.len()
            )));
        }
        Ok((set, layout))
    }

    /// Finds `name` in `parent`: where the object is, and its hashed set.
    pub(crate) async fn find(&self, parent: Gfid, name: &Name) -> FsResult<Found> {
        let (hashed, layout) = self.hashed(parent, name).await?;
        let (set, attr) = match self.lookup_on(hashed, parent, name).await {
            Err(FsError::NotFound) if !layout.complete => {
                self.lookup_everywhere(parent, name).await?
            }
            other => other.inspect_err(|e| {
                debug!(%parent, %name, hashed, complete = layout.complete, error = %e, "find: not on its hashed set")
            })?,
        };
        self.locations.put(
            attr.gfid,
            if attr.kind == FileKind::Dir {
                Loc::Dir
            } else {
                Loc::File(set)
            },
        );
        let link_on_hashed = attr.kind != FileKind::Dir && set != hashed;
        Ok(Found {
            set,
            attr,
            hashed,
            link_on_hashed,
        })
    }

    /// Where `gfid` is: remembered, or asked of every set.
    async fn locate(&self, gfid: Gfid) -> FsResult<Loc> {
        match self.locations.get(gfid) {
            Some(loc) => Ok(loc),
            None => self.resolve(gfid).await,
        }
    }

    /// Asks every set for `gfid`. A copy that looks like a link file is a
    /// file being moved by rebalance: the set it points to has the file.
    async fn resolve(&self, gfid: Gfid) -> FsResult<Loc> {
        let answers = join_all(
            self.sets
                .iter()
                .map(|s| async move { s.getattr(gfid).await }),
        )
        .await;
        let mut error = None;
        let mut moving = None;
        for (i, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok(attr) if attr.kind == FileKind::Dir => {
                    self.locations.put(gfid, Loc::Dir);
                    return Ok(Loc::Dir);
                }
                Ok(attr) => match self.linkto(i, &attr).await {
                    Ok(None) => {
                        self.locations.put(gfid, Loc::File(i));
                        return Ok(Loc::File(i));
                    }
                    Ok(Some(_)) => moving = Some(i),
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                },
                Err(e) if is_gone(&e) => {}
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        match (error, moving) {
            (Some(e), _) => Err(e),
            // Only the copy being filled was found: its source vanished
            // between the two answers (the move just finished); ask again.
            (None, Some(_)) => Err(FsError::Busy(format!("{gfid} is being moved"))),
            (None, None) => Err(FsError::Stale(gfid.to_string())),
        }
    }

    /// A file's attributes from its set (`to_open`: as an open needs them,
    /// `Layer::getattr_to_open`), a directory's merged from every set.
    async fn attr_of(&self, gfid: Gfid, to_open: bool) -> FsResult<Attr> {
        let ask = |s: Arc<Replicate>| async move {
            if to_open {
                s.getattr_to_open(gfid).await
            } else {
                s.getattr(gfid).await
            }
        };
        if let Some(s) = self.single() {
            return ask(s.clone()).await;
        }
        match self.locate(gfid).await? {
            Loc::Dir => self.dir_attr(gfid).await,
            Loc::File(_) => self.on_file(gfid, ask).await,
        }
    }

    /// Runs `op` on the set holding file `gfid`; if that set no longer has
    /// it (rebalance moved it), finds it again and runs `op` there.
    async fn on_file<T, F, Fut>(&self, gfid: Gfid, op: F) -> FsResult<T>
    where
        F: Fn(Arc<Replicate>) -> Fut,
        Fut: Future<Output = FsResult<T>>,
    {
        let set = match self.locate(gfid).await? {
            Loc::File(set) => set,
            Loc::Dir => return self.on_dir_first(op).await,
        };
        match op(self.sets[set].clone()).await {
            Err(e) if is_gone(&e) => {
                self.locations.forget(gfid);
                match self.resolve_settled(gfid).await? {
                    Loc::File(now) if now != set => op(self.sets[now].clone()).await,
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    /// `resolve`, waiting out the instant in which a moved file's source is
    /// gone and its new copy not yet final.
    async fn resolve_settled(&self, gfid: Gfid) -> FsResult<Loc> {
        let mut tries = 0;
        loop {
            match self.resolve(gfid).await {
                Err(FsError::Busy(_)) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// A directory operation that any one set can answer: the first set
    /// that is reachable.
    async fn on_dir_first<T, F, Fut>(&self, op: F) -> FsResult<T>
    where
        F: Fn(Arc<Replicate>) -> Fut,
        Fut: Future<Output = FsResult<T>>,
    {
        let mut error = None;
        for s in &self.sets {
            match op(s.clone()).await {
                // Unreachable, or a set added since the directory was made
                // (rebalance makes it there).
                Err(e) if is_unreachable(&e) || is_gone(&e) => {
                    error.get_or_insert(e);
                }
                other => return other,
            }
        }
        Err(error.unwrap_or(FsError::BrickDown("no replica set".into())))
    }

    /// A directory change made on every set that has the directory (all
    /// of them, but for sets added since it was made and not rebalanced
    /// yet); the first set's answer is returned, the first error if any
    /// failed.
    async fn on_dir_all<T, F, Fut>(&self, op: F) -> FsResult<T>
    where
        F: Fn(Arc<Replicate>) -> Fut,
        Fut: Future<Output = FsResult<T>>,
    {
        let answers = join_all(self.sets.iter().map(|s| op(s.clone()))).await;
        let mut first = None;
        let mut missing = None;
        for answer in answers {
            match answer {
                Ok(v) => {
                    first.get_or_insert(v);
                }
                Err(e) if is_gone(&e) => {
                    missing.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        first.ok_or_else(|| missing.unwrap_or(FsError::BrickDown("no replica set".into())))
    }

    /// Whether set `set` surely lacks object `gfid` (false when it cannot
    /// tell).
    pub(crate) async fn lacks(&self, set: usize, gfid: Gfid) -> bool {
        matches!(self.sets[set].getattr(gfid).await, Err(e) if is_gone(&e))
    }

    async fn is_dir(&self, gfid: Gfid) -> FsResult<bool> {
        Ok(self.locate(gfid).await? == Loc::Dir)
    }
}

#[async_trait]
impl Layer for Distribute {
    fn set_op_timeout(&self, timeout: Duration) {
        for s in &self.sets {
            s.set_op_timeout(timeout);
        }
    }

    async fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        join_all(self.sets.iter().map(|s| s.close())).await;
    }

    async fn send_held(&self) {
        join_all(self.sets.iter().map(|s| s.send_held())).await;
    }

    async fn lookup(&self, parent: Gfid, name: &Name) -> FsResult<Attr> {
        if let Some(s) = self.single() {
            return s.lookup(parent, name).await;
        }
        let found = self.find(parent, name).await?;
        if found.attr.kind == FileKind::Dir {
            return self.looked_up_dir(parent, name, &found).await;
        }
        Ok(found.attr)
    }

    async fn getattr(&self, gfid: Gfid) -> FsResult<Attr> {
        self.attr_of(gfid, false).await
    }

    async fn getattr_to_open(&self, gfid: Gfid) -> FsResult<Attr> {
        self.attr_of(gfid, true).await
    }

    async fn setattr(&self, gfid: Gfid, set: SetAttr) -> FsResult<Attr> {
        if let Some(s) = self.single() {
            return s.setattr(gfid, set).await;
        }
        if self.is_dir(gfid).await? {
            self.on_dir_all(|s| {
                let set = set.clone();
                async move { s.setattr(gfid, set).await }
            })
            .await?;
            return self.dir_attr(gfid).await;
        }
        self.on_file(gfid, |s| {
            let set = set.clone();
            async move { s.setattr(gfid, set).await }
        })
        .await
    }

    async fn create(&self, parent: Gfid, new: NewEntry) -> FsResult<Attr> {
        if let Some(s) = self.single() {
            return s.create(parent, new).await;
        }
        if new.kind == FileKind::Dir {
            return self.mkdir(parent, new).await;
        }
        let (hashed, layout) = self.hashed(parent, &new.name).await?;
        if !layout.complete {
            match self.lookup_everywhere(parent, &new.name).await {
                Ok(_) => return Err(FsError::Exists),
                Err(FsError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        let name = new.name.clone();
        let attr = self
            .make_over_stale(hashed, parent, &name, || {
                let new = new.clone();
                async move { self.sets[hashed].create(parent, new).await }
            })
            .await?;
        self.locations.put(attr.gfid, Loc::File(hashed));
        Ok(attr)
    }

    async fn unlink(&self, parent: Gfid, name: &Name, keep_open: bool) -> FsResult<Option<Gfid>> {
        if let Some(s) = self.single() {
            return s.unlink(parent, name, keep_open).await;
        }
        let mut tries = 0;
        loop {
            let found = self.find(parent, name).await?;
            if found.attr.kind == FileKind::Dir {
                return Err(FsError::IsDir);
            }
            match self.sets[found.set].unlink(parent, name, keep_open).await {
                // Moved by rebalance since it was found: find it again.
                Err(e) if is_gone(&e) && tries < MOVE_RETRIES => tries += 1,
                Err(e) => return Err(e),
                Ok(kept) => {
                    if found.link_on_hashed {
                        self.remove_link(found.hashed, parent, name).await;
                    }
                    return Ok(kept);
                }
            }
        }
    }

    async fn purge(&self, gfid: Gfid) -> FsResult<()> {
        if let Some(s) = self.single() {
            return s.purge(gfid).await;
        }
        match self
            .on_file(gfid, |s| async move { s.purge(gfid).await })
            .await
        {
            Err(e) if is_gone(&e) => Ok(()),
            other => other,
        }
    }

    async fn rmdir(&self, parent: Gfid, name: &Name) -> FsResult<()> {
        if let Some(s) = self.single() {
            return s.rmdir(parent, name).await;
        }
        self.remove_dir(parent, name).await
    }

    async fn rename(&self, req: RenameReq) -> FsResult<()> {
        if let Some(s) = self.single() {
            return s.rename(req).await;
        }
        self.rename_entry(req).await
    }

    async fn link(&self, gfid: Gfid, parent: Gfid, name: &Name) -> FsResult<Attr> {
        if let Some(s) = self.single() {
            return s.link(gfid, parent, name).await;
        }
        self.hard_link(gfid, parent, name).await
    }

    async fn readlink(&self, gfid: Gfid) -> FsResult<Vec<u8>> {
        if let Some(s) = self.single() {
            return s.readlink(gfid).await;
        }
        self.on_file(gfid, |s| async move { s.readlink(gfid).await })
            .await
    }

    async fn read(&self, gfid: Gfid, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        if let Some(s) = self.single() {
            return s.read(gfid, offset, size).await;
        }
        self.on_file(gfid, |s| async move { s.read(gfid, offset, size).await })
            .await
    }

    async fn write(&self, gfid: Gfid, offset: u64, data: Vec<u8>) -> FsResult<Attr> {
        self.write_at(gfid, WriteAt::Offset(offset), data).await
    }

    async fn append(&self, gfid: Gfid, data: Vec<u8>) -> FsResult<Attr> {
        self.write_at(gfid, WriteAt::End, data).await
    }

    async fn write_extents(&self, gfid: Gfid, extents: Vec<(u64, Vec<u8>)>) -> FsResult<Attr> {
        let payload = Arc::new(proto::data::encode_extents(
            &extents
                .iter()
                .map(|(o, d)| (*o, d.as_slice()))
                .collect::<Vec<_>>(),
        ));
        if let Some(s) = self.single() {
            return s.write_extents_shared(gfid, payload).await;
        }
        self.on_file(gfid, |s| {
            let payload = payload.clone();
            async move { s.write_extents_shared(gfid, payload).await }
        })
        .await
    }

    async fn flush(&self, gfid: Gfid) -> FsResult<()> {
        if let Some(s) = self.single() {
            return s.flush(gfid).await;
        }
        // A close sends the file's create if its set still holds it (its
        // bytes and attributes may be in it): asking every set costs no
        // round trip, and needs no location of a file no brick has yet.
        let closed = join_all(self.sets.iter().map(|s| s.flush(gfid))).await;
        closed.into_iter().collect()
    }

    async fn fsync(&self, gfid: Gfid, datasync: bool) -> FsResult<()> {
        if let Some(s) = self.single() {
            return s.fsync(gfid, datasync).await;
        }
        if self.is_dir(gfid).await? {
            return self
                .on_dir_all(|s| async move { s.fsync(gfid, datasync).await })
                .await;
        }
        self.on_file(gfid, |s| async move { s.fsync(gfid, datasync).await })
            .await
    }

    async fn copy_range(&self, copy: CopyRange) -> FsResult<(u64, Attr)> {
        if let Some(s) = self.single() {
            return s.copy_range(copy).await;
        }
        let elsewhere = || FsError::NotSupported("a copy between replica sets".into());
        let (src, dst) = (copy.src, copy.dst);
        let (Loc::File(a), Loc::File(b)) = (self.locate(src).await?, self.locate(dst).await?)
        else {
            return Err(elsewhere());
        };
        if a != b {
            return Err(elsewhere());
        }
        match self.sets[a].copy_range(copy).await {
            // Moved by a rebalance meanwhile: the caller copies.
            Err(e) if is_gone(&e) => {
                self.locations.forget(src);
                self.locations.forget(dst);
                Err(elsewhere())
            }
            other => other,
        }
    }

    async fn fallocate(&self, gfid: Gfid, mode: i32, offset: u64, len: u64) -> FsResult<Attr> {
        if let Some(s) = self.single() {
            return s.fallocate(gfid, mode, offset, len).await;
        }
        self.on_file(gfid, |s| async move {
            s.fallocate(gfid, mode, offset, len).await
        })
        .await
    }

    async fn readdir(&self, gfid: Gfid, after: Option<Name>, max: u32) -> FsResult<DirPage> {
        if let Some(s) = self.single() {
            return s.readdir(gfid, after, max).await;
        }
        self.merged_readdir(gfid, after, max).await
    }

    async fn statfs(&self, at: Gfid) -> FsResult<StatFs> {
        if let Some(s) = self.single() {
            return s.statfs(at).await;
        }
        self.summed_statfs(at).await
    }

    async fn quota_usage(&self) -> FsResult<Vec<proto::QuotaUse>> {
        if let Some(s) = self.single() {
            return s.quota_usage().await;
        }
        let shares = join_all(self.sets.iter().map(|s| s.quota_usage())).await;
        let shares: Vec<Vec<proto::QuotaUse>> = shares.into_iter().collect::<FsResult<_>>()?;
        Ok(quota::sum(&shares))
    }

    async fn set_quota(&self, gfid: Gfid, limit: Option<proto::QuotaLimit>) -> FsResult<()> {
        if !self.is_dir(gfid).await? {
            return Err(FsError::NotDir);
        }
        self.on_dir_all(|s| async move { s.set_quota(gfid, limit).await })
            .await
    }

    async fn getxattr(&self, gfid: Gfid, name: &Name) -> FsResult<Vec<u8>> {
        if private_name(name) {
            return Err(FsError::NoAttr);
        }
        if let Some(s) = self.single() {
            return s.getxattr(gfid, name).await;
        }
        self.on_file(gfid, |s| async move { s.getxattr(gfid, name).await })
            .await
    }

    async fn listxattr(&self, gfid: Gfid) -> FsResult<Vec<Name>> {
        let names = match self.single() {
            Some(s) => s.listxattr(gfid).await?,
            None => {
                self.on_file(gfid, |s| async move { s.listxattr(gfid).await })
                    .await?
            }
        };
        Ok(names.into_iter().filter(|n| !private_name(n)).collect())
    }

    async fn setxattr(&self, gfid: Gfid, name: &Name, value: Vec<u8>, flags: i32) -> FsResult<()> {
        if private_name(name) {
            return Err(FsError::Perm);
        }
        if let Some(s) = self.single() {
            return s.setxattr(gfid, name, value, flags).await;
        }
        let value = Arc::new(value);
        let op = |s: Arc<Replicate>| {
            let value = value.clone();
            async move { s.setxattr(gfid, name, value.as_ref().clone(), flags).await }
        };
        if self.is_dir(gfid).await? {
            return self.on_dir_all(op).await;
        }
        self.on_file(gfid, op).await
    }

    async fn removexattr(&self, gfid: Gfid, name: &Name) -> FsResult<()> {
        if private_name(name) {
            return Err(FsError::Perm);
        }
        if let Some(s) = self.single() {
            return s.removexattr(gfid, name).await;
        }
        let op = |s: Arc<Replicate>| async move { s.removexattr(gfid, name).await };
        if self.is_dir(gfid).await? {
            return self.on_dir_all(op).await;
        }
        self.on_file(gfid, op).await
    }

    async fn getlk(&self, gfid: Gfid, lock: RecordLock) -> FsResult<Option<RecordLock>> {
        if let Some(s) = self.single() {
            return s.getlk(gfid, lock).await;
        }
        self.on_file(gfid, |s| async move { s.getlk(gfid, lock).await })
            .await
    }

    async fn setlk(&self, gfid: Gfid, lock: RecordLock, wait: bool) -> FsResult<()> {
        if let Some(s) = self.single() {
            return s.setlk(gfid, lock, wait).await;
        }
        self.on_file(gfid, |s| async move { s.setlk(gfid, lock, wait).await })
            .await
    }
}
