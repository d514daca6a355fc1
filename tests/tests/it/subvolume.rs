//! Sub-volumes: `brickfs subvolume …` on a volume in a file store, limits
//! enforced by the bricks for FUSE and NFS clients, `df` inside one, usage
//! across brick restarts and heal, and writers racing to the limit.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use tests::nfs::rpc::{Nfs3Client, NFS3ERR_DQUOT};
use tests::volume::{assert_refused, StoreVolume};
use tests::{wait_until, TestCluster, NO_CACHE};

const MIB: u64 = 1 << 20;

/// `df` of a path: (size, used, available) in bytes, from statvfs(3).
fn df(path: &Path) -> (u64, u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: a valid C string and a zeroed struct statvfs to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(
        rc,
        0,
        "statvfs {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    let unit = st.f_frsize;
    (
        st.f_blocks * unit,
        (st.f_blocks - st.f_bfree) * unit,
        st.f_bavail * unit,
    )
}

/// Appends 64 KiB blocks to `path` until the file system refuses; returns
/// the bytes written and the error's raw errno.
fn fill(path: &Path) -> (u64, i32) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let block = vec![0x5au8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&block) {
            Ok(n) => written += n as u64,
            Err(e) => return (written, e.raw_os_error().unwrap_or(0)),
        }
        assert!(written < 1 << 30, "wrote a GiB without hitting the limit");
    }
}

