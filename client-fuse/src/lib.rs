//! FUSE front-end over the client stack: a thin fuser adapter that turns
//! kernel requests into [`Layer`] calls and `FsError`s into errnos.
//!
//! - [`mount`] mounts a stack at a directory and returns a [`MountHandle`]
//!   that unmounts when dropped; `brickfs-mount` (main.rs) and embedders such
//!   as `brickfs dev` or tests use it alike.
//! - `fs`: the `Filesystem` impl; every request runs as a task on the tokio
//!   runtime, FUSE threads never wait on bricks.
//! - `inodes`: inode number ↔ gfid with the kernel's lookup counts.
//! - `dirs`: per-opendir listing snapshots.
//! - `convert`: pure type conversions (attributes, times, modes, locks).
//! - `mountinfo`: whether our mount is still there, by device number.
//! - `kernel_mount`: the mount(2) call of a root mount, as type
//!   `fuse.brickfs`.
//!
//! Architecture invariant: this crate never decides an errno; it reports
//! `FsError::errno()` of whatever the stack returned.

mod convert;
mod dirs;
mod fs;
mod inodes;
mod kernel_mount;
mod mountinfo;
mod no_caps;
mod open_files;
mod opened;
pub mod ttls;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use client::Layer;
use fuser::{BackgroundSession, MountOption, SessionACL};
use tracing::{info, warn};

/// How a volume is mounted.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Volume name; the mount shows as `brickfs:<volume>` in /proc/mounts.
    pub volume: String,
    /// How long the kernel may cache attributes without asking again
    /// (short, because other clients change files too) and a name → inode
    /// binding; changeable while mounted.
    pub ttls: Arc<ttls::Ttls>,
    /// FUSE threads reading requests from the kernel (at least 1). They only
    /// dispatch; the work runs on the tokio runtime.
    pub threads: usize,
    /// Let users other than the mounting one use the mount (`allow_other`).
    pub allow_other: bool,
    /// Mounted read-only: the kernel refuses every change (`ro`).
    pub read_only: bool,
    /// Most inodes the kernel is let hold before it is asked to drop the
    /// names of the least recently used files (0: no limit).
    pub inode_limit: usize,
    /// How many the kernel holds now, kept up to date for metrics.
    pub inodes: Arc<std::sync::atomic::AtomicUsize>,
}

/// About 24 MiB of table (some 180 bytes an entry): a source tree or a
/// package cache of that many files is looked up once, not again and again.
pub const DEFAULT_INODE_LIMIT: usize = 131_072;

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            volume: "dev".to_string(),
            ttls: Arc::new(ttls::Ttls::new(
                Duration::from_secs(1),
                Duration::from_secs(1),
            )),
            threads: 4,
            allow_other: true,
            read_only: false,
            inode_limit: DEFAULT_INODE_LIMIT,
            inodes: Arc::default(),
        }
    }
}

/// A live mount. Dropping it, or [`MountHandle::unmount`], unmounts.
#[derive(Debug)]
pub struct MountHandle {
    session: Option<BackgroundSession>,
    /// Canonical path, as the kernel knows the mount.
    mountpoint: PathBuf,
    /// Device number (`major:minor`) of this mount, from mountinfo.
    dev: Option<String>,
    /// We made the mount(2) call (root), so we unmount; fuser does not
    /// know the mount.
    mounted_by_us: bool,
}

