//! The crash soak (`scripts/soak.sh`, not part of the suite: it runs for
//! minutes): writers on two FUSE clients while bricks are SIGKILLed and
//! restarted, or SIGSTOPped and continued, at random. Then every brick is
//! brought back and the soak measures what it is for: acknowledged writes
//! lost (must be 0) and seconds from the last restart to identical replicas
//! with every heal index empty.
//!
//! The writers do what applications on a shared volume do: fsync'd appends
//! to a log (a record counts once its fsync returned), small files written
//! to a temporary name, fsync'd and renamed into place (counted once the
//! rename returned), and overwrites of one shared file under an fcntl lock
//! (counted once the unlock returned). A write that fails (two bricks out at
//! once, EROFS) is not acknowledged and is not expected back.
//!
//! `BRICKFS_SOAK_SECS` (default 180) sets the length, `BRICKFS_SOAK_SEED`
//! the random sequence of faults.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tests::cluster::TestCluster;

/// What one writer had acknowledged when it stopped.
#[derive(Default)]
struct Acked {
    /// Log records whose fsync returned.
    records: Vec<String>,
    /// Small files whose rename returned: name → content.
    files: BTreeMap<String, Vec<u8>>,
    /// The last value written under the lock and unlocked.
    last_locked: Option<u64>,
    failures: u64,
}

/// A tiny linear congruential generator: the fault sequence must be
/// repeatable from its seed, and the tests crate needs no rand.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

fn lock(f: &File, typ: i32) -> std::io::Result<()> {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLKW, &fl) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn writer(mnt: PathBuf, who: &'static str, stop: Arc<AtomicBool>) -> thread::JoinHandle<Acked> {
    thread::spawn(move || {
        let mut acked = Acked::default();
        let dir = mnt.join(format!("w-{who}"));
        let log_path = mnt.join(format!("log-{who}"));
        let shared = mnt.join("shared");
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let step = (|| -> std::io::Result<()> {
                fs::create_dir_all(&dir)?;
                // An fsync'd append.
                let record = format!("{who}-{i:08}\n");
                let mut log = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&log_path)?;
                log.write_all(record.as_bytes())?;
                log.sync_all()?;
                acked.records.push(record);
                // A small file by temporary name and rename.
                let name = format!("f{}", i % 50);
                let tmp = dir.join(format!(".{name}.tmp"));
                let content = format!("{who} {i}\n").into_bytes();
                let mut f = File::create(&tmp)?;
                f.write_all(&content)?;
                f.sync_all()?;
                fs::rename(&tmp, dir.join(&name))?;
                acked.files.insert(name, content);
                // A lock-protected overwrite of the shared file.
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&shared)?;
                lock(&f, libc::F_WRLCK)?;
                let v = i * 2 + u64::from(who == "b");
                let written = f
                    .write_all_at(format!("{v:<24}").as_bytes(), 0)
                    .and_then(|()| f.sync_all());
                lock(&f, libc::F_UNLCK)?;
                written?;
                acked.last_locked = Some(v);
                Ok(())
            })();
            if step.is_err() {
                acked.failures += 1;
                thread::sleep(Duration::from_millis(50));
            }
        }
        acked
    })
}

fn secs_from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "minutes long: scripts/soak.sh"]
fn soak_kills_and_stops_bricks_under_writers_on_two_clients() {
    let secs = secs_from_env("BRICKFS_SOAK_SECS", 180);
    let seed = secs_from_env("BRICKFS_SOAK_SEED", 11);
    let cluster = TestCluster::start(3);
    let heald = cluster.start_heald(5);
    let a = cluster.mount();
    let b = cluster.mount();
    let stop = Arc::new(AtomicBool::new(false));
    let wa = writer(a.path().to_path_buf(), "a", stop.clone());
    let wb = writer(b.path().to_path_buf(), "b", stop.clone());

    let mut rng = Lcg(seed);
    let faults = Mutex::new(Vec::new());
    let started = Instant::now();
    // At most one brick out at a time, so the writers keep a quorum most of
    // the time; a fault lasts 0.5 to 4 s.
    while started.elapsed() < Duration::from_secs(secs) {
        let brick = rng.next(3) as usize;
        let hold = Duration::from_millis(500 + rng.next(3500));
        if rng.next(2) == 0 {
            cluster.kill_brick(brick);
            thread::sleep(hold);
            cluster.restart_brick(brick);
            faults
                .lock()
                .unwrap()
                .push(format!("kill {brick} {hold:?}"));
        } else {
            cluster.stop_brick(brick);
            thread::sleep(hold);
            cluster.cont_brick(brick);
            faults
                .lock()
                .unwrap()
                .push(format!("stop {brick} {hold:?}"));
        }
        thread::sleep(Duration::from_millis(200 + rng.next(1500)));
    }
    let last_restart = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let acked_a = wa.join().expect("writer a");
    let acked_b = wb.join().expect("writer b");

    let healed = cluster.wait_healed(Duration::from_secs(300));
    cluster.assert_replicas_identical(Duration::from_secs(60));
    let converged = last_restart.elapsed();
    assert!(healed, "heal indices still not empty after 300 s");
    drop(heald);

    let fresh = cluster.mount();
    let mut lost = 0usize;
    for (who, acked) in [("a", &acked_a), ("b", &acked_b)] {
        let log = fs::read_to_string(fresh.join(format!("log-{who}"))).unwrap_or_default();
        for r in &acked.records {
            if !log.contains(r.as_str()) {
                lost += 1;
                eprintln!("lost record {r:?}");
            }
        }
        for (name, content) in &acked.files {
            let path: &Path = &fresh.join(format!("w-{who}")).join(name);
            match fs::read(path) {
                Ok(c) if &c == content => {}
                other => {
                    lost += 1;
                    eprintln!("lost file {}: {other:?}", path.display());
                }
            }
        }
    }
    let shared = fs::read_to_string(fresh.join("shared")).unwrap_or_default();
    let last: Vec<u64> = [acked_a.last_locked, acked_b.last_locked]
        .into_iter()
        .flatten()
        .collect();
    let now: Option<u64> = shared.trim().parse().ok();
    assert!(
        now.is_some_and(|v| last.contains(&v)),
        "the shared file holds {shared:?}, not one of the last acknowledged values {last:?}"
    );
    let acked =
        acked_a.records.len() + acked_b.records.len() + acked_a.files.len() + acked_b.files.len();
    eprintln!(
        "SOAK: {secs} s, seed {seed}, {} faults, acknowledged writes {acked} (records {} + {}, files {} + {}), \
         failed steps {} + {}, lost {lost}, converged {:.1} s after the last restart",
        faults.lock().unwrap().len(),
        acked_a.records.len(),
        acked_b.records.len(),
        acked_a.files.len(),
        acked_b.files.len(),
        acked_a.failures,
        acked_b.failures,
        converged.as_secs_f64()
    );
    assert_eq!(lost, 0, "acknowledged writes lost");
}
