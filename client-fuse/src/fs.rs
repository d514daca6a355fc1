//! The fuser `Filesystem` over the client stack. Each method converts its
//! arguments, hands the call to a task on the tokio runtime together with
//! the reply object, and returns: a FUSE thread never waits on the network,
//! so a slow brick delays only the requests that need it. Errors reach the
//! kernel with the stack's own errno (`FsError::errno`), never folded to EIO.
//!
//! Only operations that need no brick (readdir from a snapshot, release,
//! forget, open without O_TRUNC) answer on the FUSE thread.

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use client::{Layer, NewEntry};
use dashmap::DashMap;
use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLock,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use proto::{
    Attr, FileKind, FsError, FsResult, Gfid, Name, RecordLock, RecordLockType, RenameReq, SetAttr,
};
use tokio::runtime::Handle;
use tracing::{debug, info, warn};

use crate::convert::{
    self, dot_attr, errno, file_attr, file_type, kind_from_mode, lock_end_from_kernel,
    lock_end_to_kernel, lock_type, lock_type_to_kernel, new_perm, time_set, xattr_fit, xattr_list,
    XattrFit,
};
use crate::dirs::{slots, DirHandles, Slot};
use crate::inodes::InodeTable;
use crate::no_caps::{self, NoCaps};
use crate::open_files::OpenFiles;

/// Page size of the listing opendir reads.
const READDIR_PAGE: u32 = 4096;
/// Largest write the kernel may send at once; the kernel caps it further
/// (by default at 256 pages).
const MAX_WRITE: u32 = proto::MAX_IO;
const MAX_READAHEAD: u32 = 1 << 20;
/// Background requests (readahead, async writes) the kernel keeps in
/// flight; the default of 12 starves a network filesystem.
const MAX_BACKGROUND: u16 = 64;

/// State shared by the FUSE threads and the request tasks.
static NEXT_REQUEST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub(crate) struct Shared {
    layer: Arc<dyn Layer>,
    inodes: InodeTable,
    dirs: DirHandles,
    /// (inode, lock owner) pairs that took a lock through this mount. The
    /// kernel does not track locks of a filesystem that implements them, so
    /// on close (flush, or release for flock) we must drop the owner's locks
    /// ourselves; this set keeps that round trip off closes that hold none.
    lockers: DashMap<(u64, u64), ()>,
    open_files: OpenFiles,
    no_caps: NoCaps,
    ttls: Arc<crate::ttls::Ttls>,
    /// Tells the kernel to drop what it cached of an inode (coherence with
    /// other clients: on open and on every lock granted).
    notifier: Arc<OnceLock<Notifier>>,
    /// What each open just learned from the bricks, for the GETATTR the
    /// kernel sends next (spares a second round trip per open).
    opened_attrs: crate::opened::OpenedAttrs,
    /// Wakes the thread that asks the kernel to drop names once the inode
    /// table is past its limit.
    prune: std::sync::mpsc::SyncSender<()>,
}

pub(crate) struct BrickFs {
    shared: Arc<Shared>,
    rt: Handle,
}

impl BrickFs {
    pub(crate) fn new(
        layer: Arc<dyn Layer>,
        rt: Handle,
        ttls: Arc<crate::ttls::Ttls>,
        notifier: Arc<OnceLock<Notifier>>,
        inodes: InodeTable,
    ) -> BrickFs {
        let (prune, wake) = std::sync::mpsc::sync_channel(1);
        let shared = Arc::new(Shared {
            layer,
            inodes,
            dirs: DirHandles::new(),
            lockers: DashMap::new(),
            open_files: OpenFiles::default(),
            no_caps: NoCaps::default(),
            ttls,
            notifier,
            opened_attrs: crate::opened::OpenedAttrs::default(),
            prune,
        });
        let weak = Arc::downgrade(&shared);
        // Its own thread: the kernel takes the directory's lock to drop a
        // name, which a request in that directory may hold until we answer
        // it, so this must not stall a runtime worker.
        let spawned = std::thread::Builder::new()
            .name("inode-prune".into())
            .spawn(move || {
                while wake.recv().is_ok() {
                    let Some(s) = weak.upgrade() else { break };
                    s.prune();
                }
            });
        if let Err(e) = spawned {
            warn!("cannot start the inode pruning thread, the inode table is unbounded: {e}");
        }
        BrickFs { shared, rt }
    }

