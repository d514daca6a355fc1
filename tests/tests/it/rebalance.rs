//! add-brick 2 x 3 → 3 x 3 and rebalance while one client writes and
//! another lists and reads: no file lost, duplicated, unreadable or
//! changed at any moment, and files end up on all three sets.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tests::volume::StoreVolume;
use tests::{wait_until, TestCluster};

const DIRS: [&str; 3] = ["", "d1", "d1/d2"];

fn content(i: usize) -> Vec<u8> {
    // Some files span several copy chunks.
    let len = if i.is_multiple_of(50) {
        3 << 20
    } else {
        100 + i * 37
    };
    (0..len).map(|k| (k * 31 + i) as u8).collect()
}

fn rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Every file name under `root` (recursively), as relative paths; panics on
/// a name listed twice.
fn list_all(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dir in DIRS {
        let mut seen = Vec::new();
        for e in fs::read_dir(root.join(dir)).expect("listing") {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_file() {
                seen.push(rel(dir, &e.file_name().to_string_lossy()));
            }
        }
        let n = seen.len();
        out.extend(seen);
        assert_eq!(
            out.iter().filter(|p| dir_of(p) == dir).count(),
            n,
            "a name listed twice in /{dir}"
        );
    }
    out
}

fn dir_of(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(d, _)| d)
}

#[test]
fn add_brick_and_rebalance_while_clients_write_and_list() {
    let cluster = TestCluster::start(9);
    let vol = StoreVolume::create_on(&cluster, 6);
    let writer_mount = vol.mount();
    let lister_mount = vol.mount();
    let root: PathBuf = writer_mount.path().to_path_buf();
    fs::create_dir_all(root.join("d1/d2")).unwrap();
    // What each file must hold: written before, and kept current by the
    // writer (only it changes files).
    let expected: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Default::default();
    for i in 0..450 {
        let p = rel(DIRS[i % 3], &format!("f{i:04}"));
        fs::write(root.join(&p), content(i)).unwrap();
        expected.lock().unwrap().insert(p, content(i));
    }
    let before: BTreeSet<String> = expected.lock().unwrap().keys().cloned().collect();

    let stop = Arc::new(AtomicBool::new(false));
    // Progress of the two clients, for the test to wait on.
    let (writes, listings) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let writer = {
        let (stop, expected, root) = (stop.clone(), expected.clone(), root.clone());
        let writes = writes.clone();
        thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                // Append to an existing file, and make a new one.
                let old = rel(DIRS[i % 3], &format!("f{:04}", (i * 7) % 450));
                let extra = format!("append {i}\n").into_bytes();
                let mut f = fs::OpenOptions::new()
                    .append(true)
                    .open(root.join(&old))
                    .unwrap_or_else(|e| panic!("open {old} for append: {e}"));
                f.write_all(&extra)
                    .unwrap_or_else(|e| panic!("append to {old}: {e}"));
                drop(f);
                expected
                    .lock()
                    .unwrap()
                    .get_mut(&old)
                    .unwrap()
                    .extend(extra);
                let new = rel(DIRS[i % 3], &format!("new{i:05}"));
                let data = content(1000 + i);
                fs::write(root.join(&new), &data).unwrap_or_else(|e| panic!("create {new}: {e}"));
                expected.lock().unwrap().insert(new, data);
                i += 1;
                writes.store(i, Ordering::Relaxed);
                // Paces the writer: the volume should not grow much.
                thread::sleep(Duration::from_millis(20));
            }
            i
        })
    };
    let lister = {
        let (stop, before) = (stop.clone(), before.clone());
        let root = lister_mount.path().to_path_buf();
        let listings = listings.clone();
        thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) {
                let now = list_all(&root);
                let lost: Vec<_> = before.difference(&now).take(5).collect();
                assert!(lost.is_empty(), "files missing from a listing: {lost:?}");
                // Every file that existed before can be read in full.
                for p in before.iter().skip(rounds % 7).step_by(23) {
                    let got = fs::read(root.join(p)).unwrap_or_else(|e| panic!("read {p}: {e}"));
                    assert!(got.len() >= 100, "{p} read short: {} bytes", got.len());
                }
                rounds += 1;
                listings.store(rounds, Ordering::Relaxed);
            }
            rounds
        })
    };
    // Waits until both clients did `n` more of their work since `since`
    // (writes, listings); a client that failed has ended (its join says why).
    let going_on = |since: (usize, usize), n: usize, what: &str| {
        let ok = wait_until(Duration::from_secs(30), || {
            (writes.load(Ordering::Relaxed) >= since.0 + n
                && listings.load(Ordering::Relaxed) >= since.1 + n)
                || writer.is_finished()
                || lister.is_finished()
        });
        assert!(
            ok,
            "the clients stalled {what}: {writes:?} writes, {listings:?} listings"
        );
    };
    let now = || {
        (
            writes.load(Ordering::Relaxed),
            listings.load(Ordering::Relaxed),
        )
    };

    going_on((0, 0), 3, "before add-brick");
    // Both mounts follow the store and switch to the 3 x 3 graph.
    vol.add_set(6, &[&writer_mount, &lister_mount]);
    let started = Instant::now();
    let at_start = now();
    vol.ok(&["volume", "rebalance", tests::cluster::VOLUME, "start"]);
    let done = wait_until(Duration::from_secs(120), || {
        vol.cli(&["volume", "rebalance", tests::cluster::VOLUME, "status"])
            .out
            .contains("completed")
    });
    let status = vol.ok(&["volume", "rebalance", tests::cluster::VOLUME, "status"]);
    assert!(done, "rebalance did not complete: {status}");
    eprintln!("rebalance took {:?}:\n{status}", started.elapsed());
    let at_end = now();
    // The clients go on once the files have moved.
    going_on(at_end, 3, "after the rebalance");
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().expect("writer failed");
    let rounds = lister.join().expect("lister failed");
    assert!(writes > 5 && rounds > 0, "writer {writes}, lister {rounds}");
    // What the test is about: the rebalance ran while the clients worked.
    assert!(
        at_end.0 > at_start.0 && at_end.1 > at_start.1,
        "no writes or listings while the rebalance ran: {at_start:?} → {at_end:?}"
    );

    // At the end: every file once, with exactly what was written.
    let fresh = vol.mount();
    let listed = list_all(fresh.path());
    let expected = expected.lock().unwrap().clone();
    let want: BTreeSet<String> = expected.keys().cloned().collect();
    assert_eq!(listed, want, "the volume's files differ from those written");
    for (p, data) in &expected {
        let got = fs::read(fresh.join(p)).unwrap();
        assert!(
            blake3::hash(&got) == blake3::hash(data),
            "{p}: content differs ({} bytes, want {})",
            got.len(),
            data.len()
        );
    }
    let per_set: Vec<usize> = (0..3).map(|s| vol.files_on_set(s)).collect();
    assert_eq!(per_set.iter().sum::<usize>(), expected.len(), "{per_set:?}");
    for (s, n) in per_set.iter().enumerate() {
        assert!(
            *n * 100 >= expected.len() * 20,
            "set {s} holds {n} of {} files: {per_set:?}",
            expected.len()
        );
    }
    vol.assert_sets_identical(Duration::from_secs(20));
}
