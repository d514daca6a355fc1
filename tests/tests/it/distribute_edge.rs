//! Adversarial cases of the distribute layer and of rebalance, against real
//! bricks and FUSE mounts: races between two clients, renames and links
//! across three sets, directories whose copies differ from set to set,
//! bricks down, and files that keep changing while rebalance moves them.
//!
//! Names are picked by the hash the client uses
//! (`client::distribute::layout`), so each case puts its files on exactly
//! the sets it means to.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use client::distribute::layout::Layout;
use tests::cluster::VOLUME;
use tests::volume::{brick_objects, is_link_file, StoreVolume, REPLICA};
use tests::{wait_until, xattr, TestCluster, NO_CACHE};

/// The set `name` hashes to in a directory laid out evenly over `sets`.
fn set_of(name: &str, sets: usize) -> usize {
    Layout::even(sets, true).set_for(&proto::Name::new(name))
}

/// The `n`th name `prefix<i>` that hashes to `set` of `sets`.
fn name_on(prefix: &str, set: usize, sets: usize, n: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|s| set_of(s, sets) == set)
        .nth(n)
        .expect("names never run out")
}

/// Link files (regular files of mode 01000) on any brick of the cluster.
fn link_files(cluster: &TestCluster) -> Vec<String> {
    let mut out = Vec::new();
    for b in 0..cluster.brick_count() {
        for (p, md) in brick_objects(&cluster.brick_dir(b)) {
            if is_link_file(&md) {
                out.push(format!("brick {b}: {}", p.display()));
            }
        }
    }
    out
}

/// Non-directory objects that are not link files, on the first brick of
/// each set: (set, relative path).
fn real_objects(cluster: &TestCluster) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for set in 0..cluster.brick_count() / REPLICA {
        for (p, md) in brick_objects(&cluster.brick_dir(set * REPLICA)) {
            if !md.is_dir() && !is_link_file(&md) {
                out.push((set, p.display().to_string()));
            }
        }
    }
    out
}

/// An attribute's value, `None` when there is none.
fn xattr_of(path: &Path, name: &str) -> Option<Vec<u8>> {
    xattr::get(path, name).ok()
}

/// Panics with `found` unless it is empty.
#[track_caller]
fn assert_none<T: std::fmt::Debug>(found: &[T], what: &str) {
    assert!(found.is_empty(), "{what}: {found:?}");
}

fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("expected an error")
        .raw_os_error()
        .expect("an OS error")
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

// ---------------------------------------------------------------------
// Two clients at once
// ---------------------------------------------------------------------

#[test]
fn two_mounts_racing_for_one_name_give_one_winner() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create(&cluster);
    let (a, b) = (vol.mount(), vol.mount());
    fs::create_dir(a.join("race")).unwrap();
    let files: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
    let dirs: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
    let barrier = Arc::new(Barrier::new(2));
    let racer = |root: PathBuf, files: Vec<String>, dirs: Vec<String>, barrier: Arc<Barrier>| {
        thread::spawn(move || {
            let mut won = Vec::new();
            for (f, d) in files
                .iter()
                .zip(dirs.iter().chain(std::iter::repeat(&dirs[0])))
            {
                barrier.wait();
                let r = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(root.join("race").join(f))
                    .and_then(|mut file| file.write_all(root.to_string_lossy().as_bytes()));
                match r {
                    Ok(()) => won.push(f.clone()),
                    Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EEXIST), "create {f}: {e}"),
                }
                if files.iter().position(|x| x == f) < Some(dirs.len()) {
                    match fs::create_dir(root.join("race").join(d)) {
                        Ok(()) => won.push(d.clone()),
                        Err(e) => {
                            assert_eq!(e.raw_os_error(), Some(libc::EEXIST), "mkdir {d}: {e}")
                        }
                    }
                }
            }
            won
        })
    };
    let ta = racer(
        a.path().into(),
        files.clone(),
        dirs.clone(),
        barrier.clone(),
    );
    let tb = racer(b.path().into(), files.clone(), dirs.clone(), barrier);
    let (wa, wb) = (ta.join().unwrap(), tb.join().unwrap());
    for n in files.iter().chain(&dirs) {
        let wins = wa.iter().chain(&wb).filter(|w| *w == n).count();
        assert_eq!(wins, 1, "{n}: {wins} winners");
    }
    // Each file holds what its winner wrote, on exactly one set.
    let fresh = vol.mount();
    for f in &files {
        let winner = if wa.contains(f) { a.path() } else { b.path() };
        assert_eq!(
            fs::read(fresh.join("race").join(f)).unwrap(),
            winner.to_string_lossy().as_bytes(),
            "{f}"
        );
    }
    assert_eq!(real_objects(&cluster).len(), files.len());
    assert_eq!(names(&fresh.join("race")).len(), files.len() + dirs.len());
    // Every directory has one gfid on all six bricks.
    for d in &dirs {
        let gfids: BTreeSet<Vec<u8>> = (0..6)
            .map(|b| {
                xattr_of(
                    &cluster.brick_dir(b).join("race").join(d),
                    "trusted.brickfs.gfid",
                )
                .unwrap_or_else(|| panic!("brick {b} lacks race/{d}"))
            })
            .collect();
        assert_eq!(gfids.len(), 1, "race/{d} has {} gfids", gfids.len());
    }
    assert_none(&link_files(&cluster), "link files");
}

