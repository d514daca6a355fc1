//! Distribute over several replica sets: real bricks, a 2 x 3 volume made
//! with `brickfs volume create`, mounted by name.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::time::Duration;

use tests::volume::{StoreVolume, REPLICA};
use tests::TestCluster;

fn content(i: usize) -> Vec<u8> {
    format!("file {i} ").repeat(1 + i % 7).into_bytes()
}

#[test]
fn files_spread_over_two_sets_with_identical_replicas() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    fs::create_dir(m.join("d")).unwrap();
    for i in 0..1200 {
        fs::write(m.join(format!("d/f{i:04}")), content(i)).unwrap();
    }
    let on0 = vol.files_on_set(0);
    let on1 = vol.files_on_set(1);
    assert_eq!(on0 + on1, 1200, "every file on exactly one set");
    for (set, n) in [(0, on0), (1, on1)] {
        assert!(
            (420..=780).contains(&n),
            "set {set} holds {n} of 1200 files (want 35-65%)"
        );
    }
    // The directory is on every brick of both sets.
    for b in 0..6 {
        assert!(cluster.brick_dir(b).join("d").is_dir(), "brick {b} lacks d");
    }
    vol.assert_sets_identical(Duration::from_secs(10));
    // A second client, with nothing cached, reads every file back.
    let other = vol.mount();
    for i in 0..1200 {
        assert_eq!(
            fs::read(other.join(format!("d/f{i:04}"))).unwrap(),
            content(i),
            "d/f{i:04}"
        );
    }
    let listed: BTreeSet<String> = fs::read_dir(other.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed.len(), 1200);
}

#[test]
fn rename_and_hard_link_across_sets() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    fs::create_dir_all(m.join("a/b")).unwrap();
    fs::create_dir(m.join("c")).unwrap();
    // Enough names that some renames cross sets and some do not.
    for i in 0..40 {
        fs::write(m.join(format!("a/src{i}")), content(i)).unwrap();
    }
    for i in 0..40 {
        fs::rename(m.join(format!("a/src{i}")), m.join(format!("c/moved-{i}"))).unwrap();
    }
    // Rename over an existing file, wherever the two live.
    for i in 0..10 {
        fs::write(m.join(format!("c/victim{i}")), b"old").unwrap();
        fs::rename(
            m.join(format!("c/moved-{i}")),
            m.join(format!("c/victim{i}")),
        )
        .unwrap();
    }
    // Hard links, some hashing to the other set.
    for i in 10..20 {
        fs::hard_link(
            m.join(format!("c/moved-{i}")),
            m.join(format!("a/b/link{i}")),
        )
        .unwrap();
    }
    fs::rename(m.join("a"), m.join("renamed-a")).unwrap();
    let fresh = vol.mount();
    let check = |root: &std::path::Path| {
        for i in 0..10 {
            assert_eq!(
                fs::read(root.join(format!("c/victim{i}"))).unwrap(),
                content(i)
            );
            assert!(!root.join(format!("c/moved-{i}")).exists());
        }
        for i in 10..40 {
            assert_eq!(
                fs::read(root.join(format!("c/moved-{i}"))).unwrap(),
                content(i)
            );
        }
        for i in 10..20 {
            let link = root.join(format!("renamed-a/b/link{i}"));
            assert_eq!(fs::read(&link).unwrap(), content(i));
            use std::os::unix::fs::MetadataExt;
            assert_eq!(fs::metadata(&link).unwrap().nlink(), 2);
        }
        let names: BTreeSet<String> = fs::read_dir(root.join("c"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 40, "{names:?}");
        assert!(fs::read_dir(root.join("renamed-a")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("src")));
    };
    check(m.path());
    check(fresh.path());
    // The replaced victims are gone: 40 files hold data.
    assert_eq!(vol.files_on_set(0) + vol.files_on_set(1), 40);
    // Remove everything; no link file is left behind.
    fs::remove_dir_all(m.join("c")).unwrap();
    fs::remove_dir_all(m.join("renamed-a")).unwrap();
    assert_eq!(fs::read_dir(fresh.path()).unwrap().count(), 0);
    for b in 0..6 {
        let left: Vec<_> = fs::read_dir(cluster.brick_dir(b))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != ".brickfs")
            .collect();
        assert!(left.is_empty(), "brick {b} keeps {left:?}");
    }
    vol.assert_sets_identical(Duration::from_secs(10));
}

