//! Replication under faults: real bricks killed (SIGKILL) or hung (SIGSTOP)
//! under a real FUSE mount, and two clients writing the same objects.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tests::cluster::TestCluster;
use tests::xattr;

const SETTLE: Duration = Duration::from_secs(10);
/// The harness mounts with `--op-timeout 2`.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Changelog counters (data, metadata, entry) that the brick holding `path`
/// keeps against replica `blamed`.
fn pending(path: &Path, blamed: usize) -> (u32, u32, u32) {
    let buf = match xattr::get(path, &format!("trusted.brickfs.pending.{blamed}")) {
        Ok(v) if v.len() == 12 => v,
        _ => return (0, 0, 0),
    };
    let word = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    (word(0), word(4), word(8))
}

/// A new file holding `data`, fsynced, left open for writing.
fn synced_file(path: &Path, data: &[u8]) -> File {
    let f = File::create(path).unwrap();
    f.write_all_at(data, 0).unwrap();
    f.sync_all().unwrap();
    f
}

/// For a write that can reach only one brick (the others hang or are down).
fn assert_reaching_one_brick_fails(f: &File, data: &[u8], offset: u64) {
    let failed = f.write_all_at(data, offset).and_then(|()| f.sync_all());
    assert!(
        failed.is_err(),
        "a write that reached one brick of three succeeded"
    );
}

/// Writes `data` at `offset` and fsyncs, again and again until that
/// succeeds (bricks coming back) or `SETTLE` passes; then the last error.
fn write_synced_once_it_can(f: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    let mut last = Ok(());
    tests::wait_until(SETTLE, || {
        last = f.write_all_at(data, offset).and_then(|()| f.sync_all());
        last.is_ok()
    });
    last
}

fn heal_index_len(brick: &Path) -> usize {
    fs::read_dir(brick.join(".brickfs/indices/xattrop"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn writes_go_on_when_a_brick_is_killed_and_the_dead_brick_is_blamed() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    fs::create_dir(m.join("stream")).unwrap();
    let mut log = File::create(m.join("stream.log")).unwrap();
    let block = vec![0x5au8; 16 * 1024];
    for i in 0..200 {
        if i == 60 {
            cluster.kill_brick(1);
        }
        fs::write(m.join(format!("stream/f{i:03}")), &block)
            .unwrap_or_else(|e| panic!("write {i} failed after brick 1 was killed: {e}"));
        writeln!(log, "line {i}").unwrap();
    }
    log.sync_all().unwrap();
    drop(log);
    for i in 0..200 {
        assert_eq!(fs::read(m.join(format!("stream/f{i:03}"))).unwrap(), block);
    }

    // The survivors hold everything and agree with each other.
    assert_eq!(cluster.tree_digest(0), cluster.tree_digest(2));
    for b in [0, 2] {
        let dir = cluster.brick_dir(b);
        assert!(
            dir.join("stream/f199").exists(),
            "brick {b} has the late files"
        );
        // Entries created while brick 1 was away are blamed on the parent,
        // the appended log on the file itself.
        let (_, _, entry) = pending(&dir.join("stream"), 1);
        assert!(entry >= 1, "brick {b} does not blame brick 1 for entries");
        let (data, _, _) = pending(&dir.join("stream.log"), 1);
        assert!(data >= 1, "brick {b} does not blame brick 1 for data");
        assert!(heal_index_len(&dir) >= 2, "brick {b} heal index is empty");
        // Nobody blames the survivors.
        assert_eq!(pending(&dir.join("stream"), 0), (0, 0, 0));
        assert_eq!(pending(&dir.join("stream"), 2), (0, 0, 0));
    }
    assert!(!cluster.brick_dir(1).join("stream/f199").exists());
}

#[test]
fn two_bricks_down_makes_the_volume_read_only_but_readable() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    fs::create_dir(m.join("dir")).unwrap();
    fs::write(m.join("dir/keep"), b"still here").unwrap();
    cluster.kill_brick(0);
    cluster.kill_brick(2);

    // With write-behind and held creates a create and its write may be
    // answered before the mount has seen the bricks die (their kill is not
    // instant news): the fsync is where a failure is certain to show.
    let e = File::create(m.join("dir/new"))
        .and_then(|f| f.write_all_at(b"x", 0).and_then(|()| f.sync_all()))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "create: {e}");
    let e = fs::create_dir(m.join("newdir")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "mkdir: {e}");
    let e = OpenOptions::new()
        .write(true)
        .open(m.join("dir/keep"))
        .and_then(|f| f.write_all_at(b"X", 0).and_then(|()| f.sync_all()))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "write: {e}");
    let e = fs::remove_file(m.join("dir/keep")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "unlink: {e}");

    assert_eq!(fs::read(m.join("dir/keep")).unwrap(), b"still here");
    let names: Vec<_> = fs::read_dir(m.join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("keep")]);

    // Quorum back: writes work again.
    cluster.restart_brick(0);
    let ok = tests::wait_until(SETTLE, || fs::write(m.join("dir/after"), b"y").is_ok());
    assert!(ok, "writes did not resume after a brick returned");
}

