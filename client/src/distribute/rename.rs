//! rename and link across sets. A file never moves set on rename (its data
//! stays where it is); when its new name hashes to another set, a link
//! file there says where it is, as in Gluster. Directories, on every set,
//! are renamed on every set.

use std::time::Duration;

use futures::future::join_all;
use proto::{Attr, FileKind, FsError, FsResult, Gfid, Name, RenameReq};
use tracing::warn;

use super::cache::Loc;
use super::{is_gone, Distribute, Found, MOVE_RETRIES};
use crate::layer::Layer;

/// How long a rename onto a name another client's rename is making waits
/// for that one to finish before it gives up with EEXIST.
const RACE_WAIT: Duration = Duration::from_secs(10);
const RACE_PAUSE_FIRST: Duration = Duration::from_millis(2);
const RACE_PAUSE_MAX: Duration = Duration::from_millis(100);

fn exdev() -> FsError {
    FsError::Os {
        errno: libc::EXDEV,
        msg: "exchanging entries whose files are on different replica sets".into(),
    }
}

impl Distribute {
    pub(crate) async fn rename_entry(&self, req: RenameReq) -> FsResult<()> {
        req.name.validate()?;
        req.new_name.validate()?;
        let replaces = req.flags & (libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) == 0;
        let mut moved_tries = 0;
        let mut waited = Duration::ZERO;
        let mut pause = RACE_PAUSE_FIRST;
        loop {
            match self.rename_once(req.clone()).await {
                // A file moved by rebalance between the lookups and the
                // rename (what was done is undone on failure): again, from
                // the lookups.
                Err(e) if moved_tries < MOVE_RETRIES && is_gone(&e) => moved_tries += 1,
                // Another client's rename is making the new name (its link
                // file is there, its file not yet): rename(2) replaces what
                // it leaves, so this one waits for it to finish, however
                // long its locks take on a busy cluster, then goes again.
                Err(FsError::Exists) if replaces && waited < RACE_WAIT => {
                    tokio::time::sleep(pause).await;
                    waited += pause;
                    pause = (pause * 2).min(RACE_PAUSE_MAX);
                }
                other => return other,
            }
        }
    }