fn usage_line(v: &StoreVolume, name: &str) -> (u64, u64) {
    let info = v.ok(&["subvolume", "info", "test", name]);
    let line = info
        .lines()
        .find(|l| l.starts_with("Used: "))
        .unwrap_or_else(|| panic!("no usage in {info}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

#[test]
fn a_subvolume_is_created_listed_resized_archived_and_deleted() {
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    let create_a = [
        "subvolume",
        "create",
        "test",
        "pvc-a",
        "--size",
        "4Mi",
        "--mode",
        "0770",
        "--uid",
        "1000",
        "--gid",
        "1000",
        "--tenant",
        "blue",
    ];
    let out = v.ok(&create_a);
    assert!(out.contains("success"), "{out}");
    // The same request again is a no-op; another one under the name is refused.
    v.ok(&create_a);
    let other = v.cli(&["subvolume", "create", "test", "pvc-a", "--size", "8Mi"]);
    assert!(!other.ok, "a second create with other settings succeeded");
    assert!(other.err.contains("exists"), "{}", other.err);
    v.ok(&["subvolume", "create", "test", "pvc-b", "--size", "1Mi"]);
    let list = v.ok(&["subvolume", "list", "test", "--tenant", "blue"]);
    assert!(list.contains("pvc-a") && !list.contains("pvc-b"), "{list}");

    let m = v.mount_with_args(&NO_CACHE);
    let root = m.path().join("pvc-a");
    let md = std::fs::metadata(&root).expect("the sub-volume's directory");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid()),
        (0o770, 1000, 1000)
    );
    std::fs::write(root.join("f"), vec![1u8; 3 * MIB as usize]).expect("3 MiB of 4");
    assert!(wait_until(Duration::from_secs(5), || usage_line(
        &v, "pvc-a"
    )
    .0 == 3 * MIB));
    // Shrinking below usage is refused; growing works at once.
    let shrink = v.cli(&["subvolume", "resize", "test", "pvc-a", "--size", "2Mi"]);
    assert!(!shrink.ok && shrink.err.contains("below"), "{}", shrink.err);
    let (_, errno) = fill(&root.join("g"));
    assert_eq!(errno, libc::EDQUOT);
    v.ok(&["subvolume", "resize", "test", "pvc-a", "--size", "6Mi"]);
    std::fs::write(root.join("h"), vec![2u8; MIB as usize]).expect("room after growing");
    // The pool has far less than this: refused at once.
    let huge = v.cli(&["subvolume", "create", "test", "pvc-huge", "--size", "1Pi"]);
    assert!(!huge.ok && huge.err.contains("pool full"), "{}", huge.err);
    v.ok(&["volume", "set", "test", "subvolume.overcommit", "100"]);

    // Archive keeps the data aside; delete removes it.
    let out = v.ok(&["subvolume", "archive", "test", "pvc-a"]);
    assert!(out.contains("/.archive/pvc-a."), "{out}");
    assert!(
        !root.exists(),
        "the archived sub-volume is still at its name"
    );
    let archived = v.ok(&["subvolume", "list", "test", "--archived"]);
    assert!(archived.contains("pvc-a"), "{archived}");
    let kept = std::fs::read_dir(m.path().join(".archive"))
        .expect("the archive directory")
        .map(|e| e.unwrap().path())
        .next()
        .expect("one archive");
    assert_eq!(
        std::fs::read(kept.join("f")).unwrap().len(),
        3 * MIB as usize
    );
    std::fs::write(m.path().join("pvc-b/x"), b"x").unwrap();
    v.ok(&["subvolume", "delete", "test", "pvc-b"]);
    assert!(!m.path().join("pvc-b").exists());
    v.ok(&["subvolume", "delete", "test", "pvc-b"]);
    let list = v.ok(&["subvolume", "list", "test"]);
    assert!(!list.contains("pvc-b") && !list.contains("pvc-a"), "{list}");
}

#[test]
fn limits_hold_for_fuse_and_nfs_clients_and_df_shows_them() {
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    v.ok(&[
        "subvolume",
        "create",
        "test",
        "pv1",
        "--size",
        "8Mi",
        "--inodes",
        "50",
    ]);
    // A mount of just the sub-volume: df is the sub-volume's.
    // Written through, so each write(2) hears of the limit itself (with
    // write-behind a later write, fsync or close does: write_behind.rs).
    let through = [NO_CACHE.as_slice(), &["--write-behind-mib", "0"]].concat();
    let sub = cluster.mount_from_store_with_args(&v.url, "test/pv1", &through);
    let (size, used, avail) = df(sub.path());
    assert_eq!((size, used, avail), (8 * MIB, 0, 8 * MIB));
    std::fs::write(sub.path().join("a"), vec![3u8; 5 * MIB as usize]).unwrap();
    std::fs::create_dir(sub.path().join("dir")).unwrap();
    let (size, used, avail) = df(&sub.path().join("dir"));
    assert_eq!((size, used, avail), (8 * MIB, 5 * MIB, 3 * MIB));
    // A write across the limit is short (the kernel sends it in pieces;
    // those below the limit land), the next one EDQUOT; truncate and
    // fallocate past it: EDQUOT.
    let f = OpenOptions::new()
        .write(true)
        .open(sub.path().join("a"))
        .unwrap();
    let short = f
        .write_at(&vec![0u8; 4 * MIB as usize], 5 * MIB)
        .expect("short write");
    assert_eq!(short as u64, 3 * MIB);
    let err = f.write_at(b"x", 8 * MIB).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
    assert_eq!(f.metadata().unwrap().len(), 8 * MIB);
    assert_eq!(df(sub.path()).2, 0);
    f.set_len(5 * MIB)
        .expect("truncating down is always allowed");
    assert_eq!(
        f.set_len(9 * MIB).unwrap_err().raw_os_error(),
        Some(libc::EDQUOT)
    );
    use std::os::fd::AsRawFd;
    // SAFETY: fallocate(2) on an fd this test owns.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, (9 * MIB) as libc::off_t) };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EDQUOT)
    );
    drop(f);
    // Renames out of it: EXDEV (mv falls back to copy and delete).
    let whole = v.mount_with_args(&NO_CACHE);
    let err = std::fs::rename(whole.path().join("pv1/a"), whole.path().join("a")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EXDEV));

    // Objects: 50 at most (2 so far).
    let mut made = 2;
    let refused = loop {
        match std::fs::write(sub.path().join(format!("n{made}")), b"") {
            Ok(()) => made += 1,
            Err(e) => break e,
        }
        assert!(made <= 50, "more than 50 objects");
    };
    assert_eq!((made, refused.raw_os_error()), (50, Some(libc::EDQUOT)));

    // NFS: FSSTAT of any handle inside shows the limit; a write past it
    // is NFS3ERR_DQUOT.
    let gw = cluster.start_gateway_from_store(&v.url);
    let mut c = Nfs3Client::connect(gw.addr()).expect("connect to the gateway");
    let top = c.mnt("/test/pv1").expect("MNT").expect("MNT /test/pv1");
    let a = c.lookup(&top, b"a").expect("LOOKUP").expect("a");
    let (total, free, avail) = c.fsstat(&a).expect("FSSTAT").expect("FSSTAT ok");
    assert_eq!(total, 8 * MIB);
    assert_eq!((free, avail), (3 * MIB, 3 * MIB));
    let r = c
        .write(&a, 5 * MIB, &vec![0u8; 512 * 1024])
        .expect("WRITE")
        .expect("within the limit");
    assert_eq!(r, 512 * 1024);
    let big = vec![0u8; MIB as usize];
    let mut refused = None;
    for i in 0..4 {
        if let Err(stat) = c
            .write(&a, 5 * MIB + 512 * 1024 + i * MIB, &big)
            .expect("WRITE")
        {
            refused = Some(stat);
            break;
        }
    }
    assert_eq!(refused, Some(NFS3ERR_DQUOT));
    // Removing data makes room again.
    std::fs::remove_file(sub.path().join("a")).unwrap();
    assert!(wait_until(Duration::from_secs(5), || df(sub.path()).1 == 0));
    std::fs::write(sub.path().join("b"), vec![4u8; 7 * MIB as usize]).expect("room again");
}

