//! Sub-volume quotas, counted and enforced by the brick itself.
//!
//! A sub-volume is a directory carrying `proto::QUOTA_XATTR` (its limits),
//! set through the client stack like the distribute layer's attributes, so
//! replicate and heal carry it to every brick. Each brick then counts, for
//! each sub-volume root it holds, the bytes (apparent file sizes) and the
//! objects below it, and refuses a write, truncate-up, fallocate or create
//! that would pass a limit with `FsError::Quota` (EDQUOT).
//!
//! Why the brick: every replica sees every size-changing operation of its
//! set, one at a time per inode (the client holds the inode's replication
//! lock and orders its own writes), so the check and the charge are one
//! step under one mutex and no number of clients can push usage past the
//! limit. A check in the client would need the usage of every other client.
//!
//! Every object below a root carries `SUBVOL_XATTR` (the root's gfid),
//! given by the brick when it makes the object, never by a client; so a
//! write by gfid finds its sub-volume with one cached xattr read, and a
//! rename or link between sub-volumes is refused with EXDEV (as XFS
//! project quotas do). Counts live in memory and are recounted from the
//! tree at start (always right after any crash, at the price of one walk
//! of each sub-volume); the list of roots is a file under `.brickfs/`.
//!
//! Heal and rebalance connections (`Purpose::Maintenance`) are counted but
//! never refused: a replica catching up must reach what the others have.
//!
//! Volumes of several replica sets: each set counts its own share; clients
//! tell every brick what the other sets hold (`set_elsewhere`), and the
//! check adds it, so the limit holds across sets within what is written
//! between two such updates.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use proto::{FsError, FsResult, Gfid, QuotaLimit, QuotaUse, QUOTA_XATTR};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

use crate::error::OsResult;
use crate::store::{proc_fd, Store};

/// The sub-volume an object belongs to (16 bytes: the root's gfid). Under
/// the private prefix: clients can neither see nor set it.
pub const SUBVOL_XATTR: &[u8] = b"trusted.brickfs.subvol";
const ROOTS_FILE: &str = "quota-roots";
/// Objects whose sub-volume is remembered; forgotten all at once at the
/// limit (a tag never changes, so any entry is right while it lasts).
const TAG_CACHE_MAX: usize = 65536;

#[derive(Clone, Copy, Debug, Default)]
struct Account {
    limit: QuotaLimit,
    bytes: u64,
    inodes: u64,
    /// What the volume's other replica sets hold, as clients last said.
    elsewhere_bytes: u64,
    elsewhere_inodes: u64,
}

