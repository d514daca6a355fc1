//! Two FUSE clients sharing files the way applications on a ReadWriteMany
//! volume do: a lock holder sees what the last holder wrote, an open sees
//! what another client closed before it, and O_APPEND writes from several
//! clients never land on each other. Both mounts keep the default 1 s
//! attribute and entry caches: coherence must not depend on waiting them out.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use tests::cluster::TestCluster;

const SETTLE: Duration = Duration::from_secs(10);

/// F_SETLKW of the whole file.
fn lock_all(f: &File, typ: i32) {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLKW, &fl) };
    assert_eq!(rc, 0, "fcntl: {}", std::io::Error::last_os_error());
}

/// The counter file: one whole page, so that a write leaves the writer's
/// page cached and up to date (a partial write would make the kernel read
/// the page again anyway and hide a stale cache).
const PAGE: usize = 4096;

fn counter_page(v: u64) -> Vec<u8> {
    format!("{v:<width$}", width = PAGE).into_bytes()
}

/// `rounds` times: lock, read the counter, write it plus one, unlock. The
/// file stays open, as a database keeps its file open: only the lock can
/// tell this client that its cached pages are old.
fn increment(path: PathBuf, rounds: u32) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        for _ in 0..rounds {
            lock_all(&f, libc::F_WRLCK);
            let mut buf = vec![0u8; PAGE];
            let n = f.read_at(&mut buf, 0).unwrap();
            let text = std::str::from_utf8(&buf[..n]).unwrap().trim();
            let v: u64 = text.parse().unwrap_or_else(|_| panic!("counter {text:?}"));
            f.write_all_at(&counter_page(v + 1), 0).unwrap();
            lock_all(&f, libc::F_UNLCK);
        }
    })
}

#[test]
fn a_lock_holder_sees_every_update_of_the_previous_holder() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    fs::write(a.join("counter"), counter_page(0)).unwrap();
    // The other mount has the file (size, pages) in its caches before the
    // race starts.
    assert_eq!(fs::read(b.join("counter")).unwrap().len(), PAGE);
    let rounds = 150;
    let ta = increment(a.join("counter"), rounds);
    let tb = increment(b.join("counter"), rounds);
    ta.join().expect("client a");
    tb.join().expect("client b");
    for m in [&a, &b] {
        let f = File::open(m.join("counter")).unwrap();
        lock_all(&f, libc::F_RDLCK);
        let mut buf = vec![0u8; PAGE];
        let n = f.read_at(&mut buf, 0).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap().trim(),
            (2 * rounds).to_string(),
            "no increment may be lost"
        );
    }
    cluster.assert_replicas_identical(SETTLE);
}

/// A SQLite writer on each mount, committing one row per transaction:
/// SQLite orders its writers with fcntl locks and reads pages it cached
/// before each lock was taken, so every commit must be there at the end.
#[test]
fn sqlite_writers_on_two_mounts_lose_no_commit() {
    tests::require_python3_sqlite();
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    let script = cluster.root().join("writer.py");
    fs::write(
        &script,
        r#"import sqlite3, sys
path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = sqlite3.connect(path, timeout=120, isolation_level=None)
db.execute("create table if not exists t (who text, i int)")
failed = 0
for i in range(n):
    try:
        db.execute("begin immediate")
        db.execute("insert into t values (?, ?)", (who, i))
        db.execute("commit")
    except sqlite3.Error as e:
        failed += 1
        print("commit", i, "failed:", e, getattr(e, "sqlite_errorname", ""), file=sys.stderr)
        try:
            db.execute("rollback")
        except sqlite3.Error:
            pass
sys.exit(1 if failed else 0)
"#,
    )
    .unwrap();
    let db_a = a.join("app.db");
    let init = Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute('create table t (who text, i int)')")
        .arg(&db_a)
        .status()
        .unwrap();
    assert!(init.success());
    let rows = 120;
    let run = |db: PathBuf, who: &'static str| {
        let script = script.clone();
        thread::spawn(move || {
            Command::new("python3")
                .arg(&script)
                .arg(&db)
                .arg(who)
                .arg(rows.to_string())
                .output()
                .unwrap()
        })
    };
    let wa = run(db_a.clone(), "a");
    let wb = run(b.join("app.db"), "b");
    for (who, w) in [("a", wa), ("b", wb)] {
        let out = w.join().unwrap();
        assert!(
            out.status.success(),
            "writer {who}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let counted = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys; db=sqlite3.connect(sys.argv[1]); \
             print(db.execute('pragma integrity_check').fetchone()[0]); \
             print(sorted(db.execute('select who, count(distinct i) from t group by who').fetchall()))",
        )
        .arg(&db_a)
        .output()
        .unwrap();
    assert!(counted.status.success());
    assert_eq!(
        String::from_utf8_lossy(&counted.stdout),
        format!("ok\n[('a', {rows}), ('b', {rows})]\n")
    );
}

