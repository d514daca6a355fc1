//! The posix backend: every fop of the `Brick` service as a synchronous
//! function over the store, with the changelog folded in (dirty mark and
//! blame are written before the operation, so a crash in between still
//! leaves a trace for heal). Called from blocking threads by the server.
//!
//! Entry operations take the steps `crate::staging` prescribes (objects
//! complete before they get a name, index entries parked while their last
//! name goes), with a failpoint (`crate::failpoints`) between every two,
//! so a brick killed anywhere restarts consistent.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use proto::data::WriteAt;
use proto::{
    Attr, BrickInfo, DirEntry, DirPage, FileKind, FsError, FsResult, Gfid, Looked, Name, NewObject,
    PendingKind, QuotaLimit, RenameReq, ReplicaIndex, SetAttr, StatFs, TimeSet, Txn, MAX_IO,
    PRIVATE_DIR, QUOTA_XATTR,
};
use rustix::fs::{
    AtFlags, FallocateFlags, FileType, Gid, Mode, OFlags, RenameFlags, Stat, Timestamps, Uid, CWD,
};

use crate::attr::{attr_from_stat, is_dir, kind_of};
use crate::changelog::Changelog;
use crate::error::{BrickError, OsResult};
use crate::failpoints::failpoint;
use crate::locks::{ConnId, InodeLocks, RecordLocks};
use crate::orphans::Orphans;
use crate::quota::{Quotas, SUBVOL_XATTR};
use crate::staging::{foreign_entry, remove_leftover, Tag};
use crate::store::{
    entry_gfid, entry_target, list_names, proc_fd, stat_at, xget, xlist, xremove, xset, Obj, Store,
    Target, GFID_XATTR, PRIVATE_XATTR_PREFIX,
};
use crate::top::HotFiles;

/// Longest symlink target accepted (Linux PATH_MAX less the NUL).
const SYMLINK_MAX: usize = 4095;
const READDIR_MAX: u32 = 4096;
const XATTR_NAME_MAX: usize = 255;

pub struct Backend {
    pub store: Store,
    pub changelog: Changelog,
    pub orphans: Orphans,
    pub inodelks: InodeLocks,
    pub records: RecordLocks,
    pub quotas: Quotas,
    /// What `volume top` reports.
    pub(crate) hot: HotFiles,
}

/// Rejects names that are not one plain component, and the private
/// directory's name in the volume root (`hidden` says how).
pub(crate) fn check_name(parent: Gfid, name: &Name, hidden: FsError) -> FsResult<()> {
    name.validate()?;
    if parent.is_root() && name.as_bytes() == PRIVATE_DIR.as_bytes() {
        return Err(hidden);
    }
    Ok(())
}

fn check_xattr_name(name: &Name, private: FsError) -> FsResult<()> {
    let b = name.as_bytes();
    if b.is_empty() || b.contains(&0) {
        return Err(FsError::Invalid(format!("bad xattr name {name:?}")));
    }
    if b.len() > XATTR_NAME_MAX {
        return Err(FsError::Range);
    }
    if b.starts_with(PRIVATE_XATTR_PREFIX) && !proto::is_shared_private_xattr(b) {
        return Err(private);
    }
    Ok(())
}

fn dir_target(fd: BorrowedFd<'_>) -> Target {
    Target {
        path: proc_fd(fd),
        follow: true,
    }
}

fn nofollow(t: &Target) -> AtFlags {
    if t.follow {
        AtFlags::empty()
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    }
}

fn utime(t: Option<TimeSet>) -> FsResult<rustix::fs::Timespec> {
    Ok(match t {
        None => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        Some(TimeSet::Now) => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        Some(TimeSet::At(ts)) => {
            if ts.nsecs >= 1_000_000_000 {
                return Err(FsError::Invalid(format!(
                    "nanoseconds {} out of range",
                    ts.nsecs
                )));
            }
            rustix::fs::Timespec {
                tv_sec: ts.secs,
                tv_nsec: ts.nsecs.into(),
            }
        }
    })
}

/// The failpoints' name for making an object of `kind`.
fn create_op(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "create",
        FileKind::Dir => "mkdir",
        FileKind::Symlink => "symlink",
        FileKind::Fifo | FileKind::Socket | FileKind::CharDev | FileKind::BlockDev => "mknod",
    }
}

