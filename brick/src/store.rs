//! The brick directory on disk: private metadata under `.brickfs/`, the gfid
//! index, and resolution of gfids to objects.
//!
//! Why resolution is shaped like this: clients own the namespace, so any
//! directory may contain symlinks pointing anywhere. The brick therefore never
//! resolves a client-controlled path with the kernel's ordinary lookup.
//! Directories are reached with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! from the brick root along a path rebuilt from the index (and the opened
//! directory's gfid xattr is checked, so a stale path can never alias another
//! directory); everything below a directory is one validated name used with
//! `*at` syscalls that do not follow symlinks. Non-directories are reached
//! through their index hard link, whose path has no client-chosen component.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use proto::{BrickId, FsError, FsResult, Gfid, Name, PRIVATE_DIR};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, XattrFlags, CWD};
use rustix::io::Errno;

use crate::error::{BrickError, OsResult};
use crate::staging::Staging;

pub const GFID_XATTR: &str = "trusted.brickfs.gfid";
/// Xattrs under this prefix are the brick's own and invisible to clients.
pub const PRIVATE_XATTR_PREFIX: &[u8] = b"trusted.brickfs.";
const DIR_CACHE_MAX: usize = 65536;
const FD_CACHE_MAX: usize = 1024;
/// Directory fds kept open. With `FD_CACHE_MAX` this needs more than the
/// common soft limit of 1024 fds; brickd raises its soft limit at start.
const DIR_FD_CACHE_MAX: usize = 256;
/// Deeper index chains than this are treated as corrupt (a pointer cycle).
const MAX_DEPTH: usize = 4096;

/// A resolved object.
pub enum Obj {
    /// `O_PATH` fd of a directory whose gfid xattr was verified.
    Dir(OwnedFd),
    /// The index hard link of a non-directory.
    Other(PathBuf),
}

/// A path through which an object's xattrs, owner, mode and times can be
/// changed without touching anything else. `follow` is only ever true for
/// `/proc/self/fd/N` magic links, which pin the exact inode.
pub struct Target {
    pub path: PathBuf,
    pub follow: bool,
}

impl Obj {
    pub fn target(&self) -> Target {
        match self {
            Obj::Dir(fd) => Target {
                path: proc_fd(fd.as_fd()),
                follow: true,
            },
            Obj::Other(path) => Target {
                path: path.clone(),
                follow: false,
            },
        }
    }

    pub fn stat(&self) -> FsResult<Stat> {
        match self {
            Obj::Dir(fd) => rustix::fs::fstat(fd).os(),
            Obj::Other(path) => rustix::fs::lstat(path).os(),
        }
    }
}

pub struct Store {
    pub id: BrickId,
    root_path: PathBuf,
    root: OwnedFd,
    private: PathBuf,
    gfid_dir: PathBuf,
    volume_lock: Mutex<()>,
    /// Held while a new directory is placed (`Backend::place_dir`).
    placing_dir: Mutex<()>,
    /// gfid → path relative to the root, for directories only.
    dirs: Mutex<HashMap<Gfid, Vec<u8>>>,
    /// Verified `O_PATH` fds of recently used directories. An fd pins the
    /// directory's inode, whose gfid never changes, so a hit needs neither
    /// the path walk nor the gfid check again: one `dup` instead of
    /// `openat2` + `getxattr` on every op addressed to a directory.
    dir_fds: Mutex<HashMap<Gfid, Arc<OwnedFd>>>,
    files: Mutex<HashMap<Gfid, Arc<File>>>,
    /// Where objects are made and index entries wait while they change
    /// (`crate::staging`).
    pub(crate) staging: Staging,
    /// Owner and file-mode creation mask of what this process makes: a new
    /// object that already has the wanted owner or mode needs no
    /// chown/chmod.
    pub(crate) euid: u32,
    pub(crate) egid: u32,
    /// `None` when unknown (then every create sets its mode).
    pub(crate) umask: Option<u32>,
}