/// Mounts `layer` at `mountpoint`. FUSE requests are served by
/// `opts.threads` threads that hand every request to a task on `rt`.
///
/// Blocks until the kernel's FUSE handshake is done, so call it from a
/// plain thread (or `spawn_blocking`), not from inside an async task.
/// Mounting needs root or a setuid `fusermount`.
pub fn mount(
    layer: Arc<dyn Layer>,
    rt: tokio::runtime::Handle,
    mountpoint: &Path,
    opts: &MountOptions,
) -> io::Result<MountHandle> {
    let canonical = mountpoint.canonicalize().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("mountpoint {}: {e}", mountpoint.display()),
        )
    })?;
    if !canonical.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("mountpoint {} is not a directory", mountpoint.display()),
        ));
    }

    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("brickfs:{}", opts.volume)),
        MountOption::Subtype("brickfs".to_string()),
        // The kernel checks mode bits against the caller; the bricks run as
        // root and would allow everything.
        MountOption::DefaultPermissions,
    ];
    if opts.read_only {
        config.mount_options.push(MountOption::RO);
    }
    config.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(opts.threads.max(1));

    let ttls = opts.ttls.clone();
    // The session's notifier exists once the session does; requests that
    // need it (lock grants, opens) only come after the session started.
    let notifier = Arc::new(std::sync::OnceLock::new());
    let fs = fs::BrickFs::new(
        layer,
        rt,
        ttls.clone(),
        notifier.clone(),
        inodes::InodeTable::new(opts.inode_limit, opts.inodes.clone()),
    );
    // No AutoUnmount: it needs the fusermount helper; the handle below
    // unmounts on drop and on signals. As root the mount(2) call is ours
    // (fuser's would list the mount as type `fuse`); otherwise fuser's
    // fusermount path mounts, keeping the subtype.
    // SAFETY: plain getter.
    let mounted_by_us = unsafe { libc::geteuid() } == 0;
    let session = if mounted_by_us {
        let source = format!("brickfs:{}", opts.volume);
        let fd = kernel_mount::KernelMount {
            source: &source,
            read_only: opts.read_only,
            allow_other: opts.allow_other,
        }
        .mount(&canonical)?;
        match fuser::Session::from_fd(fs, fd, config.acl, config) {
            Ok(s) => s,
            Err(e) => {
                let _ = kernel_mount::umount(&canonical, libc::MNT_DETACH);
                return Err(e);
            }
        }
    } else {
        fuser::Session::new(fs, &canonical, &config)?
    };
    let _ = notifier.set(session.notifier());
    let session = session.spawn()?;
    let dev =
        supervise::mounts::current().and_then(|table| mountinfo::device_at(&table, &canonical));
    info!(volume = %opts.volume, mountpoint = %canonical.display(), dev = ?dev, "FUSE session started");
    Ok(MountHandle {
        session: Some(session),
        mountpoint: canonical,
        dev,
        mounted_by_us,
    })
}

impl MountHandle {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// False once the session has ended: unmounted from outside
    /// (`umount`, `fusermount -u`) or failed.
    pub fn is_mounted(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| !s.guard.is_finished())
    }

    /// Unmounts and waits for the FUSE threads to finish. If the mount is
    /// busy (open files, a process's cwd), it is detached lazily instead: it
    /// disappears from the namespace now and the kernel ends the session
    /// when the last user lets go, so no dead mount is ever left behind.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        if session.guard.is_finished() && !self.still_mounted() {
            // Unmounted from outside. fuser would now umount(2) the path
            // blindly, hitting whatever is mounted there since (a remount
            // by a test, say), so its handle is leaked instead: one closed
            // /dev/fuse connection, once per external unmount.
            std::mem::forget(session);
            return Ok(());
        }
        // fuser unmounts what it mounted; ours (root) is unmounted here,
        // after which the kernel ends the connection and the thread ends.
        let (unmounted, session) = if self.mounted_by_us {
            (kernel_mount::umount(&self.mountpoint, 0), Some(session))
        } else {
            (session.umount_and_join(), None)
        };
        let mut detached = false;
        let result = match unmounted {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                warn!(mountpoint = %self.mountpoint.display(), "mount busy, detaching lazily");
                detached = true;
                kernel_mount::umount(&self.mountpoint, libc::MNT_DETACH)
            }
            // Unmounted from outside between our check and umount(2).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !self.still_mounted() => Ok(()),
            Err(e) => Err(e),
        };
        if let Some(session) = session {
            if result.is_ok() && !detached {
                let _ = session.join();
            } else {
                // A detached mount ends when its last user lets go; the
                // thread is not waited for.
                std::mem::forget(session);
            }
        }
        result
    }

    fn still_mounted(&self) -> bool {
        match &self.dev {
            Some(dev) => mountinfo::still_mounted(&self.mountpoint, dev),
            None => true,
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            warn!(mountpoint = %self.mountpoint.display(), error = %e, "unmount failed");
        }
    }
}