fn same_inode(a: &Stat, b: &Stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

impl Backend {
    pub fn open(dir: &Path) -> Result<Backend, BrickError> {
        let store = Store::open(dir)?;
        let changelog = Changelog::open(store.private_path())
            .map_err(|e| BrickError::io("load changelog indices", e))?;
        let orphans = Orphans::open(store.private_path(), &store)
            .map_err(|e| BrickError::io("purge open-unlinked files", e))?;
        // After a restart every mark is unconfirmed: these directories are
        // where the operations of the previous run may have stopped.
        crate::staging::repair_dirs(&store, &changelog.unowned_dirty());
        let quotas =
            Quotas::open(&store).map_err(|e| BrickError::io("count sub-volume usage", e))?;
        Ok(Backend {
            store,
            changelog,
            orphans,
            inodelks: InodeLocks::default(),
            records: RecordLocks::default(),
            quotas,
            hot: HotFiles::default(),
        })
    }

    pub fn hello(&self, volume: &str, may_bind: bool) -> FsResult<BrickInfo> {
        self.store.check_volume(volume, may_bind)?;
        Ok(BrickInfo {
            id: self.store.id,
            session: 0,
            dir: self.store.root_path().display().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }

    fn looked(&self, gfid: Gfid, st: &Stat, target: &Target) -> FsResult<Looked> {
        Ok(Looked {
            attr: attr_from_stat(gfid, st),
            pending: self.changelog.pending(target)?,
            dirty: self.changelog.is_dirty(gfid),
        })
    }

    /// Pre-op of entry operation `op` on directory `parent`.
    fn pre_entry(
        &self,
        txn: &Txn,
        parent: Gfid,
        dirfd: BorrowedFd<'_>,
        op: &'static str,
    ) -> FsResult<()> {
        self.mark_dirty(parent)?;
        failpoint!(op, "after_dirty");
        self.changelog
            .blame(parent, &dir_target(dirfd), &txn.blame, PendingKind::Entry)?;
        failpoint!(op, "after_blame");
        Ok(())
    }

    pub fn lookup(&self, parent: Gfid, name: &Name) -> FsResult<Looked> {
        check_name(parent, name, FsError::NotFound)?;
        let dirfd = self.store.dir(parent)?;
        let Some(gfid) = entry_gfid(dirfd.as_fd(), name)? else {
            tracing::warn!(%parent, %name, "entry without gfid is invisible to clients");
            return Err(FsError::NotFound);
        };
        let st = stat_at(dirfd.as_fd(), name)?;
        if !is_dir(&st) {
            self.hot.named(gfid, parent, name);
        }
        self.looked(gfid, &st, &entry_target(dirfd.as_fd(), name))
    }

    /// The sub-volume `gfid` belongs to, from the brick's own tag.
    pub fn subvol_tag(&self, gfid: Gfid) -> FsResult<Option<Gfid>> {
        if let Some(tag) = self.quotas.known_tag(gfid) {
            return Ok(tag);
        }
        let obj = self.store.resolve(gfid)?;
        Ok(self.quotas.tag_of(gfid, &obj.target()))
    }

    pub fn getattr(&self, gfid: Gfid) -> FsResult<Looked> {
        let obj = self.store.resolve(gfid)?;
        let st = obj.stat()?;
        self.looked(gfid, &st, &obj.target())
    }

    pub fn setattr(&self, txn: &Txn, gfid: Gfid, set: &SetAttr) -> FsResult<Attr> {
        let obj = self.store.resolve(gfid)?;
        let kind = kind_of(obj.stat()?.st_mode);
        if let Some(perm) = set.perm {
            if kind == FileKind::Symlink {
                return Err(FsError::NotSupported("mode of a symlink".into()));
            }
            if perm & !0o7777 != 0 {
                return Err(FsError::Invalid(format!("mode {perm:o}")));
            }
        }
        if set.size.is_some() && kind == FileKind::Dir {
            return Err(FsError::IsDir);
        }
        let times = Timestamps {
            last_access: utime(set.atime)?,
            last_modification: utime(set.mtime)?,
        };
        let t = obj.target();
        let op = if set.size.is_some() {
            "truncate"
        } else {
            "setattr"
        };
        self.mark_dirty(gfid)?;
        failpoint!(op, "after_dirty");
        if set.size.is_some() {
            self.changelog
                .blame(gfid, &t, &txn.blame, PendingKind::Data)?;
        }
        if set.perm.is_some()
            || set.uid.is_some()
            || set.gid.is_some()
            || set.atime.is_some()
            || set.mtime.is_some()
        {
            self.changelog
                .blame(gfid, &t, &txn.blame, PendingKind::Metadata)?;
        }
        failpoint!(op, "after_blame");
        // chown clears setuid/setgid, so it goes before chmod; times last,
        // since every other change bumps them.
        if set.uid.is_some() || set.gid.is_some() {
            rustix::fs::chownat(
                CWD,
                &t.path,
                set.uid.map(Uid::from_raw),
                set.gid.map(Gid::from_raw),
                nofollow(&t),
            )
            .os()?;
            failpoint!("setattr", "after_owner");
        }
        if let Some(perm) = set.perm {
            // Never a symlink here (checked above), so following is harmless.
            rustix::fs::chmodat(CWD, &t.path, Mode::from_raw_mode(perm), AtFlags::empty()).os()?;
            failpoint!("setattr", "after_mode");
        }
        if let Some(size) = set.size {
            let file = self.store.file(gfid)?;
            self.sized(txn, gfid, &file, |_| size, || Ok(file.set_len(size)?))?;
            failpoint!("truncate", "after_size");
        }
        if set.atime.is_some() || set.mtime.is_some() {
            rustix::fs::utimensat(CWD, &t.path, &times, nofollow(&t)).os()?;
            failpoint!("setattr", "after_times");
        }
        Ok(attr_from_stat(gfid, &obj.stat()?))
    }

    pub fn create(&self, txn: &Txn, parent: Gfid, new: &NewObject, conn: ConnId) -> FsResult<Attr> {
        check_name(parent, &new.name, FsError::Perm)?;
        if new.gfid.is_root() {
            return Err(FsError::Invalid("cannot create the root gfid".into()));
        }
        if new.perm & !0o7777 != 0 {
            return Err(FsError::Invalid(format!("mode {:o}", new.perm)));
        }
        let dirfd = self.store.dir(parent)?;
        let dfd = dirfd.as_fd();
        self.pre_entry(txn, parent, dfd, create_op(new.kind))?;
        // The parent's mark covers the entry; the new object needs its own
        // only when its creator takes its lock (and so will post-op it).
        if new.lock {
            self.changelog.mark_dirty(new.gfid, Some(conn))?;
        }
        let st = match self.make_object(dfd, parent, new, txn.maintenance) {
            Ok(st) => st,
            Err(FsError::Exists) => {
                // A retry of a create that already happened here succeeds.
                if entry_gfid(dfd, &new.name)? != Some(new.gfid) {
                    return Err(FsError::Exists);
                }
                stat_at(dfd, &new.name)?
            }
            Err(e) => return Err(e),
        };
        if new.lock {
            self.inodelks.try_acquire(new.gfid, conn);
        }
        if new.kind == FileKind::File && !txn.maintenance {
            self.hot.named(new.gfid, parent, &new.name);
            if !new.data.is_empty() {
                self.hot.wrote(new.gfid, new.data.len());
            }
        }
        Ok(attr_from_stat(new.gfid, &st))
    }

    /// Makes `new` at `dirfd/name` the crash-safe way (`crate::staging`):
    /// complete in the staging directory (owner, mode, xattrs, gfid), then
    /// linked at its name in one step and indexed. `Exists` if the name is
    /// taken (by anything but the leftover of an interrupted create).
    /// The new object counts against its sub-volume's limits unless
    /// `exempt` (heal, maintenance connections).
    pub(crate) fn make_object(
        &self,
        dirfd: BorrowedFd<'_>,
        parent: Gfid,
        new: &NewObject,
        exempt: bool,
    ) -> FsResult<Stat> {
        for (name, _) in &new.xattrs {
            check_xattr_name(name, FsError::Perm)?;
        }
        let limit = match new.xattrs.iter().find(|(n, _)| n.as_bytes() == QUOTA_XATTR) {
            Some((_, v)) if new.kind == FileKind::Dir => Some(
                QuotaLimit::decode(v).ok_or_else(|| FsError::Invalid("bad quota value".into()))?,
            ),
            Some(_) => return Err(FsError::Invalid("quota on a non-directory".into())),
            None => None,
        };
        if !new.times.is_empty() && new.kind != FileKind::File {
            return Err(FsError::Invalid(
                "a create sets times of a file only".into(),
            ));
        }
        let times = Timestamps {
            last_access: utime(new.times.atime.map(TimeSet::At))?,
            last_modification: utime(new.times.mtime.map(TimeSet::At))?,
        };
        if !new.data.is_empty()
            && (new.kind != FileKind::File || new.data.len() > proto::MAX_CREATE_DATA)
        {
            return Err(FsError::Invalid(format!(
                "a create may carry at most {} bytes, of a file only",
                proto::MAX_CREATE_DATA
            )));
        }
        let bytes = new.data.len() as u64;
        let subvol = self.quotas.counted_subvol(parent, dirfd);
        if let Some(sv) = subvol {
            self.quotas.reserve_inode(sv, exempt)?;
            if let Err(e) = self.quotas.reserve_bytes(sv, bytes, exempt) {
                self.quotas.release(sv, 0, 1);
                return Err(e);
            }
        }
        if limit.is_some() {
            self.quotas.list_root(new.gfid)?;
        }
        let made = self.make_tagged(dirfd, parent, new, &times, subvol);
        if let (Some(sv), Err(_)) = (subvol, &made) {
            self.quotas.release(sv, bytes, 1);
        }
        let st = made?;
        if let Some(limit) = limit {
            let fd = self.store.dir(new.gfid)?;
            self.quotas.set_limit(new.gfid, fd.as_fd(), Some(limit))?;
        }
        Ok(st)
    }

    fn make_tagged(
        &self,
        dirfd: BorrowedFd<'_>,
        parent: Gfid,
        new: &NewObject,
        times: &Timestamps,
        subvol: Option<Gfid>,
    ) -> FsResult<Stat> {
        if new.kind == FileKind::Symlink {
            let target = new
                .target
                .as_ref()
                .ok_or_else(|| FsError::Invalid("symlink without target".into()))?;
            if target.is_empty() || target.len() > SYMLINK_MAX || target.contains(&0) {
                return Err(FsError::Invalid("bad symlink target".into()));
            }
        }
        let pst = rustix::fs::fstat(dirfd).os()?;
        let mut perm = new.perm;
        let mut gid = new.gid;
        if pst.st_mode & libc::S_ISGID != 0 {
            gid = pst.st_gid;
            if new.kind == FileKind::Dir {
                perm |= libc::S_ISGID;
            }
        }
        let staged = self.store.staging.name(Tag::New, new.gfid);
        let file = self.stage_object(&staged, new, perm)?;
        failpoint!(create_op(new.kind), "after_stage");
        let placed = self
            .fill_staged(&staged, file.as_ref(), new, perm, gid, times, subvol)
            .and_then(|()| self.place_over_leftover(dirfd, parent, new, &staged));
        if let Err(e) = placed {
            self.unstage(&staged, new.kind);
            return Err(e);
        }
        match &file {
            Some(fd) => rustix::fs::fstat(fd).os(),
            None => stat_at(dirfd, &new.name),
        }
    }

    /// Places a filled staged object at its name. A name taken by an entry
    /// without a gfid is an interrupted create's leftover (an older
    /// brickd's) if it holds nothing: removed, and the placing tried once
    /// more. One that holds data is not brickfs's to remove.
    fn place_over_leftover(
        &self,
        dirfd: BorrowedFd<'_>,
        parent: Gfid,
        new: &NewObject,
        staged: &str,
    ) -> FsResult<()> {
        let place = || {
            if new.kind == FileKind::Dir {
                self.place_dir(dirfd, parent, new, staged)
            } else {
                self.place_other(dirfd, new, staged)
            }
        };
        match place() {
            Err(FsError::Exists) if matches!(entry_gfid(dirfd, &new.name), Ok(None)) => {
                if remove_leftover(dirfd, &new.name)? {
                    place()
                } else {
                    Err(foreign_entry(&new.name))
                }
            }
            placed => placed,
        }
    }

    /// The bare object in the staging directory, with its final mode as far
    /// as the umask lets it; the fd of a regular file.
    fn stage_object(&self, staged: &str, new: &NewObject, perm: u32) -> FsResult<Option<OwnedFd>> {
        let sfd = self.store.staging.fd();
        let mode = Mode::from_raw_mode(perm & 0o777);
        match new.kind {
            FileKind::File => {
                let flags = OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::WRONLY
                    | OFlags::CLOEXEC
                    | OFlags::NOFOLLOW;
                return rustix::fs::openat(sfd, staged, flags, mode).os().map(Some);
            }
            FileKind::Dir => rustix::fs::mkdirat(sfd, staged, mode).os()?,
            FileKind::Symlink => {
                let target: &[u8] = new.target.as_ref().map_or(&[], |t| t.as_slice());
                rustix::fs::symlinkat(target, sfd, staged).os()?
            }
            FileKind::Fifo => rustix::fs::mknodat(sfd, staged, FileType::Fifo, mode, 0).os()?,
            FileKind::Socket => rustix::fs::mknodat(sfd, staged, FileType::Socket, mode, 0).os()?,
            FileKind::CharDev => {
                rustix::fs::mknodat(sfd, staged, FileType::CharacterDevice, mode, new.rdev).os()?
            }
            FileKind::BlockDev => {
                rustix::fs::mknodat(sfd, staged, FileType::BlockDevice, mode, new.rdev).os()?
            }
        }
        Ok(None)
    }

    /// Contents, owner, mode, times, initial xattrs and gfid of a staged
    /// object.
    #[allow(clippy::too_many_arguments)]
    fn fill_staged(
        &self,
        staged: &str,
        file: Option<&OwnedFd>,
        new: &NewObject,
        perm: u32,
        gid: u32,
        times: &Timestamps,
        subvol: Option<Gfid>,
    ) -> FsResult<()> {
        let op = create_op(new.kind);
        let sfd = self.store.staging.fd();
        if let (Some(fd), false) = (file, new.data.is_empty()) {
            // Before the gfid: a staged file without one is a leftover that
            // restart removes, so a crash here never leaves a short file.
            let mut done = 0;
            while done < new.data.len() {
                match rustix::io::pwrite(fd, &new.data[done..], done as u64).os()? {
                    0 => {
                        return Err(FsError::Os {
                            errno: libc::EIO,
                            msg: format!("a new file took {done} of its bytes"),
                        })
                    }
                    n => done += n,
                }
            }
            failpoint!(op, "after_data");
        }
        let chown = new.uid != self.store.euid || gid != self.store.egid;
        if chown {
            let (uid, gid) = (Some(Uid::from_raw(new.uid)), Some(Gid::from_raw(gid)));
            match file {
                Some(fd) => rustix::fs::fchown(fd, uid, gid).os()?,
                None => {
                    rustix::fs::chownat(sfd, staged, uid, gid, AtFlags::SYMLINK_NOFOLLOW).os()?
                }
            }
        }
        failpoint!(op, "after_owner");
        // The umask took bits, or chown cleared setuid/setgid.
        let made = self.store.umask.map(|u| perm & 0o777 & !u);
        if new.kind != FileKind::Symlink && made != Some(perm) {
            let mode = Mode::from_raw_mode(perm);
            match file {
                Some(fd) => rustix::fs::fchmod(fd, mode).os()?,
                // Our own staged name: not a symlink, so following is harmless.
                None => rustix::fs::chmodat(sfd, staged, mode, AtFlags::empty()).os()?,
            }
        }
        // After the data, which would bump mtime; the owner, mode and
        // xattrs leave it alone. A kill before the gfid leaves a staged
        // leftover either way, so this needs no failpoint of its own.
        if let (Some(fd), false) = (file, new.times.is_empty()) {
            rustix::fs::futimens(fd, times).os()?;
        }
        failpoint!(op, "after_mode");
        let target = Target {
            path: self.store.staging.path(staged),
            follow: false,
        };
        let set = |name: &[u8], value: &[u8]| match file {
            Some(fd) => {
                rustix::fs::fsetxattr(fd, name, value, rustix::fs::XattrFlags::empty()).os()
            }
            None => xset(&target, name, value, 0),
        };
        for (name, value) in &new.xattrs {
            set(name.as_bytes(), value)?;
        }
        if let Some(sv) = subvol {
            set(SUBVOL_XATTR, &sv.0)?;
        }
        failpoint!(op, "after_xattrs");
        set(GFID_XATTR.as_bytes(), &new.gfid.0)?;
        failpoint!(op, "after_gfid");
        Ok(())
    }

    /// A staged non-directory: linked at its name (atomic, fails if the name
    /// is taken), then its staged name becomes its index link.
    fn place_other(&self, dirfd: BorrowedFd<'_>, new: &NewObject, staged: &str) -> FsResult<()> {
        let op = create_op(new.kind);
        let sfd = self.store.staging.fd();
        rustix::fs::linkat(sfd, staged, dirfd, new.name.as_bytes(), AtFlags::empty()).os()?;
        failpoint!(op, "after_name");
        // Never over another object's index entry: the gfid is the
        // client's choice, and replacing the entry would hand that object's
        // gfid (and every read and write by it) to this new file.
        if let Err(e) = self.store.install_new(new.gfid, staged) {
            // Unreachable by gfid: the name must not stay.
            if let Err(e) = rustix::fs::unlinkat(dirfd, new.name.as_bytes(), AtFlags::empty()) {
                tracing::error!(name = %new.name, error = %e, "cannot take back a half-made entry");
            }
            return Err(e);
        }
        failpoint!(op, "after_index");
        Ok(())
    }

    /// A staged directory: its pointer first (a directory must never be at
    /// its name unreachable by gfid), then moved to its name in one step.
    fn place_dir(
        &self,
        dirfd: BorrowedFd<'_>,
        parent: Gfid,
        new: &NewObject,
        staged: &str,
    ) -> FsResult<()> {
        let op = create_op(new.kind);
        // Placers of directories run one at a time: a heal creating the
        // same gfid as a client (on the blocking pool, beside the runtime
        // thread) would otherwise see the other's pointer before its
        // directory and take it for a stale one.
        let _alone = self.store.placing_dir();
        match self.store.write_new_pointer(new.gfid, parent, &new.name) {
            Ok(()) => {}
            // This gfid lives here already (a retried create, which the
            // caller tells apart).
            Err(FsError::Exists) if self.store.resolve(new.gfid).is_ok() => {
                return Err(FsError::Exists)
            }
            // A pointer leading nowhere (recovery removes those; an older
            // brickd could leave one behind).
            Err(FsError::Exists) => self.store.set_dir_pointer(new.gfid, parent, &new.name)?,
            Err(e) => return Err(e),
        }
        failpoint!(op, "after_pointer");
        if let Err(e) = rustix::fs::renameat_with(
            self.store.staging.fd(),
            staged,
            dirfd,
            new.name.as_bytes(),
            RenameFlags::NOREPLACE,
        )
        .os()
        {
            // The name may hold this very directory (made by another
            // placer): only a pointer that leads nowhere goes.
            if let Err(FsError::Stale(_)) = self.store.resolve(new.gfid) {
                self.store.remove_index(new.gfid)?;
            }
            return Err(e);
        }
        failpoint!(op, "after_place");
        Ok(())
    }

    /// Removes a staged object that will not be placed (best effort: what
    /// is left, the next start's recovery removes).
    fn unstage(&self, staged: &str, kind: FileKind) {
        let flags = if kind == FileKind::Dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        if let Err(e) = rustix::fs::unlinkat(self.store.staging.fd(), staged, flags) {
            tracing::warn!(staged, error = %e, "cannot remove a staged object");
        }
    }

    /// Removes the non-directory name `dirfd/name` of `gfid`, which has
    /// `nlink` links counting its index link. The index link of a last name
    /// is parked first (`crate::staging`), so no kill leaves it behind
    /// unnamed; `keep_index` keeps it (the object lives on by gfid).
    pub(crate) fn remove_file_name(
        &self,
        dirfd: BorrowedFd<'_>,
        name: &Name,
        gfid: Option<Gfid>,
        nlink: u64,
        keep_index: bool,
    ) -> FsResult<()> {
        let op = "unlink";
        let leaving = self.leaving(dirfd, name, nlink);
        let parked = match gfid {
            Some(g) if !keep_index && nlink <= 2 => self.store.park(g, Tag::Unlinked)?,
            _ => None,
        };
        failpoint!(op, "after_park");
        if let Err(e) = rustix::fs::unlinkat(dirfd, name.as_bytes(), AtFlags::empty()).os() {
            if let (Some(g), Some(p)) = (gfid, &parked) {
                self.store.install(g, p)?;
            }
            return Err(e);
        }
        failpoint!(op, "after_name");
        self.left(leaving);
        match (gfid, parked) {
            (Some(g), Some(p)) => self.store.settle_unlinked(g, &p)?,
            // Another name may have gone meanwhile: the last one drops it.
            (Some(g), None) if !keep_index => self.store.drop_index_if_orphan(g)?,
            _ => {}
        }
        failpoint!(op, "after_drop");
        Ok(())
    }

    /// Removes the empty directory `dirfd/name` of `gfid` and its pointer,
    /// parked while the directory goes.
    pub(crate) fn remove_dir_name(
        &self,
        dirfd: BorrowedFd<'_>,
        name: &Name,
        gfid: Option<Gfid>,
    ) -> FsResult<()> {
        let op = "rmdir";
        let leaving = self.leaving(dirfd, name, 0);
        let parked = match gfid {
            Some(g) => self.store.park(g, Tag::Rmdir)?.map(|p| (g, p)),
            None => None,
        };
        failpoint!(op, "after_park");
        if let Err(e) = rustix::fs::unlinkat(dirfd, name.as_bytes(), AtFlags::REMOVEDIR).os() {
            if let Some((g, p)) = &parked {
                self.store.install(*g, p)?;
            }
            return Err(e);
        }
        failpoint!(op, "after_remove");
        self.left(leaving);
        if let Some(g) = gfid {
            self.quotas.forget_root(g);
        }
        self.store.forget_dirs();
        if let Some((_, p)) = parked {
            self.store.discard(&p);
        }
        failpoint!(op, "after_drop");
        Ok(())
    }

    /// Removes a name. With `keep_for` (the caller has the file open), a
    /// file that loses its last name stays readable by gfid until that
    /// connection purges it; its gfid is returned then.
    pub fn unlink(
        &self,
        txn: &Txn,
        parent: Gfid,
        name: &Name,
        want_dir: bool,
        keep_for: Option<proto::ClientId>,
    ) -> FsResult<Option<Gfid>> {
        check_name(parent, name, FsError::Perm)?;
        let dirfd = self.store.dir(parent)?;
        let dfd = dirfd.as_fd();
        let st = stat_at(dfd, name)?;
        let gfid = entry_gfid(dfd, name)?;
        match (want_dir, is_dir(&st)) {
            (true, false) => return Err(FsError::NotDir),
            (false, true) => return Err(FsError::IsDir),
            _ => {}
        }
        if want_dir {
            self.pre_entry(txn, parent, dfd, "rmdir")?;
            self.remove_dir_name(dfd, name, gfid)?;
            return Ok(None);
        }
        self.pre_entry(txn, parent, dfd, "unlink")?;
        // The name plus the index link: this is the last name.
        let nameless = st.st_nlink <= 2;
        if let (Some(g), Some(client), true) = (gfid, keep_for, nameless) {
            // The marker first: a restart purges every marked file that
            // lost its name, and keeps one that still has it.
            self.orphans.keep(g, client)?;
            failpoint!("unlink", "after_keep");
            let leaving = self.leaving(dfd, name, st.st_nlink as u64);
            if let Err(e) = rustix::fs::unlinkat(dfd, name.as_bytes(), AtFlags::empty()).os() {
                self.orphans.forget(g);
                return Err(e);
            }
            self.left(leaving);
            failpoint!("unlink", "after_name");
            return Ok(Some(g));
        }
        self.remove_file_name(dfd, name, gfid, st.st_nlink as u64, false)?;
        Ok(None)
    }

    /// Attributes of directories right after an entry operation changed
    /// them; a directory that cannot be read is left out (the client then
    /// asks again when it needs them).
    pub fn dir_attrs(&self, gfids: &[Gfid]) -> Vec<Attr> {
        let mut out = Vec::with_capacity(gfids.len());
        for g in gfids {
            if out.iter().any(|a: &Attr| a.gfid == *g) {
                continue;
            }
            let stat = self
                .store
                .dir(*g)
                .and_then(|d| rustix::fs::fstat(d.as_fd()).os());
            if let Ok(st) = stat {
                out.push(attr_from_stat(*g, &st));
            }
        }
        out
    }

    pub fn purge(&self, client: proto::ClientId, gfids: &[Gfid]) -> FsResult<()> {
        for g in gfids {
            self.orphans.purge(&self.store, *g, client)?;
        }
        Ok(())
    }

    pub fn rename(&self, txn: &Txn, req: &RenameReq) -> FsResult<()> {
        check_name(req.parent, &req.name, FsError::Perm)?;
        check_name(req.new_parent, &req.new_name, FsError::Perm)?;
        let known = RenameFlags::NOREPLACE | RenameFlags::EXCHANGE;
        let flags = RenameFlags::from_bits_retain(req.flags);
        if !known.contains(flags) || flags == known {
            return Err(FsError::Invalid(format!("rename flags {:#x}", req.flags)));
        }
        let exchange = flags.contains(RenameFlags::EXCHANGE);
        let src_dir = self.store.dir(req.parent)?;
        let other_dir = if req.new_parent == req.parent {
            None
        } else {
            Some(self.store.dir(req.new_parent)?)
        };
        let sfd = src_dir.as_fd();
        let dfd = other_dir.as_ref().map_or(sfd, |d| d.as_fd());
        let src_st = stat_at(sfd, &req.name)?;
        let src_gfid = entry_gfid(sfd, &req.name)?;
        let dst = match stat_at(dfd, &req.new_name) {
            Ok(st) => Some((st, entry_gfid(dfd, &req.new_name)?)),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if other_dir.is_some() {
            self.quotas
                .check_same((req.parent, sfd), (req.new_parent, dfd))?;
        }
        let replaced = match &dst {
            Some((st, _)) if !exchange && !flags.contains(RenameFlags::NOREPLACE) => {
                let nlink = if is_dir(st) { 0 } else { st.st_nlink };
                self.leaving(dfd, &req.new_name, nlink)
            }
            _ => None,
        };
        let op = "rename";
        self.pre_entry(txn, req.parent, sfd, op)?;
        if other_dir.is_some() {
            self.pre_entry(txn, req.new_parent, dfd, op)?;
        }
        let src_is_dir = is_dir(&src_st);
        let dst_is_dir = dst.as_ref().is_some_and(|(st, _)| is_dir(st));
        // Renaming one hard link over another does nothing.
        let same = dst.as_ref().is_some_and(|(st, _)| same_inode(&src_st, st));
        let dst_gfid = dst.as_ref().and_then(|(_, g)| *g);
        // The new pointers of the directories that move, staged until they
        // have moved.
        let mut staged: Vec<(Gfid, String)> = Vec::new();
        let mut moving = Vec::new();
        if !same {
            if let (true, Some(g)) = (src_is_dir, src_gfid) {
                moving.push((g, req.new_parent, &req.new_name));
            }
            if let (true, true, Some(g)) = (exchange, dst_is_dir, dst_gfid) {
                moving.push((g, req.parent, &req.name));
            }
        }
        for (g, parent, name) in moving {
            match self.store.stage_pointer(g, parent, name) {
                Ok(p) => staged.push((g, p)),
                Err(e) => {
                    self.discard_all(&staged);
                    return Err(e);
                }
            }
        }
        failpoint!(op, "after_stage");
        // The index entry of a target that loses its last name, parked
        // while it goes.
        let park = match (&dst, dst_gfid) {
            (Some((st, _)), Some(g))
                if !exchange && !same && !flags.contains(RenameFlags::NOREPLACE) =>
            {
                if is_dir(st) {
                    Some((g, Tag::Rmdir))
                } else if st.st_nlink <= 2 {
                    Some((g, Tag::Unlinked))
                } else {
                    None
                }
            }
            _ => None,
        };
        let parked = match park.map(|(g, tag)| self.store.park(g, tag)) {
            Some(Ok(Some(p))) => park.map(|(g, tag)| (g, tag, p)),
            Some(Ok(None)) | None => None,
            Some(Err(e)) => {
                self.discard_all(&staged);
                return Err(e);
            }
        };
        failpoint!(op, "after_park");
        if let Err(e) = rustix::fs::renameat_with(
            sfd,
            req.name.as_bytes(),
            dfd,
            req.new_name.as_bytes(),
            flags,
        )
        .os()
        {
            self.discard_all(&staged);
            if let Some((g, _, p)) = &parked {
                self.store.install(*g, p)?;
            }
            return Err(e);
        }
        failpoint!(op, "after_rename");
        if !same {
            self.left(replaced);
        }
        // Pointers first: until the cached paths are dropped, lookups in
        // the moved tree still reach it through cached fds.
        for (g, p) in &staged {
            self.store.install(*g, p)?;
        }
        if src_is_dir || dst_is_dir {
            self.store.forget_dirs();
        }
        failpoint!(op, "after_pointer");
        match (parked, dst_gfid) {
            (Some((_, Tag::Rmdir, p)), _) => self.store.discard(&p),
            (Some((g, _, p)), _) => self.store.settle_unlinked(g, &p)?,
            (None, Some(g)) if !exchange && !same && !dst_is_dir => {
                self.store.drop_index_if_orphan(g)?
            }
            _ => {}
        }
        failpoint!(op, "after_drop");
        Ok(())
    }

    fn discard_all(&self, staged: &[(Gfid, String)]) {
        for (_, p) in staged {
            self.store.discard(p);
        }
    }

    pub fn link(&self, txn: &Txn, gfid: Gfid, parent: Gfid, name: &Name) -> FsResult<Attr> {
        check_name(parent, name, FsError::Perm)?;
        let Obj::Other(idx) = self.store.resolve(gfid)? else {
            return Err(FsError::Perm);
        };
        let dirfd = self.store.dir(parent)?;
        let dfd = dirfd.as_fd();
        if self.quotas.active() {
            let file = self.store.file(gfid)?;
            let of_file = self.quotas.counted_subvol(gfid, file.as_fd());
            if of_file != self.quotas.counted_subvol(parent, dfd) {
                return Err(FsError::CrossSubvolume);
            }
        }
        // The parent's mark (pre_entry) covers the new name.
        self.pre_entry(txn, parent, dfd, "link")?;
        match rustix::fs::linkat(CWD, &idx, dfd, name.as_bytes(), AtFlags::empty()).os() {
            Ok(()) => {}
            // A retried link that already happened.
            Err(FsError::Exists) if entry_gfid(dfd, name)? == Some(gfid) => {}
            Err(e) => return Err(e),
        }
        failpoint!("link", "after_name");
        if !txn.maintenance {
            self.hot.named(gfid, parent, name);
        }
        Ok(attr_from_stat(gfid, &rustix::fs::lstat(&idx).os()?))
    }

    pub fn readlink(&self, gfid: Gfid) -> FsResult<Vec<u8>> {
        match self.store.resolve(gfid)? {
            Obj::Dir(_) => Err(FsError::Invalid("not a symlink".into())),
            Obj::Other(idx) => match rustix::fs::readlinkat(CWD, &idx, Vec::new()) {
                Ok(t) => Ok(t.into_bytes()),
                Err(rustix::io::Errno::INVAL) => Err(FsError::Invalid("not a symlink".into())),
                Err(e) => Err(FsError::from_errno(e.raw_os_error())),
            },
        }
    }

    pub fn read(&self, gfid: Gfid, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        if size > MAX_IO {
            return Err(FsError::Invalid(format!(
                "read of {size} bytes exceeds {MAX_IO}"
            )));
        }
        let file = self.store.file(gfid)?;
        let mut buf = vec![0u8; size as usize];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], offset.saturating_add(got as u64)) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    /// Writes `data` at `at`; the attributes after it tell where an
    /// append landed (its size less the data's length).
    pub fn write(&self, txn: &Txn, gfid: Gfid, at: WriteAt, data: &[u8]) -> FsResult<Attr> {
        if data.len() > MAX_IO as usize {
            return Err(FsError::Invalid(format!(
                "write of {} bytes exceeds {MAX_IO}",
                data.len()
            )));
        }
        let file = self.store.file(gfid)?;
        let len = data.len() as u64;
        let end = |size: u64| match at {
            WriteAt::Offset(o) => o.saturating_add(len).max(size),
            WriteAt::End => size.saturating_add(len),
        };
        let st = self.sized(txn, gfid, &file, end, || {
            self.data_pre_op(txn, gfid, "write")?;
            let offset = match at {
                WriteAt::Offset(o) => o,
                // The size cannot change between the fstat and the write: the
                // client holds the inode's replication lock, so nobody else
                // writes, and its own writes to the inode come one at a time.
                WriteAt::End => rustix::fs::fstat(&*file).os()?.st_size.max(0) as u64,
            };
            write_in_pieces(&file, data, offset)?;
            failpoint!("write", "after_write");
            Ok(())
        })?;
        if !txn.maintenance {
            self.hot.wrote(gfid, data.len());
        }
        Ok(attr_from_stat(gfid, &st))
    }

    fn data_pre_op(&self, txn: &Txn, gfid: Gfid, op: &'static str) -> FsResult<()> {
        self.mark_dirty(gfid)?;
        failpoint!(op, "after_dirty");
        let t = Target {
            path: self.store.index_path(gfid),
            follow: false,
        };
        self.changelog
            .blame(gfid, &t, &txn.blame, PendingKind::Data)?;
        failpoint!(op, "after_blame");
        Ok(())
    }

    pub fn fsync(&self, gfid: Gfid, datasync: bool) -> FsResult<()> {
        if let Obj::Dir(fd) = self.store.resolve(gfid)? {
            let dir = rustix::fs::openat(
                &fd,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .os()?;
            return rustix::fs::fsync(&dir).os();
        }
        let file = self.store.file(gfid)?;
        if datasync {
            file.sync_data()?;
        } else {
            file.sync_all()?;
        }
        Ok(())
    }

    pub fn fallocate(
        &self,
        txn: &Txn,
        gfid: Gfid,
        mode: i32,
        offset: u64,
        len: u64,
    ) -> FsResult<Attr> {
        let file = self.store.file(gfid)?;
        let flags = FallocateFlags::from_bits_retain(mode as u32);
        // Usage is apparent size: only a fallocate that grows the file
        // counts (KEEP_SIZE and hole punching leave the size).
        let grows = !flags.intersects(FallocateFlags::KEEP_SIZE | FallocateFlags::PUNCH_HOLE);
        let end = |size: u64| {
            if grows {
                offset.saturating_add(len).max(size)
            } else {
                size
            }
        };
        let st = self.sized(txn, gfid, &file, end, || {
            self.data_pre_op(txn, gfid, "fallocate")?;
            rustix::fs::fallocate(&*file, flags, offset, len).os()?;
            failpoint!("fallocate", "after_fallocate");
            Ok(())
        })?;
        Ok(attr_from_stat(gfid, &st))
    }

    /// Copies a range of one file of this brick into another in the
    /// kernel (copy_file_range: a reflink where the file system shares
    /// extents), so the bytes never cross the network. Only what the
    /// source holds of the range is copied; the count is answered. Under
    /// the client's replication locks of both files every fresh replica of
    /// the source has the same bytes, so every brick copies the same.
    pub fn copy_range(&self, txn: &Txn, copy: &proto::CopyRange) -> FsResult<(u64, Attr)> {
        let proto::CopyRange {
            src,
            src_offset,
            dst,
            dst_offset,
            len,
        } = *copy;
        if len > proto::MAX_COPY {
            return Err(FsError::Invalid(format!(
                "a copy of {len} bytes exceeds {}",
                proto::MAX_COPY
            )));
        }
        let from = self.store.file(src)?;
        let to = self.store.file(dst)?;
        let size = rustix::fs::fstat(&*from).os()?.st_size.max(0) as u64;
        let n = len.min(size.saturating_sub(src_offset));
        if dst_offset
            .checked_add(n)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err(FsError::Invalid("a copy past the largest offset".into()));
        }
        let end = |size: u64| {
            if n == 0 {
                size
            } else {
                (dst_offset + n).max(size)
            }
        };
        let mut copied = 0u64;
        let st = self.sized(txn, dst, &to, end, || {
            self.data_pre_op(txn, dst, "copy_range")?;
            while copied < n {
                let (mut off_in, mut off_out) = (src_offset + copied, dst_offset + copied);
                let step = usize::try_from(n - copied).unwrap_or(usize::MAX);
                match rustix::fs::copy_file_range(
                    &*from,
                    Some(&mut off_in),
                    &*to,
                    Some(&mut off_out),
                    step,
                )
                .os()?
                {
                    0 => break,
                    k => copied += k as u64,
                }
            }
            failpoint!("copy_range", "after_copy");
            Ok(())
        })?;
        if !txn.maintenance {
            self.hot
                .wrote(dst, usize::try_from(copied).unwrap_or(usize::MAX));
        }
        Ok((copied, attr_from_stat(dst, &st)))
    }

    pub fn readdir(&self, gfid: Gfid, after: Option<&Name>, max: u32) -> FsResult<DirPage> {
        let dirfd = self.store.dir(gfid)?;
        let dfd = dirfd.as_fd();
        let mut names = list_names(dfd, |n| {
            !(gfid.is_root() && n == PRIVATE_DIR.as_bytes())
                && after.is_none_or(|a| n > a.as_bytes())
        })?;
        names.sort_unstable();
        let max = max.clamp(1, READDIR_MAX) as usize;
        let eof = names.len() <= max;
        names.truncate(max);
        let mut entries = Vec::with_capacity(names.len());
        for n in names {
            let name = Name(n);
            let st = match stat_at(dfd, &name) {
                Ok(st) => st,
                // Removed since the directory was read.
                Err(FsError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            match entry_gfid(dfd, &name) {
                Ok(Some(g)) => entries.push(DirEntry {
                    attr: attr_from_stat(g, &st),
                    name,
                }),
                Ok(None) => tracing::warn!(dir = %gfid, %name, "skipping entry without gfid"),
                Err(FsError::NotFound) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(DirPage { entries, eof })
    }

    pub fn statfs(&self, at: Gfid) -> FsResult<StatFs> {
        let s = rustix::fs::fstatvfs(self.store.root_fd()).os()?;
        let quota = if self.quotas.active() && !at.is_root() {
            match self.store.resolve(at)? {
                Obj::Dir(fd) => self.quotas.usage_of(at, fd.as_fd()),
                Obj::Other(_) => {
                    let file = self.store.file(at)?;
                    self.quotas.usage_of(at, file.as_fd())
                }
            }
        } else {
            None
        };
        Ok(StatFs {
            quota,
            blocks: s.f_blocks,
            bfree: s.f_bfree,
            bavail: s.f_bavail,
            files: s.f_files,
            ffree: s.f_ffree,
            bsize: u32::try_from(s.f_bsize).unwrap_or(u32::MAX),
            namelen: u32::try_from(s.f_namemax).unwrap_or(u32::MAX),
            frsize: u32::try_from(s.f_frsize).unwrap_or(u32::MAX),
        })
    }

    pub fn getxattr(&self, gfid: Gfid, name: &Name) -> FsResult<Vec<u8>> {
        check_xattr_name(name, FsError::NoAttr)?;
        let obj = self.store.resolve(gfid)?;
        xget(&obj.target(), name.as_bytes())
    }

    pub fn listxattr(&self, gfid: Gfid) -> FsResult<Vec<Name>> {
        let obj = self.store.resolve(gfid)?;
        Ok(xlist(&obj.target())?
            .into_iter()
            .filter(|n| !n.starts_with(PRIVATE_XATTR_PREFIX) || proto::is_shared_private_xattr(n))
            .map(Name)
            .collect())
    }

    pub fn setxattr(
        &self,
        txn: &Txn,
        gfid: Gfid,
        name: &Name,
        value: &[u8],
        flags: i32,
    ) -> FsResult<()> {
        check_xattr_name(name, FsError::Perm)?;
        let flags =
            u32::try_from(flags).map_err(|_| FsError::Invalid(format!("xattr flags {flags}")))?;
        let obj = self.store.resolve(gfid)?;
        let limit = if name.as_bytes() == QUOTA_XATTR {
            if !matches!(obj, Obj::Dir(_)) {
                return Err(FsError::Invalid("quota on a non-directory".into()));
            }
            let limit = QuotaLimit::decode(value)
                .ok_or_else(|| FsError::Invalid("bad quota value".into()))?;
            self.quotas.list_root(gfid)?;
            Some(limit)
        } else {
            None
        };
        let t = obj.target();
        self.mark_dirty(gfid)?;
        failpoint!("setxattr", "after_dirty");
        self.changelog
            .blame(gfid, &t, &txn.blame, PendingKind::Metadata)?;
        failpoint!("setxattr", "after_blame");
        xset(&t, name.as_bytes(), value, flags)?;
        failpoint!("setxattr", "after_set");
        if let (Some(limit), Obj::Dir(fd)) = (limit, &obj) {
            self.quotas.set_limit(gfid, fd.as_fd(), Some(limit))?;
        }
        Ok(())
    }

    pub fn removexattr(&self, txn: &Txn, gfid: Gfid, name: &Name) -> FsResult<()> {
        check_xattr_name(name, FsError::Perm)?;
        let obj = self.store.resolve(gfid)?;
        let t = obj.target();
        self.mark_dirty(gfid)?;
        failpoint!("removexattr", "after_dirty");
        self.changelog
            .blame(gfid, &t, &txn.blame, PendingKind::Metadata)?;
        failpoint!("removexattr", "after_blame");
        xremove(&t, name.as_bytes())?;
        failpoint!("removexattr", "after_remove");
        if let (true, Obj::Dir(fd)) = (name.as_bytes() == QUOTA_XATTR, &obj) {
            self.quotas.set_limit(gfid, fd.as_fd(), None)?;
        }
        Ok(())
    }

    pub fn mark_pending(
        &self,
        gfid: Gfid,
        blame: &[ReplicaIndex],
        kind: PendingKind,
    ) -> FsResult<()> {
        let obj = self.store.resolve(gfid)?;
        self.changelog.blame(gfid, &obj.target(), blame, kind)
    }

    pub fn retract_pending(
        &self,
        gfid: Gfid,
        blame: &[ReplicaIndex],
        kind: PendingKind,
    ) -> FsResult<()> {
        let obj = self.store.resolve(gfid)?;
        self.changelog.unblame(gfid, &obj.target(), blame, kind)
    }

    pub fn unlock_batch(&self, conn: ConnId, gfids: &[Gfid]) -> FsResult<()> {
        let mut first_err = None;
        for &g in gfids {
            self.inodelks.release(g, conn);
            if let Err(e) = self.changelog.clear_dirty(g, conn) {
                tracing::warn!(gfid = %g, error = %e, "cannot clear dirty mark");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The dirty mark of a transaction, owned by whoever holds the inode's
    /// replication lock (every client transaction runs under it).
    fn mark_dirty(&self, gfid: Gfid) -> FsResult<()> {
        self.changelog.mark_dirty(gfid, self.inodelks.holder(gfid))
    }

    /// Runs `op`, which changes the size of `file`, charged to the file's
    /// sub-volume: `end` is the size the file asks for given its size now.
    /// The charge is taken before `op` (refused past the limit unless the
    /// connection is a maintenance one) and corrected by what `op` did.
    /// Returns the file's stat after `op` (which callers answer with, so a
    /// charged write costs one fstat more than an uncharged one, not two).
    fn sized(
        &self,
        txn: &Txn,
        gfid: Gfid,
        file: &std::fs::File,
        end: impl FnOnce(u64) -> u64,
        op: impl FnOnce() -> FsResult<()>,
    ) -> FsResult<Stat> {
        let after = || rustix::fs::fstat(file).os();
        let Some(sv) = self.quotas.counted_subvol(gfid, file.as_fd()) else {
            op()?;
            return after();
        };
        let st = after()?;
        // Open but unlinked: no longer in the sub-volume's tree.
        if st.st_nlink < 2 {
            op()?;
            return after();
        }
        let old = st.st_size.max(0) as u64;
        let extra = end(old).saturating_sub(old);
        self.quotas.reserve_bytes(sv, extra, txn.maintenance)?;
        let result = op();
        let now = after();
        let new = now.as_ref().map_or(old, |s| s.st_size.max(0) as u64);
        self.quotas
            .adjust_bytes(sv, new as i64 - old as i64 - extra as i64);
        result?;
        now
    }

    /// What leaves a sub-volume's usage when the name `dirfd/name` goes:
    /// a file with `nlink` links (its name and the index link) takes its
    /// bytes and itself with its last name; a directory (`nlink` 0) itself.
    fn leaving(&self, dirfd: BorrowedFd<'_>, name: &Name, nlink: u64) -> Option<(Gfid, u64, u64)> {
        let sv = self.quotas.counted_subvol_of_dir(dirfd)?;
        match nlink {
            0 => Some((sv, 0, 1)),
            1 | 2 => {
                let st = stat_at(dirfd, name).ok()?;
                let bytes = if kind_of(st.st_mode) == FileKind::File {
                    st.st_size.max(0) as u64
                } else {
                    0
                };
                Some((sv, bytes, 1))
            }
            _ => None,
        }
    }

    fn left(&self, leaving: Option<(Gfid, u64, u64)>) {
        if let Some((sv, bytes, inodes)) = leaving {
            self.quotas.release(sv, bytes, inodes);
        }
    }

    /// Drops everything a closed connection held.
    pub fn release_conn(&self, conn: ConnId) {
        self.changelog.disown_all_dirty(conn);
        self.inodelks.release_all(conn);
        self.records.release_all(conn);
    }
}

/// Most bytes one `pwrite` copies into the page cache. Measured: a 4 MiB
/// `pwrite` of a payload just read from the socket spent ~20 times as
/// long per byte in the kernel's copy (`copy_folio_from_iter_atomic`) as
/// 1 MiB ones (docs/benchmarks.md, "UNSTABLE writes in the gateway").
const PWRITE_PIECE: usize = 1 << 20;

fn write_in_pieces(file: &std::fs::File, data: &[u8], offset: u64) -> std::io::Result<()> {
    let mut at = offset;
    for piece in data.chunks(PWRITE_PIECE) {
        file.write_all_at(piece, at)?;
        at += piece.len() as u64;
    }
    Ok(())
}
