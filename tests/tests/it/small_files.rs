//! Small files in one round trip (client/src/replicate/held.rs): a file
//! created in a directory this client holds is answered at once and reaches
//! the bricks as one create carrying its first bytes. What must not change:
//! every brick ends with the same bytes, O_EXCL still decides between
//! clients, another client sees the name and (after the close) the data, a
//! directory holding such a file is not empty, and a create that fails once
//! sent is reported by the file's close.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use tests::cluster::brick_fop_count;
use tests::{run_ok, wait_until, TestCluster, NO_CACHE};

fn contents(i: usize) -> Vec<u8> {
    (0..4096).map(|j| ((i * 7 + j) % 251) as u8).collect()
}

fn create_new(path: &std::path::Path) -> std::io::Result<fs::File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[test]
fn small_files_reach_the_bricks_as_one_create_carrying_their_bytes() {
    let cluster = TestCluster::start(3);
    let metrics = cluster.restart_brick_with_metrics(0);
    let m = cluster.mount();
    fs::create_dir(m.join("d")).unwrap();
    let (creates, writes) = (
        brick_fop_count(metrics, "create"),
        brick_fop_count(metrics, "write"),
    );
    const N: usize = 40;
    for i in 0..N {
        let mut f = create_new(&m.join(format!("d/f{i:02}"))).unwrap();
        f.write_all(&contents(i)).unwrap();
        f.sync_all().unwrap();
    }
    // Created and closed empty (touch), and one bigger than a create carries.
    drop(create_new(&m.join("d/empty")).unwrap());
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    fs::write(m.join("d/big"), &big).unwrap();
    // O_EXCL on a name just made this way is refused as on any other.
    let again = create_new(&m.join("d/f00")).expect_err("O_EXCL over a file");
    assert_eq!(again.kind(), ErrorKind::AlreadyExists);

    assert_eq!(brick_fop_count(metrics, "create") - creates, N as f64 + 2.0);
    // Only the big file needed writes of its own.
    let big_writes = brick_fop_count(metrics, "write") - writes;
    assert!(
        (1.0..=3.0).contains(&big_writes),
        "{big_writes} writes for {N} small files and one of 300 kB"
    );

    for b in 0..3 {
        let dir = cluster.brick_dir(b).join("d");
        for i in 0..N {
            let on_disk = fs::read(dir.join(format!("f{i:02}"))).unwrap();
            assert!(on_disk == contents(i), "brick {b}: d/f{i:02} differs");
        }
        assert_eq!(fs::metadata(dir.join("empty")).unwrap().len(), 0);
        assert!(
            fs::read(dir.join("big")).unwrap() == big,
            "brick {b}: d/big"
        );
    }
    let other = cluster.mount();
    for i in 0..N {
        assert!(fs::read(other.join(format!("d/f{i:02}"))).unwrap() == contents(i));
    }
}

#[test]
fn a_held_create_decides_o_excl_between_clients_and_is_seen_by_them() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount_with_args(&NO_CACHE);
    fs::create_dir(a.join("d")).unwrap();
    // Opened and left empty for now: no write carries its create out.
    let mut held = create_new(&a.join("d/x")).unwrap();
    let started = Instant::now();
    let lost = create_new(&b.join("d/x")).expect_err("two O_EXCL creates of one name both won");
    assert_eq!(lost.kind(), ErrorKind::AlreadyExists, "{lost}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the other client waited {:?} for the name",
        started.elapsed()
    );
    let names = || -> Vec<String> {
        fs::read_dir(b.join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(), vec!["x".to_string()]);
    held.write_all(b"written after the other client looked")
        .unwrap();
    drop(held);
    let mut got = String::new();
    fs::File::open(b.join("d/x"))
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    assert_eq!(got, "written after the other client looked");

    // A file left open and empty shows up for others on its own, soon.
    let _quiet = create_new(&a.join("d/quiet")).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || names()
            .contains(&"quiet".to_string())),
        "a create left open and empty never reached the bricks: {:?}",
        names()
    );
}

#[test]
fn a_directory_holding_a_held_create_is_not_empty() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    fs::create_dir(m.join("d")).unwrap();
    let mut f = create_new(&m.join("d/f")).unwrap();
    let e = fs::remove_dir(m.join("d")).expect_err("rmdir of a directory holding a file");
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY), "{e}");
    fs::rename(m.join("d/f"), m.join("d/g")).unwrap();
    f.write_all(b"after the rename").unwrap();
    drop(f);
    assert_eq!(fs::read(m.join("d/g")).unwrap(), b"after the rename");
    for b in 0..3 {
        let dir = cluster.brick_dir(b).join("d");
        assert_eq!(fs::read(dir.join("g")).unwrap(), b"after the rename");
        assert!(!dir.join("f").exists());
    }
}