    /// Runs one request on the runtime; the task owns the reply.
    fn spawn<F, Fut>(&self, f: F)
    where
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // One span per kernel request, so the client stack's logs of one
        // operation (fan-out, retries, bricks marked down) read together.
        let id = NEXT_REQUEST.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let span = tracing::debug_span!("req", id);
        self.rt.spawn(tracing::Instrument::instrument(
            f(Arc::clone(&self.shared)),
            span,
        ));
    }

    fn gfid(&self, ino: INodeNo) -> Option<Gfid> {
        self.shared.inodes.gfid(ino.0)
    }
}

/// A new object owned by the caller of the request.
fn new_entry(req: &Request, name_: &OsStr, kind: FileKind, perm: u32) -> NewEntry {
    NewEntry {
        name: name(name_),
        kind,
        perm,
        rdev: 0,
        uid: req.uid(),
        gid: req.gid(),
        target: None,
    }
}

/// A kernel lock request as the stack takes it. fuser 0.18 does not pass
/// FUSE_LK_FLOCK on, so flock(2) cannot be told apart: it arrives as a
/// whole-file lock whose owner is the open file, and is kept as such, as the
/// Linux NFS client does.
fn record_lock(owner: LockOwner, pid: u32, start: u64, end: u64, typ: i32) -> FsResult<RecordLock> {
    Ok(RecordLock {
        owner: owner.0,
        pid,
        start,
        end: lock_end_from_kernel(end),
        typ: lock_type(typ)?,
        flock: false,
    })
}

/// The error half of fuser's reply types, which share no public trait.
trait Fail {
    fn fail(self, err: Errno);
}

macro_rules! impl_fail {
    ($($t:ty),*) => {
        $(impl Fail for $t {
            fn fail(self, err: Errno) {
                self.error(err)
            }
        })*
    };
}

impl_fail!(
    ReplyEntry,
    ReplyAttr,
    ReplyData,
    ReplyEmpty,
    ReplyOpen,
    ReplyWrite,
    ReplyCreate,
    ReplyStatfs,
    ReplyLock,
    ReplyXattr,
    ReplyDirectory,
    ReplyDirectoryPlus
);

fn fail(reply: impl Fail, op: &'static str, err: FsError) {
    // Trouble with bricks is worth an operator's attention; ENOENT and
    // friends are the normal life of a filesystem.
    if err.is_brick_trouble() {
        warn!(op, %err, "fop failed");
    } else {
        debug!(op, %err, "fop failed");
    }
    reply.fail(errno(&err));
}

fn ok_or_fail(reply: ReplyEmpty, op: &'static str, r: FsResult<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => fail(reply, op, e),
    }
}

fn name(n: &OsStr) -> Name {
    Name::new(n.as_bytes())
}

/// A file handle says only whether its open may write. The kernel flushes
/// on every close, read-only ones too; only a close of a handle that may
/// have written waits for queued writes and reports their errors, so a
/// reader's close never takes a writer's error.
const FH_READ_ONLY: u64 = 0;
const FH_WRITABLE: u64 = 1;

fn handle_for(flags: i32) -> FileHandle {
    if flags & libc::O_ACCMODE == libc::O_RDONLY {
        FileHandle(FH_READ_ONLY)
    } else {
        FileHandle(FH_WRITABLE)
    }
}

/// What the kernel may keep of a file it opens with `flags`. An O_APPEND
/// file bypasses the page cache: the kernel would put each appended block
/// where it believes the end is, while the bricks put it at the real end
/// (another client may have appended meanwhile).
fn open_flags(flags: i32) -> FopenFlags {
    if flags & libc::O_APPEND != 0 {
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::empty()
    }
}