#[test]
fn racing_writers_on_two_mounts_never_pass_the_limit_and_usage_survives_restarts() {
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    let limit = 16 * MIB;
    v.ok(&["subvolume", "create", "test", "race", "--size", "16Mi"]);
    let m1 = cluster.mount_from_store_with_args(&v.url, "test/race", &NO_CACHE);
    let m2 = cluster.mount_from_store_with_args(&v.url, "test/race", &NO_CACHE);
    let results: Vec<(u64, i32)> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..4)
            .map(|i| {
                let dir = if i % 2 == 0 { m1.path() } else { m2.path() };
                let path = dir.join(format!("w{i}"));
                s.spawn(move || fill(&path))
            })
            .collect();
        writers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .collect()
    });
    let acked: u64 = results.iter().map(|r| r.0).sum();
    for (_, errno) in &results {
        assert_eq!(*errno, libc::EDQUOT, "a writer stopped for another reason");
    }
    assert!(
        acked <= limit,
        "{acked} bytes acknowledged past a {limit}-byte limit"
    );
    // Everything acknowledged is there; nothing else is.
    let on_disk: u64 = (0..4)
        .map(|i| {
            let dir = if i % 2 == 0 { m1.path() } else { m2.path() };
            std::fs::metadata(dir.join(format!("w{i}"))).unwrap().len()
        })
        .sum();
    assert_eq!(on_disk, acked);
    assert!(
        limit - acked < 4 * 64 * 1024,
        "stopped {} bytes short",
        limit - acked
    );
    let (_, used, _) = df(m1.path());
    assert_eq!(used, acked);

    // A brick restarted recounts the same; one that missed deletes is
    // healed down to the others' usage.
    cluster.kill_brick(2);
    std::fs::remove_file(m1.path().join("w0")).unwrap();
    cluster.restart_brick(2);
    let _heald = v.start_heald(1);
    let after = acked - results[0].0;
    assert!(
        wait_until(Duration::from_secs(30), || usage_line(&v, "race").0
            == after
            && per_brick_usage(&cluster, 2) == Some(after)),
        "usage after heal: {:?}, brick 2: {:?}",
        usage_line(&v, "race"),
        per_brick_usage(&cluster, 2)
    );
    match std::fs::write(m2.path().join("room"), vec![0u8; results[0].0 as usize]) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::Other => panic!("no room after a delete: {e}"),
        Err(e) => panic!("{e}"),
    }
}

/// What brick `i` holds of sub-volume `race`: the apparent sizes of the
/// files in its directory there (what the brick counts).
fn per_brick_usage(cluster: &TestCluster, i: usize) -> Option<u64> {
    let dir = cluster.brick_dir(i).join("race");
    let mut total = 0;
    for e in std::fs::read_dir(dir).ok()? {
        total += e.ok()?.metadata().ok()?.len();
    }
    Some(total)
}

