//! rename and link across sets. A file never moves set on rename (its data
//! stays where it is); when its new name hashes to another set, a link
//! file there says where it is, as in Gluster. Directories, on every set,
//! are renamed on every set.

use futures::future::join_all;
use proto::{Attr, FileKind, FsError, FsResult, Gfid, Name, RenameReq};
use tracing::warn;

use super::cache::Loc;
use super::Distribute;
use crate::layer::Layer;

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
        if src.attr.kind == FileKind::Dir {
            if exchange && dst.as_ref().is_some_and(|d| d.attr.kind != FileKind::Dir) {
                return Err(exdev());
            }
            return self.rename_dir(req).await;
        }
        if let Some(d) = &dst {
            if d.attr.gfid == src.attr.gfid {
                // Two names of one file: rename(2) does nothing.
                return Ok(());
            }
            if d.attr.kind == FileKind::Dir {
                return Err(FsError::IsDir);
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
            self.make_link(new_hashed, req.new_parent, &req.new_name, src.set)
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
    /// last so that lookups keep finding it until all copies moved.
    async fn rename_dir(&self, req: RenameReq) -> FsResult<()> {
        let (old_hashed, _) = self.hashed(req.parent, &req.name).await?;
        let others = join_all(
            self.sets
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != old_hashed)
                .map(|(_, s)| s.rename(req.clone())),
        )
        .await;
        for r in others {
            match r {
                Ok(()) | Err(FsError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        self.sets[old_hashed].rename(req).await
    }

    /// A hard link is made on the file's set; a link file on the new
    /// name's hashed set points there.
    pub(crate) async fn hard_link(&self, gfid: Gfid, parent: Gfid, name: &Name) -> FsResult<Attr> {
        name.validate()?;
        let set = match self.locate(gfid).await? {
            Loc::File(set) => set,
            Loc::Dir => return Err(FsError::Perm),
        };
        let (hashed, layout) = self.hashed(parent, name).await?;
        if !layout.complete {
            match self.lookup_everywhere(parent, name).await {
                Ok(_) => return Err(FsError::Exists),
                Err(FsError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        if hashed != set {
            self.make_link(hashed, parent, name, set).await?;
        }
        match self.sets[set].link(gfid, parent, name).await {
            Ok(attr) => Ok(attr),
            Err(e) => {
                if hashed != set {
                    self.remove_link(hashed, parent, name).await;
                }
                Err(e)
            }
        }
    }
}
