//! The mount(2) call for a root mount, made here rather than by fuser:
//! fuser mounts as file system type `fuse` and drops the subtype, so
//! `/proc/mounts`, `findmnt -t fuse.brickfs` and `umount -a -t
//! fuse.brickfs` would not know a brickfs mount (GlusterFS's mounts are
//! `fuse.glusterfs`). Without root, fuser's fusermount path passes the
//! subtype on, and the type comes out right there.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The file system type the kernel lists.
pub const FS_TYPE: &str = "fuse.brickfs";

/// What the mount is called and how it behaves.
pub struct KernelMount<'a> {
    /// The source column of the mount table (`brickfs:VOLUME`).
    pub source: &'a str,
    pub read_only: bool,
    /// Other users may use the mount (root mounts are shared by all).
    pub allow_other: bool,
}

impl KernelMount<'_> {
    /// Opens `/dev/fuse` and mounts it at `mountpoint`; the descriptor is
    /// the FUSE connection to serve.
    pub fn mount(&self, mountpoint: &Path) -> io::Result<OwnedFd> {
        let dev = c_string(b"/dev/fuse")?;
        // SAFETY: a valid NUL-terminated path; the result is checked.
        let raw = unsafe { libc::open(dev.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(annotate(io::Error::last_os_error(), "open /dev/fuse"));
        }
        // SAFETY: `raw` is a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let meta = std::fs::metadata(mountpoint)?;
        // SAFETY: plain getters.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let mut data = format!(
            "fd={},rootmode={:o},user_id={uid},group_id={gid},default_permissions",
            fd.as_raw_fd(),
            meta.mode() & libc::S_IFMT
        );
        if self.allow_other {
            data.push_str(",allow_other");
        }
        let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
        if self.read_only {
            flags |= libc::MS_RDONLY;
        }
        let source = c_string(self.source.as_bytes())?;
        let target = c_string(mountpoint.as_os_str().as_bytes())?;
        let fstype = c_string(FS_TYPE.as_bytes())?;
        let data = c_string(data.as_bytes())?;
        // SAFETY: every pointer is a valid NUL-terminated string that
        // outlives the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                flags,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(annotate(
                io::Error::last_os_error(),
                &format!("mount {} at {}", FS_TYPE, mountpoint.display()),
            ));
        }
        Ok(fd)
    }
}

/// Unmounts `mountpoint` (`MNT_DETACH`: lazily, for a busy mount).
pub fn umount(mountpoint: &Path, flags: libc::c_int) -> io::Result<()> {
    let path = c_string(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(path.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