pub struct Quotas {
    roots_file: PathBuf,
    any: AtomicBool,
    accounts: Mutex<HashMap<Gfid, Account>>,
    tags: Mutex<HashMap<Gfid, Option<Gfid>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn exceeded(what: &str, limit: u64, used: u64, want: u64) -> FsError {
    FsError::Quota(format!(
        "sub-volume {what} limit {limit} reached ({used} used, {want} more asked)"
    ))
}

impl Quotas {
    /// Loads the roots this brick holds and counts each one's tree.
    pub fn open(store: &Store) -> std::io::Result<Quotas> {
        let q = Quotas {
            roots_file: store.private_path().join(ROOTS_FILE),
            any: AtomicBool::new(false),
            accounts: Mutex::new(HashMap::new()),
            tags: Mutex::new(HashMap::new()),
        };
        let listed = match std::fs::read_to_string(&q.roots_file) {
            Ok(s) => s.lines().filter_map(Gfid::from_hex).collect::<Vec<_>>(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut kept = Vec::new();
        for root in listed {
            let Ok(dirfd) = store.dir(root) else {
                continue;
            };
            let Some(limit) = read_limit(dirfd.as_fd()) else {
                continue;
            };
            match count_tree(dirfd.as_fd(), root) {
                Ok((bytes, inodes)) => {
                    tracing::info!(subvolume = %root, bytes, inodes, "sub-volume counted");
                    lock(&q.accounts).insert(
                        root,
                        Account {
                            limit,
                            bytes,
                            inodes,
                            ..Account::default()
                        },
                    );
                    kept.push(root);
                }
                Err(e) => tracing::error!(subvolume = %root, error = %e, "cannot count sub-volume"),
            }
        }
        q.any.store(!kept.is_empty(), Ordering::Release);
        q.write_roots(&kept)?;
        Ok(q)
    }

    /// True when this brick holds any sub-volume: otherwise no operation
    /// pays for quotas at all.
    pub fn active(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    fn write_roots(&self, roots: &[Gfid]) -> std::io::Result<()> {
        let tmp = self.roots_file.with_extension("tmp");
        let mut f = File::create(&tmp)?;
        for r in roots {
            writeln!(f, "{}", r.to_hex())?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &self.roots_file)
    }

    fn persist(&self, accounts: &HashMap<Gfid, Account>) -> FsResult<()> {
        let roots: Vec<Gfid> = accounts.keys().copied().collect();
        self.write_roots(&roots)
            .map_err(|e| FsError::from_errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
        self.any.store(!roots.is_empty(), Ordering::Release);
        Ok(())
    }

    /// The sub-volume of the object open as `fd` (a file or a directory).
    pub fn subvol_of(&self, gfid: Gfid, fd: BorrowedFd<'_>) -> Option<Gfid> {
        if let Some(t) = lock(&self.tags).get(&gfid) {
            return *t;
        }
        let tag = read_tag(fd);
        let mut tags = lock(&self.tags);
        if tags.len() >= TAG_CACHE_MAX {
            tags.clear();
        }
        tags.insert(gfid, tag);
        tag
    }

    /// The sub-volume whose limits apply to `subvol` (a tag may name a root
    /// that is no longer one).
    fn counted(&self, subvol: Option<Gfid>) -> Option<Gfid> {
        let s = subvol?;
        lock(&self.accounts).contains_key(&s).then_some(s)
    }

    /// Charges `extra` bytes to `subvol` ahead of an operation; refused when
    /// that passes the limit, unless `exempt`.
    pub fn reserve_bytes(&self, subvol: Gfid, extra: u64, exempt: bool) -> FsResult<()> {
        let mut accounts = lock(&self.accounts);
        let Some(a) = accounts.get_mut(&subvol) else {
            return Ok(());
        };
        let used = a.bytes.saturating_add(a.elsewhere_bytes);
        if !exempt && extra > 0 && used.saturating_add(extra) > a.limit.bytes {
            return Err(exceeded("byte", a.limit.bytes, used, extra));
        }
        a.bytes = a.bytes.saturating_add(extra);
        Ok(())
    }

    /// Corrects a charge by what the operation really did.
    pub fn adjust_bytes(&self, subvol: Gfid, delta: i64) {
        if let Some(a) = lock(&self.accounts).get_mut(&subvol) {
            a.bytes = a.bytes.saturating_add_signed(delta);
        }
    }

    /// Charges one object to `subvol` ahead of its creation.
    pub fn reserve_inode(&self, subvol: Gfid, exempt: bool) -> FsResult<()> {
        let mut accounts = lock(&self.accounts);
        let Some(a) = accounts.get_mut(&subvol) else {
            return Ok(());
        };
        if let Some(max) = a.limit.inodes {
            let used = a.inodes.saturating_add(a.elsewhere_inodes);
            if !exempt && used >= max {
                return Err(exceeded("inode", max, used, 1));
            }
        }
        a.inodes += 1;
        Ok(())
    }

    /// An object of `bytes` bytes left `subvol` (or a reserved one was not
    /// made).
    pub fn release(&self, subvol: Gfid, bytes: u64, inodes: u64) {
        if let Some(a) = lock(&self.accounts).get_mut(&subvol) {
            a.bytes = a.bytes.saturating_sub(bytes);
            a.inodes = a.inodes.saturating_sub(inodes);
        }
    }

    /// The sub-volume of a new object in the directory `dirfd` (`parent`),
    /// when its limits are counted.
    pub fn subvol_for_new(&self, parent: Gfid, dirfd: BorrowedFd<'_>) -> Option<Gfid> {
        if !self.active() {
            return None;
        }
        self.counted(self.subvol_of(parent, dirfd))
    }

    /// The counted sub-volume of the directory open as `dirfd`, read afresh.
    pub fn subvol_of_dirfd(&self, dirfd: BorrowedFd<'_>) -> Option<Gfid> {
        self.counted(read_tag(dirfd))
    }

    /// The counted sub-volume of an existing object.
    pub fn subvol_counted(&self, gfid: Gfid, fd: BorrowedFd<'_>) -> Option<Gfid> {
        if !self.active() {
            return None;
        }
        self.counted(self.subvol_of(gfid, fd))
    }

    /// Refuses moving a name between two directories of different
    /// sub-volumes (EXDEV, as XFS project quotas).
    pub fn check_same(&self, a: (Gfid, BorrowedFd<'_>), b: (Gfid, BorrowedFd<'_>)) -> FsResult<()> {
        if !self.active() || a.0 == b.0 {
            return Ok(());
        }
        let (sa, sb) = (self.subvol_of(a.0, a.1), self.subvol_of(b.0, b.1));
        if self.counted(sa) != self.counted(sb) {
            return Err(FsError::CrossSubvolume);
        }
        Ok(())
    }

    /// The directory `gfid` got limits (or lost them: `None`). A new root
    /// is tagged, and everything already below it tagged and counted.
    pub fn set_limit(
        &self,
        gfid: Gfid,
        dirfd: BorrowedFd<'_>,
        limit: Option<QuotaLimit>,
    ) -> FsResult<()> {
        let Some(limit) = limit else {
            let mut accounts = lock(&self.accounts);
            if accounts.remove(&gfid).is_some() {
                tracing::info!(subvolume = %gfid, "sub-volume limits removed");
                self.persist(&accounts)?;
            }
            return Ok(());
        };
        {
            let mut accounts = lock(&self.accounts);
            if let Some(a) = accounts.get_mut(&gfid) {
                a.limit = limit;
                tracing::info!(subvolume = %gfid, bytes = limit.bytes, inodes = ?limit.inodes, "sub-volume limits changed");
                return Ok(());
            }
        }
        if let Some(outer) = self.counted(self.subvol_of(gfid, dirfd)) {
            if outer != gfid {
                return Err(FsError::Invalid(format!(
                    "directory {gfid} is inside sub-volume {outer}: sub-volumes do not nest"
                )));
            }
        }
        set_tag(dirfd, gfid).os()?;
        lock(&self.tags).insert(gfid, Some(gfid));
        // Listed before counted: a brick killed in between recounts at start.
        let mut listed: Vec<Gfid> = lock(&self.accounts).keys().copied().collect();
        listed.push(gfid);
        self.write_roots(&listed)
            .map_err(|e| FsError::from_errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
        let (bytes, inodes) = count_tree(dirfd, gfid)
            .map_err(|e| FsError::from_errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
        lock(&self.tags).clear();
        let mut accounts = lock(&self.accounts);
        accounts.insert(
            gfid,
            Account {
                limit,
                bytes,
                inodes,
                ..Account::default()
            },
        );
        self.any.store(true, Ordering::Release);
        tracing::info!(subvolume = %gfid, bytes = limit.bytes, inodes = ?limit.inodes, used = bytes, "sub-volume limits set");
        Ok(())
    }

    /// A root directory was removed.
    pub fn forget_root(&self, gfid: Gfid) {
        let mut accounts = lock(&self.accounts);
        if accounts.remove(&gfid).is_some() {
            if let Err(e) = self.persist(&accounts) {
                tracing::error!(subvolume = %gfid, error = %e, "cannot update the list of sub-volumes");
            }
        }
    }

    /// The usage of the sub-volume `gfid` belongs to, as this brick counts
    /// it (its own share only).
    pub fn usage_of(&self, gfid: Gfid, fd: BorrowedFd<'_>) -> Option<QuotaUse> {
        let s = self.subvol_counted(gfid, fd)?;
        let accounts = lock(&self.accounts);
        let a = accounts.get(&s)?;
        Some(QuotaUse {
            subvol: s,
            limit: a.limit,
            bytes: a.bytes,
            inodes: a.inodes,
        })
    }

    /// Every sub-volume's local usage (for the other sets' `set_elsewhere`).
    pub fn usages(&self) -> Vec<QuotaUse> {
        lock(&self.accounts)
            .iter()
            .map(|(s, a)| QuotaUse {
                subvol: *s,
                limit: a.limit,
                bytes: a.bytes,
                inodes: a.inodes,
            })
            .collect()
    }

    /// What the other replica sets hold of each sub-volume.
    pub fn set_elsewhere(&self, others: &[QuotaUse]) {
        let mut accounts = lock(&self.accounts);
        for o in others {
            if let Some(a) = accounts.get_mut(&o.subvol) {
                a.elsewhere_bytes = o.bytes;
                a.elsewhere_inodes = o.inodes;
            }
        }
    }
}

/// The limits a directory carries, if any.
pub fn read_limit(dirfd: BorrowedFd<'_>) -> Option<QuotaLimit> {
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(proc_fd(dirfd), QUOTA_XATTR, &mut buf).ok()?;
    QuotaLimit::decode(&buf[..n])
}

// Through /proc/self/fd: directory fds here are O_PATH ones, which the
// f*xattr calls refuse; the magic link pins the inode all the same.
fn read_tag(fd: BorrowedFd<'_>) -> Option<Gfid> {
    let mut buf = [0u8; 16];
    match rustix::fs::getxattr(proc_fd(fd), SUBVOL_XATTR, &mut buf) {
        Ok(16) => Some(Gfid(buf)),
        _ => None,
    }
}

fn set_tag(fd: BorrowedFd<'_>, subvol: Gfid) -> rustix::io::Result<()> {
    rustix::fs::setxattr(
        proc_fd(fd),
        SUBVOL_XATTR,
        &subvol.0,
        rustix::fs::XattrFlags::empty(),
    )
}

/// Bytes (apparent sizes, each inode once) and objects below `root`,
/// tagging every object with the root's gfid on the way.
fn count_tree(root: BorrowedFd<'_>, subvol: Gfid) -> std::io::Result<(u64, u64)> {
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    let mut seen_links: HashSet<u64> = HashSet::new();
    let mut stack: Vec<OwnedFd> = vec![rustix::fs::openat(
        root,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?];
    while let Some(dir) = stack.pop() {
        for entry in Dir::read_from(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let st = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            inodes += 1;
            let kind = FileType::from_raw_mode(st.st_mode);
            match kind {
                FileType::Directory => {
                    let sub = rustix::fs::openat(
                        &dir,
                        name,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    tag(sub.as_fd(), subvol);
                    stack.push(sub);
                }
                FileType::RegularFile => {
                    // Every file has its name plus the gfid index link; more
                    // than two links: a hard link counted once.
                    if st.st_nlink <= 2 || seen_links.insert(st.st_ino) {
                        bytes = bytes.saturating_add(st.st_size.max(0) as u64);
                    } else {
                        inodes -= 1;
                    }
                    tag_at(&dir, name, subvol);
                }
                _ => tag_at(&dir, name, subvol),
            }
        }
    }
    Ok((bytes, inodes))
}

fn tag(fd: BorrowedFd<'_>, subvol: Gfid) {
    if let Err(e) = set_tag(fd, subvol) {
        tracing::warn!(%subvol, error = %e, "cannot tag a directory with its sub-volume");
    }
}

fn tag_at(dir: &OwnedFd, name: &[u8], subvol: Gfid) {
    use std::os::unix::ffi::OsStrExt;
    let path = proc_fd(dir.as_fd()).join(std::ffi::OsStr::from_bytes(name));
    if let Err(e) = rustix::fs::lsetxattr(
        &path,
        SUBVOL_XATTR,
        &subvol.0,
        rustix::fs::XattrFlags::empty(),
    ) {
        tracing::warn!(%subvol, error = %e, "cannot tag an object with its sub-volume");
    }
}
