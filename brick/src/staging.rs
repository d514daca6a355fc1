//! Crash safety: a brick killed at any instant of any operation restarts
//! into a state heal can make identical to the other replicas, and no
//! object without a gfid is ever visible or left behind.
//!
//! The rule: nothing gets a user-visible name before it is complete, and
//! nothing that an index entry depends on is changed without leaving a
//! record of it. Both go through one private directory,
//! `.brickfs/staging/`, on the brick's own filesystem so that every move
//! in and out of it is one atomic `rename` or `link`:
//!
//! - **New objects** are made there as `new.<gfid>.<n>`, given owner,
//!   mode, their initial xattrs and the gfid xattr, and only then linked at
//!   their name (`linkat`, which fails if the name exists; a directory:
//!   `renameat2(RENAME_NOREPLACE)`). A file's staged name then becomes its
//!   index link (one `rename`); a directory's pointer is written before it
//!   moves into place.
//! - **Directory pointers** that change (rename) are written there as
//!   `ptr.<gfid>.<n>` before the rename and moved into the index after it.
//! - **Index entries of objects losing their last name** (unlink, rmdir,
//!   rename over a target) are moved there first (`unlinked.…`,
//!   `rmdir.…`) and dropped once the name is gone.
//!
//! On start (`recover`, before the brick serves) every staged entry is
//! settled by what the disk says, which needs no journal of its own:
//!
//! - a pointer (`ptr`, `rmdir`) whose target directory carries its gfid
//!   belongs in the index; any other is dropped;
//! - a non-directory (`new`, `unlinked`) that another name still links
//!   belongs in the index; one with no other link is dropped;
//! - a directory (`new`) never reached its name: it and any pointer to it
//!   that leads nowhere are removed.
//!
//! Then `repair_dirs` looks through the directories of the operations
//! still unconfirmed in the dirty journal: an entry without a gfid (left by
//! an older brickd, which made objects at their name first) is removed if
//! it holds nothing, and an entry whose index link or pointer is missing
//! gets it. Whatever the replicas still disagree on is heal's: the client
//! saw the op fail here and made the others blame this brick (or, when it
//! reached only this brick, the dirty mark makes heal vote).
//!
//! What a kill after each failpoint (`crate::failpoints`) leaves, and what
//! happens next (`G` the object's gfid, "heal" the entry or
//! metadata/data heal from the replicas that blame this one):
//!
//! | op | killed after | on disk | recovery | heal |
//! |---|---|---|---|---|
//! | any | `dirty`, `blame` | dirty mark (and blame) only | — | redoes the op |
//! | create, mknod, symlink | `stage` … `gfid` | `new.G` with one link | removed | creates the name |
//! | | `name` | name with gfid, `new.G` its 2nd link, no index | `new.G` becomes the index link | metadata, if any differs |
//! | | `index` | done | — | — |
//! | mkdir | `stage` … `gfid` | `new.G` directory | removed | creates the name |
//! | | `pointer` | `new.G` directory, index pointer to its name | both removed | creates the name |
//! | | `place` | done | — | — |
//! | link | `name` | done (one `linkat`) | — | — |
//! | unlink, last name | `park` | name, index link as `unlinked.G` (2 links) | moved back to the index | removes the name |
//! | | `name` | `unlinked.G` with one link | removed | — |
//! | unlink, file open | `keep` | name, open-unlinked marker | marker purged (name kept) | removes the name |
//! | | `name` | marker, index link with one link | purged as every open-unlinked file | — |
//! | unlink, more names | `name` | index link still named elsewhere | — | — |
//! | | `drop` | done | — | — |
//! | rmdir | `park` | directory, pointer as `rmdir.G` | pointer leads to G: back to the index | removes the name |
//! | | `remove` | `rmdir.G` leading nowhere | removed | — |
//! | | `drop` | done | — | — |
//! | rename | `stage` | old names, new pointers as `ptr.G` | pointers lead nowhere: removed | renames |
//! | | `park` | + the replaced target parked | as unlink/rmdir `park` | renames |
//! | | `rename` | renamed, `ptr.G` lead to G, target parked | pointers installed, target as unlink/rmdir `name` | — |
//! | | `pointer` | pointers installed, target parked | target as unlink/rmdir `name` | — |
//! | | `drop` | done | — | — |
//! | setattr, truncate, setxattr, removexattr, write, fallocate | any | object partly changed, dirty | — | metadata or data from the others |
//!
//! A kill inside one syscall is the syscall done or not done; a kill
//! inside `blame` (pending xattr written, heal-index file not yet) is
//! covered by the dirty mark, written before it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use proto::{FsError, FsResult, Gfid, Name, PRIVATE_DIR};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;

