//! Self-heal with real bricks, a real heal daemon and real FUSE mounts:
//! after any outage the replicas converge (data, mode, owner, xattrs,
//! entries), nothing deleted comes back, split-brain is reported and only
//! resolved by an operator's choice.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tests::cluster::TestCluster;
use tests::data::pattern;
use tests::{wait_until, xattr, NO_CACHE};

const HEAL_TIMEOUT: Duration = Duration::from_secs(90);
const SETTLE: Duration = Duration::from_secs(20);

fn gfid_hex(brick_path: &Path) -> String {
    let gfid = xattr::get(brick_path, "trusted.brickfs.gfid")
        .unwrap_or_else(|e| panic!("gfid of {}: {e}", brick_path.display()));
    assert_eq!(gfid.len(), 16, "gfid of {}", brick_path.display());
    gfid.iter().map(|b| format!("{b:02x}")).collect()
}

fn assert_healed(cluster: &TestCluster) {
    assert!(
        cluster.wait_healed(HEAL_TIMEOUT),
        "bricks still report entries to heal after {HEAL_TIMEOUT:?}: {:?}",
        cluster.heal_pending()
    );
    cluster.assert_replicas_identical(SETTLE);
}

#[test]
fn a_brick_that_missed_writes_is_healed_on_its_own() {
    let cluster = TestCluster::start(3);
    let _heald = cluster.start_heald(2);
    let m = cluster.mount();
    let big = pattern(1, 8 << 20);
    fs::write(m.join("f8"), &big).unwrap();
    fs::create_dir(m.join("small")).unwrap();

    cluster.kill_brick(0);
    for i in 0..300u64 {
        fs::write(
            m.join(format!("small/f{i:04}")),
            pattern(100 + i, 16 * 1024),
        )
        .unwrap();
    }
    // Overwrite the middle 2 MiB of the big file in place.
    let f = OpenOptions::new().write(true).open(m.join("f8")).unwrap();
    f.write_all_at(&pattern(2, 2 << 20), 3 << 20).unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::create_dir_all(m.join("tree/a/b")).unwrap();
    fs::write(m.join("tree/a/b/leaf"), b"leaf").unwrap();
    std::os::unix::fs::symlink("a/b/leaf", m.join("tree/link")).unwrap();
    fs::set_permissions(m.join("small/f0000"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(m.join("small/f0001"), Some(1234), Some(5678)).unwrap();
    xattr::set(&m.join("small/f0002"), "user.colour", b"blue").unwrap();
    assert!(
        cluster.heal_pending().unwrap_or(0) > 0,
        "nothing blamed while a brick was down"
    );

    cluster.restart_brick(0);
    assert_healed(&cluster);
    let b0 = cluster.brick_dir(0);
    assert_eq!(
        fs::read(b0.join("small/f0299")).unwrap(),
        pattern(399, 16 * 1024)
    );
    let mut expect = big.clone();
    expect[3 << 20..5 << 20].copy_from_slice(&pattern(2, 2 << 20));
    assert_eq!(fs::read(b0.join("f8")).unwrap(), expect);
    assert_eq!(
        fs::read_link(b0.join("tree/link")).unwrap(),
        Path::new("a/b/leaf")
    );
    assert_eq!(fs::metadata(b0.join("small/f0001")).unwrap().uid(), 1234);
    // The healed copy is readable through a fresh client.
    let m2 = cluster.mount();
    assert_eq!(fs::read(m2.join("f8")).unwrap(), expect);
}

#[test]
fn rolling_outage_converges_with_nothing_lost() {
    let cluster = TestCluster::start(3);
    let _heald = cluster.start_heald(2);
    let m = cluster.mount();
    fs::create_dir(m.join("d")).unwrap();
    fs::write(m.join("d/shared"), pattern(7, 1 << 20)).unwrap();

    cluster.kill_brick(0);
    for i in 0..100u64 {
        fs::write(m.join(format!("d/a{i:03}")), pattern(1000 + i, 8192)).unwrap();
    }
    let f = OpenOptions::new()
        .write(true)
        .open(m.join("d/shared"))
        .unwrap();
    f.write_all_at(&pattern(8, 4096), 0).unwrap();
    drop(f);
    cluster.restart_brick(0);
    // Brick 1 goes before heal can have finished, once the client is back
    // on brick 0 (else two bricks would be down).
    let addr = cluster.brick_addr(0);
    assert!(wait_until(Duration::from_secs(10), || m.brick_ups(addr) >= 2));
    cluster.kill_brick(1);
    for i in 0..100u64 {
        fs::write(m.join(format!("d/b{i:03}")), pattern(2000 + i, 8192)).unwrap();
    }
    let f = OpenOptions::new()
        .write(true)
        .open(m.join("d/shared"))
        .unwrap();
    f.write_all_at(&pattern(9, 4096), 512 * 1024).unwrap();
    drop(f);
    cluster.restart_brick(1);
    assert_healed(&cluster);

    let mut shared = pattern(7, 1 << 20);
    shared[..4096].copy_from_slice(&pattern(8, 4096));
    shared[512 * 1024..512 * 1024 + 4096].copy_from_slice(&pattern(9, 4096));
    for b in 0..3 {
        let dir = cluster.brick_dir(b).join("d");
        assert_eq!(fs::read(dir.join("shared")).unwrap(), shared, "brick {b}");
        for i in 0..100u64 {
            assert_eq!(
                fs::read(dir.join(format!("a{i:03}"))).unwrap(),
                pattern(1000 + i, 8192)
            );
            assert_eq!(
                fs::read(dir.join(format!("b{i:03}"))).unwrap(),
                pattern(2000 + i, 8192)
            );
        }
    }
}

#[test]
fn deleted_renamed_and_recreated_entries_heal_without_resurrection() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    fs::create_dir_all(m.join("d1")).unwrap();
    fs::create_dir_all(m.join("d2")).unwrap();
    fs::create_dir_all(m.join("t/u/v")).unwrap();
    for n in ["a", "b", "c"] {
        fs::write(m.join("d1").join(n), format!("old {n}")).unwrap();
    }
    fs::write(m.join("t/u/v/deep"), b"deep").unwrap();
    fs::create_dir(m.join("movedir")).unwrap();
    fs::write(m.join("movedir/inside"), b"inside").unwrap();

    cluster.kill_brick(2);
    fs::remove_file(m.join("d1/a")).unwrap();
    fs::rename(m.join("d1/b"), m.join("d2/b2")).unwrap();
    fs::hard_link(m.join("d2/b2"), m.join("d2/hard")).unwrap();
    fs::remove_dir_all(m.join("t/u")).unwrap();
    fs::rename(m.join("movedir"), m.join("d2/moved")).unwrap();
    fs::rename(m.join("d1"), m.join("d3")).unwrap();
    fs::write(m.join("d3/a"), b"new a").unwrap();
    fs::create_dir(m.join("fresh")).unwrap();
    fs::write(m.join("fresh/f"), b"fresh").unwrap();

    cluster.restart_brick(2);
    assert!(
        wait_until(Duration::from_secs(10), || cluster
            .heal_pending()
            .unwrap_or(0)
            > 0),
        "no brick blames the one that was away"
    );
    let run = cluster.heal_cli(&[]);
    assert!(
        run.ok,
        "volume heal failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    assert_healed(&cluster);

    let b2 = cluster.brick_dir(2);
    assert!(!b2.join("d1").exists(), "renamed directory left behind");
    assert!(!b2.join("movedir").exists(), "moved directory duplicated");
    assert!(!b2.join("t/u").exists(), "deleted tree came back");
    assert_eq!(fs::read(b2.join("d3/a")).unwrap(), b"new a");
    assert_eq!(fs::read(b2.join("d3/c")).unwrap(), b"old c");
    assert_eq!(fs::read(b2.join("d2/moved/inside")).unwrap(), b"inside");
    let (x, y) = (
        fs::metadata(b2.join("d2/b2")).unwrap(),
        fs::metadata(b2.join("d2/hard")).unwrap(),
    );
    // Two names plus the brick's gfid-index link, as on a brick that saw it all.
    let on_b0 = fs::metadata(cluster.brick_dir(0).join("d2/b2"))
        .unwrap()
        .nlink();
    assert_eq!(
        (x.ino(), x.nlink()),
        (y.ino(), on_b0),
        "hard link healed as a copy"
    );
    assert_eq!(fs::read(b2.join("fresh/f")).unwrap(), b"fresh");
}

#[test]
fn a_wiped_brick_is_refilled_while_a_client_writes() {
    let cluster = TestCluster::start(3);
    let mut heald = cluster.start_heald(2);
    let m = cluster.mount();
    for d in 0..5 {
        fs::create_dir(m.join(format!("d{d}"))).unwrap();
        for i in 0..40u64 {
            fs::write(m.join(format!("d{d}/f{i}")), pattern(d * 100 + i, 4096)).unwrap();
        }
    }
    // Heald must know the brick's identity before it is wiped.
    assert!(wait_until(Duration::from_secs(10), || fs::read_to_string(
        &heald.log
    )
    .is_ok_and(|l| l.contains("watching"))));

    cluster.kill_brick(1);
    let dir = cluster.brick_dir(1);
    fs::remove_dir_all(&dir).unwrap();
    fs::create_dir(&dir).unwrap();
    cluster.restart_brick(1);

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        let root = m.path().to_path_buf();
        std::thread::spawn(move || {
            fs::create_dir(root.join("during")).unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                fs::write(root.join(format!("during/w{i}")), pattern(9000 + i, 2048)).unwrap();
                // What existed before the wipe stays readable all along.
                let d = i % 5;
                let f = i % 40;
                assert_eq!(
                    fs::read(root.join(format!("d{d}/f{f}"))).unwrap(),
                    pattern(d * 100 + f, 4096)
                );
                i += 1;
                written.store(i as usize, Ordering::Relaxed);
            }
        })
    };
    assert!(
        wait_until(HEAL_TIMEOUT, || cluster
            .brick_dir(1)
            .join("d4/f39")
            .exists()),
        "the wiped brick was not refilled"
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");
    assert!(written.load(Ordering::Relaxed) > 0);
    assert_healed(&cluster);
    heald.stop();
}

#[test]
fn a_client_killed_mid_write_leaves_nothing_heal_cannot_resolve() {
    let cluster = TestCluster::start(3);
    let _heald = cluster.start_heald(2);
    let m1 = cluster.mount();
    let path = m1.join("victim");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let Ok(mut f) = File::create(&path) else {
                return;
            };
            let chunk = pattern(5, 64 * 1024);
            while !stop.load(Ordering::Relaxed) {
                if f.write_all(&chunk).is_err() {
                    return;
                }
            }
        })
    };
    assert!(wait_until(Duration::from_secs(10), || fs::metadata(
        cluster.brick_dir(0).join("victim")
    )
    .is_ok_and(|md| md.len() > 4 << 20)));
    m1.kill();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");

    // Another client gets the file's locks at once and can write.
    let m2 = cluster.mount();
    fs::write(m2.join("victim"), b"after").unwrap();
    fs::write(m2.join("other"), b"x").unwrap();
    assert_healed(&cluster);
    assert_eq!(fs::read(m2.join("victim")).unwrap(), b"after");
}