    async fn rename_once(&self, req: RenameReq) -> FsResult<()> {
        let src = self.find(req.parent, &req.name).await?;
        let dst = match self.find(req.new_parent, &req.new_name).await {
            Ok(f) => Some(f),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        let exchange = req.flags & libc::RENAME_EXCHANGE != 0;
        if req.flags & libc::RENAME_NOREPLACE != 0 && dst.is_some() {
            return Err(FsError::Exists);
        }
        if dst.as_ref().is_some_and(|d| d.attr.gfid == src.attr.gfid) {
            // Two names of one file (or one name): rename(2) does nothing.
            return Ok(());
        }
        if src.attr.kind == FileKind::Dir {
            if exchange && dst.as_ref().is_some_and(|d| d.attr.kind != FileKind::Dir) {
                return Err(exdev());
            }
            return self.rename_dir(req, src.attr.gfid, dst.as_ref()).await;
        }
        if let Some(d) = &dst {
            if d.attr.kind == FileKind::Dir {
                // A file and a directory are never on one set alone.
                return Err(if exchange { exdev() } else { FsError::IsDir });
            }
        }
        if exchange {
            return match &dst {
                Some(d) if d.set == src.set && !d.link_on_hashed && !src.link_on_hashed => {
                    let (new_hashed, _) = self.hashed(req.new_parent, &req.new_name).await?;
                    let (old_hashed, _) = self.hashed(req.parent, &req.name).await?;
                    if new_hashed != src.set || old_hashed != src.set {
                        return Err(exdev());
                    }
                    self.sets[src.set].rename(req).await
                }
                Some(_) => Err(exdev()),
                None => Err(FsError::NotFound),
            };
        }
        let (new_hashed, _) = self.hashed(req.new_parent, &req.new_name).await?;
        // 1. The new name's hashed set must say where the file is.
        if new_hashed != src.set {
            if let Some(d) = &dst {
                if d.set == new_hashed {
                    // The file being replaced lives there: it goes first.
                    self.sets[new_hashed]
                        .unlink(req.new_parent, &req.new_name, false)
                        .await?;
                } else if d.link_on_hashed {
                    self.remove_link(new_hashed, req.new_parent, &req.new_name)
                        .await;
                }
            }
            self.make_link(
                new_hashed,
                req.new_parent,
                &req.new_name,
                src.set,
                src.attr.gfid,
            )
            .await?;
        }
        // 2. The rename itself, on the file's set (it replaces whatever
        // has the new name there).
        let parent = req.parent;
        let name = req.name.clone();
        let (new_parent, new_name) = (req.new_parent, req.new_name.clone());
        if let Err(e) = self.sets[src.set].rename(req).await {
            if new_hashed != src.set {
                self.remove_link(new_hashed, new_parent, &new_name).await;
            }
            return Err(e);
        }
        // 3. The old name's link file, if it had one.
        if src.link_on_hashed && (src.hashed, parent, &name) != (new_hashed, new_parent, &new_name)
        {
            self.remove_link(src.hashed, parent, &name).await;
        }
        // 4. The replaced file, when it lived on a third set.
        if let Some(d) = dst {
            if d.set != src.set && d.set != new_hashed {
                if let Err(e) = self.sets[d.set].unlink(new_parent, &new_name, false).await {
                    warn!(set = d.set, %new_parent, %new_name, error = %e, "cannot remove the file a rename replaced");
                }
            }
        }
        self.locations.put(src.attr.gfid, Loc::File(src.set));
        Ok(())
    }

    /// A directory is renamed on every set, the hashed set of its old name
    /// last so that lookups keep finding it until all copies moved. A
    /// directory it replaces must be empty on every set first (a set whose
    /// copy is empty would replace it, the others refuse); a set that
    /// refuses anyway (a file made meanwhile) has the sets done before it
    /// put back as they were.
    async fn rename_dir(&self, req: RenameReq, dir: Gfid, dst: Option<&Found>) -> FsResult<()> {
        let exchange = req.flags & libc::RENAME_EXCHANGE != 0;
        let replaced = dst
            .filter(|d| d.attr.kind == FileKind::Dir && !exchange)
            .map(|d| d.attr.gfid);
        if let Some(victim) = replaced {
            self.clear_empty_dir(victim).await?;
        }
        let (old_hashed, _) = self.hashed(req.parent, &req.name).await?;
        let others = join_all((0..self.sets.len()).filter(|i| *i != old_hashed).map(|i| {
            let req = req.clone();
            async move { (i, self.sets[i].rename(req).await) }
        }))
        .await;
        let mut done = Vec::new();
        let mut failed = None;
        for (i, r) in others {
            match r {
                Ok(()) => done.push(i),
                // A set added since the directory was made: nothing to move.
                Err(e) if is_gone(&e) && self.lacks(i, dir).await => {}
                Err(e) => {
                    failed.get_or_insert((i, e));
                }
            }
        }
        if failed.is_none() {
            match self.sets[old_hashed].rename(req.clone()).await {
                Ok(()) => done.push(old_hashed),
                Err(e) if is_gone(&e) && self.lacks(old_hashed, dir).await => {}
                Err(e) => failed = Some((old_hashed, e)),
            }
        }
        let Some((intact, e)) = failed else {
            if done.is_empty() {
                // Removed by someone else since it was looked up.
                return Err(FsError::NotFound);
            }
            if let Some(victim) = replaced {
                self.locations.forget(victim);
                self.layouts.forget(victim);
            }
            return Ok(());
        };
        if !done.is_empty() {
            warn!(parent = %req.parent, name = %req.name, set = intact, error = %e,
                "directory rename refused on a replica set; undoing it on the others");
            self.undo_dir_rename(&req, replaced, intact, &done).await;
        }
        Err(e)
    }

    /// Puts the sets `done` back as they were before `req`: the directory
    /// renamed back, and the one it replaced made again as a copy of the
    /// one on set `intact` (which refused the rename, so still has it).
    async fn undo_dir_rename(
        &self,
        req: &RenameReq,
        replaced: Option<Gfid>,
        intact: usize,
        done: &[usize],
    ) {
        let back = if req.flags & libc::RENAME_EXCHANGE != 0 {
            req.clone()
        } else {
            RenameReq {
                parent: req.new_parent,
                name: req.new_name.clone(),
                new_parent: req.parent,
                new_name: req.name.clone(),
                flags: libc::RENAME_NOREPLACE,
            }
        };
        for &i in done {
            if let Err(e) = self.sets[i].rename(back.clone()).await {
                warn!(set = i, parent = %req.parent, name = %req.name, error = %e,
                    "cannot undo a directory rename; the directory's copies differ");
            }
        }
        if let Some(victim) = replaced {
            if let Err(e) = self
                .copy_dir(req.new_parent, &req.new_name, victim, intact, done, None)
                .await
            {
                warn!(parent = %req.new_parent, name = %req.new_name, error = %e,
                    "cannot restore the directory a failed rename replaced");
            }
        }
    }

    /// A hard link is made on the file's set; a link file on the new
    /// name's hashed set points there.
    pub(crate) async fn hard_link(&self, gfid: Gfid, parent: Gfid, name: &Name) -> FsResult<Attr> {
        name.validate()?;
        let (hashed, layout) = self.hashed(parent, name).await?;
        if !layout.complete {
            match self.lookup_everywhere(parent, name).await {
                Ok(_) => return Err(FsError::Exists),
                Err(FsError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        let mut tries = 0;
        loop {
            let set = match self.locate(gfid).await? {
                Loc::File(set) => set,
                Loc::Dir => return Err(FsError::Perm),
            };
            if hashed != set {
                self.make_link(hashed, parent, name, set, gfid).await?;
            }
            match self.sets[set].link(gfid, parent, name).await {
                Ok(attr) => return Ok(attr),
                Err(e) => {
                    if hashed != set {
                        self.remove_link(hashed, parent, name).await;
                    }
                    if !(is_gone(&e) && tries < MOVE_RETRIES) {
                        return Err(e);
                    }
                    // Moved by rebalance since it was located: again.
                    self.locations.forget(gfid);
                    tries += 1;
                }
            }
        }
    }
}
