//! POSIX behaviour through a real FUSE mount of a real replica-3 volume, and
//! the bricks holding byte-identical plain files afterwards.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, SystemTime};

use tests::cluster::TestCluster;
use tests::xattr;

const SETTLE: Duration = Duration::from_secs(10);

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in test paths")
}

#[test]
fn files_data_and_metadata() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();

    // create, write, read back
    let f = m.join("hello.txt");
    fs::write(&f, b"hello, brickfs\n").unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"hello, brickfs\n");

    // overwrite in the middle, append, read ranges
    let mut h = OpenOptions::new().read(true).write(true).open(&f).unwrap();
    h.write_all_at(b"HELLO", 0).unwrap();
    h.seek(SeekFrom::End(0)).unwrap();
    h.write_all(b"more\n").unwrap();
    drop(h);
    assert_eq!(fs::read(&f).unwrap(), b"HELLO, brickfs\nmore\n");

    // truncate down and up: attributes are exact right after
    let h = OpenOptions::new().write(true).open(&f).unwrap();
    h.set_len(5).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().len(), 5);
    h.set_len(100).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().len(), 100);
    drop(h);
    let data = fs::read(&f).unwrap();
    assert_eq!(&data[..5], b"HELLO");
    assert!(data[5..].iter().all(|b| *b == 0));

    // O_TRUNC through open
    fs::write(&f, b"short").unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"short");

    // a 3 MiB file of patterned data crosses several FUSE writes
    let big: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    fs::write(m.join("big.bin"), &big).unwrap();
    assert_eq!(fs::read(m.join("big.bin")).unwrap(), big);

    // chmod, chown, utimens
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o640);
    std::os::unix::fs::chown(&f, Some(1234), Some(5678)).unwrap();
    let md = fs::metadata(&f).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let h = File::options().write(true).open(&f).unwrap();
    h.set_times(fs::FileTimes::new().set_modified(when).set_accessed(when))
        .unwrap();
    drop(h);
    let md = fs::metadata(&f).unwrap();
    assert_eq!(md.mtime(), 1_000_000_000);
    assert_eq!(md.atime(), 1_000_000_000);

    // xattrs
    xattr::set(&f, "user.color", b"blue").unwrap();
    assert_eq!(xattr::get(&f, "user.color").unwrap(), b"blue");
    assert!(xattr::list(&f).contains(&"user.color".to_string()));
    let err = xattr::get(&f, "user.missing").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENODATA));
    assert!(
        !xattr::list(&f)
            .iter()
            .any(|x| x.starts_with("trusted.brickfs")),
        "private xattrs leak to clients"
    );

    // hard links, symlinks
    fs::hard_link(&f, m.join("hello.link")).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(&f).unwrap().ino(),
        fs::metadata(m.join("hello.link")).unwrap().ino()
    );
    std::os::unix::fs::symlink("hello.txt", m.join("sym")).unwrap();
    assert_eq!(
        fs::read_link(m.join("sym")).unwrap(),
        Path::new("hello.txt")
    );
    assert_eq!(fs::read(m.join("sym")).unwrap(), b"short");

    // rename within and across directories, and over an existing target
    fs::create_dir(m.join("d1")).unwrap();
    fs::create_dir_all(m.join("d2/sub")).unwrap();
    fs::write(m.join("d1/a"), b"a").unwrap();
    fs::write(m.join("d2/b"), b"b").unwrap();
    fs::rename(m.join("d1/a"), m.join("d2/b")).unwrap();
    assert_eq!(fs::read(m.join("d2/b")).unwrap(), b"a");
    assert!(!m.join("d1/a").exists());
    fs::rename(m.join("d2/sub"), m.join("d1/moved")).unwrap();
    fs::write(m.join("d1/moved/inner"), b"inner").unwrap();
    assert_eq!(fs::read(m.join("d1/moved/inner")).unwrap(), b"inner");

    // unlink, rmdir, errors
    fs::remove_file(m.join("hello.link")).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().nlink(), 1);
    let e = fs::remove_dir(m.join("d1")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));
    let e = fs::create_dir(m.join("d1")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
    let e = fs::read(m.join("nope")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));

    // fifo
    let fifo = cpath(&m.join("fifo"));
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    assert!(fs::symlink_metadata(m.join("fifo"))
        .unwrap()
        .file_type()
        .is_dir()
        .eq(&false));

    // every brick holds the same plain files
    cluster.assert_replicas_identical(SETTLE);
    for i in 0..3 {
        assert_eq!(
            fs::read(cluster.brick_dir(i).join("d2/b")).unwrap(),
            b"a",
            "brick {i} holds plain files"
        );
    }
}