/// Two mounts rename different files onto one name (each file on its own
/// set, the name hashing to a third) and race rmdir against a create in
/// the directory: rename never fails, one file wins, a directory is whole
/// or gone on every set, and a file whose create succeeded is there.
#[test]
fn racing_renames_onto_one_name_and_rmdir_against_create() {
    let cluster = TestCluster::start(9);
    let vol = StoreVolume::create(&cluster);
    let (a, b) = (vol.mount(), vol.mount());
    fs::create_dir(a.join("r")).unwrap();
    let rounds = 12;
    let barrier = Arc::new(Barrier::new(2));
    // Errors are collected, not panicked on: a racer that stopped would
    // leave the other waiting at the barrier.
    let racer = |root: PathBuf, me: usize, barrier: Arc<Barrier>| {
        thread::spawn(move || {
            let mut created = Vec::new();
            let mut errors = Vec::new();
            for i in 0..rounds {
                let target = name_on(&format!("t{i}-"), 2, 3, 0);
                let mine = name_on(&format!("s{i}-{me}-"), me, 3, 0);
                let dir = root.join(format!("r/dir{i}"));
                if me == 0 {
                    if let Err(e) = fs::create_dir(&dir) {
                        errors.push(format!("mkdir dir{i}: {e}"));
                    }
                }
                if let Err(e) = fs::write(root.join("r").join(&mine), format!("{me}")) {
                    errors.push(format!("create {mine}: {e}"));
                }
                barrier.wait();
                if let Err(e) = fs::rename(root.join("r").join(&mine), root.join("r").join(&target))
                {
                    errors.push(format!("mount {me}: rename onto {target}: {e}"));
                }
                barrier.wait();
                if me == 0 {
                    let x = dir.join(name_on("x-", i % 3, 3, 0));
                    match fs::write(&x, b"x") {
                        Ok(()) => created.push(i),
                        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESTALE)) => {
                        }
                        Err(e) => errors.push(format!("create in dir{i}: {e}")),
                    }
                } else {
                    match fs::remove_dir(&dir) {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                        Err(e) => errors.push(format!("rmdir dir{i}: {e}")),
                    }
                }
                barrier.wait();
            }
            (created, errors)
        })
    };
    let ta = racer(a.path().into(), 0, barrier.clone());
    let tb = racer(b.path().into(), 1, barrier);
    let (created, mut errors) = ta.join().expect("mount 0");
    errors.extend(tb.join().expect("mount 1").1);
    assert!(errors.is_empty(), "{errors:#?}");
    let fresh = vol.mount();
    for i in 0..rounds {
        let target = name_on(&format!("t{i}-"), 2, 3, 0);
        let got = fs::read_to_string(fresh.join("r").join(&target)).unwrap();
        assert!(got == "0" || got == "1", "{target}: {got:?}");
        let dir = format!("r/dir{i}");
        // A set has the directory when a majority of its bricks do: an
        // rmdir racing a create in the directory can be refused by one
        // brick (the create reached it first), which is then blamed for
        // the parent's entries and left to heal (no heald runs here).
        let copies = (0..3)
            .filter(|s| {
                (0..REPLICA)
                    .filter(|b| cluster.brick_dir(s * REPLICA + b).join(&dir).is_dir())
                    .count()
                    >= 2
            })
            .count();
        if created.contains(&i) {
            assert_eq!(copies, 3, "{dir} holds a file but is on {copies} sets");
            assert_eq!(names(&fresh.join(&dir)).len(), 1, "{dir}");
        } else {
            assert_eq!(copies, 0, "{dir} removed but left on {copies} sets");
        }
    }
    // One file per target name; the losers' data is gone, no link file
    // points nowhere.
    let real = real_objects(&cluster);
    let files: Vec<_> = real.iter().filter(|(_, p)| p.starts_with("r/t")).collect();
    assert_eq!(files.len(), rounds, "{real:?}");
    assert_none(&stale_links(&cluster), "stale link files");
}

// ---------------------------------------------------------------------
// Renames and links across sets
// ---------------------------------------------------------------------

#[test]
fn rename_over_a_file_on_a_third_set_then_twice_more_then_unlink() {
    let cluster = TestCluster::start(9);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    fs::create_dir(m.join("d")).unwrap();
    let d = m.join("d");
    // The victim: made on set 2, renamed to a name hashing to set 1, so it
    // lives on set 2 with a link file on set 1.
    let made = name_on("victim-", 2, 3, 0);
    let v = name_on("v-", 1, 3, 0);
    fs::write(d.join(&made), b"victim").unwrap();
    fs::rename(d.join(&made), d.join(&v)).unwrap();
    assert_eq!(
        link_files(&cluster).len(),
        REPLICA,
        "{:?}",
        link_files(&cluster)
    );
    // The file replacing it lives on set 0.
    let s = name_on("s-", 0, 3, 0);
    fs::write(d.join(&s), b"source").unwrap();
    fs::rename(d.join(&s), d.join(&v)).unwrap();
    let fresh = vol.mount();
    for root in [m.path(), fresh.path()] {
        assert_eq!(fs::read(root.join("d").join(&v)).unwrap(), b"source");
        assert!(!root.join("d").join(&s).exists());
        assert_eq!(names(&root.join("d")), BTreeSet::from([v.clone()]));
    }
    assert_eq!(
        real_objects(&cluster),
        vec![(0, format!("d/{v}"))],
        "the victim's data must be gone, the source's on set 0"
    );
    // Twice more across sets: to a name hashing to set 2, then to one
    // hashing to set 0 (its own set again).
    let w = name_on("w-", 2, 3, 0);
    fs::rename(d.join(&v), d.join(&w)).unwrap();
    let x = name_on("x-", 0, 3, 0);
    fs::rename(d.join(&w), d.join(&x)).unwrap();
    assert_none(&link_files(&cluster), "link files");
    assert_eq!(fs::read(fresh.join("d").join(&x)).unwrap(), b"source");
    let y = name_on("y-", 1, 3, 0);
    fs::rename(d.join(&x), d.join(&y)).unwrap();
    assert_eq!(fs::read(fresh.join("d").join(&y)).unwrap(), b"source");
    fs::remove_file(d.join(&y)).unwrap();
    assert_none(&link_files(&cluster), "link files");
    assert_none(&real_objects(&cluster), "files left");
    fs::remove_dir(fresh.join("d")).unwrap();
    for b in 0..9 {
        assert!(
            !cluster.brick_dir(b).join("d").exists(),
            "brick {b} keeps d"
        );
    }
}

#[test]
fn hard_links_across_sets_outlive_the_original() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    fs::create_dir_all(m.join("a")).unwrap();
    fs::create_dir_all(m.join("b")).unwrap();
    let orig = name_on("orig-", 0, 2, 0);
    let other = name_on("l-", 1, 2, 0);
    let same = name_on("l-", 0, 2, 0);
    fs::write(m.join("a").join(&orig), b"linked").unwrap();
    fs::hard_link(m.join("a").join(&orig), m.join("b").join(&other)).unwrap();
    fs::hard_link(m.join("a").join(&orig), m.join("b").join(&same)).unwrap();
    assert_eq!(fs::metadata(m.join("b").join(&other)).unwrap().nlink(), 3);
    // Linking onto an existing name is refused, wherever it hashes.
    assert_eq!(
        errno(fs::hard_link(
            m.join("a").join(&orig),
            m.join("b").join(&same)
        )),
        libc::EEXIST
    );
    assert_eq!(
        errno(fs::hard_link(
            m.join("a").join(&orig),
            m.join("b").join(&other)
        )),
        libc::EEXIST
    );
    // rename between two names of one file does nothing.
    fs::rename(m.join("b").join(&other), m.join("b").join(&same)).unwrap();
    assert!(m.join("b").join(&other).exists());
    fs::remove_file(m.join("a").join(&orig)).unwrap();
    // Caching nothing, it sees at once what the other mount changes later.
    let fresh = vol.mount_with_args(&NO_CACHE);
    for n in [&other, &same] {
        let p = fresh.join("b").join(n);
        assert_eq!(fs::read(&p).unwrap(), b"linked", "{n}");
        assert_eq!(fs::metadata(&p).unwrap().nlink(), 2, "{n}");
    }
    assert!(!fresh.join("a").join(&orig).exists());
    // Write through one name, read through the other.
    fs::write(m.join("b").join(&other), b"changed").unwrap();
    assert_eq!(fs::read(m.join("b").join(&same)).unwrap(), b"changed");
    fs::remove_file(m.join("b").join(&other)).unwrap();
    assert_eq!(fs::metadata(m.join("b").join(&same)).unwrap().nlink(), 1);
    assert_eq!(
        fs::metadata(fresh.join("b").join(&same)).unwrap().nlink(),
        1
    );
    fs::remove_file(m.join("b").join(&same)).unwrap();
    assert_none(&link_files(&cluster), "link files");
    assert_none(&real_objects(&cluster), "files left");
}

