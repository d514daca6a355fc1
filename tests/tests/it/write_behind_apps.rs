//! Write-behind against what applications do with files: descriptors of
//! one file opened and closed by others while writes are queued, two
//! clients handing a file over by lock and by close, truncates and appends
//! between queued writes, stat racing them, SQLite on two mounts, a writer
//! or the mount killed after fsync, and quorum lost under queued writes. Each test
//! checks what TARGET.md invariant 1 promises: write() may return early,
//! but fsync, close and unlock return only once a quorum applied every
//! earlier write, report a write that failed, and the next opener or lock
//! holder on any client sees the data.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::{AsRawFd, IntoRawFd};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tests::data::{model_write, pattern};
use tests::volume::StoreVolume;
use tests::{wait_until, TestCluster, NO_CACHE};

const MIB: u64 = 1 << 20;
const CHUNK: usize = 64 * 1024;
const SETTLE: Duration = Duration::from_secs(30);

/// xorshift64: the same sequence of offsets and sizes every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// fcntl(F_SETLKW) of the whole file: F_WRLCK, F_RDLCK or F_UNLCK.
fn lock_all(f: &File, typ: i32) {
    // SAFETY: a zeroed flock is a valid argument; every field we need is set.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fcntl on a descriptor we own, with a flock that outlives it.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLKW, &fl) };
    assert_eq!(rc, 0, "fcntl lock {typ}: {}", io::Error::last_os_error());
}

/// close(2), with its result (dropping a `File` throws it away).
fn close(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: closing the descriptor we own, once.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Everything `f` reads from offset 0 to its end of file.
fn read_all(f: &File) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = f
            .read_at(&mut buf, out.len() as u64)
            .unwrap_or_else(|e| panic!("read at {}: {e}", out.len()));
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Panics with where `got` and `want` first differ.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: {} bytes read, {} expected; first difference at byte {at} (read {:?}, expected {:?})",
        got.len(),
        want.len(),
        got.get(at),
        want.get(at)
    );
}

/// What a pwrite of `data` at `offset` makes of the file `model`.
/// A child process of this test (python3, sqlite), SIGKILLed and reaped on
/// drop, so a failing test leaves nothing running on its mounts.
struct Proc {
    child: Child,
    what: String,
}

impl Proc {
    fn spawn(mut cmd: Command, what: impl Into<String>) -> Proc {
        let what = what.into();
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        Proc { child, what }
    }

    /// Its stdout, line by line, as they come.
    fn lines(&mut self) -> mpsc::Receiver<String> {
        let out = self.child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    }

    /// A line on its stdin.
    fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin piped");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("telling {} {line:?}: {e}", self.what));
    }

    /// The next line on `lines`, within `timeout`.
    fn next_line(&mut self, lines: &mpsc::Receiver<String>, timeout: Duration) -> String {
        match lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(e) => {
                self.kill();
                let err = self.stderr();
                panic!(
                    "{} printed nothing more within {timeout:?} ({e}); stderr:\n{err}",
                    self.what
                );
            }
        }
    }

    /// Waits for the line `want` on `lines`, at most `timeout`.
    fn expect_line(&mut self, lines: &mpsc::Receiver<String>, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line == want => return,
                Ok(_) => {}
                Err(_) => {
                    self.kill();
                    let err = self.stderr();
                    panic!(
                        "{} never printed {want:?} within {timeout:?}; stderr:\n{err}",
                        self.what
                    );
                }
            }
        }
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Waits up to `timeout` for it to exit; kills it after.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        match status {
            Some(s) => s,
            None => {
                self.kill();
                let err = self.stderr();
                panic!("{} still ran after {timeout:?}; stderr:\n{err}", self.what);
            }
        }
    }

    /// SIGKILL now, and reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A file in a sub-volume of 4 MiB with a write the bricks will refuse
/// queued and acknowledged: 3 MiB within the limit, then 1 MiB at 4 MiB
/// (the apparent size would be 5 MiB). No write follows it, so no later
/// write() hears of the refusal either: only the writer's fsync or close
/// can.
fn file_with_a_refused_write_queued(m: &tests::Mount) -> File {
    let writer = File::create(m.join("f")).unwrap();
    for i in 0..3u64 {
        writer
            .write_all_at(&pattern(i, MIB as usize), i * MIB)
            .unwrap_or_else(|e| panic!("write {i} within the limit: {e}"));
    }
    writer
        .write_all_at(&pattern(9, MIB as usize), 4 * MIB)
        .expect("the write past the limit is acknowledged (queued)");
    writer
}