#[test]
fn readdir_of_ten_thousand_entries() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    let d = m.join("many");
    fs::create_dir(&d).unwrap();
    for i in 0..10_000 {
        File::create(d.join(format!("f{i:05}"))).unwrap();
    }
    let mut names: Vec<String> = fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let expected: Vec<String> = (0..10_000).map(|i| format!("f{i:05}")).collect();
    assert_eq!(names.len(), 10_000);
    assert_eq!(names, expected);
    // stat through readdirplus entries works too
    let n = fs::read_dir(&d)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().metadata().unwrap().is_file())
        .count();
    assert_eq!(n, 10_000);
    cluster.assert_replicas_identical(SETTLE);
}

#[test]
fn sparse_four_gib_file() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    let p = m.join("sparse");
    let mut h = File::create(&p).unwrap();
    let end = 4u64 << 30;
    h.seek(SeekFrom::Start(end - 4)).unwrap();
    h.write_all(b"tail").unwrap();
    h.sync_all().unwrap();
    drop(h);
    let md = fs::metadata(&p).unwrap();
    assert_eq!(md.len(), end);
    let mut h = File::open(&p).unwrap();
    let mut head = vec![1u8; 4096];
    h.read_exact(&mut head).unwrap();
    assert!(head.iter().all(|b| *b == 0));
    let mut tail = [0u8; 4];
    h.read_exact_at(&mut tail, end - 4).unwrap();
    assert_eq!(&tail, b"tail");
    for i in 0..3 {
        let bm = fs::metadata(cluster.brick_dir(i).join("sparse")).unwrap();
        assert_eq!(bm.len(), end);
        assert!(
            bm.blocks() * 512 < 1 << 20,
            "brick {i} stores the hole ({} blocks)",
            bm.blocks()
        );
    }
}

fn fcntl_lock(f: &File, typ: libc::c_int, start: i64, len: i64) -> std::io::Result<()> {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn record_locks_and_flock_hold_across_clients() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    fs::write(a.join("locked"), b"0123456789").unwrap();
    let fa = OpenOptions::new()
        .read(true)
        .write(true)
        .open(a.join("locked"))
        .unwrap();
    let fb = OpenOptions::new()
        .read(true)
        .write(true)
        .open(b.join("locked"))
        .unwrap();

    fcntl_lock(&fa, libc::F_WRLCK, 0, 5).unwrap();
    let e = fcntl_lock(&fb, libc::F_WRLCK, 2, 2).unwrap_err();
    assert!(
        matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)),
        "{e}"
    );
    // a range that does not overlap is free
    fcntl_lock(&fb, libc::F_WRLCK, 5, 5).unwrap();
    // shared locks coexist
    fcntl_lock(&fa, libc::F_UNLCK, 0, 5).unwrap();
    fcntl_lock(&fa, libc::F_RDLCK, 0, 3).unwrap();
    fcntl_lock(&fb, libc::F_RDLCK, 0, 3).unwrap();
    drop(fa);
    drop(fb);

    // flock: exclusive on one client excludes the other until released
    let fa = File::open(a.join("locked")).unwrap();
    let fb = File::open(b.join("locked")).unwrap();
    assert_eq!(
        unsafe { libc::flock(fa.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    assert_eq!(
        unsafe { libc::flock(fb.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        -1
    );
    assert_eq!(unsafe { libc::flock(fa.as_raw_fd(), libc::LOCK_UN) }, 0);
    assert_eq!(
        unsafe { libc::flock(fb.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
}

#[test]
fn create_exclusive_and_mode_honour_umask() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    let p = m.join("excl");
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)
        .unwrap();
    drop(f);
    assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
    let e = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
    for i in 0..3 {
        let md = fs::metadata(cluster.brick_dir(i).join("excl")).unwrap();
        assert_eq!(md.mode() & 0o777, 0o600, "brick {i}");
    }
}

#[test]
fn an_unlinked_open_file_lives_until_its_last_close() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    let p = m.join("tmpfile");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&p)
        .unwrap();
    f.write_all(b"before").unwrap();
    fs::remove_file(&p).unwrap();
    assert!(!p.exists());
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    f.write_all(b" and after").unwrap();
    let mut back = vec![0u8; 16];
    let n = f.read_at(&mut back, 0).unwrap();
    assert_eq!(&back[..n], b"before and after");
    let kept = |i: usize| {
        fs::read_dir(cluster.brick_dir(i).join(".brickfs/indices/open-unlinked"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert!(
        (0..3).all(|i| kept(i) == 1),
        "bricks do not keep the open file"
    );
    drop(f);
    assert!(
        tests::wait_until(SETTLE, || (0..3).all(|i| kept(i) == 0)),
        "the last close did not free the file"
    );
    cluster.assert_replicas_identical(SETTLE);
}