// ---------------------------------------------------------------------
// Directories whose copies differ between sets
// ---------------------------------------------------------------------

/// A file on set 1 whose name hashes to set 0: the directory's copy on set
/// 0 holds only the link file. rmdir must see the file on set 1 before it
/// touches anything.
#[test]
fn rmdir_of_a_dir_with_a_renamed_file_fails_and_keeps_the_file() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    fs::create_dir(m.join("d")).unwrap();
    let made = name_on("p-", 1, 2, 0);
    let renamed = name_on("q-", 0, 2, 0);
    fs::write(m.join("d").join(&made), b"keep me").unwrap();
    fs::rename(m.join("d").join(&made), m.join("d").join(&renamed)).unwrap();
    assert_eq!(errno(fs::remove_dir(m.join("d"))), libc::ENOTEMPTY);
    let fresh = vol.mount();
    for root in [m.path(), fresh.path()] {
        assert_eq!(
            fs::read(root.join("d").join(&renamed)).unwrap(),
            b"keep me",
            "{}",
            root.display()
        );
    }
    fs::remove_file(fresh.join("d").join(&renamed)).unwrap();
    fs::remove_dir(m.join("d")).unwrap();
    assert_none(&link_files(&cluster), "link files");
}

/// Renaming a directory over one that is empty on one set only must fail
/// as a whole (ENOTEMPTY), not replace the copy on the set where it was
/// empty.
#[test]
fn rename_dir_over_a_dir_not_empty_on_one_set_changes_nothing() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    for set in 0..2 {
        // The target's only file is on `set`; the source's name hashes
        // there too, so its copy there is renamed last.
        let t = format!("target{set}");
        let s = name_on("src-", set, 2, 0);
        fs::create_dir_all(m.join(&t)).unwrap();
        fs::create_dir_all(m.join(&s)).unwrap();
        let f = name_on("file-", set, 2, 0);
        fs::write(m.join(&t).join(&f), b"inside").unwrap();
        fs::write(m.join(&s).join("marker"), b"src").unwrap();
        assert_eq!(errno(fs::rename(m.join(&s), m.join(&t))), libc::ENOTEMPTY);
        let fresh = vol.mount();
        for root in [m.path(), fresh.path()] {
            assert_eq!(fs::read(root.join(&t).join(&f)).unwrap(), b"inside");
            assert_eq!(fs::read(root.join(&s).join("marker")).unwrap(), b"src");
        }
        for b in 0..6 {
            assert!(cluster.brick_dir(b).join(&s).is_dir(), "brick {b} lost {s}");
        }
        // A directory empty everywhere is replaced.
        fs::remove_file(m.join(&t).join(&f)).unwrap();
        fs::rename(m.join(&s), m.join(&t)).unwrap();
        assert_eq!(fs::read(fresh.join(&t).join("marker")).unwrap(), b"src");
        assert!(!fresh.join(&s).exists());
    }
}

/// A link file whose file is gone (its set lost quorum when the file was
/// removed) must not make the name unusable.
#[test]
fn a_stale_link_file_does_not_block_its_name() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    fs::create_dir(m.join("d")).unwrap();
    let made = name_on("a-", 0, 2, 0);
    let moved = name_on("b-", 1, 2, 0);
    fs::write(m.join("d").join(&made), b"x").unwrap();
    fs::rename(m.join("d").join(&made), m.join("d").join(&moved)).unwrap();
    // Set 1 (holding the link file) loses quorum; the file itself, on set
    // 0, can still be removed.
    cluster.kill_brick(REPLICA);
    cluster.kill_brick(REPLICA + 1);
    fs::remove_file(m.join("d").join(&moved)).unwrap();
    let (b3, b4) = (cluster.brick_addr(REPLICA), cluster.brick_addr(REPLICA + 1));
    let ups = (m.brick_ups(b3), m.brick_ups(b4));
    cluster.restart_brick(REPLICA);
    cluster.restart_brick(REPLICA + 1);
    // Set 1 has quorum again once the client is back on both bricks.
    assert!(
        wait_until(Duration::from_secs(20), || m.brick_ups(b3) > ups.0
            && m.brick_ups(b4) > ups.1),
        "the mount did not reconnect to bricks {b3} and {b4}"
    );
    assert!(!m.join("d").join(&moved).exists());
    assert!(names(&m.join("d")).is_empty());
    // The name can be made again, and the directory removed.
    fs::write(m.join("d").join(&moved), b"again").unwrap();
    assert_eq!(fs::read(m.join("d").join(&moved)).unwrap(), b"again");
    fs::remove_file(m.join("d").join(&moved)).unwrap();
    fs::remove_dir(m.join("d")).unwrap();
}

#[test]
fn directory_ops_with_one_brick_of_each_set_down() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    fs::create_dir_all(m.join("keep/sub")).unwrap();
    fs::create_dir_all(m.join("gone")).unwrap();
    cluster.kill_brick(0);
    cluster.kill_brick(REPLICA + 2);
    fs::create_dir_all(m.join("new/a/b")).unwrap();
    for i in 0..20 {
        fs::write(m.join(format!("new/a/b/f{i}")), format!("{i}")).unwrap();
    }
    fs::rename(m.join("new/a"), m.join("keep/sub/a")).unwrap();
    fs::rename(m.join("keep/sub"), m.join("moved")).unwrap();
    fs::remove_dir(m.join("gone")).unwrap();
    fs::remove_dir(m.join("new")).unwrap();
    let fresh = vol.mount();
    for root in [m.path(), fresh.path()] {
        assert_eq!(
            names(root),
            BTreeSet::from(["keep".into(), "moved".into()]),
            "{}",
            root.display()
        );
        for i in 0..20 {
            assert_eq!(
                fs::read_to_string(root.join(format!("moved/a/b/f{i}"))).unwrap(),
                format!("{i}")
            );
        }
    }
    cluster.restart_brick(0);
    cluster.restart_brick(REPLICA + 2);
    // Once healed, the bricks that were down agree with the others.
    let _heald = vol.start_heald(2);
    assert!(
        cluster.wait_healed(Duration::from_secs(15)),
        "not healed: {:?}",
        cluster.heal_pending()
    );
    vol.assert_sets_identical(Duration::from_secs(10));
}