use crate::attr::is_dir;
use crate::error::{BrickError, OsResult};
use crate::store::{
    entry_gfid, fd_gfid, list_names, parse_pointer, pointer_content, stat_at, Obj, Store,
};

const STAGING_DIR: &str = "staging";

/// Why an entry is in the staging directory; the first part of its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tag {
    /// An object being made, not yet (or only just) at its name.
    New,
    /// A directory's new pointer, waiting for the rename it describes.
    Ptr,
    /// A non-directory's index link, while its last name is removed.
    Unlinked,
    /// A directory's pointer, while the directory is removed.
    Rmdir,
}

impl Tag {
    fn prefix(self) -> &'static str {
        match self {
            Tag::New => "new",
            Tag::Ptr => "ptr",
            Tag::Unlinked => "unlinked",
            Tag::Rmdir => "rmdir",
        }
    }

    fn parse(s: &str) -> Option<Tag> {
        [Tag::New, Tag::Ptr, Tag::Unlinked, Tag::Rmdir]
            .into_iter()
            .find(|t| t.prefix() == s)
    }
}

/// `<tag>.<gfid-hex>.<n>`.
fn parse_name(name: &str) -> Option<(Tag, Gfid)> {
    let mut parts = name.splitn(3, '.');
    let tag = Tag::parse(parts.next()?)?;
    let gfid = Gfid::from_hex(parts.next()?)?;
    parts.next()?;
    Some((tag, gfid))
}

pub(crate) struct Staging {
    path: PathBuf,
    fd: OwnedFd,
    /// Makes staged names unique within a run (a heal and a client may
    /// stage the same gfid at once); the names of an earlier run are gone
    /// after `recover`.
    seq: AtomicU64,
}