/// Others close the file while the writer's refused write is queued: a
/// reader (a backup tool, `cat`, an indexer) opening and closing it, and
/// the writer itself starting a program (every fork+exec closes the
/// child's copies of the writer's O_CLOEXEC descriptors, and each close is
/// a FUSE flush). The failure belongs to the writer's own fsync or close
/// (invariant 1: "a write that failed is reported by that call"); a flush
/// nobody will look at must not take it away, or the writer is told its
/// data is safe when the bricks refused part of it.
#[test]
fn neither_a_readers_close_nor_a_spawned_program_takes_the_writers_error() {
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    v.ok(&["subvolume", "create", "test", "reader", "--size", "4Mi"]);
    v.ok(&["subvolume", "create", "test", "spawner", "--size", "4Mi"]);
    let by_reader = cluster.mount_from_store_with_args(&v.url, "test/reader", &NO_CACHE);
    let by_spawn = cluster.mount_from_store_with_args(&v.url, "test/spawner", &NO_CACHE);
    let told = |r: &io::Result<()>| matches!(r, Err(e) if e.raw_os_error() == Some(libc::EDQUOT));
    let mut failures = Vec::new();

    let writer = file_with_a_refused_write_queued(&by_reader);
    let reader = File::open(by_reader.join("f")).expect("open for reading");
    let reader_close = close(reader);
    let (fsync, writer_close) = (writer.sync_all(), close(writer));
    if !(told(&fsync) || told(&writer_close)) {
        failures.push(format!(
            "a reader opened and closed the file: the writer's fsync returned {fsync:?}, \
             its close {writer_close:?}; the reader's close returned {reader_close:?}"
        ));
    }

    let writer = file_with_a_refused_write_queued(&by_spawn);
    let spawned = Command::new("true").status().expect("running true");
    assert!(spawned.success());
    let (fsync, writer_close) = (writer.sync_all(), close(writer));
    if !(told(&fsync) || told(&writer_close)) {
        failures.push(format!(
            "the writer ran a program (`true`): its fsync returned {fsync:?}, its close \
             {writer_close:?}"
        ));
    }

    for m in [&by_reader, &by_spawn] {
        let got = fs::read(m.join("f")).unwrap();
        assert!(
            got.len() as u64 <= 4 * MIB,
            "{} bytes past a 4 MiB limit",
            got.len()
        );
    }
    assert!(
        failures.is_empty(),
        "the bricks refused a write and the writer was never told:\n  {}",
        failures.join("\n  ")
    );
}

fn open_rw(p: PathBuf) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
}

/// Two clients hand one file back and forth by an fcntl lock. Both keep
/// it open all along, as a database does: only the lock tells a client
/// that what it cached is old. Each turn the holder must find exactly
/// what the other wrote before its unlock (size and every byte), then
/// writes of every size itself (one byte to 2.5 MiB, unaligned, past the
/// end), all acknowledged early, and unlocks.
#[test]
fn a_lock_holder_on_another_mount_sees_every_byte_written_under_the_lock() {
    let cluster = TestCluster::start(3);
    // Default caches: coherence must not rest on waiting them out.
    let a = cluster.mount();
    let b = cluster.mount();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    fs::write(a.join("locked"), b"").unwrap();
    let fa = open_rw(a.join("locked"));
    let fb = open_rw(b.join("locked"));
    let mut model: Vec<u8> = Vec::new();
    let limit = 6 * MIB;
    for round in 0..24u64 {
        let (f, who) = if round % 2 == 0 {
            (&fa, "a")
        } else {
            (&fb, "b")
        };
        lock_all(f, libc::F_WRLCK);
        let size = f.metadata().unwrap().len();
        assert_eq!(
            size,
            model.len() as u64,
            "lock round {round}: mount {who} was granted the lock and sees the wrong size"
        );
        assert_same(
            &read_all(f),
            &model,
            &format!("lock round {round}: mount {who} under the lock"),
        );
        for w in 0..rng.range(1, 4) {
            let len = match rng.next() % 4 {
                0 => rng.range(1, 4096),
                1 => 4096 * rng.range(1, 16),
                2 => rng.range(1, 300_000),
                _ => rng.range(MIB, 5 * MIB / 2),
            };
            let offset = rng.range(0, model.len() as u64 + 65_536).min(limit - len);
            let data = pattern(round * 100 + w, len as usize);
            f.write_all_at(&data, offset).unwrap();
            model_write(&mut model, offset, &data);
        }
        lock_all(f, libc::F_UNLCK);
    }
    for (f, who) in [(&fa, "a"), (&fb, "b")] {
        lock_all(f, libc::F_RDLCK);
        assert_same(
            &read_all(f),
            &model,
            &format!("after the lock rounds, {who}"),
        );
        lock_all(f, libc::F_UNLCK);
    }
    close(fa).expect("close a");
    close(fb).expect("close b");
    cluster.assert_replicas_identical(SETTLE);
}