// ---------------------------------------------------------------------
// Every kind of operation, on a file of each set
// ---------------------------------------------------------------------

#[test]
fn every_op_on_objects_of_each_set() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    let other = vol.mount();
    fs::create_dir(m.join("d")).unwrap();
    let d = m.join("d");
    for set in 0..2 {
        let f = d.join(name_on("file-", set, 2, 0));
        fs::write(&f, vec![7u8; 10_000]).unwrap();
        let file = fs::OpenOptions::new().write(true).open(&f).unwrap();
        file.set_len(3000).unwrap();
        file.set_len(5000).unwrap();
        drop(file);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::chown(&f, Some(1234), Some(5678)).unwrap();
        let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        xattr::set(&f, "user.colour", b"blue").unwrap();
        xattr::set(&f, "user.shape", b"round").unwrap();
        xattr::remove(&f, "user.shape").unwrap();
        assert_eq!(errno(xattr::remove(&f, "user.shape")), libc::ENODATA);
        // Private attributes of the layer are neither shown nor settable.
        assert_eq!(
            xattr::set(&f, "trusted.brickfs.dht.linkto", b"0")
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EPERM)
        );
        let fo = other.join("d").join(f.file_name().unwrap());
        let md = fs::metadata(&fo).unwrap();
        assert_eq!(
            (md.len(), md.mode() & 0o7777, md.uid(), md.gid(), md.mtime()),
            (5000, 0o640, 1234, 5678, 1_000_000_000),
            "set {set}"
        );
        let data = fs::read(&fo).unwrap();
        assert_eq!(&data[..3000], &[7u8; 3000][..]);
        assert_eq!(&data[3000..], &[0u8; 2000][..]);
        assert_eq!(xattr_of(&fo, "user.colour").as_deref(), Some(&b"blue"[..]));
        assert_eq!(
            xattr::list(&fo),
            vec!["user.colour".to_string()],
            "set {set}"
        );

        let l = d.join(name_on("link-", set, 2, 0));
        std::os::unix::fs::symlink("some/target", &l).unwrap();
        let lo = other.join("d").join(l.file_name().unwrap());
        assert_eq!(fs::read_link(&lo).unwrap(), Path::new("some/target"));
        let p = d.join(name_on("fifo-", set, 2, 0));
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let po = other.join("d").join(p.file_name().unwrap());
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(
            &fs::symlink_metadata(&po).unwrap().file_type()
        ));
        // Renamed to a name hashing to the other set, each still works.
        for (obj, tag) in [(&f, "f"), (&l, "l"), (&p, "p")] {
            let to = d.join(name_on(&format!("moved-{tag}-"), 1 - set, 2, 0));
            fs::rename(obj, &to).unwrap();
            let to_o = other.join("d").join(to.file_name().unwrap());
            let md = fs::symlink_metadata(&to_o).unwrap();
            match tag {
                "f" => {
                    assert_eq!(md.len(), 5000);
                    assert_eq!(
                        xattr_of(&to_o, "user.colour").as_deref(),
                        Some(&b"blue"[..])
                    );
                    fs::set_permissions(&to_o, fs::Permissions::from_mode(0o600)).unwrap();
                    assert_eq!(fs::metadata(&to).unwrap().mode() & 0o7777, 0o600);
                }
                "l" => assert_eq!(fs::read_link(&to_o).unwrap(), Path::new("some/target")),
                _ => assert!(md.file_type().is_fifo_like()),
            }
            fs::remove_file(&to_o).unwrap();
        }
    }
    // A directory's private layout is hidden too; user attributes on it
    // reach every set's copy.
    assert!(
        xattr::list(&d).iter().all(|n| !n.contains("brickfs")),
        "{:?}",
        xattr::list(&d)
    );
    xattr::set(&d, "user.dir", b"yes").unwrap();
    assert_eq!(
        xattr_of(&other.join("d"), "user.dir").as_deref(),
        Some(&b"yes"[..])
    );
    xattr::remove(&other.join("d"), "user.dir").unwrap();
    assert_eq!(xattr_of(&d, "user.dir"), None);
    assert_none(&link_files(&cluster), "link files");
    assert_none(&real_objects(&cluster), "files left");
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

/// A directory's mtime moves when an entry is added on any set, seen at
/// once by the mount that made it (the kernel drops a directory's cached
/// attributes when an entry is made in it) and by another that caches
/// nothing.
#[test]
fn dir_mtime_and_listing_follow_entries_on_every_set_and_statfs_sums() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    let other = vol.mount_with_args(&NO_CACHE);
    fs::create_dir(m.join("d")).unwrap();
    for set in [1, 0, 1] {
        let before = fs::metadata(m.join("d")).unwrap().modified().unwrap();
        // Nothing to poll: time must pass. File systems stamp times from a
        // coarse clock (a tick, up to 10 ms), so without a pause the entry
        // could leave d with the mtime `before` already has.
        thread::sleep(Duration::from_millis(20));
        let n = name_on(&format!("e{set}-"), set, 2, 0);
        fs::write(m.join("d").join(&n), b"").unwrap_or_else(|e| panic!("{n}: {e}"));
        let after = fs::metadata(m.join("d")).unwrap().modified().unwrap();
        assert!(after > before, "mtime of d after an entry on set {set}");
        fs::remove_file(m.join("d").join(&n)).unwrap();
    }
    let seen = fs::metadata(other.join("d")).unwrap().modified().unwrap();
    assert_eq!(seen, fs::metadata(m.join("d")).unwrap().modified().unwrap());

    // Names that interleave across sets, in byte order (non-ASCII among
    // them), each listed once by a mount that never saw them made.
    let mut want = BTreeSet::new();
    for i in 0..700 {
        let n = match i % 4 {
            0 => format!("n{i:04}"),
            1 => format!("N{i:04}"),
            2 => format!("\u{e9}t\u{e9}-{i}"),
            _ => format!("n{i:04}-{}", "x".repeat(200)),
        };
        if i % 50 == 0 {
            fs::create_dir(m.join("d").join(&n)).unwrap();
        } else {
            fs::File::create(m.join("d").join(&n)).unwrap();
        }
        want.insert(n);
    }
    // Some renamed across sets: the link files must not show.
    for i in (3..700).step_by(40) {
        let old = format!("n{i:04}-{}", "x".repeat(200));
        let new = format!("renamed-{i}");
        fs::rename(m.join("d").join(&old), m.join("d").join(&new)).unwrap();
        want.remove(&old);
        want.insert(new);
    }
    let fresh = vol.mount();
    let mut listed = Vec::new();
    for e in fs::read_dir(fresh.join("d")).unwrap() {
        listed.push(e.unwrap().file_name().to_string_lossy().into_owned());
    }
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(listed.len(), unique.len(), "a name listed twice");
    assert_eq!(unique, want);

    // statfs: the two sets' space added up (both on this host's disk).
    let vfs = |p: &Path| {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
        s
    };
    let (v, b) = (vfs(m.path()), vfs(&cluster.brick_dir(0)));
    let total = |s: &libc::statvfs| s.f_blocks as u128 * s.f_frsize as u128;
    let want_total = 2 * total(&b);
    assert!(
        total(&v).abs_diff(want_total) <= want_total / 100,
        "volume {} bytes, two sets {want_total}",
        total(&v)
    );
}