impl Staging {
    pub fn open(private: &Path) -> Result<Staging, BrickError> {
        let path = private.join(STAGING_DIR);
        let shown = || path.display().to_string();
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(BrickError::io(format!("create {}", shown()), e)),
        }
        // Objects here have their final modes already: nobody else looks in.
        rustix::fs::chmod(&path, Mode::from_raw_mode(0o700))
            .map_err(|e| BrickError::io(format!("chmod {}", shown()), e.into()))?;
        let fd = rustix::fs::openat(
            CWD,
            &path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| BrickError::io(format!("open {}", shown()), e.into()))?;
        Ok(Staging {
            path,
            fd,
            seq: AtomicU64::new(0),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn name(&self, tag: Tag, gfid: Gfid) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{}.{}.{n}", tag.prefix(), gfid.to_hex())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn names(&self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            out.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
}

impl Store {
    /// Stages the pointer `parent/name` of directory `gfid` (moved into
    /// the index by `install` once the directory is there).
    pub(crate) fn stage_pointer(&self, gfid: Gfid, parent: Gfid, name: &Name) -> FsResult<String> {
        let staged = self.staging.name(Tag::Ptr, gfid);
        rustix::fs::symlinkat(
            pointer_content(parent, name).as_slice(),
            self.staging.fd(),
            staged.as_str(),
        )
        .os()?;
        Ok(staged)
    }

    /// Makes a staged entry the index entry of `gfid`, replacing any.
    pub(crate) fn install(&self, gfid: Gfid, staged: &str) -> FsResult<()> {
        rustix::fs::renameat(self.staging.fd(), staged, CWD, self.index_path(gfid)).os()
    }

    /// As `install`, for a new object: refused if `gfid` is already
    /// another object here.
    pub(crate) fn install_new(&self, gfid: Gfid, staged: &str) -> FsResult<()> {
        match rustix::fs::renameat_with(
            self.staging.fd(),
            staged,
            CWD,
            self.index_path(gfid),
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(FsError::Os {
                errno: libc::EEXIST,
                msg: format!("gfid {gfid} is another object on this brick"),
            }),
            Err(e) => Err(FsError::from_errno(e.raw_os_error())),
        }
    }

    /// Removes a staged non-directory. Whatever this leaves (it only logs),
    /// the next start's recovery settles.
    pub(crate) fn discard(&self, staged: &str) {
        match rustix::fs::unlinkat(self.staging.fd(), staged, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => tracing::warn!(staged, error = %e, "cannot remove a staged entry"),
        }
    }

    /// Moves the index entry of `gfid` to staging while its last name is
    /// removed; `None` if it has none.
    pub(crate) fn park(&self, gfid: Gfid, tag: Tag) -> FsResult<Option<String>> {
        let staged = self.staging.name(tag, gfid);
        match rustix::fs::renameat(
            CWD,
            self.index_path(gfid),
            self.staging.fd(),
            staged.as_str(),
        ) {
            Ok(()) => Ok(Some(staged)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(FsError::from_errno(e.raw_os_error())),
        }
    }

    /// After the name of a parked non-directory is gone: drops the index
    /// link if no other name links the object (a `link` may have added one
    /// meanwhile), else puts it back.
    pub(crate) fn settle_unlinked(&self, gfid: Gfid, staged: &str) -> FsResult<()> {
        let st = rustix::fs::statat(self.staging.fd(), staged, AtFlags::SYMLINK_NOFOLLOW).os()?;
        if st.st_nlink > 1 {
            return self.install(gfid, staged);
        }
        self.forget_file(gfid);
        rustix::fs::unlinkat(self.staging.fd(), staged, AtFlags::empty()).os()
    }

    /// Writes the pointer of a new directory; fails with `Exists` if the
    /// gfid has an index entry already.
    pub(crate) fn write_new_pointer(&self, gfid: Gfid, parent: Gfid, name: &Name) -> FsResult<()> {
        rustix::fs::symlinkat(
            pointer_content(parent, name).as_slice(),
            CWD,
            self.index_path(gfid),
        )
        .os()
    }

    /// True when the staged pointer leads to a directory carrying `gfid`.
    fn staged_pointer_holds(&self, staged: &str, gfid: Gfid) -> bool {
        let Ok(target) = rustix::fs::readlinkat(self.staging.fd(), staged, Vec::new()) else {
            return false;
        };
        let Some((parent, name)) = parse_pointer(target.as_bytes()) else {
            return false;
        };
        let Ok(dir) = self.dir(parent) else {
            return false;
        };
        let opened = rustix::fs::openat(
            &dir,
            name.as_bytes(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        );
        matches!(opened.map(|fd| fd_gfid(fd.as_fd())), Ok(Ok(Some(g))) if g == gfid)
    }
}

/// What `recover` did, for the start-up log.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Staged entries that were where they belong already: made index
    /// entries (an operation completed).
    pub completed: usize,
    /// Staged entries dropped (an operation undone or its leftovers).
    pub dropped: usize,
}

/// Settles everything a previous run left in the staging directory (see
/// the module docs). Runs before the brick serves anything.
pub(crate) fn recover(store: &Store) -> Result<Recovered, BrickError> {
    let names = store
        .staging
        .names()
        .map_err(|e| BrickError::io("list the staging directory", e))?;
    let mut done = Recovered::default();
    if names.is_empty() {
        return Ok(done);
    }
    let mut pointers = Vec::new();
    let mut objects = Vec::new();
    for name in names {
        match parse_name(&name) {
            Some((Tag::Ptr | Tag::Rmdir, g)) => pointers.push((name, g)),
            Some((tag, g)) => objects.push((name, tag, g)),
            None => {
                tracing::warn!(name, "removing a stranger from the staging directory");
                remove_staged(store, &name)?;
                done.dropped += 1;
            }
        }
    }
    // Pointers first: whether a pointer leads to its directory depends on
    // its ancestors' pointers, which may be staged too (renamed together),
    // so install what leads somewhere until nothing more does.
    loop {
        let before = pointers.len();
        let mut left = Vec::new();
        for (name, g) in pointers {
            if store.staged_pointer_holds(&name, g) {
                store
                    .install(g, &name)
                    .map_err(|e| BrickError::fs(format!("install staged pointer {name}"), e))?;
                tracing::info!(gfid = %g, staged = name, "recovery: directory pointer installed");
                done.completed += 1;
            } else {
                left.push((name, g));
            }
        }
        store.forget_dirs();
        pointers = left;
        if pointers.len() == before {
            break;
        }
    }
    for (name, g) in pointers {
        tracing::info!(gfid = %g, staged = name, "recovery: pointer leading nowhere dropped");
        remove_staged(store, &name)?;
        done.dropped += 1;
    }
    for (name, tag, g) in objects {
        let st = match rustix::fs::statat(
            store.staging.fd(),
            name.as_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(BrickError::io(format!("stat staged {name}"), e.into())),
        };
        if is_dir(&st) {
            // Made here and never moved to its name.
            remove_staged(store, &name)?;
            if let Err(FsError::Stale(_)) = store.resolve(g) {
                store
                    .remove_index(g)
                    .map_err(|e| BrickError::fs(format!("remove pointer of {g}"), e))?;
            }
            tracing::info!(gfid = %g, staged = name, "recovery: directory never placed, removed");
            done.dropped += 1;
        } else if st.st_nlink > 1 {
            // A name links it: it is that object's index link.
            settle_index_link(store, &name, g, &st)?;
            tracing::info!(gfid = %g, staged = name, ?tag, "recovery: index link restored");
            done.completed += 1;
        } else {
            remove_staged(store, &name)?;
            tracing::info!(gfid = %g, staged = name, ?tag, "recovery: unnamed object dropped");
            done.dropped += 1;
        }
    }
    store.forget_dirs();
    tracing::warn!(
        completed = done.completed,
        dropped = done.dropped,
        "recovered from an interrupted run"
    );
    Ok(done)
}

fn settle_index_link(
    store: &Store,
    name: &str,
    gfid: Gfid,
    st: &rustix::fs::Stat,
) -> Result<(), BrickError> {
    let index = store.index_path(gfid);
    match rustix::fs::renameat_with(
        store.staging.fd(),
        name,
        CWD,
        &index,
        RenameFlags::NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        Err(Errno::EXIST) => match rustix::fs::lstat(&index) {
            Ok(ist) if ist.st_ino == st.st_ino && ist.st_dev == st.st_dev => {
                remove_staged(store, name)
            }
            // Two objects claim one gfid: keep both for an operator.
            _ => {
                tracing::error!(%gfid, staged = name, "another object holds this gfid's index entry; left in staging");
                Ok(())
            }
        },
        Err(e) => Err(BrickError::io(
            format!("restore index link {name}"),
            e.into(),
        )),
    }
}

fn remove_staged(store: &Store, name: &str) -> Result<(), BrickError> {
    let fd = store.staging.fd();
    let res = match rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if is_dir(&st) => rustix::fs::unlinkat(fd, name, AtFlags::REMOVEDIR),
        Ok(_) => rustix::fs::unlinkat(fd, name, AtFlags::empty()),
        Err(e) => Err(e),
    };
    match res {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(BrickError::io(
            format!("remove {} from staging", name),
            e.into(),
        )),
    }
}

/// Removes `dfd/name`, which has no gfid, if it holds nothing: what an
/// interrupted create of an older brickd (which made objects at their
/// name before giving them a gfid) left. `false` for anything that holds
/// data, which brickfs did not make and leaves to an operator.
pub(crate) fn remove_leftover(dfd: BorrowedFd<'_>, name: &Name) -> FsResult<bool> {
    let st = stat_at(dfd, name)?;
    let res = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile if st.st_size > 0 => return Ok(false),
        FileType::Directory => rustix::fs::unlinkat(dfd, name.as_bytes(), AtFlags::REMOVEDIR),
        _ => rustix::fs::unlinkat(dfd, name.as_bytes(), AtFlags::empty()),
    };
    match res {
        Ok(()) => {
            tracing::warn!(%name, "removed an entry without a gfid (an interrupted create's leftover)");
            Ok(true)
        }
        Err(Errno::NOTEMPTY | Errno::EXIST) => Ok(false),
        Err(Errno::NOENT) => Ok(true),
        Err(e) => Err(FsError::from_errno(e.raw_os_error())),
    }
}

/// The error for a name taken by an object without a gfid that holds data.
pub(crate) fn foreign_entry(name: &Name) -> FsError {
    FsError::Os {
        errno: libc::EEXIST,
        msg: format!(
            "{name} exists on this brick without a gfid and holds data (brickfs did not make it): \
             move it out of the brick directory"
        ),
    }
}

/// Looks through directories whose operations were not confirmed before
/// the last stop (the dirty journal): removes the leftovers of interrupted
/// creates of an older brickd and gives an object in place a missing index
/// link or pointer. Best effort: what it cannot fix is logged for heal.
pub(crate) fn repair_dirs(store: &Store, dirs: &[Gfid]) {
    let mut removed = 0usize;
    let mut indexed = 0usize;
    for &dir in dirs {
        let Ok(dfd) = store.dir(dir) else { continue };
        let names = match list_names(dfd.as_fd(), |n| {
            !(dir.is_root() && n == PRIVATE_DIR.as_bytes())
        }) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(%dir, error = %e, "cannot list a dirty directory");
                continue;
            }
        };
        for n in names {
            let name = Name(n);
            match entry_gfid(dfd.as_fd(), &name) {
                Ok(None) => match remove_leftover(dfd.as_fd(), &name) {
                    Ok(true) => removed += 1,
                    Ok(false) => {
                        tracing::warn!(%dir, %name, "entry without a gfid holds data; left alone (invisible to clients)")
                    }
                    Err(e) => {
                        tracing::warn!(%dir, %name, error = %e, "cannot remove an entry without a gfid")
                    }
                },
                Ok(Some(g)) => match ensure_indexed(store, dfd.as_fd(), dir, &name, g) {
                    Ok(true) => indexed += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(%dir, %name, gfid = %g, error = %e, "cannot repair the index entry")
                    }
                },
                Err(_) => {}
            }
        }
    }
    if removed + indexed > 0 {
        store.forget_dirs();
        tracing::warn!(
            removed,
            indexed,
            "repaired directories of interrupted operations"
        );
    }
}

/// Gives `dfd/name` (gfid `gfid`) its index link or pointer if it has
/// none; `true` if it had to.
fn ensure_indexed(
    store: &Store,
    dfd: BorrowedFd<'_>,
    parent: Gfid,
    name: &Name,
    gfid: Gfid,
) -> FsResult<bool> {
    let st = stat_at(dfd, name)?;
    if is_dir(&st) {
        match store.resolve(gfid) {
            Ok(Obj::Dir(_)) | Ok(Obj::Other(_)) => Ok(false),
            Err(FsError::Stale(_)) => {
                store.set_dir_pointer(gfid, parent, name)?;
                tracing::warn!(%parent, %name, %gfid, "directory pointer was missing; written");
                Ok(true)
            }
            Err(e) => Err(e),
        }
    } else {
        match rustix::fs::lstat(store.index_path(gfid)) {
            Ok(_) => Ok(false),
            Err(Errno::NOENT) => {
                store.add_file_index(gfid, dfd, name)?;
                tracing::warn!(%parent, %name, %gfid, "index link was missing; linked");
                Ok(true)
            }
            Err(e) => Err(FsError::from_errno(e.raw_os_error())),
        }
    }
}