#[test]
fn one_changed_block_of_a_big_file_costs_about_one_block() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    let f = File::create(m.join("huge")).unwrap();
    f.set_len(1 << 30).unwrap();
    f.write_all_at(&pattern(1, 1 << 20), 0).unwrap();
    f.write_all_at(&pattern(2, 1 << 20), 700 << 20).unwrap();
    drop(f);

    cluster.kill_brick(0);
    let f = OpenOptions::new().write(true).open(m.join("huge")).unwrap();
    f.write_all_at(&pattern(3, 1 << 20), 300 << 20).unwrap();
    drop(f);
    cluster.restart_brick(0);
    assert!(wait_until(Duration::from_secs(10), || cluster
        .heal_pending()
        .unwrap_or(0)
        > 0));

    let run = cluster.heal_cli(&[]);
    assert!(
        run.ok,
        "volume heal failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    eprintln!("{}", run.stdout.trim());
    let copied = mib_copied(&run.stdout);
    assert!(
        copied > 0.9 && copied <= 2.0,
        "heal copied {copied} MiB for one changed MiB:\n{}",
        run.stdout
    );
    assert_healed(&cluster);
}

/// The "N MiB copied" figure of a `volume heal` summary.
fn mib_copied(out: &str) -> f64 {
    let before = out
        .split(" MiB copied")
        .next()
        .unwrap_or_else(|| panic!("no \"MiB copied\" in {out:?}"));
    before
        .rsplit(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before \"MiB copied\" in {out:?}"))
}