/// Two clients hand one file back and forth by close and open, in short
/// turns: each open must see the size and every byte the other client had
/// when it closed (close-to-open), then grows the file a little past its
/// end and changes a few bytes inside it (acknowledged early, drained by
/// the close).
#[test]
fn an_open_on_another_mount_sees_every_byte_closed_before_it() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    let mut model = pattern(7, 10_000);
    fs::write(a.join("handed"), &model).unwrap();
    for round in 0..30u64 {
        let (m, who) = if round % 2 == 0 { (&b, "b") } else { (&a, "a") };
        let f = open_rw(m.join("handed"));
        let size = f.metadata().unwrap().len();
        assert_eq!(
            size,
            model.len() as u64,
            "close round {round}: an open on mount {who} sees {size} bytes; \
             the other mount had closed the file at {} bytes",
            model.len()
        );
        assert_same(
            &read_all(&f),
            &model,
            &format!("close round {round}: mount {who} after its open"),
        );
        let inside = rng.range(0, model.len() as u64 - 1);
        let data = pattern(1000 + round, rng.range(1, 3000) as usize);
        f.write_all_at(&data, inside).unwrap();
        model_write(&mut model, inside, &data);
        let past = model.len() as u64 + rng.range(0, 2000);
        let data = pattern(2000 + round, rng.range(1, 30_000) as usize);
        f.write_all_at(&data, past).unwrap();
        model_write(&mut model, past, &data);
        close(f).unwrap_or_else(|e| panic!("close round {round} on {who}: {e}"));
    }
    cluster.assert_replicas_identical(SETTLE);
}

