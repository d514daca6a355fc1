//! Write-behind on a real mount: a write returns before the bricks have it,
//! yet close and fsync wait for it and report its failure, `stat` during a
//! stream of writes shows what was written, another client sees it all
//! after the writer's close, and a writer waits once its window is full
//! instead of the mount's memory growing.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tests::volume::StoreVolume;
use tests::{wait_until, TestCluster, NO_CACHE};

const MIB: u64 = 1 << 20;
const CHUNK: usize = 64 * 1024;

fn pattern(i: u64) -> Vec<u8> {
    (0..CHUNK)
        .map(|j| ((i * 31 + j as u64) % 251) as u8)
        .collect()
}

#[test]
fn fsync_and_close_report_a_write_past_the_limit_that_went_behind() {
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    v.ok(&["subvolume", "create", "test", "small", "--size", "4Mi"]);
    let m = cluster.mount_from_store_with_args(&v.url, "test/small", &NO_CACHE);
    let path = m.join("big");
    let f = File::create(&path).unwrap();
    // 6 MiB at offsets (not O_APPEND, which writes through): the writes
    // past 4 MiB fail at the bricks after they were acknowledged here, or
    // at once once one of them did.
    let mut refused_at_write = None;
    for i in 0..(6 * MIB / CHUNK as u64) {
        if let Err(e) = f.write_all_at(&pattern(i), i * CHUNK as u64) {
            refused_at_write = Some(e.raw_os_error());
            break;
        }
    }
    if let Some(errno) = refused_at_write {
        assert_eq!(errno, Some(libc::EDQUOT), "a later write failed otherwise");
    }
    let e = f
        .sync_all()
        .expect_err("fsync hid a write refused by the bricks");
    assert_eq!(e.raw_os_error(), Some(libc::EDQUOT), "{e}");
    // Reported once: the close after it has nothing more to say.
    drop(f);
    // What the bricks took is the writer's data, nothing else.
    let got = fs::read(&path).unwrap();
    assert!(
        got.len() as u64 <= 4 * MIB,
        "{} bytes past a 4 MiB limit",
        got.len()
    );
    for (i, chunk) in got.chunks(CHUNK).enumerate() {
        assert_eq!(chunk, &pattern(i as u64)[..chunk.len()], "chunk {i}");
    }

    // A close alone (no fsync) reports it too.
    fs::remove_file(&path).unwrap();
    let f = File::create(m.join("again")).unwrap();
    let mut failed = false;
    for i in 0..(6 * MIB / CHUNK as u64) {
        if f.write_all_at(&pattern(i), i * CHUNK as u64).is_err() {
            failed = true;
            break;
        }
    }
    let fd = std::os::unix::io::IntoRawFd::into_raw_fd(f);
    // SAFETY: closing the descriptor we own, once.
    let rc = unsafe { libc::close(fd) };
    let close_err = std::io::Error::last_os_error();
    assert!(
        failed || rc == -1,
        "neither a write nor the close reported the refused data"
    );
    if rc == -1 {
        assert_eq!(close_err.raw_os_error(), Some(libc::EDQUOT), "{close_err}");
    }
}

#[test]
fn stat_during_a_stream_of_writes_and_another_client_after_close_see_all_of_it() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount_with_args(&NO_CACHE);
    let b = cluster.mount_with_args(&NO_CACHE);
    let path = a.join("stream");
    let mut f = File::create(&path).unwrap();
    for i in 0..64u64 {
        f.write_all(&pattern(i)).unwrap();
        let want = (i + 1) * CHUNK as u64;
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            want,
            "stat after write {i}"
        );
        if i % 16 == 15 {
            let listed = fs::read_dir(a.path())
                .unwrap()
                .map(|e| e.unwrap())
                .find(|e| e.file_name() == "stream")
                .expect("listed");
            assert_eq!(
                listed.metadata().unwrap().len(),
                want,
                "ls -l after write {i}"
            );
        }
    }
    // Read back through the writer's own mount before close: read waits
    // for the queue.
    let mut expect = Vec::new();
    for i in 0..64u64 {
        expect.extend(pattern(i));
    }
    assert_eq!(fs::read(&path).unwrap(), expect);
    drop(f);
    assert_eq!(fs::read(b.join("stream")).unwrap(), expect, "close-to-open");
    cluster.assert_replicas_identical(Duration::from_secs(10));
}