/// A poisoned cache lock only means another request panicked; the maps stay
/// structurally valid, so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn proc_fd(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `/proc/self/fd/<dirfd>/<name>`: the magic link pins the directory, and the
/// last component is never followed by the `l*` syscalls used on it.
pub fn proc_entry(dirfd: BorrowedFd<'_>, name: &Name) -> PathBuf {
    proc_fd(dirfd).join(OsStr::from_bytes(name.as_bytes()))
}

pub fn entry_target(dirfd: BorrowedFd<'_>, name: &Name) -> Target {
    Target {
        path: proc_entry(dirfd, name),
        follow: false,
    }
}

pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl Store {
    /// Opens a brick directory, initialising `.brickfs/` on first start.
    pub fn open(dir: &Path) -> Result<Store, BrickError> {
        let shown = dir.display().to_string();
        std::fs::create_dir_all(dir).map_err(|e| BrickError::io(format!("create {shown}"), e))?;
        let root_path = dir
            .canonicalize()
            .map_err(|e| BrickError::io(format!("resolve {shown}"), e))?;
        let private = root_path.join(PRIVATE_DIR);
        let gfid_dir = private.join("gfid");
        for d in [gfid_dir.clone(), private.join("indices/xattrop")] {
            std::fs::create_dir_all(&d)
                .map_err(|e| BrickError::io(format!("create {}", d.display()), e))?;
        }
        // One level of 256 fan-out directories, made once: a per-create
        // mkdir of a 65,536-way tree cost more than the create itself.
        for b in 0..=255u8 {
            let d = gfid_dir.join(format!("{b:02x}"));
            match std::fs::create_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(BrickError::io(format!("create {}", d.display()), e)),
            }
        }
        let id_path = private.join("brick-id");
        let id = match std::fs::read_to_string(&id_path) {
            Ok(s) => BrickId::from_hex(s.trim()).ok_or_else(|| BrickError::BadDir {
                dir: shown.clone(),
                why: format!("{} does not hold a brick id", id_path.display()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = BrickId(*uuid::Uuid::new_v4().as_bytes());
                write_atomic(&id_path, format!("{}\n", id.to_hex()).as_bytes())
                    .map_err(|e| BrickError::io(format!("write {}", id_path.display()), e))?;
                tracing::info!(brick = %id, dir = %shown, "initialised new brick");
                id
            }
            Err(e) => return Err(BrickError::io(format!("read {}", id_path.display()), e)),
        };
        let root = rustix::fs::openat(
            CWD,
            &root_path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| BrickError::io(format!("open {shown}"), e.into()))?;
        let root_target = Target {
            path: root_path.clone(),
            follow: true,
        };
        match xget(&root_target, GFID_XATTR.as_bytes()) {
            Ok(v) if v == Gfid::ROOT.0 => {}
            Ok(_) => {
                return Err(BrickError::BadDir {
                    dir: shown,
                    why: "its root carries a gfid other than the volume root's".into(),
                })
            }
            Err(FsError::NoAttr) => xset(&root_target, GFID_XATTR.as_bytes(), &Gfid::ROOT.0, 0)
                .map_err(|e| BrickError::BadDir {
                    dir: shown.clone(),
                    why: format!("cannot set trusted xattrs (root and xattr support needed): {e}"),
                })?,
            Err(e) => {
                return Err(BrickError::BadDir {
                    dir: shown,
                    why: format!("cannot read trusted xattrs: {e}"),
                })
            }
        }
        let staging = Staging::open(&private)?;
        let store = Store {
            id,
            root_path,
            root,
            private,
            gfid_dir,
            volume_lock: Mutex::new(()),
            placing_dir: Mutex::new(()),
            dirs: Mutex::new(HashMap::new()),
            dir_fds: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            staging,
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            umask: read_umask(),
        };
        crate::staging::recover(&store)?;
        Ok(store)
    }

    pub(crate) fn placing_dir(&self) -> MutexGuard<'_, ()> {
        lock(&self.placing_dir)
    }

    pub fn root_path(&self) -> &Path {
        &self.root_path
    }

    pub fn root_fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    pub fn private_path(&self) -> &Path {
        &self.private
    }

    /// Checks that the brick belongs to `volume` and refuses any other; an
    /// unbound brick is bound to it if `may_bind` (an admin's `hello`, or
    /// `brickd --volume`).
    pub fn check_volume(&self, volume: &str, may_bind: bool) -> FsResult<()> {
        if volume.is_empty() {
            return Ok(());
        }
        if volume.chars().any(|c| c.is_control()) || volume.len() > 255 {
            return Err(FsError::Invalid(format!("bad volume name {volume:?}")));
        }
        let _g = lock(&self.volume_lock);
        let path = self.private.join("volume");
        let current = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.into()),
        };
        if current.is_empty() {
            if !may_bind {
                return Err(FsError::Refused(format!(
                    "brick is not bound to a volume yet and only an admin binds it \
                     (brickfs volume create {volume} ...)"
                )));
            }
            write_atomic(&path, format!("{volume}\n").as_bytes())?;
            tracing::info!(volume, "brick bound to volume");
            Ok(())
        } else if current == volume {
            Ok(())
        } else {
            Err(FsError::Refused(format!(
                "brick belongs to volume {current}"
            )))
        }
    }

    pub fn index_path(&self, gfid: Gfid) -> PathBuf {
        let hex = gfid.to_hex();
        self.gfid_dir.join(&hex[0..2]).join(&hex)
    }

    fn index_parent(&self, gfid: Gfid) -> FsResult<PathBuf> {
        Ok(self.index_path(gfid))
    }

    /// Resolves any gfid: a directory to a verified fd, anything else to its
    /// index path.
    pub fn resolve(&self, gfid: Gfid) -> FsResult<Obj> {
        if gfid.is_root() || lock(&self.dirs).contains_key(&gfid) {
            return self.open_dir(gfid).map(Obj::Dir);
        }
        let idx = self.index_path(gfid);
        let t = Target {
            path: idx.clone(),
            follow: false,
        };
        // A hard link carries the object's gfid xattr; a directory pointer
        // (a symlink the brick made) carries none.
        match xget(&t, GFID_XATTR.as_bytes()) {
            Ok(_) => Ok(Obj::Other(idx)),
            Err(FsError::NoAttr) => self.open_dir(gfid).map(Obj::Dir),
            Err(FsError::NotFound) => Err(FsError::Stale(gfid.to_hex())),
            Err(e) => Err(e),
        }
    }

    /// A directory's verified `O_PATH` fd; `NotDir` for other objects.
    pub fn dir(&self, gfid: Gfid) -> FsResult<OwnedFd> {
        match self.resolve(gfid)? {
            Obj::Dir(fd) => Ok(fd),
            Obj::Other(_) => Err(FsError::NotDir),
        }
    }

    fn open_dir(&self, gfid: Gfid) -> FsResult<OwnedFd> {
        let cached = lock(&self.dir_fds).get(&gfid).cloned();
        if let Some(fd) = cached {
            return rustix::io::dup(&*fd).os();
        }
        for use_cache in [true, false] {
            let rel = self.dir_relpath(gfid, use_cache)?;
            let res = rustix::fs::openat2(
                &self.root,
                rel.as_slice(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            );
            match res {
                Ok(fd) => {
                    if fd_gfid(fd.as_fd())? == Some(gfid) {
                        self.remember_dir(gfid, rel);
                        self.remember_dir_fd(gfid, &fd);
                        return Ok(fd);
                    }
                }
                // The pointer chain led somewhere that no longer holds this
                // directory (a concurrent rename) or through a symlink.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => {}
                Err(e) => return Err(FsError::from_errno(e.raw_os_error())),
            }
            lock(&self.dirs).remove(&gfid);
        }
        Err(FsError::Stale(gfid.to_hex()))
    }

    fn dir_relpath(&self, gfid: Gfid, use_cache: bool) -> FsResult<Vec<u8>> {
        if gfid.is_root() {
            return Ok(b".".to_vec());
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut cur = gfid;
        let mut prefix: Vec<u8> = Vec::new();
        let mut reached = false;
        for _ in 0..MAX_DEPTH {
            if cur.is_root() {
                reached = true;
                break;
            }
            if use_cache {
                if let Some(p) = lock(&self.dirs).get(&cur) {
                    prefix = p.clone();
                    reached = true;
                    break;
                }
            }
            let (parent, name) = self.read_pointer(cur, gfid)?;
            names.push(name);
            cur = parent;
        }
        if !reached {
            tracing::warn!(%gfid, "directory index chain too deep or cyclic");
            return Err(FsError::Stale(gfid.to_hex()));
        }
        let mut rel = prefix;
        for name in names.iter().rev() {
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name);
        }
        Ok(rel)
    }

    /// Directory `gfid`'s path below the brick root (`.` for the root),
    /// for reports.
    pub(crate) fn dir_path(&self, gfid: Gfid) -> FsResult<Vec<u8>> {
        self.dir_relpath(gfid, true)
    }

    /// Where directory `gfid` is: its parent and name, from its pointer.
    /// `None` for other objects and for the root.
    pub fn locate(&self, gfid: Gfid) -> FsResult<Option<(Gfid, Name)>> {
        if gfid.is_root() {
            return Ok(None);
        }
        match self.resolve(gfid)? {
            Obj::Dir(_) => {
                let (parent, name) = self.read_pointer(gfid, gfid)?;
                Ok(Some((parent, Name(name))))
            }
            Obj::Other(_) => Ok(None),
        }
    }

    /// Reads one directory pointer `<parent-hex>/<name>`.
    fn read_pointer(&self, gfid: Gfid, asked: Gfid) -> FsResult<(Gfid, Vec<u8>)> {
        let stale = || FsError::Stale(asked.to_hex());
        let target = match rustix::fs::readlinkat(CWD, self.index_path(gfid), Vec::new()) {
            Ok(t) => t.into_bytes(),
            Err(Errno::NOENT | Errno::INVAL) => return Err(stale()),
            Err(e) => return Err(FsError::from_errno(e.raw_os_error())),
        };
        let parsed = parse_pointer(&target).map(|(parent, name)| (parent, name.0));
        parsed.ok_or_else(|| {
            tracing::warn!(%gfid, "corrupt directory pointer in gfid index");
            stale()
        })
    }

    fn remember_dir(&self, gfid: Gfid, rel: Vec<u8>) {
        if gfid.is_root() {
            return;
        }
        let mut dirs = lock(&self.dirs);
        if dirs.len() >= DIR_CACHE_MAX {
            dirs.clear();
        }
        dirs.insert(gfid, rel);
    }

    fn remember_dir_fd(&self, gfid: Gfid, fd: &OwnedFd) {
        let Ok(copy) = rustix::io::dup(fd) else {
            return;
        };
        let mut fds = lock(&self.dir_fds);
        if fds.len() >= DIR_FD_CACHE_MAX {
            fds.clear();
        }
        fds.insert(gfid, Arc::new(copy));
    }

    /// Any directory rename or removal may invalidate cached paths of whole
    /// subtrees, so the cache is dropped wholesale (the fd cache too: a
    /// removed directory must not stay reachable by its gfid).
    pub fn forget_dirs(&self) {
        lock(&self.dirs).clear();
        lock(&self.dir_fds).clear();
    }

    /// Points the index entry of directory `gfid` at `parent/name`, replacing
    /// any previous pointer atomically (staged first: a kill in between
    /// leaves a staged pointer that recovery settles).
    pub fn set_dir_pointer(&self, gfid: Gfid, parent: Gfid, name: &Name) -> FsResult<()> {
        let staged = self.stage_pointer(gfid, parent, name)?;
        if let Err(e) = self.install(gfid, &staged) {
            self.discard(&staged);
            return Err(e);
        }
        Ok(())
    }

    /// Hard-links the entry `dirfd/name` into the index as `gfid`.
    pub fn add_file_index(&self, gfid: Gfid, dirfd: BorrowedFd<'_>, name: &Name) -> FsResult<()> {
        let path = self.index_parent(gfid)?;
        let link = || rustix::fs::linkat(dirfd, name.as_bytes(), CWD, &path, AtFlags::empty());
        match link() {
            // A leftover of an interrupted create with this gfid.
            Err(Errno::EXIST) => {
                let _ = rustix::fs::unlinkat(CWD, &path, AtFlags::empty());
                link().os()
            }
            r => r.os(),
        }
    }

    /// An object gone from the index is gone: a cached open file must not
    /// keep serving it by gfid (its handles are stale now).
    pub(crate) fn forget_file(&self, gfid: Gfid) {
        lock(&self.files).remove(&gfid);
    }

    pub fn remove_index(&self, gfid: Gfid) -> FsResult<()> {
        self.forget_file(gfid);
        match rustix::fs::unlinkat(CWD, self.index_path(gfid), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(FsError::from_errno(e.raw_os_error())),
        }
    }

    /// Drops the index link of a non-directory once no name refers to it.
    pub fn drop_index_if_orphan(&self, gfid: Gfid) -> FsResult<()> {
        match rustix::fs::lstat(self.index_path(gfid)) {
            Ok(st)
                if st.st_nlink <= 1
                    && FileType::from_raw_mode(st.st_mode) != FileType::Directory =>
            {
                self.remove_index(gfid)
            }
            Ok(_) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(FsError::from_errno(e.raw_os_error())),
        }
    }

    /// An open file for I/O on a regular file, cached by gfid.
    pub fn file(&self, gfid: Gfid) -> FsResult<Arc<File>> {
        if let Some(f) = lock(&self.files).get(&gfid) {
            return Ok(f.clone());
        }
        let path = match self.resolve(gfid)? {
            Obj::Dir(_) => return Err(FsError::IsDir),
            Obj::Other(path) => path,
        };
        // Opening a fifo or device could block or have side effects.
        let st = rustix::fs::lstat(&path).os()?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(FsError::Invalid("not a regular file".into()));
        }
        let base = OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY;
        let fd = match rustix::fs::openat(CWD, &path, base | OFlags::RDWR, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ACCESS | Errno::ROFS | Errno::TXTBSY | Errno::PERM) => {
                rustix::fs::openat(CWD, &path, base | OFlags::RDONLY, Mode::empty()).os()?
            }
            Err(e) => return Err(FsError::from_errno(e.raw_os_error())),
        };
        let file = Arc::new(File::from(fd));
        let mut files = lock(&self.files);
        if files.len() >= FD_CACHE_MAX {
            if let Some(victim) = files.keys().next().copied() {
                files.remove(&victim);
            }
        }
        files.insert(gfid, file.clone());
        Ok(file)
    }
}

