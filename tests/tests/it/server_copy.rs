//! copy_file_range within a volume: the bricks copy between their own
//! files (`Layer::copy_range`, brick RPC `copy_range`), so `cp` moves no
//! bytes through the client. What must hold as for any write: every
//! replica ends with the same bytes, a stale copy of the source is never
//! copied from (the kernel then copies through reads and writes), and a
//! sub-volume's limit stops a copy as it stops a write.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use tests::cluster::brick_fop_count;
use tests::volume::StoreVolume;
use tests::{TestCluster, NO_CACHE};

const MIB: usize = 1 << 20;

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 7 + seed * 31) % 253) as u8)
        .collect()
}

/// One copy_file_range call; the bytes it copied.
fn copy_once(
    from: &File,
    off_in: u64,
    to: &File,
    off_out: u64,
    len: usize,
) -> std::io::Result<u64> {
    let (mut off_in, mut off_out) = (off_in as libc::loff_t, off_out as libc::loff_t);
    // SAFETY: two open fds and offsets that live across the call.
    let n = unsafe {
        libc::copy_file_range(
            from.as_raw_fd(),
            &mut off_in,
            to.as_raw_fd(),
            &mut off_out,
            len,
            0,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as u64)
}

/// Copies all of `src` to a new `dst` as `cp` does: copy_file_range until
/// it copies nothing.
fn copy_all(src: &Path, dst: &Path) -> std::io::Result<u64> {
    let from = File::open(src)?;
    let to = File::create(dst)?;
    let mut at = 0;
    loop {
        match copy_once(&from, at, &to, at, 16 * MIB)? {
            0 => break,
            n => at += n,
        }
    }
    to.sync_all()?;
    Ok(at)
}

#[test]
fn a_copy_is_made_by_the_bricks_and_every_replica_agrees() {
    let cluster = TestCluster::start(3);
    let metrics = cluster.restart_brick_with_metrics(0);
    let m = cluster.mount();
    let src = pattern(10 * MIB + 12345, 1);
    let mut f = File::create(m.join("src")).unwrap();
    f.write_all(&src).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let writes = brick_fop_count(metrics, "write");

    assert_eq!(
        copy_all(&m.join("src"), &m.join("dst")).unwrap(),
        src.len() as u64
    );
    assert!(fs::read(m.join("dst")).unwrap() == src, "the copy differs");
    assert!(brick_fop_count(metrics, "copy_range") >= 1.0);
    assert_eq!(
        brick_fop_count(metrics, "write"),
        writes,
        "the copy's bytes went through the client"
    );

    // A range into the middle of a file, and one that runs past the
    // source's end (it copies what there is).
    let from = File::open(m.join("src")).unwrap();
    let to = OpenOptions::new().write(true).open(m.join("dst")).unwrap();
    assert_eq!(copy_once(&from, 5000, &to, 1000, 3000).unwrap(), 3000);
    let tail = src.len() as u64 - 100;
    assert_eq!(copy_once(&from, tail, &to, 0, 4096).unwrap(), 100);
    to.sync_all().unwrap();
    drop(to);
    let mut want = src.clone();
    want.copy_within(5000..8000, 1000);
    let end = src.len() - 100..src.len();
    want[..100].copy_from_slice(&src[end]);
    let other = cluster.mount_with_args(&NO_CACHE);
    assert!(
        fs::read(other.join("dst")).unwrap() == want,
        "the ranges landed elsewhere"
    );
    cluster.assert_replicas_identical(Duration::from_secs(10));
    // `cp` itself, whatever way it copies.
    tests::run_ok(
        std::process::Command::new("cp")
            .arg(m.join("src"))
            .arg(m.join("by-cp")),
    );
    assert!(fs::read(other.join("by-cp")).unwrap() == src);
}

#[test]
fn a_stale_source_replica_is_not_copied_from() {
    let cluster = TestCluster::start(3);
    let metrics = cluster.restart_brick_with_metrics(0);
    let m = cluster.mount();
    fs::write(m.join("src"), pattern(MIB, 2)).unwrap();
    // Brick 2 misses the new contents: its copy of src is stale.
    cluster.kill_brick(2);
    let newer = pattern(2 * MIB, 3);
    let mut f = OpenOptions::new().write(true).open(m.join("src")).unwrap();
    f.write_all(&newer).unwrap();
    f.sync_all().unwrap();
    drop(f);
    cluster.restart_brick(2);
    assert!(
        tests::wait_until(Duration::from_secs(20), || cluster.heal_pending().is_some()),
        "brick 2 did not come back"
    );
    assert_eq!(
        copy_all(&m.join("src"), &m.join("dst")).unwrap(),
        newer.len() as u64
    );
    assert!(fs::read(m.join("dst")).unwrap() == newer);
    assert_eq!(
        brick_fop_count(metrics, "copy_range"),
        0.0,
        "the bricks copied from a source one of them holds stale"
    );
    let heal = cluster.heal_cli(&[]);
    assert!(heal.ok, "{}{}", heal.stdout, heal.stderr);
    assert!(cluster.wait_healed(Duration::from_secs(30)));
    for b in 0..3 {
        let on_disk = fs::read(cluster.brick_dir(b).join("dst")).unwrap();
        assert!(on_disk == newer, "brick {b} holds another copy");
    }
}

#[test]
fn a_copy_past_a_sub_volumes_limit_is_refused() {
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    v.ok(&["subvolume", "create", "test", "small", "--size", "4Mi"]);
    let m = cluster.mount_from_store_with_args(&v.url, "test/small", &NO_CACHE);
    fs::write(m.join("src"), pattern(3 * MIB, 4)).unwrap();
    let from = File::open(m.join("src")).unwrap();
    let to = File::create(m.join("dst")).unwrap();
    let e = copy_once(&from, 0, &to, 0, 3 * MIB).expect_err("a copy past the limit");
    assert_eq!(e.raw_os_error(), Some(libc::EDQUOT), "{e}");
    // Within it, it goes.
    assert_eq!(
        copy_once(&from, 0, &to, 0, MIB / 2).unwrap(),
        (MIB / 2) as u64
    );
}

/// With a brick down the two others copy, and the one that missed it gets
/// the copy from heal, byte for byte.
#[test]
fn a_copy_with_a_brick_down_reaches_it_through_heal() {
    let cluster = TestCluster::start(3);
    let metrics = cluster.restart_brick_with_metrics(0);
    let m = cluster.mount();
    let src = pattern(3 * MIB + 77, 5);
    fs::write(m.join("src"), &src).unwrap();
    cluster.kill_brick(2);
    assert_eq!(
        copy_all(&m.join("src"), &m.join("dst")).unwrap(),
        src.len() as u64
    );
    assert!(
        brick_fop_count(metrics, "copy_range") >= 1.0,
        "the two bricks left did not copy themselves"
    );
    assert!(fs::read(m.join("dst")).unwrap() == src);
    assert!(!cluster.brick_dir(2).join("dst").exists());
    cluster.restart_brick(2);
    let heal = cluster.heal_cli(&[]);
    assert!(heal.ok, "{}{}", heal.stdout, heal.stderr);
    assert!(cluster.wait_healed(Duration::from_secs(30)));
    cluster.assert_replicas_identical(Duration::from_secs(10));
    assert!(fs::read(cluster.brick_dir(2).join("dst")).unwrap() == src);
}