/// VmRSS of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[test]
fn a_writer_waits_once_its_window_is_full_and_loses_nothing() {
    let cluster = TestCluster::start(3);
    let m = cluster.mount_with_args(&["--write-behind-mib", "8"]);
    let pid = m.pid().expect("mount pid");
    let path = m.join("f");
    let written = Arc::new(AtomicU64::new(0));
    fs::write(&path, b"").unwrap();
    let rss_before = rss(pid);
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn({
        let (path, written) = (path.clone(), written.clone());
        move || -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).open(&path)?;
            // The first write of an open goes through (it learns the
            // file's attributes); the rest go behind.
            f.write_all(&pattern(0))?;
            written.fetch_add(CHUNK as u64, Ordering::SeqCst);
            let _ = opened_tx.send(());
            let _ = go_rx.recv();
            for i in 1..(64 * MIB / CHUNK as u64) {
                f.write_all(&pattern(i))?;
                written.fetch_add(CHUNK as u64, Ordering::SeqCst);
            }
            f.sync_all()
        }
    });
    opened_rx.recv().expect("the writer opened the file");
    for i in 0..3 {
        cluster.stop_brick(i);
    }
    go_tx.send(()).unwrap();
    // With every brick stopped, the writer gets as far as its window.
    let mut last = u64::MAX;
    assert!(
        wait_until(Duration::from_secs(3), || {
            std::thread::sleep(Duration::from_millis(200));
            let now = written.load(Ordering::SeqCst);
            let stalled = now == last && now > CHUNK as u64;
            last = now;
            stalled
        }),
        "the writer never stalled"
    );
    let held = written.load(Ordering::SeqCst);
    // A file may hold a quarter of the window, at least 4 MiB, plus the
    // write the kernel has in hand.
    assert!(
        held <= 6 * MIB,
        "{held} bytes accepted with no brick answering"
    );
    let grown = rss(pid).saturating_sub(rss_before);
    assert!(grown < 32 * MIB, "the mount grew by {grown} bytes");
    for i in 0..3 {
        cluster.cont_brick(i);
    }
    writer
        .join()
        .expect("writer")
        .expect("the writes went through once the bricks answered");
    let got = fs::read(&path).unwrap();
    assert_eq!(got.len() as u64, 64 * MIB);
    for (i, chunk) in got.chunks(CHUNK).enumerate() {
        assert!(chunk == pattern(i as u64).as_slice(), "chunk {i} differs");
    }
    cluster.assert_replicas_identical(Duration::from_secs(20));
}

#[test]
fn scattered_and_overlapping_writes_land_in_order_on_every_replica() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    let path = a.join("scattered");
    let size = 4 * MIB as usize;
    let mut model = vec![0u8; size];
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    f.set_len(size as u64).unwrap();
    // A small xorshift: the same offsets every run, overlapping often.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..3000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 1 + (x % 9000) as usize;
        let offset = (x >> 20) as usize % (size - len);
        let byte = (i % 251) as u8 + 1;
        f.write_all_at(&vec![byte; len], offset as u64).unwrap();
        model[offset..offset + len].fill(byte);
    }
    let mut back = vec![0u8; size];
    f.read_exact_at(&mut back, 0).unwrap();
    assert!(
        back == model,
        "the writer's own read differs from its writes"
    );
    drop(f);
    assert!(
        fs::read(b.join("scattered")).unwrap() == model,
        "another client reads other data"
    );
    cluster.assert_replicas_identical(Duration::from_secs(10));
}