#[test]
fn a_held_create_that_cannot_reach_a_quorum_fails_the_files_close() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    fs::create_dir(m.join("d")).unwrap();
    let mut f = create_new(&m.join("d/f")).unwrap();
    cluster.kill_brick(1);
    cluster.kill_brick(2);
    // The create goes out with the write, or (held past a tick) before it;
    // either way two bricks of three are gone and the data cannot land.
    let wrote = f.write_all(b"nowhere to go");
    let synced = f.sync_all();
    assert!(
        wrote.is_err() || synced.is_err(),
        "a file whose create and data reached one brick of three was reported written"
    );
    drop(f);
    cluster.restart_brick(1);
    cluster.restart_brick(2);
    let heal = cluster.heal_cli(&[]);
    assert!(heal.ok, "{}{}", heal.stdout, heal.stderr);
    assert!(cluster.wait_healed(Duration::from_secs(30)));
    // Never half there: no brick holds the bytes nobody was told were kept.
    for b in 0..3 {
        let path = cluster.brick_dir(b).join("d/f");
        if let Ok(data) = fs::read(&path) {
            assert!(
                data.is_empty(),
                "brick {b} kept the bytes of a write that failed"
            );
        }
    }
}

/// A held create that has taken in the file's bytes and a chmod and then
/// cannot reach a quorum: the fsync reports it, and so does a change of
/// the file's attributes after that (it can no longer be part of a create
/// that failed); nothing of the file survives on the bricks.
#[test]
fn a_held_create_that_took_in_attributes_and_failed_reports_it_to_later_changes() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    fs::create_dir(m.join("d")).unwrap();
    let mut f = create_new(&m.join("d/f")).unwrap();
    cluster.kill_brick(1);
    cluster.kill_brick(2);
    // Both stay in this client (or fail, if a tick sent the create first).
    let _ = f.write_all(b"nowhere to go");
    let _ = f.set_permissions(fs::Permissions::from_mode(0o600));
    f.sync_all()
        .expect_err("fsync of a file whose create reached one brick of three");
    f.set_permissions(fs::Permissions::from_mode(0o640))
        .expect_err("chmod of a file whose create failed");
    drop(f);
    cluster.restart_brick(1);
    cluster.restart_brick(2);
    let heal = cluster.heal_cli(&[]);
    assert!(heal.ok, "{}{}", heal.stdout, heal.stderr);
    assert!(cluster.wait_healed(Duration::from_secs(30)));
    for b in 0..3 {
        if let Ok(data) = fs::read(cluster.brick_dir(b).join("d/f")) {
            assert!(data.is_empty(), "brick {b} kept bytes of a failed create");
        }
    }
}

/// What tar does to each file (create O_EXCL, write, fchown, futimens,
/// close), over sizes around what a create carries, with hard links and
/// symlinks among them: the tree read back is the archive's, and every
/// brick holds the same bytes, owners, modes and times.
#[test]
fn a_tree_untarred_into_a_new_directory_is_the_archives_on_every_brick() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("tree");
    fs::create_dir_all(tree.join("a/b")).unwrap();
    let carried = proto::MAX_CREATE_DATA;
    for (i, size) in [0, 1, 4095, 4096, carried - 1, carried, carried + 1, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let bytes: Vec<u8> = (0..size).map(|j| ((i * 13 + j) % 249) as u8).collect();
        fs::write(tree.join(format!("a/f{i}")), &bytes).unwrap();
        fs::write(tree.join(format!("a/b/g{i}")), &bytes).unwrap();
    }
    fs::hard_link(tree.join("a/f3"), tree.join("a/b/link")).unwrap();
    std::os::unix::fs::symlink("../f2", tree.join("a/b/sym")).unwrap();
    std::os::unix::fs::chown(tree.join("a/f4"), Some(1234), Some(5678)).unwrap();
    let archive = src.path().join("tree.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(src.path())
            .arg("-cf")
            .arg(&archive)
            .arg("tree"),
    );
    fs::create_dir(m.join("x")).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(m.join("x"))
            .arg("-xpf")
            .arg(&archive),
    );
    run_ok(
        Command::new("diff")
            .arg("-r")
            .arg("--no-dereference")
            .arg(&tree)
            .arg(m.join("x/tree")),
    );
    let owner = fs::symlink_metadata(m.join("x/tree/a/f4")).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&owner),
            std::os::unix::fs::MetadataExt::gid(&owner)
        ),
        (1234, 5678)
    );
    // An ustar archive keeps whole seconds.
    let mtime = |p: &std::path::Path| {
        let t = fs::symlink_metadata(p).unwrap().modified().unwrap();
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    };
    assert_eq!(mtime(&m.join("x/tree/a/f5")), mtime(&tree.join("a/f5")));
    cluster.assert_replicas_identical(Duration::from_secs(10));
}

fn stat_of(p: &std::path::Path) -> (u32, u32, u32, i64, i64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (
        m.mode(),
        m.uid(),
        m.gid(),
        m.mtime(),
        m.mtime_nsec(),
        m.len(),
    )
}

