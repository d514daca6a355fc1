//! Whether our mount is still there. fuser's own check cannot tell: it
//! reports a FUSE connection that the kernel already closed as mounted, and
//! would then umount(2) whatever sits at the path now. Our mount is known by
//! its device number (`major:minor`), which the kernel gives each FUSE
//! connection and never shares with another live mount.

use std::path::Path;

use supervise::mounts::{self, Mount};

/// The device of the topmost mount at `mountpoint`, if any.
pub(crate) fn device_at(table: &[Mount], mountpoint: &Path) -> Option<String> {
    let want = mountpoint.as_os_str().as_encoded_bytes();
    // Later lines are mounted on top of earlier ones.
    table
        .iter()
        .rfind(|m| m.point == want)
        .map(|m| m.dev.clone())
}

/// True if the mount with device `dev` is still mounted at `mountpoint`.
pub(crate) fn still_mounted(mountpoint: &Path, dev: &str) -> bool {
    let want = mountpoint.as_os_str().as_encoded_bytes();
    match mounts::current() {
        Some(table) => table.iter().any(|m| m.dev == dev && m.point == want),
        // Without /proc we cannot know; assume it is there, so that the
        // caller tries to unmount rather than leave a dead mount.
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &[u8] = b"22 27 0:21 / /proc rw,relatime - proc proc rw\n\
        42 27 0:39 / /tmp/m\\040nt rw,nosuid,nodev - fuse brickfs:dev rw,user_id=0\n\
        43 42 0:40 / /tmp/m\\040nt rw - fuse brickfs:other rw\n";

    #[test]
    fn finds_the_topmost_mount_with_escaped_names() {
        let table = mounts::parse(INFO);
        assert_eq!(
            device_at(&table, Path::new("/tmp/m nt")),
            Some("0:40".into())
        );
        assert_eq!(device_at(&table, Path::new("/proc")), Some("0:21".into()));
        assert_eq!(device_at(&table, Path::new("/tmp")), None);
    }
}
