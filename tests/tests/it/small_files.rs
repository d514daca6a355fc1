//! Small files in one round trip (client/src/replicate/held.rs): a file
//! created in a directory this client holds is answered at once and reaches
//! the bricks as one create carrying its first bytes. What must not change:
//! every brick ends with the same bytes, O_EXCL still decides between
//! clients, another client sees the name and (after the close) the data, a
//! directory holding such a file is not empty, and a create that fails once
//! sent is reported by the file's close.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use tests::cluster::brick_fop_count;
use tests::{wait_until, TestCluster, NO_CACHE};

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
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(std::process::Command::new("tar")
        .arg("-C")
        .arg(src.path())
        .arg("-cf")
        .arg(&archive)
        .arg("tree"));
    fs::create_dir(m.join("x")).unwrap();
    run(std::process::Command::new("tar")
        .arg("-C")
        .arg(m.join("x"))
        .arg("-xpf")
        .arg(&archive));
    run(std::process::Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&tree)
        .arg(m.join("x/tree")));
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