// ---------------------------------------------------------------------
// Rebalance
// ---------------------------------------------------------------------

/// The counters of the last rebalance run, from `status`.
#[derive(Debug)]
struct Status {
    migrated: u64,
    failures: u64,
    skipped: u64,
    state: String,
}

fn status(vol: &StoreVolume) -> (Status, String) {
    let out = vol.ok(&["volume", "rebalance", VOLUME, "status"]);
    let row = out
        .lines()
        .nth(3)
        .unwrap_or_else(|| panic!("no status row:\n{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    let num = |i: usize| cols[i].parse::<u64>().unwrap_or_else(|_| panic!("{out}"));
    let s = Status {
        migrated: num(1),
        failures: num(5),
        skipped: num(6),
        state: cols[7..cols.len() - 1].join(" "),
    };
    (s, out)
}

/// How long a rebalance of these small trees may take: seconds when the
/// machine is idle, a minute or more while the rest of the suite (or a soak)
/// loads both cores. The wait ends as soon as the run does.
const REBALANCE_DEADLINE: Duration = Duration::from_secs(180);

/// Starts a run and waits for it to end; returns its final status.
fn rebalance(vol: &StoreVolume, timeout: Duration) -> Status {
    vol.ok(&["volume", "rebalance", VOLUME, "start"]);
    let ended = wait_until(timeout, || {
        !matches!(status(vol).0.state.as_str(), "in progress" | "stopping")
    });
    let (s, out) = status(vol);
    assert!(ended, "rebalance still running after {timeout:?}:\n{out}");
    assert_eq!(s.state, "completed", "{out}");
    s
}

/// What a writer thread wrote: the file's content as it must end.
struct Writer {
    path: PathBuf,
    handle: thread::JoinHandle<Vec<u8>>,
    /// Writes done so far.
    writes: Arc<AtomicU64>,
}

impl Writer {
    fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

/// The write counts of `writers` now, in order.
fn writes(writers: &[Writer]) -> Vec<u64> {
    writers.iter().map(Writer::writes).collect()
}

/// Waits until each of `writers` has written `more` times since `since`
/// (counts from [`writes`]); panics if one stopped (its panic is above).
fn wait_for_writes(writers: &[Writer], since: &[u64], more: u64, after: &str) {
    for (w, n) in writers.iter().zip(since) {
        let going = wait_until(Duration::from_secs(30), || {
            w.writes() >= n + more || w.handle.is_finished()
        });
        assert!(
            going && !w.handle.is_finished(),
            "{}: {} writes, {more} more since {after} expected (writer ended: {})",
            w.path.display(),
            w.writes(),
            w.handle.is_finished()
        );
    }
}

/// Keeps writing to `path` through one open fd until `stop`: appends when
/// `append`, else overwrites random ranges in place (the size never
/// changes, so only times tell the writes apart).
fn start_writer(path: PathBuf, seed: u64, append: bool, stop: Arc<AtomicBool>) -> Writer {
    let p = path.clone();
    let writes = Arc::new(AtomicU64::new(0));
    let done = writes.clone();
    let handle = thread::spawn(move || {
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let mut want = Vec::new();
        f.read_to_end(&mut want).unwrap();
        let mut rng = seed;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let len = 1 + (next() % 20_000) as usize;
            let fill = (next() % 251) as u8;
            let chunk = vec![fill; len];
            let at = if append {
                want.len()
            } else {
                (next() as usize) % (want.len() - len)
            };
            f.write_all_at(&chunk, at as u64)
                .unwrap_or_else(|e| panic!("write {n} to {}: {e}", p.display()));
            if at + len > want.len() {
                want.resize(at + len, 0);
            }
            want[at..at + len].copy_from_slice(&chunk);
            n += 1;
            done.store(n, Ordering::Relaxed);
            if n.is_multiple_of(16) {
                f.sync_data()
                    .unwrap_or_else(|e| panic!("fsync {}: {e}", p.display()));
            }
        }
        f.seek(SeekFrom::Start(0)).unwrap();
        want
    });
    Writer {
        path,
        handle,
        writes,
    }
}

/// Between add-brick and rebalance, directories made before exist on the
/// old sets only: every directory operation on them must still work.
#[test]
fn old_directories_work_between_add_brick_and_rebalance() {
    let cluster = TestCluster::start(9);
    let vol = StoreVolume::create_on(&cluster, 6);
    let m = vol.mount();
    fs::create_dir_all(m.join("old/inner")).unwrap();
    fs::create_dir_all(m.join("empty")).unwrap();
    fs::create_dir_all(m.join("renamed")).unwrap();
    fs::write(m.join("old/f"), b"before").unwrap();
    vol.add_set(6, &[&m]);
    let fresh = vol.mount();
    for root in [m.path(), fresh.path()] {
        let tag = if root == m.path() { "m" } else { "fresh" };
        let old = root.join("old");
        fs::create_dir(old.join(format!("new-{tag}")))
            .unwrap_or_else(|e| panic!("{tag}: mkdir in an old directory: {e}"));
        fs::create_dir(old.join(format!("new-{tag}/deeper")))
            .unwrap_or_else(|e| panic!("{tag}: mkdir in a new one: {e}"));
        for i in 0..12 {
            fs::write(old.join(format!("new-{tag}/deeper/g{i}")), b"g")
                .unwrap_or_else(|e| panic!("{tag}: create {i} in a new directory: {e}"));
            fs::write(old.join(format!("{tag}-{i}")), b"h")
                .unwrap_or_else(|e| panic!("{tag}: create {i} in an old directory: {e}"));
        }
        fs::set_permissions(&old, fs::Permissions::from_mode(0o750))
            .unwrap_or_else(|e| panic!("{tag}: chmod of an old directory: {e}"));
        xattr::set(&old, "user.t", tag.as_bytes())
            .unwrap_or_else(|e| panic!("{tag}: setxattr on an old directory: {e}"));
        assert_eq!(xattr_of(&old, "user.t").as_deref(), Some(tag.as_bytes()));
        assert!(names(&old).contains("inner"), "{tag}");
    }
    fs::rename(m.join("renamed"), m.join("renamed-now")).unwrap();
    fs::remove_dir(m.join("empty")).unwrap();
    fs::rename(m.join("old/inner"), m.join("inner-moved")).unwrap();
    assert_eq!(fs::read(fresh.join("old/f")).unwrap(), b"before");
    let s = rebalance(&vol, REBALANCE_DEADLINE);
    assert_eq!(s.failures, 0, "{s:?}");
    let after = vol.mount();
    assert_eq!(
        names(after.path()),
        BTreeSet::from(["old".into(), "renamed-now".into(), "inner-moved".into()])
    );
    for tag in ["m", "fresh"] {
        for i in 0..12 {
            assert_eq!(
                fs::read(after.join(format!("old/new-{tag}/deeper/g{i}"))).unwrap(),
                b"g"
            );
            assert_eq!(
                fs::read(after.join(format!("old/{tag}-{i}"))).unwrap(),
                b"h"
            );
        }
    }
    for b in 6..9 {
        assert!(
            cluster.brick_dir(b).join("old/new-m/deeper").is_dir(),
            "brick {b}"
        );
        assert!(
            cluster.brick_dir(b).join("renamed-now").is_dir(),
            "brick {b}"
        );
        assert!(!cluster.brick_dir(b).join("renamed").exists(), "brick {b}");
        assert!(!cluster.brick_dir(b).join("empty").exists(), "brick {b}");
    }
}

/// Files on a 1 x 3 volume, some held open and written all through a
/// rebalance onto a second set: every byte written is in the end, and the
/// files are where their names hash.
#[test]
fn files_written_through_held_fds_while_rebalance_moves_them() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create_on(&cluster, 3);
    let m = vol.mount();
    fs::create_dir(m.join("w")).unwrap();
    let big: Vec<u8> = (0..6u32 << 20).map(|i| (i * 7 % 253) as u8).collect();
    // Names that will hash to the new set: they must move.
    let movers: Vec<String> = (0..4).map(|i| name_on("mv-", 1, 2, i)).collect();
    for n in &movers {
        fs::write(m.join("w").join(n), &big).unwrap();
    }
    // Opened before the graph switch: the new graph knows the files by
    // gfid only, and looks for them on every set.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<Writer> = movers
        .iter()
        .enumerate()
        .map(|(i, n)| start_writer(m.join("w").join(n), 17 + i as u64, i % 2 == 0, stop.clone()))
        .collect();
    vol.add_set(3, &[&m]);
    // Through the new graph before the rebalance, during it, and after
    // the files moved.
    let switched = writes(&writers);
    wait_for_writes(&writers, &switched, 5, "the graph switch");
    let started = writes(&writers);
    let s = rebalance(&vol, REBALANCE_DEADLINE);
    let ended = writes(&writers);
    for ((w, a), b) in writers.iter().zip(&started).zip(&ended) {
        assert!(
            b > a,
            "{}: no write while rebalance ran ({a} before, {b} after)",
            w.path.display()
        );
    }
    wait_for_writes(&writers, &ended, 5, "the rebalance");
    stop.store(true, Ordering::Relaxed);
    let fresh = vol.mount();
    for w in writers {
        let want = w.handle.join().expect("writer panicked");
        let name = w.path.file_name().unwrap().to_owned();
        // Through the writers' mount (which looked for the files on every
        // set after its graph switch) and through a new one.
        for root in [m.path(), fresh.path()] {
            let got = fs::read(root.join("w").join(&name))
                .unwrap_or_else(|e| panic!("{name:?} in {}: {e}", root.display()));
            assert_eq!(got.len(), want.len(), "{name:?}: length");
            if let Some(at) = got.iter().zip(&want).position(|(a, b)| a != b) {
                panic!("{name:?}: differs from byte {at} on ({:?})", s);
            }
        }
    }
    assert_eq!(s.failures, 0, "{s:?}");
    let placed = real_objects(&cluster);
    for n in &movers {
        assert!(
            placed.contains(&(1, format!("w/{n}"))),
            "{n} not moved: {placed:?}"
        );
    }
    assert_eq!(placed.len(), movers.len(), "{placed:?}");
    assert_none(&link_files(&cluster), "link files");
}

/// Link files that point at nothing: each link file on a brick of set s
/// names a set t (its xattr); the first brick of t must hold a real file
/// at the same path.
fn stale_links(cluster: &TestCluster) -> Vec<String> {
    let mut out = Vec::new();
    for b in 0..cluster.brick_count() {
        let dir = cluster.brick_dir(b);
        for (p, md) in brick_objects(&dir) {
            if !is_link_file(&md) {
                continue;
            }
            let Some(v) = xattr_of(&dir.join(&p), "trusted.brickfs.dht.linkto") else {
                continue;
            };
            // `SET` or `SET:GFID`.
            let text = String::from_utf8_lossy(&v).into_owned();
            let t: usize = text.trim().split(':').next().unwrap().parse().unwrap();
            let there = cluster.brick_dir(t * REPLICA).join(&p);
            let real = fs::symlink_metadata(&there).is_ok_and(|m| !is_link_file(&m));
            if !real {
                out.push(format!("brick {b}: {} -> set {t}", p.display()));
            }
        }
    }
    out
}

/// A client renames, rewrites, replaces and hard-links files all through
/// a rebalance while another lists them: in the end every name holds what
/// was last written to it, nothing else exists, and no link file points
/// nowhere.
#[test]
fn renames_rewrites_and_links_during_rebalance() {
    use std::collections::BTreeMap;
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create_on(&cluster, 3);
    let m = vol.mount();
    let lister_mount = vol.mount();
    for d in ["c", "c2"] {
        fs::create_dir(m.join(d)).unwrap();
    }
    let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..200 {
        let p = format!("c/f{i}");
        let data = format!("f{i}:v0").into_bytes();
        fs::write(m.join(&p), &data).unwrap();
        want.insert(p, data);
    }
    vol.add_set(3, &[&m, &lister_mount]);
    let stop = Arc::new(AtomicBool::new(false));
    let (steps, rounds_done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let churn = {
        let (stop, root, steps) = (stop.clone(), m.path().to_path_buf(), steps.clone());
        let mut want = want.clone();
        thread::spawn(move || {
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let names: Vec<String> = want.keys().cloned().collect();
                let cur = names[(k * 7919) % names.len()].clone();
                let data = want[&cur].clone();
                let fresh = if k.is_multiple_of(2) { "c" } else { "c2" };
                let step = |what: &str, r: std::io::Result<()>| {
                    r.unwrap_or_else(|e| panic!("step {k} ({what} {cur}): {e}"))
                };
                match k % 5 {
                    0 => {
                        let to = format!("{fresh}/r{k}");
                        step("rename", fs::rename(root.join(&cur), root.join(&to)));
                        want.remove(&cur);
                        want.insert(to, data);
                    }
                    1 => {
                        let new = format!("{cur}:v{k}").into_bytes();
                        step("rewrite", fs::write(root.join(&cur), &new));
                        want.insert(cur, new);
                    }
                    2 => {
                        step("unlink", fs::remove_file(root.join(&cur)));
                        let new = format!("re{k}").into_bytes();
                        step("recreate", fs::write(root.join(&cur), &new));
                        want.insert(cur, new);
                    }
                    3 => {
                        let to = format!("{fresh}/h{k}");
                        step("link", fs::hard_link(root.join(&cur), root.join(&to)));
                        step("unlink old name", fs::remove_file(root.join(&cur)));
                        want.remove(&cur);
                        want.insert(to, data);
                    }
                    _ => {
                        // Over another existing file.
                        let victim = names[(k * 31 + 1) % names.len()].clone();
                        if victim != cur {
                            step(
                                "rename over",
                                fs::rename(root.join(&cur), root.join(&victim)),
                            );
                            want.remove(&cur);
                            want.insert(victim, data);
                        }
                    }
                }
                k += 1;
                steps.store(k, Ordering::Relaxed);
            }
            want
        })
    };
    let lister = {
        let (stop, root) = (stop.clone(), lister_mount.path().to_path_buf());
        let rounds_done = rounds_done.clone();
        thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) {
                for d in ["c", "c2"] {
                    let mut seen = Vec::new();
                    for e in fs::read_dir(root.join(d)).unwrap() {
                        seen.push(e.unwrap().file_name());
                    }
                    let n = seen.len();
                    seen.sort();
                    seen.dedup();
                    assert_eq!(seen.len(), n, "a name listed twice in {d}");
                }
                rounds += 1;
                rounds_done.store(rounds, Ordering::Relaxed);
            }
            rounds
        })
    };
    // Both at work before the rebalance starts (a thread that failed has
    // ended: its join below says why).
    wait_until(Duration::from_secs(20), || {
        (steps.load(Ordering::Relaxed) >= 10 && rounds_done.load(Ordering::Relaxed) >= 1)
            || churn.is_finished()
            || lister.is_finished()
    });
    let steps_before = steps.load(Ordering::Relaxed);
    let s = rebalance(&vol, REBALANCE_DEADLINE);
    let steps_during = steps.load(Ordering::Relaxed) - steps_before;
    stop.store(true, Ordering::Relaxed);
    let want = churn.join().expect("churn failed");
    let rounds = lister.join().expect("lister failed");
    assert!(rounds > 0);
    // What the test is about: files moved while the churn changed them.
    assert!(
        s.migrated > 0 && steps_during > 0,
        "rebalance {s:?} over {steps_during} churn steps; {} names; lister rounds {rounds}",
        want.len()
    );
    let fresh = vol.mount();
    let mut have = BTreeMap::new();
    for d in ["c", "c2"] {
        for n in names(&fresh.join(d)) {
            let p = format!("{d}/{n}");
            let data = fs::read(fresh.join(&p)).unwrap_or_else(|e| panic!("{p}: {e}"));
            have.insert(p, data);
        }
    }
    let missing: Vec<_> = want.keys().filter(|k| !have.contains_key(*k)).collect();
    let extra: Vec<_> = have.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?} ({s:?})"
    );
    for (p, data) in &want {
        assert_eq!(&have[p], data, "{p}");
    }
    assert_eq!(real_objects(&cluster).len(), want.len(), "{s:?}");
    assert_none(&stale_links(&cluster), "stale link files");
}

