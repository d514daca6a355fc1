//! The brick's side of self-heal: listing what may need heal, block
//! checksums (so heal copies only blocks that differ), repairing one name
//! of a directory, and recording that a heal is done. The healer holds the
//! replication lock of what it repairs; nothing here takes locks.

use std::os::fd::{AsFd, BorrowedFd};

use proto::{
    Checksums, EntryFix, FsError, FsResult, Gfid, HealEntry, HealPage, Name, PendingCounts,
    ReplicaIndex,
};
use rustix::fs::{AtFlags, Mode, OFlags, CWD};

use crate::attr::is_dir;
use crate::error::OsResult;
use crate::ops::{check_name, Backend};
use crate::store::{entry_gfid, list_names, stat_at, Obj};

/// Largest page of the heal index one call returns.
const PAGE_MAX: u32 = 4096;
/// Most bytes one checksum call reads (bounds the time of one request).
const CHECKSUM_SPAN_MAX: u64 = 256 << 20;
/// Deepest tree a heal removes (a guard against a cyclic or corrupt tree).
const REMOVE_DEPTH_MAX: usize = 4096;

impl Backend {
    pub fn heal_index(&self, after: Option<Gfid>, max: u32) -> FsResult<HealPage> {
        let mut blamed = self.changelog.indexed()?;
        blamed.sort_unstable();
        let mut dirty = self.changelog.unowned_dirty();
        dirty.sort_unstable();
        let mut all: Vec<Gfid> = blamed.iter().chain(dirty.iter()).copied().collect();
        all.sort_unstable();
        all.dedup();
        let max = max.clamp(1, PAGE_MAX) as usize;
        let notes = self.changelog.notes_of(&all);
        let rest: Vec<Gfid> = all
            .into_iter()
            .filter(|g| after.is_none_or(|a| *g > a))
            .collect();
        let eof = rest.len() <= max;
        let entries = rest
            .into_iter()
            .take(max)
            .map(|gfid| HealEntry {
                gfid,
                blamed: blamed.binary_search(&gfid).is_ok(),
                dirty: dirty.binary_search(&gfid).is_ok(),
                dir: matches!(self.store.resolve(gfid), Ok(Obj::Dir(_))),
                note: notes.get(&gfid).cloned(),
            })
            .collect();
        Ok(HealPage { entries, eof })
    }