/// One mount, one file, three descriptors: pwrites (1 byte to 2.5 MiB,
/// anywhere up to past the end) through one, O_APPEND writes through a
/// second, ftruncate smaller and larger between them, and after every
/// step the size by fstat of each descriptor and by stat of the path, and
/// reads through the third, all against a model of the file. Then another
/// client reads the same file after the close.
#[test]
fn pwrites_appends_and_truncates_between_queued_writes_match_a_model() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let path = a.join("model");
    let fw = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    let mut fapp = OpenOptions::new().append(true).open(&path).unwrap();
    let fr = File::open(&path).unwrap();
    let mut model: Vec<u8> = Vec::new();
    let mut log: Vec<String> = Vec::new();
    let max = 8 * MIB as usize;
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let tail = |log: &[String]| log[log.len().saturating_sub(12)..].join("\n  ");
    for step in 0..400u64 {
        let pick = rng.next() % 100;
        if pick < 40 {
            let len = match rng.next() % 10 {
                0..=3 => rng.range(1, 5000),
                4..=5 => 4096 * rng.range(1, 16),
                6..=8 => rng.range(1, 200_000),
                _ => rng.range(MIB, 5 * MIB / 2),
            } as usize;
            let offset = rng
                .range(0, model.len() as u64 + 100_000)
                .min((max - len) as u64);
            let data = pattern(step, len);
            log.push(format!("{step}: pwrite {offset}+{len}"));
            fw.write_all_at(&data, offset).unwrap();
            model_write(&mut model, offset, &data);
        } else if pick < 55 && model.len() < max - 70_000 {
            let data = pattern(step, rng.range(1, 70_000) as usize);
            log.push(format!("{step}: append {} at {}", data.len(), model.len()));
            fapp.write_all(&data).unwrap();
            model.extend_from_slice(&data);
        } else if pick < 70 || model.len() > max - 70_000 {
            let size = if rng.chance(50) || model.len() > max - 400_000 {
                rng.range(0, model.len() as u64)
            } else {
                rng.range(model.len() as u64, model.len() as u64 + 300_000)
            };
            log.push(format!("{step}: ftruncate {} -> {size}", model.len()));
            fw.set_len(size).unwrap();
            model.resize(size as usize, 0);
        } else {
            let start = rng.range(0, model.len() as u64);
            let len = rng.range(1, 300_000) as usize;
            let mut buf = vec![0u8; len];
            let mut got = 0;
            while got < len {
                let n = fr.read_at(&mut buf[got..], start + got as u64).unwrap();
                if n == 0 {
                    break;
                }
                got += n;
            }
            let end = (start as usize + len).min(model.len());
            if buf[..got] != model[start as usize..end] {
                panic!(
                    "{step}: pread {start}+{len} differs from the model ({got} bytes read, {} expected); last steps:\n  {}",
                    end - start as usize,
                    tail(&log)
                );
            }
            continue;
        }
        let want = model.len() as u64;
        let sizes = [
            ("fstat of the pwrite fd", fw.metadata().unwrap().len()),
            ("fstat of the append fd", fapp.metadata().unwrap().len()),
            ("fstat of the read fd", fr.metadata().unwrap().len()),
            ("stat of the path", fs::metadata(&path).unwrap().len()),
        ];
        for (how, size) in sizes {
            assert_eq!(
                size,
                want,
                "{how} after step {step}; last steps:\n  {}",
                tail(&log)
            );
        }
    }
    assert_same(&read_all(&fr), &model, "the reader fd before close");
    close(fw).expect("close of the pwrite fd");
    close(fapp).expect("close of the append fd");
    close(fr).expect("close of the read fd");
    let b = cluster.mount_with_args(&NO_CACHE);
    assert_same(
        &fs::read(b.join("model")).unwrap(),
        &model,
        "another client after the close",
    );
    cluster.assert_replicas_identical(SETTLE);
}

/// A stat racing the writes: another thread fstats a descriptor of its own
/// on the same mount while the writer pwrites past the end (each write
/// starting inside a page, so the kernel sends it as two WRITEs) and
/// fstats after each write, while a third thread starts programs (each
/// closes its inherited copy of the writer's descriptor at exec: a FLUSH
/// that forgets the file's write-behind record). A stat begun after a
/// write returned must show at least the size that write made. Without
/// `write_behind/forgotten.rs` this failed 3 runs of 3 (a stat asked of a
/// brick before the last write reached it, answered after the record
/// was gone).
#[test]
fn a_stat_racing_split_writes_never_shows_less_than_was_written() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let raced = a.join("raced");
    let fw = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&raced)
        .unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let racer = std::thread::spawn({
        let (acked, stop, raced) = (acked.clone(), stop.0.clone(), raced.clone());
        move || {
            let r = File::open(&raced).unwrap();
            let (mut stats, mut short) = (0u64, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let want = acked.load(Ordering::SeqCst);
                let Ok(m) = r.metadata() else { break };
                stats += 1;
                if m.len() < want {
                    short.push((m.len(), want));
                }
                std::thread::yield_now();
            }
            (stats, short)
        }
    });
    // Programs started meanwhile (as other tests and any real host do) get
    // a copy of the writer's descriptor until their exec closes it, and
    // that close is a FUSE FLUSH of the file.
    let spawner = std::thread::spawn({
        let stop = stop.0.clone();
        move || {
            let mut spawned = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if std::process::Command::new("true").status().is_ok() {
                    spawned += 1;
                }
            }
            spawned
        }
    });
    let (mut end, mut short) = (0u64, Vec::new());
    let writes = 1000u64;
    for i in 0..writes {
        let offset = end + 1 + (i * 37) % 3000;
        let len = 2_000 + (i * 7919) % 150_000;
        fw.write_all_at(&pattern(i, len as usize), offset).unwrap();
        end = offset + len;
        acked.store(end, Ordering::SeqCst);
        let size = fw.metadata().unwrap().len();
        if size < end {
            short.push((i, size, end));
        }
    }
    drop(stop);
    let (stats, racing_short) = racer.join().expect("the racing stat thread");
    let spawned = spawner.join().expect("the thread starting programs");
    assert!(spawned > 0, "no program was started during the writes");
    close(fw).expect("close of the raced file");
    assert!(
        short.is_empty() && racing_short.is_empty(),
        "a stat begun after a write returned showed a smaller size: the writer's own \
         fstat {} of {writes} times (first (write, size, written): {:?}), another \
         descriptor's fstat {} of {stats} times (first (size, written): {:?})",
        short.len(),
        short.first(),
        racing_short.len(),
        racing_short.first()
    );
}