/// A client that has not switched graphs yet (here: one mounted on the
/// first set alone, as every mount was before add-brick) puts every file
/// on set 0, also in directories whose layout sends the name to set 1.
/// Until rebalance such files cannot be looked up; rebalance must move
/// them even though the directory's layout is already complete.
#[test]
fn rebalance_moves_files_a_lagging_client_put_on_the_wrong_set() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    fs::create_dir(m.join("d")).unwrap();
    // `--bricks` of set 0 alone: a client of the volume as it was before
    // add-brick.
    let stray = cluster.mount_bricks(0..REPLICA, &[]);
    let names_on_1: Vec<String> = (0..5).map(|i| name_on("late-", 1, 2, i)).collect();
    for n in &names_on_1 {
        fs::write(stray.join("d").join(n), n.as_bytes()).unwrap();
    }
    drop(stray);
    // What the test relies on: the files are on set 0 alone, and a client
    // of both sets, going by d's complete layout, finds none of them.
    for n in &names_on_1 {
        assert!(
            cluster.brick_dir(0).join("d").join(n).is_file(),
            "{n} is not on set 0"
        );
        assert!(
            !cluster.brick_dir(REPLICA).join("d").join(n).exists(),
            "{n} is on set 1, where its name hashes"
        );
    }
    let found: Vec<_> = names_on_1
        .iter()
        .filter(|n| fs::metadata(m.join("d").join(n)).is_ok())
        .collect();
    assert!(
        found.is_empty(),
        "lookup found files a lagging client put on the wrong set: {found:?}"
    );
    let s = rebalance(&vol, REBALANCE_DEADLINE);
    let fresh = vol.mount();
    for n in &names_on_1 {
        assert_eq!(
            fs::read(fresh.join("d").join(n)).unwrap_or_else(|e| panic!("{n}: {e} ({s:?})")),
            n.as_bytes()
        );
    }
}

