//! Extended attributes of a path, through the mount or straight on a
//! brick (where brickfs keeps its own, `trusted.brickfs.*`). None of these
//! follow a symlink: on a brick a symlink's own attributes are what counts,
//! and for anything else the answer is the same.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Larger than any value or name list the tests set or brickfs keeps.
const BUF: usize = 64 * 1024;

fn cpath(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL in test paths")
}

fn cname(name: &str) -> CString {
    CString::new(name).expect("no NUL in attribute names")
}

/// `name`'s value (`ENODATA` when there is none).
pub fn get(path: &Path, name: &str) -> io::Result<Vec<u8>> {
    get_raw(path, name.as_bytes())
}

/// [`get`] of a name as the kernel lists it (not necessarily UTF-8).
pub fn get_raw(path: &Path, name: &[u8]) -> io::Result<Vec<u8>> {
    let p = cpath(path);
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = vec![0u8; BUF];
    // SAFETY: NUL-terminated strings and a buffer of the length given.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(len as usize);
    Ok(buf)
}

pub fn set(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let (p, n) = (cpath(path), cname(name));
    // SAFETY: NUL-terminated strings and a value of the length given.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn remove(path: &Path, name: &str) -> io::Result<()> {
    let (p, n) = (cpath(path), cname(name));
    // SAFETY: NUL-terminated strings.
    if unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The names listed for `path`, in the order given; panics if listing fails.
pub fn list(path: &Path) -> Vec<String> {
    list_raw(path)
        .unwrap_or_else(|e| panic!("listxattr {}: {e}", path.display()))
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The names listed for `path`, as the kernel gives them.
pub fn list_raw(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let p = cpath(path);
    let mut buf = vec![0u8; BUF];
    // SAFETY: a NUL-terminated string and a buffer of the length given.
    let len = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(len as usize);
    Ok(buf
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}