impl Shared {
    /// Drops the kernel's cached attributes of `ino` (and its cached pages
    /// too with `pages`), so that the next use asks the bricks: what other
    /// clients wrote becomes visible.
    fn invalidate(&self, ino: INodeNo, pages: bool) {
        let Some(n) = self.notifier.get() else { return };
        let (offset, len) = if pages { (0, 0) } else { (-1, 0) };
        if let Err(e) = n.inval_inode(ino, offset, len) {
            debug!(ino = ino.0, "inval_inode: {e}");
        }
    }

    /// Counts the kernel's new reference to `attr`'s inode, known to it as
    /// `name` in `parent`; past the table's limit, wakes the pruner.
    fn remember(&self, attr: &Attr, parent: u64, name: &[u8]) {
        let dir = attr.kind == FileKind::Dir;
        if self.inodes.remember(attr.gfid, dir, parent, name) {
            let _ = self.prune.try_send(());
        }
    }

    /// Asks the kernel to drop the names of the least recently used files
    /// past the inode table's limit; it then forgets the inodes it does not
    /// use.
    fn prune(&self) {
        let victims = self.inodes.victims(|g| self.open_files.is_open(g));
        let Some(n) = self.notifier.get() else { return };
        let asked = victims.len();
        for v in victims {
            if let Err(e) = n.inval_entry(INodeNo(v.parent), OsStr::from_bytes(&v.name)) {
                debug!(parent = v.parent, "inval_entry: {e}");
            }
        }
        debug!(
            asked,
            entries = self.inodes.len(),
            "asked the kernel to drop names past the inode limit"
        );
    }

    /// Entry replies are the only way the kernel learns an inode number, so
    /// each one is counted before it is sent.
    fn entry(&self, reply: ReplyEntry, op: &'static str, at: (Gfid, &[u8]), r: FsResult<Attr>) {
        match r {
            Ok(attr) => {
                self.remember(&attr, at.0.ino(), at.1);
                reply.entry_with_ttls(
                    &self.ttls.attr(),
                    &self.ttls.entry(),
                    &file_attr(&attr),
                    Generation(0),
                );
            }
            Err(e) => fail(reply, op, e),
        }
    }

    fn attr(&self, reply: ReplyAttr, op: &'static str, r: FsResult<Attr>) {
        match r {
            Ok(attr) => reply.attr(&self.ttls.attr(), &file_attr(&attr)),
            Err(e) => fail(reply, op, e),
        }
    }

    /// Releases every lock `owner` holds on the file, if it took any here.
    async fn drop_locks(&self, gfid: Gfid, ino: u64, owner: u64) {
        if self.lockers.remove(&(ino, owner)).is_none() {
            return;
        }
        let all = RecordLock {
            owner,
            pid: 0,
            start: 0,
            end: u64::MAX,
            typ: RecordLockType::Unlock,
            flock: false,
        };
        if let Err(err) = self.layer.setlk(gfid, all, false).await {
            // The brick drops the locks anyway when this client's
            // connection ends; nothing more can be done from a close.
            warn!(%gfid, owner, %err, "could not release locks on close");
        }
    }

    /// create(2) without O_EXCL on a name another client created after the
    /// kernel's negative lookup: open the existing file, as a local
    /// filesystem would.
    async fn open_existing(&self, parent: Gfid, name: &Name, flags: i32) -> FsResult<Attr> {
        let attr = self.layer.lookup(parent, name).await?;
        match attr.kind {
            FileKind::File => {}
            FileKind::Dir => return Err(FsError::IsDir),
            _ => return Err(FsError::Exists),
        }
        if flags & libc::O_TRUNC != 0 && attr.size != 0 {
            let set = SetAttr {
                size: Some(0),
                ..SetAttr::default()
            };
            return self.layer.setattr(attr.gfid, set).await;
        }
        Ok(attr)
    }
}