/// `n` records of `who`, each one O_APPEND write.
fn append_records(path: PathBuf, who: &'static str, n: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(&path)
            .unwrap();
        for i in 0..n {
            f.write_all(format!("{who}-{i:05}-{}\n", "x".repeat(40)).as_bytes())
                .unwrap();
        }
    })
}

#[test]
fn appends_from_two_mounts_each_land_once_and_whole() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    fs::write(a.join("log"), b"").unwrap();
    let n = 600;
    let ta = append_records(a.join("log"), "a", n);
    let tb = append_records(b.join("log"), "b", n);
    ta.join().expect("appender a");
    tb.join().expect("appender b");
    let text = fs::read_to_string(b.join("log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 * n, "every record once");
    let distinct: BTreeSet<&str> = lines.iter().copied().collect();
    assert_eq!(distinct.len(), 2 * n, "no record twice");
    for line in &lines {
        let (who, rest) = line.split_once('-').expect("a whole record");
        assert!(matches!(who, "a" | "b"), "{line:?}");
        assert_eq!(rest.len(), 5 + 1 + 40, "torn record {line:?}");
    }
    // Each writer's records are in its own order.
    for who in ["a-", "b-"] {
        let mine: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with(who))
            .collect();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(mine, sorted);
    }
    assert_eq!(
        fs::metadata(a.join("log")).unwrap().len(),
        text.len() as u64
    );
    cluster.assert_replicas_identical(SETTLE);
}

fn read(p: &Path) -> std::io::Result<Vec<u8>> {
    fs::read(p)
}

#[test]
fn an_open_sees_what_another_client_closed_before_it() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    fs::write(a.join("f"), b"short").unwrap();
    // b caches the name, the size and the pages.
    assert_eq!(read(&b.join("f")).unwrap(), b"short");
    assert_eq!(fs::metadata(b.join("f")).unwrap().len(), 5);

    // Grown, overwritten and shrunk by a: b's next open sees each at once
    // (well inside its 1 s caches).
    fs::write(a.join("f"), b"a longer content").unwrap();
    assert_eq!(read(&b.join("f")).unwrap(), b"a longer content");
    fs::write(a.join("f"), b"A LONGER CONTENT").unwrap();
    assert_eq!(read(&b.join("f")).unwrap(), b"A LONGER CONTENT");
    fs::write(a.join("f"), b"tiny").unwrap();
    assert_eq!(read(&b.join("f")).unwrap(), b"tiny");

    // Removed by a: b's open fails as on one host (ENOENT), although b's
    // name cache still holds the file.
    assert!(b.join("f").exists());
    fs::remove_file(a.join("f")).unwrap();
    let e = File::open(b.join("f")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
    // Made again by a: b opens the new file.
    fs::write(a.join("f"), b"new").unwrap();
    assert_eq!(read(&b.join("f")).unwrap(), b"new");
}

