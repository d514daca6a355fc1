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
//! of each sub-volume); the list of roots is a file under `.brickfs/`,
//! written before a root's limits are (`list_root`), so a brick killed in
//! between still finds the root at start.
//!
//! Heal and rebalance connections (`Purpose::Maintenance`) are counted but
//! never refused: a replica catching up must reach what the others have.
//!
//! Volumes of several replica sets: each set counts its own share; clients
//! tell every brick what the other sets hold (`set_elsewhere`), and the
//! check adds it, so the limit holds across sets within what is written
//! between two such updates.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use proto::{FsError, FsResult, Gfid, Name, QuotaLimit, QuotaUse, QUOTA_XATTR};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

use crate::error::OsResult;
use crate::store::{entry_target, proc_fd, write_atomic, xget, xset, Store, Target};

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
    /// What `roots_file` says: every counted root, and roots whose limits
    /// are being written.
    listed: Mutex<BTreeSet<Gfid>>,
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
        let roots_file = store.private_path().join(ROOTS_FILE);
        let listed: BTreeSet<Gfid> = match std::fs::read_to_string(&roots_file) {
            Ok(s) => s.lines().filter_map(Gfid::from_hex).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(e),
        };
        let q = Quotas {
            roots_file,
            listed: Mutex::new(BTreeSet::new()),
            any: AtomicBool::new(false),
            accounts: Mutex::new(HashMap::new()),
            tags: Mutex::new(HashMap::new()),
        };
        let mut kept = BTreeSet::new();
        for &root in &listed {
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
                    kept.insert(root);
                }
                Err(e) => tracing::error!(subvolume = %root, error = %e, "cannot count sub-volume"),
            }
        }
        q.any.store(!kept.is_empty(), Ordering::Release);
        if kept != listed {
            q.write_roots(&kept)?;
        }
        *lock(&q.listed) = kept;
        Ok(q)
    }

    /// True when this brick holds any sub-volume: otherwise no operation
    /// pays for quotas at all.
    pub fn active(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    fn write_roots(&self, roots: &BTreeSet<Gfid>) -> std::io::Result<()> {
        let text: String = roots.iter().map(|r| format!("{}\n", r.to_hex())).collect();
        write_atomic(&self.roots_file, text.as_bytes())
    }

    /// Records `gfid` as a root before its limits are written: a root
    /// missing from the list would go uncounted after a restart, one
    /// listed without limits is dropped at start.
    pub fn list_root(&self, gfid: Gfid) -> FsResult<()> {
        let mut listed = lock(&self.listed);
        if listed.insert(gfid) {
            if let Err(e) = self.write_roots(&listed) {
                listed.remove(&gfid);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// `gfid` is no root any more.
    fn unlist_root(&self, gfid: Gfid) -> FsResult<()> {
        let mut listed = lock(&self.listed);
        if listed.remove(&gfid) {
            self.write_roots(&listed)?;
        }
        Ok(())
    }

    /// The sub-volume of the object open as `fd` (a file or a directory).
    fn subvol_of(&self, gfid: Gfid, fd: BorrowedFd<'_>) -> Option<Gfid> {
        self.cached_tag(gfid, || read_tag(fd))
    }

    /// The sub-volume tag of any object, by its path (the tenant scope
    /// check, `scope.rs`).
    pub fn tag_of(&self, gfid: Gfid, target: &Target) -> Option<Gfid> {
        self.cached_tag(gfid, || {
            let v = xget(target, SUBVOL_XATTR).ok()?;
            Some(Gfid(v.try_into().ok()?))
        })
    }

    /// The tag of `gfid` if it is cached.
    pub fn known_tag(&self, gfid: Gfid) -> Option<Option<Gfid>> {
        lock(&self.tags).get(&gfid).copied()
    }

    fn cached_tag(&self, gfid: Gfid, read: impl FnOnce() -> Option<Gfid>) -> Option<Gfid> {
        if let Some(t) = lock(&self.tags).get(&gfid) {
            return *t;
        }
        let tag = read();
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

    /// The sub-volume whose limits count for the object `gfid` open as `fd`
    /// (for a directory: also for what is made in it).
    pub fn counted_subvol(&self, gfid: Gfid, fd: BorrowedFd<'_>) -> Option<Gfid> {
        if !self.active() {
            return None;
        }
        self.counted(self.subvol_of(gfid, fd))
    }

    /// As `counted_subvol`, for a directory whose gfid is not at hand (read
    /// afresh, not cached).
    pub fn counted_subvol_of_dir(&self, dirfd: BorrowedFd<'_>) -> Option<Gfid> {
        if !self.active() {
            return None;
        }
        self.counted(read_tag(dirfd))
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
            self.forget_root(gfid);
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
        // Normally listed by the caller before the limits were written.
        self.list_root(gfid)?;
        let (bytes, inodes) = count_tree(dirfd, gfid)?;
        // Objects below were untagged until now.
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

    /// `gfid` lost its limits or was removed.
    pub fn forget_root(&self, gfid: Gfid) {
        let mut accounts = lock(&self.accounts);
        if accounts.remove(&gfid).is_some() {
            tracing::info!(subvolume = %gfid, "sub-volume limits removed");
            self.any.store(!accounts.is_empty(), Ordering::Release);
        }
        drop(accounts);
        // A root left listed is dropped at the next start.
        if let Err(e) = self.unlist_root(gfid) {
            tracing::warn!(subvolume = %gfid, error = %e, "cannot update the list of sub-volumes");
        }
    }

    /// The usage of the sub-volume `gfid` belongs to, as this brick counts
    /// it (its own share only).
    pub fn usage_of(&self, gfid: Gfid, fd: BorrowedFd<'_>) -> Option<QuotaUse> {
        let s = self.counted_subvol(gfid, fd)?;
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

/// An object open as `fd` (directory fds here are O_PATH ones, which the
/// f*xattr calls refuse; the magic link pins the inode all the same).
fn fd_target(fd: BorrowedFd<'_>) -> Target {
    Target {
        path: proc_fd(fd),
        follow: true,
    }
}

/// The limits a directory carries, if any.
fn read_limit(dirfd: BorrowedFd<'_>) -> Option<QuotaLimit> {
    QuotaLimit::decode(&xget(&fd_target(dirfd), QUOTA_XATTR).ok()?)
}

fn read_tag(fd: BorrowedFd<'_>) -> Option<Gfid> {
    let v = xget(&fd_target(fd), SUBVOL_XATTR).ok()?;
    Some(Gfid(v.try_into().ok()?))
}

fn set_tag(fd: BorrowedFd<'_>, subvol: Gfid) -> FsResult<()> {
    xset(&fd_target(fd), SUBVOL_XATTR, &subvol.0, 0)
}

/// Bytes (apparent sizes, each inode once) and objects below `root`,
/// tagging the root and every object below it with the root's gfid on the
/// way (a root found at start may have been listed but never tagged).
fn count_tree(root: BorrowedFd<'_>, subvol: Gfid) -> FsResult<(u64, u64)> {
    set_tag(root, subvol)?;
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    let mut seen_links: HashSet<u64> = HashSet::new();
    let mut stack: Vec<OwnedFd> = vec![rustix::fs::openat(
        root,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .os()?];
    while let Some(dir) = stack.pop() {
        for entry in Dir::read_from(&dir).os()? {
            let entry = entry.os()?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let st = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(FsError::from_errno(e.raw_os_error())),
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
                    )
                    .os()?;
                    set_tag(sub.as_fd(), subvol)?;
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
                    tag_at(&dir, name, subvol)?;
                }
                _ => tag_at(&dir, name, subvol)?,
            }
        }
    }
    Ok((bytes, inodes))
}

/// Tags one object. A tag that cannot be written fails the adoption: writes
/// to an untagged object would go uncharged.
fn tag_at(dir: &OwnedFd, name: &[u8], subvol: Gfid) -> FsResult<()> {
    xset(
        &entry_target(dir.as_fd(), &Name::new(name)),
        SUBVOL_XATTR,
        &subvol.0,
        0,
    )
}