    pub fn checksums(
        &self,
        gfid: Gfid,
        offset: u64,
        block: u32,
        count: u32,
    ) -> FsResult<Checksums> {
        if block == 0 || u64::from(block) * u64::from(count) > CHECKSUM_SPAN_MAX {
            return Err(FsError::Invalid(format!(
                "checksums of {count} blocks of {block} bytes"
            )));
        }
        let file = self.store.file(gfid)?;
        let size = file.metadata()?.len();
        let mut blocks = Vec::new();
        let mut buf = vec![0u8; block as usize];
        let mut at = offset;
        for _ in 0..count {
            if at >= size {
                break;
            }
            let want = (size - at).min(u64::from(block)) as usize;
            let mut got = 0;
            while got < want {
                match std::os::unix::fs::FileExt::read_at(
                    &*file,
                    &mut buf[got..want],
                    at + got as u64,
                ) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            blocks.push(*blake3::hash(&buf[..got]).as_bytes());
            at += u64::from(block);
        }
        Ok(Checksums { size, blocks })
    }

    pub fn heal_note(&self, gfid: Gfid, note: String) -> FsResult<()> {
        self.changelog.note(gfid, note);
        Ok(())
    }

    pub fn locate(&self, gfid: Gfid) -> FsResult<Option<(Gfid, Name)>> {
        self.store.locate(gfid)
    }

    pub fn heal_done(&self, gfid: Gfid, seen: &[(ReplicaIndex, PendingCounts)]) -> FsResult<()> {
        // The object stays open while its target (a /proc/self/fd path for
        // a directory) is used.
        let obj = match self.store.resolve(gfid) {
            Ok(obj) => Some(obj),
            // Gone here: nothing left to blame anyone for.
            Err(FsError::Stale(_)) => None,
            Err(e) => return Err(e),
        };
        let target = obj.as_ref().map(Obj::target);
        self.changelog.healed(gfid, target.as_ref(), seen)
    }

    pub fn heal_entry(&self, parent: Gfid, name: &Name, fix: &EntryFix) -> FsResult<()> {
        check_name(parent, name, FsError::Perm)?;
        let dirfd = self.store.dir(parent)?;
        let dfd = dirfd.as_fd();
        match fix {
            EntryFix::Create(new) => {
                if new.name != *name {
                    return Err(FsError::Invalid("create under another name".into()));
                }
                if new.gfid.is_root() || new.perm & !0o7777 != 0 {
                    return Err(FsError::Invalid("bad object to create".into()));
                }
                match self.make_object(dfd, parent, new, true) {
                    Ok(_) => {}
                    Err(FsError::Exists) => {
                        return match entry_gfid(dfd, name)? {
                            Some(g) if g == new.gfid => Ok(()),
                            Some(g) => Err(FsError::Os {
                                errno: libc::EEXIST,
                                msg: format!("{name} is {g} on this brick, not {}", new.gfid),
                            }),
                            None => Err(FsError::Os {
                                errno: libc::EEXIST,
                                msg: format!(
                                    "{name} is free but gfid {} is another object here",
                                    new.gfid
                                ),
                            }),
                        };
                    }
                    Err(e) => return Err(e),
                }
                tracing::info!(%parent, %name, gfid = %new.gfid, kind = ?new.kind, "heal: created");
                Ok(())
            }
            EntryFix::Link(gfid) => self.heal_link(dfd, parent, name, *gfid),
            EntryFix::Remove { gfid, keep } => {
                if entry_gfid(dfd, name)? != Some(*gfid) {
                    return Err(FsError::Stale(format!("{name} is not {gfid}")));
                }
                let st = stat_at(dfd, name)?;
                if is_dir(&st) {
                    self.remove_tree(dfd, name, 0)?;
                    self.store.forget_dirs();
                } else {
                    self.remove_file_name(dfd, name, Some(*gfid), st.st_nlink as u64, *keep)?;
                }
                tracing::info!(%parent, %name, %gfid, keep, "heal: removed");
                Ok(())
            }
        }
    }

    fn heal_link(
        &self,
        dfd: BorrowedFd<'_>,
        parent: Gfid,
        name: &Name,
        gfid: Gfid,
    ) -> FsResult<()> {
        if entry_gfid(dfd, name).ok().flatten() == Some(gfid) {
            return Ok(());
        }
        match self.store.resolve(gfid)? {
            Obj::Other(idx) => {
                rustix::fs::linkat(CWD, &idx, dfd, name.as_bytes(), AtFlags::empty()).os()?;
                tracing::info!(%parent, %name, %gfid, "heal: linked");
            }
            Obj::Dir(_) => {
                let Some((old_parent, old_name)) = self.store.locate(gfid)? else {
                    return Err(FsError::Invalid("cannot move the root".into()));
                };
                let old_dir = self.store.dir(old_parent)?;
                // Staged first, as a rename's (`crate::staging`).
                let staged = self.store.stage_pointer(gfid, parent, name)?;
                if let Err(e) = rustix::fs::renameat_with(
                    old_dir.as_fd(),
                    old_name.as_bytes(),
                    dfd,
                    name.as_bytes(),
                    rustix::fs::RenameFlags::NOREPLACE,
                )
                .os()
                {
                    self.store.discard(&staged);
                    return Err(e);
                }
                self.store.install(gfid, &staged)?;
                self.store.forget_dirs();
                tracing::info!(%old_parent, %old_name, %parent, %name, %gfid, "heal: moved directory");
            }
        }
        Ok(())
    }

    /// Removes `name` in `dfd` and, for a directory, everything below it,
    /// with the gfid index entries of what goes.
    fn remove_tree(&self, dfd: BorrowedFd<'_>, name: &Name, depth: usize) -> FsResult<()> {
        if depth > REMOVE_DEPTH_MAX {
            return Err(FsError::Invalid("directory tree too deep to remove".into()));
        }
        let st = stat_at(dfd, name)?;
        let gfid = entry_gfid(dfd, name)?;
        if !is_dir(&st) {
            return self.remove_file_name(dfd, name, gfid, st.st_nlink as u64, false);
        }
        let sub = rustix::fs::openat(
            dfd,
            name.as_bytes(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .os()?;
        for n in list_names(sub.as_fd(), |_| true)? {
            self.remove_tree(sub.as_fd(), &Name(n), depth + 1)?;
        }
        self.remove_dir_name(dfd, name, gfid)
    }
}
