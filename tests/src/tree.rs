//! What a client can see of a brick directory, as a digest and as a listing.
//!
//! Walks the brick dir in byte order of names, skipping the brick's private
//! `.brickfs/` at the top. Per entry: relative path, type, `mode & 0o7777`,
//! owner, user xattrs, and for files the size and blake3 of the content, for
//! symlinks the target, for devices the rdev. Directory sizes and times are
//! left out: they depend on each brick's history, not on what the volume
//! holds (and so are the brick's own `trusted.` xattrs).

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// blake3 of [`manifest`]: equal on all bricks of a replica set once they agree.
pub fn digest(brick_dir: &Path) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    for line in manifest(brick_dir) {
        h.update(line.as_bytes());
        h.update(b"\n");
    }
    h.finalize()
}

/// One line per entry, sorted by path. Entries that vanish during the walk
/// (a brick still applying operations) are skipped rather than failing.
pub fn manifest(brick_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(brick_dir, Path::new(""), true, &mut out);
    out
}

fn walk(dir: &Path, rel: &Path, top: bool, out: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<_> = rd.filter_map(Result::ok).map(|e| e.file_name()).collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        if top && name.as_bytes() == proto::PRIVATE_DIR.as_bytes() {
            continue;
        }
        let path = dir.join(&name);
        let rel = rel.join(&name);
        let Ok(md) = fs::symlink_metadata(&path) else {
            continue;
        };
        let ft = md.file_type();
        let common = format!(
            "{:?}\t{:o}\t{}:{}\t{}",
            rel,
            md.mode() & 0o7777,
            md.uid(),
            md.gid(),
            user_xattrs(&path)
        );
        let line = if ft.is_dir() {
            format!("{common}\tdir")
        } else if ft.is_file() {
            match hash_file(&path) {
                Ok(h) => format!("{common}\tfile\t{}\t{h}", md.size()),
                Err(_) => continue,
            }
        } else if ft.is_symlink() {
            match fs::read_link(&path) {
                Ok(t) => format!("{common}\tsymlink\t{t:?}"),
                Err(_) => continue,
            }
        } else if ft.is_fifo() {
            format!("{common}\tfifo")
        } else if ft.is_socket() {
            format!("{common}\tsocket")
        } else if ft.is_char_device() {
            format!("{common}\tchar\t{}", md.rdev())
        } else if ft.is_block_device() {
            format!("{common}\tblock\t{}", md.rdev())
        } else {
            format!("{common}\tunknown")
        };
        out.push(line);
        if ft.is_dir() {
            walk(&path, &rel, false, out);
        }
    }
}

/// `name=value` of every `user.` xattr, sorted, values in hex.
fn user_xattrs(path: &Path) -> String {
    let Ok(names) = crate::xattr::list_raw(path) else {
        return String::new();
    };
    let mut out: Vec<String> = Vec::new();
    for name in names.iter().filter(|n| n.starts_with(b"user.")) {
        let Ok(value) = crate::xattr::get_raw(path, name) else {
            continue;
        };
        let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
        out.push(format!("{}={hex}", String::from_utf8_lossy(name)));
    }
    out.sort();
    out.join(",")
}

fn hash_file(path: &Path) -> io::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    h.update_reader(fs::File::open(path)?)?;
    Ok(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_private_dir_and_sees_content() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            fs::create_dir_all(d.join("x/y")).unwrap();
            fs::write(d.join("x/y/f"), b"hello").unwrap();
            std::os::unix::fs::symlink("y/f", d.join("x/l")).unwrap();
        }
        fs::create_dir_all(a.path().join(".brickfs/gfid")).unwrap();
        fs::write(a.path().join(".brickfs/brick-id"), b"abc").unwrap();
        assert_eq!(digest(a.path()), digest(b.path()));
        fs::write(b.path().join("x/y/f"), b"hellO").unwrap();
        assert_ne!(digest(a.path()), digest(b.path()));
        assert_eq!(manifest(a.path()).len(), 4);
    }
}
