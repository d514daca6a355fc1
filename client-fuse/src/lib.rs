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
//!
//! Architecture invariant: this crate never decides an errno; it reports
//! `FsError::errno()` of whatever the stack returned.

mod convert;
mod dirs;
mod fs;
mod inodes;
mod mountinfo;
mod no_caps;
mod open_files;
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
    /// How long the kernel may cache attributes without asking again.
    /// Short, because other clients change files too.
    pub attr_timeout: Duration,
    /// How long the kernel may cache a name → inode binding.
    pub entry_timeout: Duration,
    /// FUSE threads reading requests from the kernel (at least 1). They only
    /// dispatch; the work runs on the tokio runtime.
    pub threads: usize,
    /// Let users other than the mounting one use the mount (`allow_other`).
    pub allow_other: bool,
    /// Mounted read-only: the kernel refuses every change (`ro`).
    pub read_only: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            volume: "dev".to_string(),
            attr_timeout: Duration::from_secs(1),
            entry_timeout: Duration::from_secs(1),
            threads: 4,
            allow_other: true,
            read_only: false,
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
    /// The cache times the session answers with, changeable live.
    ttls: Arc<ttls::Ttls>,
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

    let ttls = Arc::new(ttls::Ttls::new(opts.attr_timeout, opts.entry_timeout));
    let fs = fs::BrickFs::new(layer, rt, ttls.clone());
    // No AutoUnmount: it needs the fusermount helper. Session::new mounts
    // with mount(2) directly when running as root, and the handle below
    // unmounts on drop and on signals.
    let session = fuser::Session::new(fs, &canonical, &config)?;
    let session = session.spawn()?;
    let dev =
        supervise::mounts::current().and_then(|table| mountinfo::device_at(&table, &canonical));
    info!(volume = %opts.volume, mountpoint = %canonical.display(), dev = ?dev, "FUSE session started");
    Ok(MountHandle {
        session: Some(session),
        mountpoint: canonical,
        dev,
        ttls,
    })
}

impl MountHandle {
    /// The attribute and entry cache times the session answers with; a
    /// change applies from the next reply on.
    pub fn ttls(&self) -> Arc<ttls::Ttls> {
        self.ttls.clone()
    }

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
        match session.umount_and_join() {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                warn!(mountpoint = %self.mountpoint.display(), "mount busy, detaching lazily");
                lazy_unmount(&self.mountpoint)
            }
            // Unmounted from outside between our check and umount(2).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !self.still_mounted() => Ok(()),
            Err(e) => Err(e),
        }
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

fn lazy_unmount(mountpoint: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