#[test]
fn split_brain_is_reported_never_healed_silently_and_resolved_on_request() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    fs::write(m.join("f"), b"hello, world").unwrap();
    drop(m);
    // Someone edits the bricks by hand: replica 0 has other content and
    // blames 1 and 2; replica 1 blames 0.
    let (b0, b1) = (cluster.brick_dir(0), cluster.brick_dir(1));
    let blame = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    fs::write(b0.join("f"), b"HELLO, WORLD").unwrap();
    xattr::set(&b0.join("f"), "trusted.brickfs.pending.1", &blame).unwrap();
    xattr::set(&b0.join("f"), "trusted.brickfs.pending.2", &blame).unwrap();
    xattr::set(&b1.join("f"), "trusted.brickfs.pending.0", &blame).unwrap();
    let gfid = gfid_hex(&b0.join("f"));
    for b in [&b0, &b1] {
        File::create(b.join(".brickfs/indices/xattrop").join(&gfid)).unwrap();
    }
    cluster.restart_brick(0);
    cluster.restart_brick(1);

    let info = cluster.heal_cli(&["info", "split-brain"]);
    assert!(info.ok, "{}\n{}", info.stdout, info.stderr);
    assert!(
        info.stdout.contains("split-brain: 1"),
        "not reported:\n{}",
        info.stdout
    );

    let run = cluster.heal_cli(&[]);
    assert!(
        !run.ok,
        "heal claims success with a split-brain:\n{}",
        run.stdout
    );
    assert_eq!(fs::read(b0.join("f")).unwrap(), b"HELLO, WORLD");
    assert_eq!(fs::read(b1.join("f")).unwrap(), b"hello, world");

    let fix = cluster.heal_cli(&["split-brain", "source-brick", "2", "/f"]);
    assert!(fix.ok, "resolution failed:\n{}\n{}", fix.stdout, fix.stderr);
    assert_healed(&cluster);
    assert_eq!(fs::read(b0.join("f")).unwrap(), b"hello, world");
}