#[test]
fn a_hung_brick_does_not_hang_the_mount() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    fs::write(m.join("before"), b"before").unwrap();
    cluster.stop_brick(0);

    // Each operation finishes within the op timeout (plus slack for a
    // loaded CI machine), then the mount goes on without the hung brick.
    let limit = OP_TIMEOUT * 2 + Duration::from_secs(3);
    let t = Instant::now();
    fs::write(m.join("during"), b"during").unwrap();
    assert!(t.elapsed() < limit, "first write took {:?}", t.elapsed());
    let t = Instant::now();
    for i in 0..20 {
        fs::write(m.join(format!("more{i}")), b"m").unwrap();
    }
    assert_eq!(fs::read(m.join("before")).unwrap(), b"before");
    let listed = fs::read_dir(m.path()).unwrap().count();
    assert!(listed >= 22);
    assert!(
        t.elapsed() < limit,
        "later ops still wait on the hung brick: {:?}",
        t.elapsed()
    );
    cluster.cont_brick(0);
    // The survivors blame the brick that hung.
    for b in [1, 2] {
        let (_, _, entry) = pending(&cluster.brick_dir(b), 0);
        assert!(entry >= 1, "brick {b} does not blame the hung brick");
    }
}

#[test]
fn two_clients_writing_the_same_file_and_directory_end_identical() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    fs::create_dir(a.join("common")).unwrap();
    let shared = a.join("shared.bin");
    File::create(&shared).unwrap().set_len(256 * 1024).unwrap();

    let failures = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (who, mount) in [("a", a.path().to_path_buf()), ("b", b.path().to_path_buf())] {
        let failures = failures.clone();
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let f = OpenOptions::new()
                .write(true)
                .open(mount.join("shared.bin"))
                .expect("open shared file");
            let fill = if who == "a" { 0xaa } else { 0xbb };
            for i in 0..150u64 {
                // Overlapping ranges: both clients keep hitting the same blocks.
                let off = (i * 12_288) % (240 * 1024);
                let buf = vec![fill; 16 * 1024];
                if f.write_all_at(&buf, off).is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                if fs::write(mount.join(format!("common/{who}{i:03}")), b"entry").is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }));
    }
    for w in workers {
        if w.join().is_err() {
            stop.store(true, Ordering::Relaxed);
        }
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "some operations failed"
    );
    for m in [&a, &b] {
        let n = fs::read_dir(m.join("common")).unwrap().count();
        assert_eq!(n, 300, "{} lists {n} entries", m.path().display());
    }
    // Both clients see the same bytes and the replicas agree to the byte.
    assert_eq!(
        fs::read(&shared).unwrap(),
        fs::read(b.join("shared.bin")).unwrap()
    );
    cluster.assert_replicas_identical(SETTLE);
}

#[test]
fn a_create_that_misses_quorum_leaves_no_trace_on_the_minority() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    fs::create_dir(m.join("d")).unwrap();
    // Hold the directory's replication lock (eager) so the next create is
    // sent straight away, then hang two bricks: the create can only reach
    // the third one.
    fs::write(m.join("d/warm"), b"w").unwrap();
    cluster.stop_brick(0);
    cluster.stop_brick(2);
    // With write-behind the create may be answered at once and sent with
    // the data (client/src/replicate/held.rs): then the fsync reports it.
    let written = (|| {
        let mut f = fs::File::create(m.join("d/lost"))?;
        f.write_all(b"x")?;
        f.sync_all()
    })();
    let e = written.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    assert!(
        !cluster.brick_dir(1).join("d/lost").exists(),
        "a create that failed is visible on the minority brick"
    );
    cluster.cont_brick(0);
    cluster.cont_brick(2);
    let back = tests::wait_until(SETTLE, || fs::write(m.join("d/after"), b"y").is_ok());
    assert!(back, "writes did not resume");
    // The hung bricks may still run the create they had queued when they
    // resume (a timed-out request is not a refused one, as with NFS); then
    // the majority has it and heal brings it to brick 1. What must never
    // happen is the minority keeping it alone.
    let on = |i: usize| cluster.brick_dir(i).join("d/lost").exists();
    assert!(
        !on(1) || (on(0) && on(2)),
        "the failed create survives on the minority brick alone"
    );
}

