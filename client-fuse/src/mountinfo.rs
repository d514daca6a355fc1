//! Reading /proc/self/mountinfo to tell whether our mount is still there.
//! fuser's own check cannot: it reports a FUSE connection that the kernel
//! already closed as mounted, and would then umount(2) whatever sits at the
//! path now. Our mount is known by its device number (`major:minor`), which
//! the kernel gives each FUSE connection and never shares with another live
//! mount.

use std::path::Path;

/// (device, mount point) of every mount, in mount order.
fn mounts(mountinfo: &str) -> impl Iterator<Item = (&str, Vec<u8>)> {
    mountinfo.lines().filter_map(|line| {
        let mut fields = line.split(' ');
        let dev = fields.nth(2)?;
        let point = fields.nth(1)?;
        Some((dev, unescape(point)))
    })
}

/// The device of the topmost mount at `mountpoint`, if any.
pub(crate) fn device_at(mountinfo: &str, mountpoint: &Path) -> Option<String> {
    let want = mountpoint.as_os_str().as_encoded_bytes();
    mounts(mountinfo)
        .filter(|(_, point)| point == want)
        // Later lines are mounted on top of earlier ones.
        .last()
        .map(|(dev, _)| dev.to_string())
}

/// True if the mount with device `dev` is still mounted at `mountpoint`.
pub(crate) fn still_mounted(mountpoint: &Path, dev: &str) -> bool {
    let want = mountpoint.as_os_str().as_encoded_bytes();
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(info) => mounts(&info).any(|(d, point)| d == dev && point == want),
        // Without /proc we cannot know; assume it is there, so that the
        // caller tries to unmount rather than leave a dead mount.
        Err(_) => true,
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
        42 27 0:39 / /tmp/m\\040nt rw,nosuid,nodev - fuse brickfs:dev rw,user_id=0\n\
        43 42 0:40 / /tmp/m\\040nt rw - fuse brickfs:other rw\n";

    #[test]
    fn finds_the_topmost_mount_with_escaped_names() {
        assert_eq!(device_at(INFO, Path::new("/tmp/m nt")), Some("0:40".into()));
        assert_eq!(device_at(INFO, Path::new("/proc")), Some("0:21".into()));
        assert_eq!(device_at(INFO, Path::new("/tmp")), None);
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("a\\040b\\134c"), b"a b\\c".to_vec());
        assert_eq!(unescape("trailing\\04"), b"trailing\\04".to_vec());
    }
}