#[test]
fn readdir_of_ten_thousand_entries_is_exact() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    fs::create_dir(m.join("big")).unwrap();
    let mut want = BTreeSet::new();
    for i in 0..10_000 {
        let name = format!("entry-{i:05}");
        fs::File::create(m.join("big").join(&name)).unwrap();
        want.insert(name);
    }
    for i in 0..20 {
        let name = format!("sub-{i}");
        fs::create_dir(m.join("big").join(&name)).unwrap();
        want.insert(name);
    }
    let other = vol.mount();
    let mut seen = Vec::new();
    for e in fs::read_dir(other.join("big")).unwrap() {
        seen.push(e.unwrap().file_name().into_string().unwrap());
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), unique.len(), "duplicates in the listing");
    assert_eq!(unique, want, "listing differs");
}

#[test]
fn a_set_without_quorum_makes_only_its_own_files_read_only() {
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    for i in 0..60 {
        fs::write(m.join(format!("f{i}")), content(i)).unwrap();
    }
    // Which set holds which file, from the bricks themselves.
    let on_set1: Vec<usize> = (0..60)
        .filter(|i| cluster.brick_dir(REPLICA).join(format!("f{i}")).exists())
        .collect();
    assert!(!on_set1.is_empty() && on_set1.len() < 60);
    cluster.kill_brick(REPLICA);
    cluster.kill_brick(REPLICA + 1);
    for i in 0..60 {
        // Reads work everywhere (one replica of set 1 is left).
        assert_eq!(fs::read(m.join(format!("f{i}"))).unwrap(), content(i));
        let res = fs::OpenOptions::new()
            .append(true)
            .open(m.join(format!("f{i}")))
            .and_then(|mut f| f.write_all(b"more").and_then(|()| f.sync_all()));
        if on_set1.contains(&i) {
            let err = res.expect_err("write to a set without quorum");
            assert_eq!(err.raw_os_error(), Some(libc::EROFS), "f{i}: {err}");
        } else {
            res.unwrap_or_else(|e| panic!("f{i} on the healthy set: {e}"));
        }
    }
    // New files whose names hash to the healthy set can still be made.
    let mut made = 0;
    for i in 0..40 {
        if fs::write(m.join(format!("new{i}")), b"x").is_ok() {
            made += 1;
        }
    }
    assert!(made > 5, "only {made} of 40 creates worked");
}

#[test]
fn nfs_gateway_serves_a_distributed_volume() {
    tests::nfs::require_libnfs_tools();
    let cluster = TestCluster::start(6);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    let gw = cluster.start_gateway_from_store(&vol.url);
    let local = tempfile::tempdir().unwrap();
    for i in 0..30 {
        let src = local.path().join(format!("in{i}"));
        fs::write(&src, content(i)).unwrap();
        tests::nfs::nfs_cp(&src, gw.url(&format!("test/n{i}"))).assert_ok();
    }
    for i in 0..30 {
        fs::write(m.join(format!("fuse{i}")), content(i)).unwrap();
    }
    // Both sets got some, and each side reads what the other wrote.
    assert!(vol.files_on_set(0) > 5 && vol.files_on_set(1) > 5);
    for i in 0..30 {
        assert_eq!(fs::read(m.join(format!("n{i}"))).unwrap(), content(i));
        let out = local.path().join(format!("out{i}"));
        tests::nfs::nfs_cp(gw.url(&format!("test/fuse{i}")), &out).assert_ok();
        assert_eq!(fs::read(&out).unwrap(), content(i));
    }
    let names = tests::nfs::ls_names(&tests::nfs::nfs_ls(&gw.url("test")));
    assert_eq!(names.len(), 60, "{names:?}");
}