#[test]
fn a_write_applied_only_on_a_minority_never_becomes_the_heal_source() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    let path = m.join("f");
    let f = synced_file(&path, b"kept");
    // The file's replication lock is still held (eager), so the next write
    // is sent at once to all three; two of them hang: only brick 0 applies
    // it, and its fsync fails.
    cluster.stop_brick(1);
    cluster.stop_brick(2);
    assert_reaching_one_brick_fails(&f, b" and lost", 4);
    // Killed while hung, they never run what they had queued.
    cluster.kill_brick(1);
    cluster.kill_brick(2);
    let (data, _, _) = pending(&cluster.brick_dir(0).join("f"), 0);
    assert!(
        data >= 1,
        "brick 0 does not accuse itself of the failed write"
    );
    // With two bricks down the file is still readable: brick 0's copy has
    // every write that succeeded (what the failed one left is unspecified).
    let seen = fs::read(&path).expect("reading the file with two bricks down");
    assert!(
        seen.starts_with(b"kept"),
        "read with two bricks down: {:?}",
        String::from_utf8_lossy(&seen)
    );
    // Its copy is no source, yet no split-brain either: the good copies are
    // on the bricks that are down.
    let info = cluster.heal_cli(&["info", "split-brain"]);
    assert!(
        info.stdout.contains("split-brain: 0"),
        "with the good copies down:\n{}\n{}",
        info.stdout,
        info.stderr
    );
    // Brick 1 returns first: the next write reaches bricks 0 and 1 and
    // blames 2, so heal has two unblamed copies to choose a source from,
    // one of which holds the failed write.
    cluster.restart_brick(1);
    if let Err(e) = write_synced_once_it_can(&f, b" again", 4) {
        panic!("writes did not resume once brick 1 was back: {e}");
    }
    drop(f);
    cluster.restart_brick(2);
    let _heald = cluster.start_heald(1);
    cluster.assert_replicas_identical(SETTLE);
    for b in 0..3 {
        let copy = fs::read(cluster.brick_dir(b).join("f")).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&copy),
            "kept again",
            "brick {b}'s copy after heal: the failed write's bytes were taken as a source"
        );
    }
}

#[test]
fn writes_go_on_with_one_brick_down_when_the_copies_up_are_one_behind_and_one_failed() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    let path = m.join("f");
    let f = synced_file(&path, b"kept");
    // Brick 1 misses a write: bricks 0 and 2 blame it.
    cluster.kill_brick(1);
    f.write_all_at(b"A", 4).unwrap();
    f.sync_all().unwrap();
    cluster.restart_brick(1);
    // Once this client holds brick 1's lock again, its writes reach it.
    let back = tests::wait_until(SETTLE, || {
        f.write_all_at(b"A", 4).and_then(|()| f.sync_all()).is_ok()
            && fs::read(cluster.brick_dir(1).join("f")).is_ok_and(|c| c == b"keptA")
    });
    assert!(back, "brick 1 did not get the file's writes again");
    // The next write reaches brick 0 alone (1 and 2 hang, then are killed).
    cluster.stop_brick(1);
    cluster.stop_brick(2);
    assert_reaching_one_brick_fails(&f, b"BBBB", 5);
    cluster.kill_brick(1);
    cluster.kill_brick(2);
    cluster.restart_brick(1);
    // Brick 0 accuses itself of the failed write, brick 1 is still blamed
    // for the first one, brick 2 is down: brick 0's copy has every write
    // that succeeded, so writes go on (one brick down, TARGET invariant 2).
    if let Err(e) = write_synced_once_it_can(&f, b"C", 9) {
        panic!("no write succeeded with brick 2 down: {e}");
    }
    drop(f);
    cluster.restart_brick(2);
    let _heald = cluster.start_heald(1);
    cluster.assert_replicas_identical(SETTLE);
    // What the failed write left (bytes 5..9) is unspecified; the rest is
    // what succeeded.
    let copy = fs::read(cluster.brick_dir(2).join("f")).unwrap();
    assert_eq!(copy.len(), 10, "{:?}", String::from_utf8_lossy(&copy));
    assert_eq!(&copy[..5], b"keptA");
    assert_eq!(copy[9], b'C');
}