/// Heal on access needs the heal RPCs, which the bricks allow only the
/// `heal` and `admin` roles: a mount with a heal certificate heals what it
/// reads around; an ordinary one (role `client`) leaves that to heald.
#[test]
fn a_client_with_the_heal_role_heals_what_it_finds_stale_without_the_daemon() {
    let cluster = TestCluster::start(3);
    let tls = tests::tls::dir();
    let cert = tls.join("heal.pem").display().to_string();
    let key = tls.join("heal.key").display().to_string();
    // No kernel caching: every open asks the client stack.
    let mut healer_args = NO_CACHE.to_vec();
    healer_args.extend(["--tls-cert", cert.as_str(), "--tls-key", key.as_str()]);
    let m = cluster.mount_with_args(&healer_args);
    let plain = cluster.mount_with_args(&NO_CACHE);
    fs::write(m.join("hot"), pattern(1, 256 * 1024)).unwrap();
    fs::write(m.join("cold"), pattern(1, 256 * 1024)).unwrap();
    cluster.kill_brick(0);
    fs::write(m.join("hot"), pattern(2, 256 * 1024)).unwrap();
    fs::write(m.join("cold"), pattern(2, 256 * 1024)).unwrap();
    cluster.restart_brick(0);
    let addr = cluster.brick_addr(0);
    assert!(wait_until(Duration::from_secs(10), || m.brick_ups(addr)
        >= 2
        && plain.brick_ups(addr) >= 2));
    // The client-role mount reads around its stale replica first.
    assert_eq!(
        fs::read(plain.join("cold")).unwrap(),
        pattern(2, 256 * 1024)
    );
    assert_eq!(fs::read(m.join("hot")).unwrap(), pattern(2, 256 * 1024));
    let b0 = cluster.brick_dir(0);
    assert!(
        wait_until(Duration::from_secs(20), || fs::read(b0.join("hot"))
            .is_ok_and(|d| d == pattern(2, 256 * 1024))),
        "the stale replica the heal-role client read around was not healed"
    );
    // No heal daemon runs, and the client-role mount may not heal: what it
    // read is still stale, as is what nobody touched.
    assert_eq!(fs::read(b0.join("cold")).unwrap(), pattern(1, 256 * 1024));
}