/// tar's `futimens`, `fchown` and `fchmod` after a file's data go with the
/// file's create: no setattr of a small file reaches a brick, and every
/// brick ends with the archive's owners, modes and times, a setuid file's
/// bits included (chown clears them, tar's chmod after it sets them again).
#[test]
fn tars_owner_mode_and_times_travel_with_the_create() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = TestCluster::start(3);
    let metrics = cluster.restart_brick_with_metrics(0);
    let m = cluster.mount();
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("t");
    fs::create_dir(&tree).unwrap();
    const N: u32 = 30;
    for i in 0..N {
        let p = tree.join(format!("f{i:02}"));
        fs::write(&p, contents(i as usize)).unwrap();
        let mode = [0o640, 0o755, 0o600, 0o444, 0o4755, 0o2750][i as usize % 6];
        std::os::unix::fs::chown(&p, Some(1000 + i), Some(2000 + i)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000 + u64::from(i) * 3600);
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    let archive = src.path().join("t.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(src.path())
            .arg("-cf")
            .arg(&archive)
            .arg("t"),
    );
    fs::create_dir(m.join("x")).unwrap();
    let (creates, setattrs) = (
        brick_fop_count(metrics, "create"),
        brick_fop_count(metrics, "setattr"),
    );
    let into = m.join("x");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&into)
            .arg("-xpf")
            .arg(&archive),
    );
    assert_eq!(
        brick_fop_count(metrics, "create") - creates,
        f64::from(N) + 1.0
    );
    // The directory t's own times and owner are set after its files.
    let sent = brick_fop_count(metrics, "setattr") - setattrs;
    assert!(sent <= 3.0, "{sent} setattrs reached brick 0 for {N} files");
    for i in 0..N {
        let name = format!("f{i:02}");
        let want = stat_of(&tree.join(&name));
        assert_eq!(stat_of(&m.join("x/t").join(&name)), want, "mount: {name}");
        for b in 0..3 {
            let on = cluster.brick_dir(b).join("x/t").join(&name);
            assert_eq!(stat_of(&on), want, "brick {b}: {name}");
            assert!(
                fs::read(&on).unwrap() == contents(i as usize),
                "brick {b}: {name}"
            );
        }
    }
    cluster.assert_replicas_identical(Duration::from_secs(10));
}

/// What a held create takes in must leave the file as the same calls on a
/// local file system would: a write after a utimens moves mtime to now, a
/// chown clears setuid, a chgrp in a setgid directory sticks, and another
/// client sees it all after the close.
#[test]
fn changes_to_a_held_file_end_as_on_a_local_file_system() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    let other = cluster.mount_with_args(&NO_CACHE);
    fs::create_dir(m.join("d")).unwrap();
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);

    // utimens, then a write: mtime is the write's.
    let mut f = create_new(&m.join("d/touched")).unwrap();
    f.write_all(b"one").unwrap();
    f.set_modified(old).unwrap();
    f.write_all(b"two").unwrap();
    drop(f);
    let meta = fs::metadata(other.join("d/touched")).unwrap();
    assert!(
        meta.mtime() > 1_000_000_000,
        "mtime {} after a write",
        meta.mtime()
    );
    assert_eq!(fs::read(other.join("d/touched")).unwrap(), b"onetwo");

    // A write, then utimens: mtime is the one set.
    let mut f = create_new(&m.join("d/stamped")).unwrap();
    f.write_all(b"data").unwrap();
    f.set_modified(old).unwrap();
    drop(f);
    assert_eq!(
        fs::metadata(other.join("d/stamped")).unwrap().mtime(),
        1_000_000_000
    );

    // chmod 4755, then chown: setuid is gone, as on ext4.
    let f = create_new(&m.join("d/suid")).unwrap();
    f.set_permissions(fs::Permissions::from_mode(0o4755))
        .unwrap();
    std::os::unix::fs::fchown(&f, Some(4321), None).unwrap();
    drop(f);
    let meta = fs::metadata(other.join("d/suid")).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o755, 4321));

    // A setgid directory gives its group; a chgrp after that sticks.
    let sg = m.join("sg");
    fs::create_dir(&sg).unwrap();
    std::os::unix::fs::chown(&sg, None, Some(777)).unwrap();
    fs::set_permissions(&sg, fs::Permissions::from_mode(0o2775)).unwrap();
    let f = create_new(&sg.join("f")).unwrap();
    assert_eq!(f.metadata().unwrap().gid(), 777);
    std::os::unix::fs::fchown(&f, None, Some(888)).unwrap();
    drop(f);
    assert_eq!(fs::metadata(other.join("sg/f")).unwrap().gid(), 888);
    let f = create_new(&sg.join("g")).unwrap();
    drop(f);
    assert_eq!(fs::metadata(other.join("sg/g")).unwrap().gid(), 777);

    // A truncate is not taken in: the file goes out first, then shrinks.
    let mut f = create_new(&m.join("d/cut")).unwrap();
    f.write_all(b"0123456789").unwrap();
    f.set_len(4).unwrap();
    drop(f);
    assert_eq!(fs::read(other.join("d/cut")).unwrap(), b"0123");
    cluster.assert_replicas_identical(Duration::from_secs(10));
}