#[test]
fn a_failed_write_on_a_file_made_while_a_brick_was_down_is_not_copied_to_it() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    cluster.kill_brick(2);
    fs::create_dir(m.join("d")).unwrap();
    let f = synced_file(&m.join("d/f"), b"kept");
    // Brick 2 is down and brick 1 hangs: the next write reaches brick 0
    // alone.
    cluster.stop_brick(1);
    assert_reaching_one_brick_fails(&f, b"lost", 4);
    drop(f);
    cluster.kill_brick(1);
    cluster.restart_brick(1);
    cluster.restart_brick(2);
    // Brick 2 lacks the file: the directory's heal makes it there and
    // fills it, from a copy without the failed write.
    let _heald = cluster.start_heald(1);
    cluster.assert_replicas_identical(SETTLE);
    for b in 0..3 {
        let copy = fs::read(cluster.brick_dir(b).join("d/f")).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&copy),
            "kept",
            "brick {b}'s copy after heal"
        );
    }
}

#[test]
fn a_write_that_failed_does_not_accuse_the_brick_that_was_down() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount();
    let f = synced_file(&m.join("f"), b"kept");
    // Brick 2 is down, so the next write carries its blame; brick 1 hangs,
    // so only brick 0 applies the write, which fails.
    cluster.kill_brick(2);
    cluster.stop_brick(1);
    assert_reaching_one_brick_fails(&f, b"lost", 4);
    let b0 = cluster.brick_dir(0).join("f");
    assert_eq!(
        pending(&b0, 2).0,
        0,
        "brick 0 accuses brick 2 of missing a write that failed"
    );
    assert!(pending(&b0, 0).0 >= 1, "brick 0 does not accuse itself");
    cluster.kill_brick(1);
    cluster.restart_brick(2);
    // Brick 1 down: a write reaches bricks 0 and 2 and blames brick 1.
    if let Err(e) = write_synced_once_it_can(&f, b"C", 8) {
        panic!("no write succeeded with brick 1 down: {e}");
    }
    drop(f);
    cluster.restart_brick(1);
    let _heald = cluster.start_heald(1);
    cluster.assert_replicas_identical(SETTLE);
    // Brick 2 had every write that succeeded and not the failed one: with
    // a false accusation it would have been a sink and brick 0 the source.
    let copy = fs::read(cluster.brick_dir(1).join("f")).unwrap();
    assert_eq!(
        copy,
        b"kept\0\0\0\0C",
        "{:?}",
        String::from_utf8_lossy(&copy)
    );
}

#[test]
fn a_client_killed_while_holding_locks_leaves_none_behind() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    fs::write(a.join("held"), b"from a").unwrap();
    // a now holds the file's and the root's replication locks (eager).
    let f = OpenOptions::new().write(true).open(a.join("held")).unwrap();
    f.write_all_at(b"A", 0).unwrap();
    a.kill();
    drop(f);
    // b must get the locks as soon as the bricks see a's connections close,
    // well within one op timeout.
    let t = Instant::now();
    fs::write(b.join("held"), b"from b").unwrap();
    fs::write(b.join("other"), b"new entry").unwrap();
    assert!(
        t.elapsed() < OP_TIMEOUT * 2,
        "b waited {:?} for a's locks",
        t.elapsed()
    );
    assert_eq!(fs::read(b.join("held")).unwrap(), b"from b");
    cluster.assert_replicas_identical(SETTLE);
}

#[test]
fn a_hung_client_loses_its_locks_after_the_idle_timeout() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    fs::write(a.join("contended"), b"a").unwrap();
    // a holds the file's and the root's replication locks; then its host
    // "hangs": no pings, no close, the connections stay open.
    let pid = a.pid().expect("mount pid") as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let t = Instant::now();
    let wrote = fs::write(b.join("contended"), b"b");
    let waited = t.elapsed();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    wrote.unwrap();
    assert!(
        waited < Duration::from_secs(30),
        "b waited {waited:?} for the locks of a hung client"
    );
    assert_eq!(fs::read(b.join("contended")).unwrap(), b"b");
}

#[test]
fn names_another_client_adds_are_seen_in_a_directory_this_client_made() {
    // The creator of a directory answers "no such name" itself while it
    // holds the directory's lock; another client's create must end that.
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    fs::create_dir(a.join("mine")).unwrap();
    fs::write(a.join("mine/from-a"), b"a").unwrap();
    assert!(!a.join("mine/from-b").exists());
    fs::write(b.join("mine/from-b"), b"b").unwrap();
    assert_eq!(fs::read(a.join("mine/from-b")).unwrap(), b"b");
    fs::write(a.join("mine/again-a"), b"a").unwrap();
    fs::rename(b.join("mine/from-a"), b.join("mine/renamed-by-b")).unwrap();
    assert!(tests::wait_until(SETTLE, || a
        .join("mine/renamed-by-b")
        .exists()));
    let mut names: Vec<_> = fs::read_dir(a.join("mine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["again-a", "from-b", "renamed-by-b"]);
    cluster.assert_replicas_identical(SETTLE);
}
