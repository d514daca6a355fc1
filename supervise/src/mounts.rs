//! /proc/self/mountinfo, read instead of stat()ing a path, which could block
//! on a FUSE daemon that is not answering.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// One line of mountinfo: the device (`major:minor`; the kernel gives each
/// FUSE connection its own) and the mount point, unescaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub dev: String,
    pub point: Vec<u8>,
}

/// Every mount in mountinfo text, in mount order (later ones on top).
pub fn parse(mountinfo: &[u8]) -> Vec<Mount> {
    mountinfo
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let mut fields = line.split(|&b| b == b' ');
            let dev = fields.nth(2)?;
            let point = fields.nth(1)?;
            Some(Mount {
                dev: String::from_utf8_lossy(dev).into_owned(),
                point: unescape(point),
            })
        })
        .collect()
}

/// The mounts of this process's namespace; `None` without /proc.
pub fn current() -> Option<Vec<Mount>> {
    std::fs::read("/proc/self/mountinfo")
        .ok()
        .map(|info| parse(&info))
}

/// True when `path` (absolute, canonical) is a mount point.
pub fn is_mounted(path: &Path) -> bool {
    let want = path.as_os_str().as_bytes();
    current()
        .unwrap_or_default()
        .iter()
        .any(|m| m.point == want)
}

/// True when anything is mounted at or below `dir`.
pub fn has_mounts_under(dir: &Path) -> bool {
    let dir = dir.as_os_str().as_bytes();
    current().unwrap_or_default().iter().any(|m| {
        m.point.starts_with(dir) && (m.point.len() == dir.len() || m.point[dir.len()] == b'/')
    })
}

/// Lazy unmount (MNT_DETACH): detached now, finished when unused.
pub fn umount_detach(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(
                (field[i + 1] - b'0') * 64 + (field[i + 2] - b'0') * 8 + (field[i + 3] - b'0'),
            );
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_escaped_points() {
        let info = b"22 27 0:21 / /proc rw,relatime - proc proc rw\n\
            42 27 0:39 / /tmp/m\\040nt rw,nosuid - fuse brickfs:dev rw\n";
        let m = parse(info);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].dev, "0:39");
        assert_eq!(m[1].point, b"/tmp/m nt");
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(b"a\\040b\\134c"), b"a b\\c".to_vec());
        assert_eq!(unescape(b"trailing\\04"), b"trailing\\04".to_vec());
    }
}