/// Sets its flag when dropped: a helper thread's loop ends also when the
/// test panics.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

const SQLITE_WRITER: &str = r#"import random, sqlite3, sys
path, who, n, sync, journal = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
rnd = random.Random(who)
db = sqlite3.connect(path, timeout=120, isolation_level=None)
db.execute("pragma synchronous=" + sync)
mode = db.execute("pragma journal_mode=" + journal).fetchone()[0]
if mode != journal.lower():
    sys.exit("journal_mode is " + mode)
for i in range(n):
    db.execute("begin immediate")
    (c,) = db.execute("select n from counter").fetchone()
    db.execute("update counter set n = ?", (c + 1,))
    db.execute("insert into log (who, i, n, pad) values (?, ?, ?, randomblob(?))",
               (who, i, c + 1, rnd.randrange(100, 9000)))
    if rnd.random() < 0.5:
        db.execute("update log set pad = randomblob(?) where rowid = ?",
                   (rnd.randrange(100, 9000), rnd.randrange(1, c + 2)))
    db.execute("commit")
db.close()
"#;

const SQLITE_READER: &str = r#"import os, sqlite3, sys
path, stop = sys.argv[1], sys.argv[2]
db = sqlite3.connect(path, timeout=120, isolation_level=None)
seen, last = 0, -1
while not os.path.exists(stop):
    db.execute("begin")
    (c,) = db.execute("select n from counter").fetchone()
    (k,) = db.execute("select count(*) from log").fetchone()
    db.execute("commit")
    if c != k:
        sys.exit("torn snapshot: counter %d, %d rows" % (c, k))
    if c < last:
        sys.exit("went back in time: counter %d after %d" % (c, last))
    last, seen = c, seen + 1
print(seen)
"#;