/// Two replica sets: each counts its share and hears the other's every
/// 100 ms, so four writers racing to the limit may pass it by what the
/// other set accepted in that time. Prints the overshoot (the closing
/// note's figure) and holds it to the README's bound.
#[test]
fn on_two_sets_the_limit_holds_within_one_sync_interval() {
    let cluster = TestCluster::start(6);
    let v = StoreVolume::create(&cluster);
    let limit = 32 * MIB;
    v.ok(&["subvolume", "create", "test", "wide", "--size", "32Mi"]);
    let m1 = cluster.mount_from_store_with_args(&v.url, "test/wide", &NO_CACHE);
    let m2 = cluster.mount_from_store_with_args(&v.url, "test/wide", &NO_CACHE);
    let started = std::time::Instant::now();
    let results: Vec<(u64, i32)> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..4)
            .map(|i| {
                let dir = if i % 2 == 0 { m1.path() } else { m2.path() };
                let path = dir.join(format!("w{i}"));
                s.spawn(move || fill(&path))
            })
            .collect();
        writers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let acked: u64 = results.iter().map(|r| r.0).sum();
    for (_, errno) in &results {
        assert_eq!(*errno, libc::EDQUOT, "a writer stopped for another reason");
    }
    let rate = acked as f64 / secs.max(0.001);
    println!(
        "2x3: limit {limit}, acknowledged {acked} ({:+} bytes, {:.1} MiB/s of writes)",
        acked as i64 - limit as i64,
        rate / MIB as f64
    );
    // The bound: what the sets accept in one sync interval (100 ms; here
    // ~85 MiB/s, measured 1.2 MiB over), with room for a slow round.
    let bound = 8 * MIB;
    assert!(
        acked <= limit + bound,
        "{acked} acknowledged, {} past the limit, bound {bound}",
        acked - limit
    );
    // Once the shares are known everywhere, nothing more fits.
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::write(m1.path().join("late"), vec![0u8; 128 * 1024]).is_err()
    }));
}

#[test]
fn bad_requests_change_nothing_and_say_why() {
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    v.ok(&["subvolume", "create", "test", "ok", "--size", "1Mi"]);
    std::fs::write(
        cluster
            .mount_from_store_with_args(&v.url, "test/ok", &NO_CACHE)
            .path()
            .join("f"),
        vec![0u8; 512 * 1024],
    )
    .unwrap();
    let store_dir = cluster.root().join("store");
    let refused: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["subvolume", "create", "test", ".hidden", "--size", "1Mi"],
            "bad sub-volume name",
        ),
        (
            vec!["subvolume", "create", "test", "a/b", "--size", "1Mi"],
            "bad sub-volume name",
        ),
        (
            vec!["subvolume", "create", "test", "x", "--size", "10Gb"],
            "unknown unit",
        ),
        (
            vec!["subvolume", "create", "test", "x", "--size", "0"],
            "out of range",
        ),
        (
            vec![
                "subvolume",
                "create",
                "test",
                "x",
                "--size",
                "1Mi",
                "--mode",
                "9",
            ],
            "octal",
        ),
        (
            vec!["subvolume", "create", "nosuch", "x", "--size", "1Mi"],
            "nosuch",
        ),
        (
            vec!["subvolume", "resize", "test", "missing", "--size", "2Mi"],
            "does not exist",
        ),
        (
            vec!["subvolume", "resize", "test", "ok", "--size", "256Ki"],
            "below",
        ),
        (
            vec!["subvolume", "info", "test", "missing"],
            "does not exist",
        ),
        (
            vec!["subvolume", "archive", "test", "missing"],
            "does not exist",
        ),
    ];
    assert_refused(&cluster, &v.url, &store_dir, &refused);
}

/// A brick that was down while the limits were set gets them by heal:
/// with another brick down afterwards the two that are up still refuse.
#[test]
fn limits_reach_a_brick_that_was_down_by_heal() {
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    cluster.kill_brick(2);
    v.ok(&["subvolume", "create", "test", "late", "--size", "2Mi"]);
    cluster.restart_brick(2);
    let _heald = v.start_heald(1);
    let limits_on = |i: usize| {
        tests::xattr::get(&cluster.brick_dir(i).join("late"), "trusted.brickfs.quota").is_ok()
    };
    assert!(
        wait_until(Duration::from_secs(30), || limits_on(2)),
        "heal did not carry the limits to brick 2"
    );
    cluster.kill_brick(0);
    let m = cluster.mount_from_store_with_args(&v.url, "test/late", &NO_CACHE);
    let (written, errno) = fill(&m.path().join("f"));
    assert_eq!(errno, libc::EDQUOT);
    assert!(
        written <= 2 * MIB,
        "{written} bytes past a 2 MiB limit with brick 0 down"
    );
    assert_eq!(df(m.path()).0, 2 * MIB);
}