/// The content of a directory pointer: `<parent-hex>/<name>`.
pub(crate) fn pointer_content(parent: Gfid, name: &Name) -> Vec<u8> {
    let mut content = format!("{}/", parent.to_hex()).into_bytes();
    content.extend_from_slice(name.as_bytes());
    content
}

pub(crate) fn parse_pointer(target: &[u8]) -> Option<(Gfid, Name)> {
    let slash = target.iter().position(|&b| b == b'/')?;
    let parent = std::str::from_utf8(&target[..slash])
        .ok()
        .and_then(Gfid::from_hex)?;
    let name = Name::new(&target[slash + 1..]);
    name.validate().ok()?;
    Some((parent, name))
}

/// The process's umask, from `/proc/self/status` (reading it with
/// umask(2) would change it for a moment under other threads).
fn read_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// The gfid of a directory fd.
pub fn fd_gfid(fd: BorrowedFd<'_>) -> FsResult<Option<Gfid>> {
    let t = Target {
        path: proc_fd(fd),
        follow: true,
    };
    read_gfid(&t)
}

/// The gfid of the entry `dirfd/name`, without following or opening it.
pub fn entry_gfid(dirfd: BorrowedFd<'_>, name: &Name) -> FsResult<Option<Gfid>> {
    read_gfid(&entry_target(dirfd, name))
}