#[test]
fn a_big_file_being_written_while_it_heals_ends_identical_everywhere() {
    let cluster = TestCluster::start(3);
    let _heald = cluster.start_heald(2);
    let m = cluster.mount();
    let size = 16usize << 20;
    fs::write(m.join("busy"), pattern(1, size)).unwrap();
    cluster.kill_brick(0);
    // The whole file changes while brick 0 is away: every chunk needs heal.
    fs::write(m.join("busy"), pattern(2, size)).unwrap();
    cluster.restart_brick(0);

    // Meanwhile a client keeps overwriting blocks all over the file; what
    // it wrote is the model the replicas must end up equal to.
    let mut model = pattern(2, size);
    let f = OpenOptions::new().write(true).open(m.join("busy")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let mut i = 0u64;
    while std::time::Instant::now() < deadline {
        let block = (i.wrapping_mul(2_654_435_761) % (size as u64 / 4096)) as usize;
        let data = pattern(1000 + i, 4096);
        f.write_all_at(&data, (block * 4096) as u64).unwrap();
        model[block * 4096..(block + 1) * 4096].copy_from_slice(&data);
        i += 1;
    }
    f.sync_all().unwrap();
    drop(f);
    assert_healed(&cluster);
    for b in 0..3 {
        assert!(
            fs::read(cluster.brick_dir(b).join("busy")).unwrap() == model,
            "brick {b} differs from what the client wrote ({i} overwrites)"
        );
    }
}

/// Each of two replicas missed a write the other has, then the third (the
/// only good copy) goes down. A write the two stale ones alone took would
/// leave them blaming the good copy and it blaming them: a split-brain no
/// heal settles. The write is refused with EIO; once the good brick is back
/// the file heals to the last write that was acknowledged.
#[test]
fn a_write_that_only_stale_copies_could_take_is_refused() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount_with_args(&["--write-behind-mib", "0"]);
    let path = m.join("f");
    fs::write(&path, b"v0").unwrap();
    let write = |v: &[u8]| -> std::io::Result<()> {
        let f = OpenOptions::new().write(true).open(&path)?;
        f.write_all_at(v, 0)?;
        f.sync_all()
    };
    let events = |what: &str, i: usize| {
        // The space ends the field: port 1234 is not port 12345.
        let addr = format!("brick={} ", cluster.brick_addr(i));
        fs::read_to_string(m.log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(what) && l.contains(&addr))
            .count()
    };
    // The brick goes or comes back, and the mount knows it before the
    // next write.
    let seen = |what: &str, i: usize, change: &dyn Fn(usize)| {
        let before = events(what, i);
        change(i);
        assert!(
            wait_until(SETTLE, || events(what, i) > before),
            "the mount never logged {what:?} for brick {i}"
        );
    };
    let take_down = |i: usize| seen("brick down", i, &|i| cluster.kill_brick(i));
    let bring_back = |i: usize| seen("brick up", i, &|i| cluster.restart_brick(i));
    take_down(0);
    write(b"v1").unwrap();
    bring_back(0);
    take_down(2);
    write(b"v2").expect("brick 1 has the good copy: the write goes on");
    bring_back(2);
    take_down(1);
    let refused = write(b"v3").expect_err("a write only stale copies took");
    assert_eq!(refused.raw_os_error(), Some(libc::EIO), "{refused}");
    bring_back(1);

    let _heald = cluster.start_heald(2);
    assert_healed(&cluster);
    for i in 0..3 {
        assert_eq!(fs::read(cluster.brick_dir(i).join("f")).unwrap(), b"v2");
    }
    write(b"v4").expect("writes go on once healed");
}