/// Everything a file is besides its data survives the move; a second run
/// moves nothing; a run stopped half-way and started again finishes the job.
#[test]
fn migration_keeps_metadata_and_runs_are_idempotent_and_resumable() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create_on(&cluster, 3);
    let m = vol.mount();
    fs::create_dir(m.join("meta")).unwrap();
    let d = m.join("meta");
    xattr::set(&d, "user.dir-attr", b"on the dir").unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o2750)).unwrap();
    std::os::unix::fs::chown(&d, Some(42), Some(43)).unwrap();
    let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    let modes = [0o600, 0o4755, 0o1000, 0o2644, 0];
    let files: Vec<String> = (0..modes.len()).map(|i| name_on("m-", 1, 2, i)).collect();
    for (n, mode) in files.iter().zip(modes) {
        let p = d.join(n);
        fs::write(&p, n.as_bytes()).unwrap();
        xattr::set(&p, "user.a", n.as_bytes()).unwrap();
        xattr::set(&p, "user.b", b"").unwrap();
        std::os::unix::fs::chown(&p, Some(1000), Some(2000)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        fs::File::options()
            .read(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    let hard = name_on("h-", 1, 2, 0);
    let hard2 = name_on("h-", 1, 2, 1);
    fs::write(d.join(&hard), b"two names").unwrap();
    fs::hard_link(d.join(&hard), d.join(&hard2)).unwrap();
    let sym = name_on("s-", 1, 2, 0);
    std::os::unix::fs::symlink("../elsewhere", d.join(&sym)).unwrap();
    // A sparse file: 30 MiB long, 8 KiB of data.
    let sparse = name_on("sparse-", 1, 2, 0);
    {
        let f = fs::File::create(d.join(&sparse)).unwrap();
        f.write_all_at(&[1u8; 4096], 0).unwrap();
        f.write_all_at(&[2u8; 4096], 30 << 20).unwrap();
    }
    // Plenty of small files, so that a run can be stopped half-way.
    fs::create_dir(m.join("many")).unwrap();
    for i in 0..300 {
        fs::write(m.join(format!("many/f{i}")), format!("{i}")).unwrap();
    }
    let want_meta: Vec<(u32, u32, u32, i64, Vec<String>)> = files
        .iter()
        .map(|n| {
            let md = fs::symlink_metadata(d.join(n)).unwrap();
            (
                md.mode(),
                md.uid(),
                md.gid(),
                md.mtime(),
                xattr::list(&d.join(n)),
            )
        })
        .collect();
    vol.add_set(3, &[&m]);

    // Stopped as soon as files start moving, then started again.
    vol.ok(&["volume", "rebalance", VOLUME, "start"]);
    assert!(
        wait_until(Duration::from_secs(20), || status(&vol).0.migrated > 0),
        "{}",
        status(&vol).1
    );
    vol.ok(&["volume", "rebalance", VOLUME, "stop"]);
    assert!(
        wait_until(Duration::from_secs(20), || status(&vol).0.state
            == "stopped"),
        "{}",
        status(&vol).1
    );
    let first = status(&vol).0;
    let second = rebalance(&vol, REBALANCE_DEADLINE);
    assert_eq!(second.failures, 0, "{second:?}");
    assert!(first.migrated + second.migrated >= files.len() as u64 + 100);
    // The two names of the hard-linked file and the symlink stay put.
    assert!(first.skipped + second.skipped >= 3, "{first:?} {second:?}");

    let fresh = vol.mount();
    let fd = fresh.join("meta");
    for (n, want) in files.iter().zip(&want_meta) {
        let p = fd.join(n);
        let md = fs::symlink_metadata(&p).unwrap();
        assert_eq!(
            (md.mode(), md.uid(), md.gid(), md.mtime(), xattr::list(&p)),
            *want,
            "{n}"
        );
        assert_eq!(xattr_of(&p, "user.a").as_deref(), Some(n.as_bytes()));
        assert_eq!(fs::read(&p).unwrap(), n.as_bytes());
    }
    assert_eq!(fs::read(fd.join(&hard2)).unwrap(), b"two names");
    assert_eq!(fs::metadata(fd.join(&hard)).unwrap().nlink(), 2);
    assert_eq!(
        fs::read_link(fd.join(&sym)).unwrap(),
        Path::new("../elsewhere")
    );
    let got = fs::read(fd.join(&sparse)).unwrap();
    assert_eq!(got.len(), (30 << 20) + 4096);
    assert!(got[..4096].iter().all(|b| *b == 1) && got[30 << 20..].iter().all(|b| *b == 2));
    assert!(
        got[4096..30 << 20].iter().all(|b| *b == 0),
        "{sparse}: the hole holds data"
    );
    for b in 3..6 {
        let md = fs::metadata(cluster.brick_dir(b).join("meta").join(&sparse)).unwrap();
        assert!(
            // Holes are kept a chunk (1 MiB) at a time.
            md.blocks() * 512 <= 3 << 20,
            "brick {b}: {sparse} no longer sparse: {} blocks",
            md.blocks()
        );
    }
    let dmd = fs::metadata(&fd).unwrap();
    assert_eq!(
        (dmd.mode() & 0o7777, dmd.uid(), dmd.gid()),
        (0o2750, 42, 43)
    );
    assert_eq!(
        xattr_of(&fd, "user.dir-attr").as_deref(),
        Some(&b"on the dir"[..])
    );
    // The directory's copy on the new set got its attributes too.
    for b in 3..6 {
        let copy = cluster.brick_dir(b).join("meta");
        let md = fs::metadata(&copy).unwrap();
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid()),
            (0o2750, 42, 43),
            "brick {b}"
        );
        assert_eq!(
            xattr_of(&copy, "user.dir-attr").as_deref(),
            Some(&b"on the dir"[..]),
            "brick {b}"
        );
    }
    xattr::remove(&fd, "user.dir-attr").unwrap();
    for i in 0..300 {
        assert_eq!(
            fs::read_to_string(fresh.join(format!("many/f{i}"))).unwrap(),
            format!("{i}")
        );
    }
    let on: Vec<usize> = (0..2).map(|s| vol.files_on_set(s)).collect();
    assert!(on[1] > 100, "{on:?}");
    // Every real object where its name hashes, but hard links and the
    // symlink (left with a link file).
    for (set, p) in real_objects(&cluster) {
        let name = Path::new(&p)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if name == hard || name == hard2 || name == sym {
            continue;
        }
        assert_eq!(set, set_of(&name, 2), "{p}");
    }
    // A third run has nothing to do.
    let third = rebalance(&vol, REBALANCE_DEADLINE);
    assert_eq!((third.migrated, third.failures), (0, 0), "{third:?}");
}