/// SQLite with a rollback journal (WAL needs shared memory), a writer on
/// each of two mounts and a reader on a third. One writer runs with
/// synchronous=OFF and journal_mode=TRUNCATE (it never fsyncs: only its
/// unlocks drain its queued pages), the other with FULL and DELETE. Every
/// transaction reads a counter and writes it plus one (a stale page is a
/// lost update, caught by a UNIQUE column), and adds a row of random size;
/// the reader checks that every snapshot it sees is whole (rows ==
/// counter) and never older than the last. At the end a fresh client runs
/// integrity_check and counts.
#[test]
fn sqlite_writers_on_two_mounts_and_a_reader_on_a_third_stay_consistent() {
    tests::require_python3_sqlite();
    let cluster = TestCluster::start(3);
    let a = cluster.mount_with_args(&NO_CACHE);
    let b = cluster.mount_with_args(&NO_CACHE);
    let c = cluster.mount_with_args(&NO_CACHE);
    let writer = cluster.root().join("writer.py");
    let reader = cluster.root().join("reader.py");
    fs::write(&writer, SQLITE_WRITER).unwrap();
    fs::write(&reader, SQLITE_READER).unwrap();
    let stop = cluster.root().join("stop-reader");
    let mut init = Command::new("python3");
    init.arg("-c")
        .arg(
            "import sqlite3,sys; db=sqlite3.connect(sys.argv[1], isolation_level=None); \
             db.executescript('create table counter (n int); insert into counter values (0); \
             create table log (who text, i int, n int unique, pad blob);'); db.close()",
        )
        .arg(a.join("app.db"));
    let mut p = Proc::spawn(init, "sqlite init");
    let status = p.wait(Duration::from_secs(60));
    assert!(status.success(), "init: {}", p.stderr());

    let n = 80;
    let spawn_writer = |m: &tests::Mount, who: &str, sync: &str, journal: &str| {
        let mut cmd = Command::new("python3");
        cmd.arg(&writer)
            .arg(m.join("app.db"))
            .arg(who)
            .arg(n.to_string())
            .arg(sync)
            .arg(journal);
        Proc::spawn(cmd, format!("sqlite writer {who}"))
    };
    let mut rd = {
        let mut cmd = Command::new("python3");
        cmd.arg(&reader).arg(c.join("app.db")).arg(&stop);
        Proc::spawn(cmd, "sqlite reader")
    };
    let mut wa = spawn_writer(&a, "a", "OFF", "TRUNCATE");
    let mut wb = spawn_writer(&b, "b", "FULL", "DELETE");
    for w in [&mut wa, &mut wb] {
        let status = w.wait(Duration::from_secs(400));
        let err = w.stderr();
        assert!(status.success(), "{}: {err}", w.what);
    }
    fs::write(&stop, b"").unwrap();
    let status = rd.wait(Duration::from_secs(120));
    assert!(status.success(), "reader: {}", rd.stderr());
    let snapshots = rd.lines().recv_timeout(Duration::from_secs(5));
    eprintln!("sqlite reader checked {snapshots:?} snapshots");

    let d = cluster.mount_with_args(&NO_CACHE);
    let mut check = Command::new("python3");
    check
        .arg("-c")
        .arg(
            "import sqlite3,sys; db=sqlite3.connect(sys.argv[1]); \
             print(db.execute('pragma integrity_check').fetchone()[0]); \
             print(db.execute('select n from counter').fetchone()[0]); \
             print(db.execute('select count(*), count(distinct n), min(n), max(n) from log').fetchone()); \
             print(sorted(db.execute('select who, count(distinct i) from log group by who').fetchall()))",
        )
        .arg(d.join("app.db"));
    let mut p = Proc::spawn(check, "sqlite check");
    let lines = p.lines();
    let status = p.wait(Duration::from_secs(60));
    assert!(status.success(), "check: {}", p.stderr());
    // The process is gone: its stdout ends, and with it the lines.
    let out: Vec<String> = lines.iter().collect();
    let total = 2 * n;
    assert_eq!(
        out,
        vec![
            "ok".to_string(),
            total.to_string(),
            format!("({total}, {total}, 1, {total})"),
            format!("[('a', {n}), ('b', {n})]"),
        ],
        "integrity_check, counter, rows, rows per writer"
    );
    cluster.assert_replicas_identical(SETTLE);
}