/// A brick hangs while a writes and closes a file, so a's write goes to
/// the other two and leaves brick 0 stale; the brick resumes and b, which
/// never saw it fail, opens the file at once. b's last pings (once a
/// second) still said every heal index was empty, so only an open that
/// asks two of the three replicas finds brick 0 stale
/// (`Layer::getattr_to_open`): the
/// one-brick fast path read brick 0's copy here, which had only the first
/// megabyte.
#[test]
fn an_open_right_after_a_close_that_missed_a_brick_reads_the_current_copy() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    for round in 0..3u8 {
        let name = format!("f{round}");
        fs::write(a.join(&name), b"").unwrap();
        // b knows the file, empty, from every brick.
        assert_eq!(read(&b.join(&name)).unwrap(), b"");
        // More than the socket buffers hold: the brick, resumed, cannot
        // read the whole write of the connection a gave up on and drops it.
        let data = vec![b'a' + round; 16 << 20];
        cluster.stop_brick(0);
        let mut f = OpenOptions::new().write(true).open(a.join(&name)).unwrap();
        f.write_all(&data).unwrap();
        drop(f);
        cluster.cont_brick(0);
        let got = read(&b.join(&name)).unwrap();
        assert!(
            got == data,
            "round {round}: b read {} bytes right after a closed {} (brick 0 missed them)",
            got.len(),
            data.len()
        );
    }
    let _heald = cluster.start_heald(1);
    cluster.assert_replicas_identical(Duration::from_secs(30));
}

/// As above, and the second brick the open asks hangs as b opens: the
/// open must hear from another brick in its place (the third, which has
/// the write and blames brick 0), not settle for brick 0's answer alone.
#[test]
fn an_open_whose_second_brick_hangs_still_finds_the_stale_copy() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    fs::write(a.join("f"), b"").unwrap();
    assert_eq!(read(&b.join("f")).unwrap(), b"");
    // More than the socket buffers hold (see above).
    let data = vec![b'x'; 16 << 20];
    cluster.stop_brick(0);
    let mut f = OpenOptions::new().write(true).open(a.join("f")).unwrap();
    f.write_all(&data).unwrap();
    drop(f);
    cluster.cont_brick(0);
    // b still counts brick 1 as up: its getattr waits out the op timeout.
    cluster.stop_brick(1);
    let got = read(&b.join("f"));
    cluster.cont_brick(1);
    let got = got.unwrap();
    assert!(
        got == data,
        "b read {} bytes of the {} a closed (brick 0 missed them, brick 1 hung)",
        got.len(),
        data.len()
    );
    let _heald = cluster.start_heald(1);
    cluster.assert_replicas_identical(Duration::from_secs(30));
}

/// Appends go on with one brick of three down, land once each, and the
/// brick that missed them is healed to the same file.
#[test]
fn appends_go_on_with_a_brick_down_and_heal() {
    use std::io::Write;
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(a.join("log"))
        .unwrap();
    f.write_all(b"before\n").unwrap();
    cluster.kill_brick(0);
    for i in 0..20 {
        f.write_all(format!("down-{i}\n").as_bytes())
            .unwrap_or_else(|e| panic!("append {i} with one brick down: {e}"));
    }
    drop(f);
    // Opened afresh while the brick is down, from another mount too.
    let b = cluster.mount();
    for m in [&a, &b] {
        let mut g = fs::OpenOptions::new()
            .append(true)
            .open(m.join("log"))
            .unwrap();
        g.write_all(b"reopened\n")
            .unwrap_or_else(|e| panic!("append after an open with one brick down: {e}"));
    }
    cluster.restart_brick(0);
    let _heald = cluster.start_heald(1);
    let text = fs::read_to_string(a.join("log")).unwrap();
    assert_eq!(text.lines().count(), 23, "{text}");
    cluster.assert_replicas_identical(SETTLE);
}