/// After rolling outages with heals in between, replicas 1 and 2 can each
/// be blamed by both others while replica 0 is blamed only by replica 1,
/// for ops heal brought it while replica 1 was down (the crash soak left
/// exactly these counts once). Accusations alone cannot settle it; a second
/// replica with the same bytes as replica 0 vouches for it, and heal takes
/// it as the source. Where no other replica agrees, nothing is touched and
/// it stays a split-brain.
#[test]
fn stale_accusations_of_two_replicas_heal_only_when_another_copy_agrees() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    let whole = b"0123456789abcdef";
    for name in ["agreed", "disputed"] {
        fs::write(m.join(name), whole).unwrap();
    }
    drop(m);
    let b: Vec<_> = (0..3).map(|i| cluster.brick_dir(i)).collect();
    // The same counts for data and metadata; replica 1 also has another mode.
    let blame = |n: u32| {
        let mut v = [0u8; 12];
        v[..4].copy_from_slice(&n.to_be_bytes());
        v[4..8].copy_from_slice(&n.to_be_bytes());
        v
    };
    for name in ["agreed", "disputed"] {
        fs::write(b[1].join(name), &whole[..10]).unwrap();
        fs::set_permissions(b[1].join(name), fs::Permissions::from_mode(0o600)).unwrap();
        for (brick, against, n) in [(0, 1, 38), (0, 2, 1), (1, 0, 22), (1, 2, 1), (2, 1, 38)] {
            let key = format!("trusted.brickfs.pending.{against}");
            xattr::set(&b[brick].join(name), &key, &blame(n)).unwrap();
        }
        let gfid = gfid_hex(&b[0].join(name));
        for dir in &b {
            File::create(dir.join(".brickfs/indices/xattrop").join(&gfid)).unwrap();
        }
    }
    fs::write(b[2].join("disputed"), b"0123456789abcdeX").unwrap();
    for i in 0..3 {
        cluster.restart_brick(i);
    }

    let run = cluster.heal_cli(&[]);
    assert!(
        !run.ok,
        "heal claims success with a split-brain left:\n{}",
        run.stdout
    );
    let mode_of = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let agreed_mode = mode_of(&b[0].join("agreed"));
    assert_ne!(agreed_mode, 0o600);
    for dir in &b {
        assert_eq!(fs::read(dir.join("agreed")).unwrap(), whole, "{dir:?}");
        assert_eq!(mode_of(&dir.join("agreed")), agreed_mode, "{dir:?}");
    }
    // Metadata has its own vote: two modes agree with the likely source's.
    assert_eq!(mode_of(&b[1].join("disputed")), agreed_mode);
    assert_eq!(fs::read(b[0].join("disputed")).unwrap(), whole);
    assert_eq!(fs::read(b[1].join("disputed")).unwrap(), &whole[..10]);
    assert_eq!(
        fs::read(b[2].join("disputed")).unwrap(),
        b"0123456789abcdeX"
    );
    assert_eq!(
        cluster.heal_pending(),
        Some(3),
        "only the disputed file (on each brick) is left to heal"
    );
    let disputed = gfid_hex(&b[0].join("disputed"));
    let info = cluster.heal_cli(&["info", "split-brain"]);
    assert!(
        info.stdout.contains("split-brain: 1") && info.stdout.contains(&disputed[..8]),
        "not reported:\n{}",
        info.stdout
    );
}

/// A failed write left on two copies (brick 0 applied it and accuses
/// itself; brick 1 applied it and died before answering, its dirty mark
/// orphaned) while brick 2, which never got it and has no mark, is down.
/// Healing the two copies clears their marks: unless brick 2 is accused
/// then, nothing would say that it differs once it is back.
#[test]
fn a_heal_of_unconfirmed_copies_with_a_brick_down_accuses_the_brick_down() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    fs::write(m.join("f"), b"kept").unwrap();
    drop(m);
    cluster.kill_brick(0);
    cluster.kill_brick(1);
    cluster.kill_brick(2);
    let (b0, b1) = (cluster.brick_dir(0), cluster.brick_dir(1));
    let gfid = gfid_hex(&b0.join("f"));
    let raw = xattr::get(&b0.join("f"), "trusted.brickfs.gfid").unwrap();
    let self_blame = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    for b in [&b0, &b1] {
        OpenOptions::new()
            .write(true)
            .open(b.join("f"))
            .unwrap()
            .write_all_at(b"XYZ", 4)
            .unwrap();
        let mut journal = OpenOptions::new()
            .append(true)
            .create(true)
            .open(b.join(".brickfs/indices/dirty.log"))
            .unwrap();
        journal.write_all(b"D").unwrap();
        journal.write_all(&raw).unwrap();
    }
    xattr::set(&b0.join("f"), "trusted.brickfs.pending.0", &self_blame).unwrap();
    File::create(b0.join(".brickfs/indices/xattrop").join(&gfid)).unwrap();
    cluster.restart_brick(0);
    cluster.restart_brick(1);

    let run = cluster.heal_cli(&[]);
    assert!(
        fs::read(b0.join("f")).unwrap() == b"keptXYZ"
            && fs::read(b1.join("f")).unwrap() == b"keptXYZ",
        "the two copies that agree were changed:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    let (data, _, _) = pending_counts(&b1.join("f"), 2);
    assert!(
        data >= 1,
        "brick 2 is not accused after the heal with it down:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    cluster.restart_brick(2);
    let _heald = cluster.start_heald(1);
    assert_healed(&cluster);
    assert_eq!(
        fs::read(cluster.brick_dir(2).join("f")).unwrap(),
        b"keptXYZ"
    );
}

/// The (data, metadata, entry) counters the brick holding `path` keeps
/// against replica `against`.
fn pending_counts(path: &Path, against: usize) -> (u32, u32, u32) {
    let buf = match xattr::get(path, &format!("trusted.brickfs.pending.{against}")) {
        Ok(v) if v.len() == 12 => v,
        _ => return (0, 0, 0),
    };
    let word = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    (word(0), word(4), word(8))
}