/// Requests a capability if the kernel has it; a missing one only costs
/// speed or falls back to kernel-local behaviour.
fn want(config: &mut KernelConfig, flag: InitFlags, what: &str) {
    if config.add_capabilities(flag).is_err() {
        info!("kernel lacks FUSE capability {what}");
    }
}

impl Filesystem for BrickFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        want(config, InitFlags::FUSE_ASYNC_READ, "async read");
        want(config, InitFlags::FUSE_BIG_WRITES, "big writes");
        want(config, InitFlags::FUSE_MAX_PAGES, "max pages");
        want(config, InitFlags::FUSE_DO_READDIRPLUS, "readdirplus");
        want(
            config,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            "adaptive readdirplus",
        );
        want(config, InitFlags::FUSE_POSIX_LOCKS, "POSIX locks");
        want(config, InitFlags::FUSE_FLOCK_LOCKS, "flock locks");
        want(config, InitFlags::FUSE_PARALLEL_DIROPS, "parallel dirops");
        want(config, InitFlags::FUSE_ATOMIC_O_TRUNC, "atomic O_TRUNC");
        // A symlink's target never changes, so caching it is always coherent.
        want(config, InitFlags::FUSE_CACHE_SYMLINKS, "symlink cache");
        // We clear setuid/setgid on unprivileged writes ourselves, which
        // spares the kernel a security.capability getxattr before every
        // first write to a file (one round trip per small file).
        want(config, InitFlags::FUSE_HANDLE_KILLPRIV_V2, "kill-priv v2");
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(nearest);
        }
        if let Err(nearest) = config.set_max_background(MAX_BACKGROUND) {
            let _ = config.set_max_background(nearest);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name_: &OsStr, reply: ReplyEntry) {
        let Some(parent) = self.gfid(parent) else {
            return reply.error(Errno::ESTALE);
        };
        let n = name(name_);
        self.spawn(move |s| async move {
            let r = s.layer.lookup(parent, &n).await;
            s.entry(reply, "lookup", (parent, n.as_bytes()), r);
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.shared.inodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        // The kernel asks right after an open dropped its cached attributes:
        // what that open just learned from the bricks is the answer.
        if let Some(attr) = self.shared.opened_attrs.take(ino.0) {
            return reply.attr(&self.shared.ttls.attr(), &file_attr(&attr));
        }
        self.spawn(move |s| async move {
            let r = s.layer.getattr(gfid).await;
            s.attr(reply, "getattr", r);
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.shared.opened_attrs.forget(ino.0);
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        let set = SetAttr {
            perm: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
        };
        self.spawn(move |s| async move {
            let r = s.layer.setattr(gfid, set).await;
            s.attr(reply, "setattr", r);
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        self.spawn(move |s| async move {
            match s.layer.readlink(gfid).await {
                Ok(target) => reply.data(&target),
                Err(e) => fail(reply, "readlink", e),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name_: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let Some(parent) = self.gfid(parent) else {
            return reply.error(Errno::ESTALE);
        };
        let kind = match kind_from_mode(mode) {
            Ok(k) => k,
            Err(e) => return fail(reply, "mknod", e),
        };
        let new = NewEntry {
            rdev: u64::from(rdev),
            ..new_entry(req, name_, kind, new_perm(mode, umask))
        };
        self.spawn(move |s| async move {
            let n = new.name.clone();
            let r = s.layer.create(parent, new).await;
            s.entry(reply, "mknod", (parent, n.as_bytes()), r);
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name_: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let Some(parent) = self.gfid(parent) else {
            return reply.error(Errno::ESTALE);
        };
        let new = new_entry(req, name_, FileKind::Dir, new_perm(mode, umask));
        self.spawn(move |s| async move {
            let n = new.name.clone();
            let r = s.layer.create(parent, new).await;
            s.entry(reply, "mkdir", (parent, n.as_bytes()), r);
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name_: &OsStr, reply: ReplyEmpty) {
        self.shared.opened_attrs.forget_all();
        let Some(parent) = self.gfid(parent) else {
            return reply.error(Errno::ESTALE);
        };
        let n = name(name_);
        self.spawn(move |s| async move {
            let keep_open = s.open_files.any();
            match s.layer.unlink(parent, &n, keep_open).await {
                Ok(Some(kept)) => {
                    reply.ok();
                    if !s.open_files.keep_until_closed(kept) {
                        let _ = s.layer.purge(kept).await;
                    }
                }
                Ok(None) => reply.ok(),
                Err(e) => fail(reply, "unlink", e),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name_: &OsStr, reply: ReplyEmpty) {
        let Some(parent) = self.gfid(parent) else {
            return reply.error(Errno::ESTALE);
        };
        let n = name(name_);
        self.spawn(move |s| async move {
            ok_or_fail(reply, "rmdir", s.layer.rmdir(parent, &n).await);
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let Some(parent) = self.gfid(parent) else {
            return reply.error(Errno::ESTALE);
        };
        let new = NewEntry {
            target: Some(target.as_os_str().as_bytes().to_vec()),
            // Symlink permissions are ignored by Linux; 0777 is what stat shows.
            ..new_entry(req, link_name, FileKind::Symlink, 0o777)
        };
        self.spawn(move |s| async move {
            let n = new.name.clone();
            let r = s.layer.create(parent, new).await;
            s.entry(reply, "symlink", (parent, n.as_bytes()), r);
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name_: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.shared.opened_attrs.forget_all();
        let (Some(parent), Some(new_parent)) = (self.gfid(parent), self.gfid(newparent)) else {
            return reply.error(Errno::ESTALE);
        };
        let req = RenameReq {
            parent,
            name: name(name_),
            new_parent,
            new_name: name(newname),
            flags: flags.bits(),
        };
        self.spawn(move |s| async move {
            ok_or_fail(reply, "rename", s.layer.rename(req).await);
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.shared.opened_attrs.forget_all();
        let (Some(gfid), Some(parent)) = (self.gfid(ino), self.gfid(newparent)) else {
            return reply.error(Errno::ESTALE);
        };
        let n = name(newname);
        self.spawn(move |s| async move {
            let r = s.layer.link(gfid, parent, &n).await;
            s.entry(reply, "link", (parent, n.as_bytes()), r);
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        // O_TRUNC only arrives here because we asked for atomic_o_trunc,
        // which saves the kernel a separate setattr round trip.
        if flags.0 & libc::O_TRUNC == 0 {
            self.spawn(move |s| async move {
                // Close-to-open, as NFS clients do it: the open asks the
                // bricks. A file another client removed (the kernel's name
                // cache still had it) fails with ESTALE, on which the kernel
                // looks the name up again and finds it gone, so the open
                // gets ENOENT; otherwise the kernel drops its cached size and
                // times (its pages go on every open: no FOPEN_KEEP_CACHE), so
                // what another client closed before this open is what it sees
                // (asked of a read quorum of replicas: `Layer::getattr_to_open`).
                let asked = s.opened_attrs.epoch();
                match s.layer.getattr_to_open(gfid).await {
                    Ok(attr) => {
                        s.opened_attrs.put(asked, ino.0, attr);
                        s.invalidate(ino, false);
                        s.open_files.opened(gfid);
                        reply.opened(handle_for(flags.0), open_flags(flags.0))
                    }
                    Err(FsError::NotFound | FsError::Stale(_)) => reply.error(Errno::ESTALE),
                    Err(e) => fail(reply, "open", e),
                }
            });
            return;
        }
        self.spawn(move |s| async move {
            let set = SetAttr {
                size: Some(0),
                ..SetAttr::default()
            };
            match s.layer.setattr(gfid, set).await {
                Ok(_) => {
                    s.open_files.opened(gfid);
                    reply.opened(handle_for(flags.0), open_flags(flags.0))
                }
                Err(e) => fail(reply, "open(O_TRUNC)", e),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        self.spawn(move |s| async move {
            match s.layer.read(gfid, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => fail(reply, "read", e),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.shared.opened_attrs.forget(ino.0);
        // The kernel's offset of an O_APPEND write is its cached size, which
        // another client's appends may have passed: the bricks append.
        let append = flags.0 & libc::O_APPEND != 0;
        let kill_suidgid = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        // The request buffer belongs to the FUSE thread; the task needs its own.
        let data = data.to_vec();
        let len = data.len() as u32;
        self.spawn(move |s| async move {
            let written = if append {
                s.layer.append(gfid, data).await
            } else {
                s.layer.write(gfid, offset, data).await
            };
            // Again now that the write is in the layers: an open that asked
            // after the first forget but before the write got there has an
            // answer without it.
            s.opened_attrs.forget(ino.0);
            match written {
                Ok(attr) => {
                    if kill_suidgid {
                        if let Some(perm) = convert::killed_privs(attr.perm) {
                            let set = SetAttr {
                                perm: Some(perm),
                                ..SetAttr::default()
                            };
                            if let Err(e) = s.layer.setattr(gfid, set).await {
                                return fail(reply, "write (clearing setuid)", e);
                            }
                        }
                    }
                    reply.written(len)
                }
                Err(e) => fail(reply, "write", e),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        let writable = fh.0 == FH_WRITABLE;
        self.spawn(move |s| async move {
            let r = if writable {
                s.layer.flush(gfid).await
            } else {
                Ok(())
            };
            // close(2) drops the process's POSIX locks on the file.
            s.drop_locks(gfid, ino.0, lock_owner.0).await;
            ok_or_fail(reply, "flush", r);
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        flush: bool,
        reply: ReplyEmpty,
    ) {
        // The kernel ignores errors of release; only do work that matters.
        let Some(gfid) = self.gfid(ino) else {
            return reply.ok();
        };
        let closed = self.shared.open_files.closed(gfid);
        let flush = flush && fh.0 == FH_WRITABLE;
        if !(flush || lock_owner.is_some() || closed.last) {
            return reply.ok();
        }
        self.spawn(move |s| async move {
            let r = if flush {
                s.layer.flush(gfid).await
            } else {
                Ok(())
            };
            // The last close of an open file drops its flock.
            if let Some(owner) = lock_owner {
                s.drop_locks(gfid, ino.0, owner.0).await;
            }
            if closed.last {
                s.layer.released(gfid).await;
            }
            if closed.purge {
                let _ = s.layer.purge(gfid).await;
            }
            ok_or_fail(reply, "release", r);
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        self.spawn(move |s| async move {
            ok_or_fail(reply, "fsync", s.layer.fsync(gfid, datasync).await);
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        self.spawn(move |s| async move {
            let mut entries = Vec::new();
            let mut after: Option<Name> = None;
            loop {
                match s.layer.readdir(gfid, after.take(), READDIR_PAGE).await {
                    Ok(page) => {
                        let done = page.eof || page.entries.is_empty();
                        entries.extend(page.entries);
                        if done {
                            break;
                        }
                        after = entries.last().map(|e| e.name.clone());
                    }
                    Err(e) => return fail(reply, "opendir", e),
                }
            }
            let fh = s.dirs.insert(entries);
            reply.opened(FileHandle(fh), FopenFlags::empty());
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(entries) = self.shared.dirs.get(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        for (next, slot) in slots(&entries, offset) {
            let full = match slot {
                Slot::Dot => reply.add(ino, next, fuser::FileType::Directory, "."),
                // The parent is not known here; the kernel uses its own
                // dentry for "..", only getdents' d_ino shows this number.
                Slot::DotDot => reply.add(ino, next, fuser::FileType::Directory, ".."),
                Slot::Entry(e) => reply.add(
                    INodeNo(e.attr.gfid.ino()),
                    next,
                    file_type(e.attr.kind),
                    OsStr::from_bytes(e.name.as_bytes()),
                ),
            };
            if full {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some(entries) = self.shared.dirs.get(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let s = &self.shared;
        // One TTL covers both entry and attributes here; take the stricter.
        let ttl = s.ttls.attr().min(s.ttls.entry());
        let dot = dot_attr(ino.0);
        for (next, slot) in slots(&entries, offset) {
            let full = match slot {
                // The kernel neither links nor counts "." and "..".
                Slot::Dot => reply.add(ino, next, ".", &ttl, &dot, Generation(0)),
                Slot::DotDot => reply.add(ino, next, "..", &ttl, &dot, Generation(0)),
                Slot::Entry(e) => {
                    let attr = file_attr(&e.attr);
                    let full = reply.add(
                        attr.ino,
                        next,
                        OsStr::from_bytes(e.name.as_bytes()),
                        &ttl,
                        &attr,
                        Generation(0),
                    );
                    if !full {
                        // Each entry the kernel receives is one lookup.
                        s.remember(&e.attr, ino.0, e.name.as_bytes());
                    }
                    full
                }
            };
            if full {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.shared.dirs.remove(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        self.spawn(move |s| async move {
            ok_or_fail(reply, "fsyncdir", s.layer.fsync(gfid, datasync).await);
        });
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        self.spawn(move |s| async move {
            // Inside a sub-volume: its limit and usage (`StatFs::as_seen`).
            match s.layer.statfs(gfid).await.map(|st| st.as_seen()) {
                Ok(st) => reply.statfs(
                    st.blocks, st.bfree, st.bavail, st.files, st.ffree, st.bsize, st.namelen,
                    st.frsize,
                ),
                Err(e) => fail(reply, "statfs", e),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name_: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.shared.opened_attrs.forget(ino.0);
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        let n = name(name_);
        let value = value.to_vec();
        self.shared.no_caps.forget(gfid);
        self.spawn(move |s| async move {
            let r = s.layer.setxattr(gfid, &n, value, flags).await;
            s.no_caps.forget(gfid);
            ok_or_fail(reply, "setxattr", r);
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name_: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        let n = name(name_);
        let caps = n.as_bytes() == no_caps::NAME;
        if caps && self.shared.no_caps.known(gfid) {
            return reply.error(Errno::ENODATA);
        }
        self.spawn(move |s| async move {
            match s.layer.getxattr(gfid, &n).await {
                Ok(value) => xattr_reply(reply, &value, size),
                Err(e) => {
                    if caps && e == FsError::NoAttr {
                        s.no_caps.remember(gfid);
                    }
                    fail(reply, "getxattr", e)
                }
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        self.spawn(move |s| async move {
            match s.layer.listxattr(gfid).await {
                Ok(names) => xattr_reply(reply, &xattr_list(&names), size),
                Err(e) => fail(reply, "listxattr", e),
            }
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name_: &OsStr, reply: ReplyEmpty) {
        self.shared.opened_attrs.forget(ino.0);
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        let n = name(name_);
        self.shared.no_caps.forget(gfid);
        self.spawn(move |s| async move {
            ok_or_fail(reply, "removexattr", s.layer.removexattr(gfid, &n).await);
        });
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // With default_permissions the kernel checks the mode bits itself
        // (and does not even call this); what is left is that the file exists.
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        self.spawn(move |s| async move {
            ok_or_fail(reply, "access", s.layer.getattr(gfid).await.map(|_| ()));
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name_: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let Some(parent) = self.gfid(parent) else {
            return reply.error(Errno::ESTALE);
        };
        let new = new_entry(req, name_, FileKind::File, new_perm(mode, umask));
        self.spawn(move |s| async move {
            let n = new.name.clone();
            let r = match s.layer.create(parent, new).await {
                Err(FsError::Exists) if flags & libc::O_EXCL == 0 => {
                    s.open_existing(parent, &n, flags).await.map(|a| (a, false))
                }
                r => r.map(|a| (a, true)),
            };
            match r {
                Ok((attr, created)) => {
                    s.open_files.opened(attr.gfid);
                    s.remember(&attr, parent.ino(), n.as_bytes());
                    if created {
                        // A new file carries no capabilities.
                        s.no_caps.remember(attr.gfid);
                    }
                    let ttl = s.ttls.attr().min(s.ttls.entry());
                    reply.created(
                        &ttl,
                        &file_attr(&attr),
                        Generation(0),
                        handle_for(flags),
                        open_flags(flags),
                    );
                }
                Err(e) => fail(reply, "create", e),
            }
        });
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        let lock = match record_lock(lock_owner, pid, start, end, typ) {
            Ok(l) => l,
            Err(e) => return fail(reply, "getlk", e),
        };
        self.spawn(move |s| async move {
            match s.layer.getlk(gfid, lock).await {
                Ok(Some(l)) => reply.locked(
                    lock_end_to_kernel(l.start),
                    lock_end_to_kernel(l.end),
                    lock_type_to_kernel(l.typ),
                    l.pid,
                ),
                // No conflict: fcntl(F_GETLK) reports F_UNLCK.
                Ok(None) => reply.locked(start, end, libc::F_UNLCK, 0),
                Err(e) => fail(reply, "getlk", e),
            }
        });
    }

    fn setlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        let lock = match record_lock(lock_owner, pid, start, end, typ) {
            Ok(l) => l,
            Err(e) => return fail(reply, "setlk", e),
        };
        let typ = lock.typ;
        self.spawn(move |s| async move {
            let r = s.layer.setlk(gfid, lock, sleep).await;
            if r.is_ok() && typ != RecordLockType::Unlock {
                s.lockers.insert((ino.0, lock_owner.0), ());
                // What the file's open learned may predate the last
                // holder's writes: the kernel's next GETATTR asks the
                // bricks.
                s.opened_attrs.forget(ino.0);
                // The new holder sees everything the last one wrote before
                // unlocking (each write was on the bricks before it returned):
                // the kernel's pages and size of the file go before the lock
                // call returns. Off the runtime: dropping pages waits for
                // page locks that READs in flight hold until this runtime
                // answers them.
                let sh = s.clone();
                let _ = tokio::task::spawn_blocking(move || sh.invalidate(ino, true)).await;
            }
            ok_or_fail(reply, "setlk", r);
        });
    }

    /// `cp`'s copy_file_range: the bricks copy within themselves, so the
    /// bytes cross no network. Where they cannot (the two files on
    /// different replica sets, a stale copy of the source), EXDEV has the
    /// kernel copy this call through reads and writes instead.
    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        _fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        _fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        if flags.bits() != 0 {
            return reply.error(Errno::EINVAL);
        }
        self.shared.opened_attrs.forget(ino_out.0);
        let (Some(src), Some(dst)) = (self.gfid(ino_in), self.gfid(ino_out)) else {
            return reply.error(Errno::ESTALE);
        };
        // One answer counts at most u32::MAX bytes; the caller asks again.
        let len = len.min(proto::MAX_COPY);
        self.spawn(move |s| async move {
            let copy = proto::CopyRange {
                src,
                src_offset: offset_in,
                dst,
                dst_offset: offset_out,
                len,
            };
            let copied = s.layer.copy_range(copy).await;
            s.opened_attrs.forget(ino_out.0);
            match copied {
                Ok((n, _)) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
                Err(FsError::NotSupported(why)) => {
                    debug!(%why, "copy_file_range: the kernel copies instead");
                    reply.error(Errno::EXDEV)
                }
                Err(e) => fail(reply, "copy_file_range", e),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.shared.opened_attrs.forget(ino.0);
        let Some(gfid) = self.gfid(ino) else {
            return reply.error(Errno::ESTALE);
        };
        self.spawn(move |s| async move {
            let r = s.layer.fallocate(gfid, mode, offset, length).await;
            ok_or_fail(reply, "fallocate", r.map(|_| ()));
        });
    }
}

fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32) {
    match xattr_fit(value.len(), size) {
        XattrFit::Size(n) => reply.size(n),
        XattrFit::Data => reply.data(value),
        XattrFit::TooSmall => reply.error(Errno::ERANGE),
    }
}