fn read_gfid(t: &Target) -> FsResult<Option<Gfid>> {
    match xget(t, GFID_XATTR.as_bytes()) {
        Ok(v) => match <[u8; 16]>::try_from(v.as_slice()) {
            Ok(b) => Ok(Some(Gfid(b))),
            Err(_) => {
                tracing::warn!(path = %t.path.display(), "malformed gfid xattr");
                Ok(None)
            }
        },
        Err(FsError::NoAttr) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The names in directory `dfd` (not `.` and `..`) that `keep` wants,
/// copied out as they are read: readdir, recovery and heal's tree removal
/// read directories the same way.
pub(crate) fn list_names(
    dfd: BorrowedFd<'_>,
    mut keep: impl FnMut(&[u8]) -> bool,
) -> FsResult<Vec<Vec<u8>>> {
    // `Dir` reads from an fd of its own: the `O_PATH` fds the store keeps
    // cannot be read.
    let readable = rustix::fs::openat(
        dfd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .os()?;
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::new(readable).os()? {
        let entry = entry.os()?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." && keep(n) {
            out.push(n.to_vec());
        }
    }
    Ok(out)
}

pub fn stat_at(dirfd: BorrowedFd<'_>, name: &Name) -> FsResult<Stat> {
    rustix::fs::statat(dirfd, name.as_bytes(), AtFlags::SYMLINK_NOFOLLOW).os()
}

pub fn xget(t: &Target, name: &[u8]) -> FsResult<Vec<u8>> {
    // The value may grow between the size query and the read: retry.
    for _ in 0..4 {
        let size = if t.follow {
            rustix::fs::getxattr_query(&t.path, name)
        } else {
            rustix::fs::lgetxattr_query(&t.path, name)
        }
        .os()?;
        let mut buf = vec![0u8; size];
        let got = if t.follow {
            rustix::fs::getxattr(&t.path, name, buf.as_mut_slice())
        } else {
            rustix::fs::lgetxattr(&t.path, name, buf.as_mut_slice())
        };
        match got {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(FsError::from_errno(e.raw_os_error())),
        }
    }
    Err(FsError::Range)
}

pub fn xset(t: &Target, name: &[u8], value: &[u8], flags: u32) -> FsResult<()> {
    if flags & !(libc::XATTR_CREATE | libc::XATTR_REPLACE) as u32 != 0 {
        return Err(FsError::Invalid(format!("xattr flags {flags:#x}")));
    }
    let flags = XattrFlags::from_bits_retain(flags);
    if t.follow {
        rustix::fs::setxattr(&t.path, name, value, flags)
    } else {
        rustix::fs::lsetxattr(&t.path, name, value, flags)
    }
    .os()
}

pub fn xlist(t: &Target) -> FsResult<Vec<Vec<u8>>> {
    for _ in 0..4 {
        let size = if t.follow {
            rustix::fs::listxattr_query(&t.path)
        } else {
            rustix::fs::llistxattr_query(&t.path)
        }
        .os()?;
        let mut buf = vec![0u8; size];
        let got = if t.follow {
            rustix::fs::listxattr(&t.path, buf.as_mut_slice())
        } else {
            rustix::fs::llistxattr(&t.path, buf.as_mut_slice())
        };
        match got {
            Ok(n) => {
                return Ok(buf[..n]
                    .split(|&b| b == 0)
                    .filter(|s| !s.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect())
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(FsError::from_errno(e.raw_os_error())),
        }
    }
    Err(FsError::Range)
}

pub fn xremove(t: &Target, name: &[u8]) -> FsResult<()> {
    if t.follow {
        rustix::fs::removexattr(&t.path, name)
    } else {
        rustix::fs::lremovexattr(&t.path, name)
    }
    .os()
}
