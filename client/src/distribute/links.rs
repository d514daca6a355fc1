//! Link files: the pointer a set keeps for a name hashing to it whose
//! file lives on another set (after a rename or hard link across sets).
//! Made before the operation that needs them and removed after the one
//! that ends their use, so a failure in between can leave one pointing at
//! nothing; such a stale link file must not keep its name from being used.

use proto::{FileKind, FsError, FsResult, Gfid, Name};
use tracing::warn;

use super::layout::{encode_linkto, LINKTO_PERM, LINKTO_XATTR};
use super::{is_gone, Distribute};
use crate::layer::{Layer, NewEntry};

/// How long a link file that points nowhere is given to become a rename's
/// before it is taken for a leftover, when it does not say which file it
/// was made for (made by an older version).
pub(super) const STALE_LINK_RECHECK: std::time::Duration = std::time::Duration::from_millis(200);

/// A link file whose file still exists on the set it names (under another
/// name) belongs to a rename or hard link in progress, however long that
/// waits for its locks; past this age it is a leftover of one that died.
const STALE_LINK_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(300);

/// A name on one set, for an operation that wants to make it there.
pub(super) enum Entry {
    Free,
    /// A real object, or a link file to one.
    Live,
    /// A link file whose file is gone (its gfid).
    StaleLink(Gfid),
}

/// How long ago `attr`'s object changed status (a link file's birth).
fn age_of(attr: &proto::Attr) -> std::time::Duration {
    let born = std::time::UNIX_EPOCH
        + std::time::Duration::new(attr.ctime.secs.max(0) as u64, attr.ctime.nsecs);
    std::time::SystemTime::now()
        .duration_since(born)
        .unwrap_or_default()
}

impl Distribute {
    /// Makes a link file `name` in `parent` on `set`, pointing at file
    /// `gfid` on set `target`.
    pub(crate) async fn make_link(
        &self,
        set: usize,
        parent: Gfid,
        name: &Name,
        target: usize,
        gfid: Gfid,
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
            proto::Bytes::from(encode_linkto(target, gfid)),
        )];
        self.make_over_stale(set, parent, name, || {
            let (new, xattrs) = (new.clone(), xattrs.clone());
            async move {
                self.sets[set]
                    .create_object(parent, new, Gfid::random(), xattrs)
                    .await
                    .map(|_| ())
            }
        })
        .await
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

    /// What `name` on `set` is, as far as making an object of that name
    /// there goes.
    pub(super) async fn entry_state(
        &self,
        set: usize,
        parent: Gfid,
        name: &Name,
    ) -> FsResult<Entry> {
        let attr = match self.sets[set].lookup(parent, name).await {
            Ok(a) => a,
            Err(FsError::NotFound) => return Ok(Entry::Free),
            Err(e) => return Err(e),
        };
        let link = match self.link_info(set, &attr).await? {
            None => return Ok(Entry::Live),
            Some(l) => l,
        };
        let target = link.set;
        if target >= self.sets.len() {
            // A set this client does not know yet: not ours to judge.
            return Ok(Entry::Live);
        }
        if target == set {
            return Ok(Entry::StaleLink(attr.gfid));
        }
        let pointing_nowhere = match self.sets[target].lookup(parent, name).await {
            Ok(a) if self.linkto(target, &a).await?.is_none() => return Ok(Entry::Live),
            Ok(_) => true,
            Err(e) if is_gone(&e) => true,
            Err(e) => return Err(e),
        };
        if pointing_nowhere {
            if let Some(file) = link.gfid {
                // The file lives on under another name: a rename not done
                // yet (its second step may wait for locks), unless the link
                // is too old to be one.
                let young = age_of(&attr) < STALE_LINK_MAX_AGE;
                match self.sets[target].getattr(file).await {
                    Ok(_) if young => return Ok(Entry::Live),
                    Ok(_) => {}
                    Err(e) if is_gone(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Entry::StaleLink(attr.gfid))
    }

    /// After making `name` on `set` failed with EEXIST: if what is there
    /// is a link file whose file is gone (an unlink or rename cut short by
    /// a failure), removes it and says so, so the caller can try again.
    /// A rename makes its link file a moment before it moves the file
    /// there, so a link file pointing nowhere is looked at twice.
    pub(crate) async fn clear_stale_link(
        &self,
        set: usize,
        parent: Gfid,
        name: &Name,
    ) -> FsResult<bool> {
        let first = match self.entry_state(set, parent, name).await? {
            Entry::Free => return Ok(true),
            Entry::Live => return Ok(false),
            Entry::StaleLink(g) => g,
        };
        // A link naming its file was judged on that file; an older one gets
        // the grace of a second look.
        tokio::time::sleep(STALE_LINK_RECHECK).await;
        match self.entry_state(set, parent, name).await? {
            Entry::Free => Ok(true),
            Entry::StaleLink(g) if g == first => {
                warn!(set, %parent, %name, "removing a link file whose file is gone");
                match self.sets[set].unlink(parent, name, false).await {
                    Ok(_) | Err(FsError::NotFound) => Ok(true),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(false),
        }
    }

    /// Runs `make` (an operation creating `name` on `set`); on EEXIST from
    /// a stale link file, removes it and runs `make` once more.
    pub(crate) async fn make_over_stale<T, F, Fut>(
        &self,
        set: usize,
        parent: Gfid,
        name: &Name,
        make: F,
    ) -> FsResult<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = FsResult<T>>,
    {
        match make().await {
            Err(FsError::Exists) if self.clear_stale_link(set, parent, name).await? => make().await,
            other => other,
        }
    }
}