const KILLED_WRITER: &str = r#"import os, signal, sys
path, chunk, synced, more = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def pat(i):
    return ((i + 1).to_bytes(4, "little") + b"wbk!") * (chunk // 8)
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
for i in range(synced):
    os.pwrite(fd, pat(i), i * chunk)
os.fsync(fd)
print("SYNCED", flush=True)
for i in range(synced, synced + more):
    os.pwrite(fd, pat(i), i * chunk)
print("WROTE", flush=True)
signal.pause()
"#;

/// Chunk `i` as KILLED_WRITER writes it.
fn killed_chunk(i: usize) -> Vec<u8> {
    let mut word = ((i + 1) as u32).to_le_bytes().to_vec();
    word.extend_from_slice(b"wbk!");
    word.repeat(CHUNK / 8)
}

/// A writer process SIGKILLed right after its fsync returned, and then
/// the mount process itself SIGKILLed right after a writer's fsync
/// returned (its later writes still queued in it): what was fsynced is on
/// the bricks, whole, for a fresh client; the file stays writable; and
/// what the dead mount left half-sent heals to identical replicas.
#[test]
fn fsync_holds_when_the_writer_or_the_mount_is_killed_after_it() {
    tests::require_python3_sqlite();
    let cluster = TestCluster::start(3);
    let script = cluster.root().join("killed.py");
    fs::write(&script, KILLED_WRITER).unwrap();
    let (synced, more) = (64usize, 96usize);
    let run = |m: &tests::Mount, name: &str| {
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(m.join(name)).args([
            CHUNK.to_string(),
            synced.to_string(),
            more.to_string(),
        ]);
        let mut p = Proc::spawn(cmd, format!("writer of {name}"));
        let lines = p.lines();
        p.expect_line(&lines, "SYNCED", Duration::from_secs(120));
        // The receiver stays: a closed pipe would end the writer early.
        (p, lines)
    };

    // The writer dies. Its descriptors are closed by the kernel, so every
    // write it was acknowledged goes out: the file is a run of whole
    // chunks in order, at least as long as what was fsynced.
    let a = cluster.mount();
    let (mut p, _lines) = run(&a, "writer-killed");
    p.kill();
    let b = cluster.mount_with_args(&NO_CACHE);
    let got = fs::read(b.join("writer-killed")).unwrap();
    assert!(
        got.len() >= synced * CHUNK,
        "{} bytes after the writer died; {} were fsynced",
        got.len(),
        synced * CHUNK
    );
    for (i, chunk) in got.chunks(CHUNK).enumerate() {
        let want = killed_chunk(i);
        assert!(
            chunk == &want[..chunk.len()],
            "chunk {i} of a killed writer's file is not what it wrote ({} bytes read)",
            got.len()
        );
    }

    // The mount dies with writes queued in it.
    let c = cluster.mount();
    let (mut p, _lines) = run(&c, "mount-killed");
    c.kill();
    // The writer's next write fails (the connection is gone) or it already
    // waits in pause(): either way it goes now.
    p.kill();
    let got = fs::read(b.join("mount-killed")).unwrap();
    assert!(
        got.len() >= synced * CHUNK,
        "{} bytes after the mount died; {} were fsynced",
        got.len(),
        synced * CHUNK
    );
    // Whole chunks in order, then nothing but zeros (a write the dead
    // client had sent to some bricks only).
    let mut ended = None;
    for (i, chunk) in got.chunks(CHUNK).enumerate() {
        let want = killed_chunk(i);
        match ended {
            None if chunk == &want[..chunk.len()] => {}
            None if i >= synced && chunk.iter().all(|&x| x == 0) => ended = Some(i),
            None => panic!("chunk {i} of the file the dead mount wrote is neither the writer's nor empty (fsynced: {synced})"),
            Some(e) => assert!(
                chunk.iter().all(|&x| x == 0),
                "chunk {i} holds data after the empty chunk {e}"
            ),
        }
    }
    // The dead client's replication and record locks went with it.
    let f = OpenOptions::new()
        .write(true)
        .open(b.join("mount-killed"))
        .unwrap();
    f.write_all_at(b"after the crash", got.len() as u64)
        .expect("a write after the mount died");
    f.sync_all().expect("fsync after the mount died");
    close(f).expect("close after the mount died");
    let _heald = cluster.start_heald(1);
    cluster.assert_replicas_identical(Duration::from_secs(60));
}

const QUORUM_WRITER: &str = r#"import os, sys
d, chunk = sys.argv[1], 65536
def pat(tag, i):
    return ((tag * 1000 + i + 1).to_bytes(4, "little") + b"wbq!") * (chunk // 8)
def outcome(what, call):
    try:
        call()
        print(what, "ok", flush=True)
    except OSError as e:
        print(what, "err", e.errno, e.strerror, flush=True)
f = os.open(d + "/synced", os.O_RDWR | os.O_CREAT, 0o644)
g = os.open(d + "/closed", os.O_RDWR | os.O_CREAT, 0o644)
for i in range(8):
    os.pwrite(f, pat(1, i), i * chunk)
    os.pwrite(g, pat(2, i), i * chunk)
os.fsync(f)
os.fsync(g)
print("READY", flush=True)
sys.stdin.readline()
# Acknowledged (queued) at first; once the sender's call failed, the next
# write of the file says so at once. Write until it does, so the failure
# certainly happened before the bricks return.
for tag, fd in ((1, f), (2, g)):
    i = 8
    while True:
        try:
            os.pwrite(fd, pat(tag, i), i * chunk)
        except OSError as e:
            print("FAILED", tag, e.errno, flush=True)
            break
        i = min(i + 1, 23)
sys.stdin.readline()
outcome("fsync", lambda: os.fsync(f))
outcome("fsync again", lambda: os.fsync(f))
outcome("close", lambda: os.close(g))
for i in range(8, 24):
    os.pwrite(f, pat(1, i), i * chunk)
outcome("fsync rewritten", lambda: os.fsync(f))
outcome("close rewritten", lambda: os.close(f))
"#;

/// Chunk `i` of file `tag` as QUORUM_WRITER writes it.
fn quorum_chunk(tag: usize, i: usize) -> Vec<u8> {
    let mut word = ((tag * 1000 + i + 1) as u32).to_le_bytes().to_vec();
    word.extend_from_slice(b"wbq!");
    word.repeat(CHUNK / 8)
}

/// Writes acknowledged while two bricks of three were gone fail in the
/// sender; the bricks come back before the application asks. The fsync
/// (or close) asked after they returned must still report the failure,
/// although the bricks would answer it now; the next fsync has nothing
/// more to report (reported once, as on Linux), and writing the data again
/// brings the file where the application wants it. The writer is a
/// process of its own: this test process forks bricks meanwhile, and a
/// fork's close of inherited descriptors is a flush of their files.
#[test]
fn writes_failed_while_quorum_was_lost_are_reported_after_the_bricks_return() {
    tests::require_python3_sqlite();
    let cluster = TestCluster::start(3);
    let a = cluster.mount_with_args(&NO_CACHE);
    let script = cluster.root().join("quorum.py");
    fs::write(&script, QUORUM_WRITER).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(a.path());
    let mut p = Proc::spawn(cmd, "quorum writer");
    let lines = p.lines();
    let step = Duration::from_secs(60);
    p.expect_line(&lines, "READY", step);

    cluster.kill_brick(1);
    cluster.kill_brick(2);
    p.say("bricks gone");
    for tag in 1..=2 {
        let line = p.next_line(&lines, step);
        assert!(
            line.starts_with(&format!("FAILED {tag} ")),
            "writes of file {tag} with two bricks of three gone: {line:?}"
        );
    }

    let addrs = [cluster.brick_addr(1), cluster.brick_addr(2)];
    cluster.restart_brick(1);
    cluster.restart_brick(2);
    assert!(
        wait_until(Duration::from_secs(30), || addrs
            .iter()
            .all(|&x| a.brick_ups(x) >= 2)),
        "the mount never saw the bricks back"
    );
    p.say("bricks back");
    let outcomes: Vec<String> = (0..5).map(|_| p.next_line(&lines, step)).collect();
    let status = p.wait(step);
    let stderr = p.stderr();
    assert!(status.success(), "quorum writer: {stderr}");
    let expect = [
        (
            "fsync err ",
            "fsync after the bricks returned must report the writes that failed",
        ),
        (
            "fsync again ok",
            "the second fsync has nothing more to report",
        ),
        (
            "close err ",
            "close after the bricks returned must report the writes that failed",
        ),
        ("fsync rewritten ok", "fsync of the data written again"),
        ("close rewritten ok", "close of the data written again"),
    ];
    for ((want, why), got) in expect.iter().zip(&outcomes) {
        assert!(got.starts_with(want), "{why}: {got:?} (all: {outcomes:?})");
    }

    let b = cluster.mount_with_args(&NO_CACHE);
    let want: Vec<u8> = (0..24).flat_map(|i| quorum_chunk(1, i)).collect();
    assert_same(
        &fs::read(b.join("synced")).unwrap(),
        &want,
        "the file written again",
    );
    let got = fs::read(b.join("closed")).unwrap();
    let synced: Vec<u8> = (0..8).flat_map(|i| quorum_chunk(2, i)).collect();
    assert!(
        got.len() >= synced.len(),
        "fsynced data of the closed file lost"
    );
    assert_same(
        &got[..synced.len()],
        &synced,
        "the fsynced part of the closed file",
    );
    let _heald = cluster.start_heald(1);
    cluster.assert_replicas_identical(SETTLE);
}
