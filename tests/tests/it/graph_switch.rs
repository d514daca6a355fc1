//! A client that follows its volume in the store switches to a new graph
//! without unmounting: a writer streaming through the mount sees no error
//! while an option changes and a brick is replaced, and the file is exact
//! afterwards. A closed graph gives its locks back and its connections go.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::{FileKind, FsError, Gfid, Name, RecordLock, RecordLockType};
use tests::cluster::{TestCluster, VOLUME};
use tests::extra_brick::ExtraBrick;
use tests::volume::StoreVolume;

const BLOCK: usize = 64 * 1024;
/// The writer writes at least this many blocks, and goes on until told.
const MIN_BLOCKS: u64 = 200;

/// Block `i` of the streamed file: every byte tells where it belongs.
fn block(i: u64) -> Vec<u8> {
    (0..BLOCK)
        .map(|j| (i as usize * 31 + j / 7) as u8)
        .collect()
}

#[test]
fn a_mount_switches_graphs_under_a_streaming_writer() {
    let cluster = TestCluster::start(3);
    let vol = StoreVolume::create_on(&cluster, 3);
    let m = vol.mount();
    let path = m.join("stream");

    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, stop, path) = (written.clone(), stop.clone(), path.clone());
        std::thread::spawn(move || -> Result<u64, String> {
            let mut f = std::fs::File::create(&path).map_err(|e| format!("create: {e}"))?;
            let mut i = 0u64;
            while i < MIN_BLOCKS || !stop.load(Ordering::Acquire) {
                f.write_all(&block(i))
                    .map_err(|e| format!("append {i}: {e}"))?;
                if i % 16 == 15 {
                    f.sync_all().map_err(|e| format!("fsync after {i}: {e}"))?;
                }
                i += 1;
                written.store(i, Ordering::Release);
                // Paced, so the file stays small while the switches happen.
                std::thread::sleep(Duration::from_millis(15));
            }
            f.sync_all().map_err(|e| format!("last fsync: {e}"))?;
            Ok(i)
        })
    };
    let at_least = |n: u64| {
        assert!(
            tests::wait_until(Duration::from_secs(20), || written.load(Ordering::Acquire)
                >= n
                || writer.is_finished()),
            "the writer is stuck at block {}",
            written.load(Ordering::Acquire)
        );
    };
    at_least(10);

    // An option: applied live on the graph that serves.
    vol.ok(&["volume", "set", VOLUME, "network.op-timeout", "7"]);
    assert!(
        tests::wait_until(Duration::from_secs(10), || m
            .log_has("volume option changed: network.op-timeout")),
        "the mount did not apply the option:\n{}",
        std::fs::read_to_string(m.log()).unwrap_or_default()
    );

    // A brick: the disk of brick 2 is gone; a new brick takes its place.
    cluster.kill_brick(2);
    let new_dir = cluster.root().join("new-brick");
    let new = ExtraBrick::start(&cluster, &new_dir, None);
    let old = cluster.brick_addr(2).to_string();
    vol.ok(&["volume", "replace-brick", VOLUME, &old, &new.addr]);
    let switched = tests::wait_until(Duration::from_secs(15), || m.log_has("switched to graph 2"));
    assert!(
        switched,
        "the mount did not switch graphs:\n{}",
        std::fs::read_to_string(m.log()).unwrap_or_default()
    );
    // The writer goes on for a while on the new graph.
    let after = written.load(Ordering::Acquire);
    at_least(after + 30);
    stop.store(true, Ordering::Release);
    let blocks = writer
        .join()
        .expect("writer panicked")
        .unwrap_or_else(|e| panic!("the writer saw an error: {e}"));
    assert!(blocks >= MIN_BLOCKS);

    let log = std::fs::read_to_string(m.log()).unwrap_or_default();
    assert!(
        log.contains("1 x 3 → 1 x 3 bricks") && log.contains(&new.addr),
        "the switch is not described:\n{log}"
    );
    // Exact content, read back through the mount (from replicas nobody blames).
    let mut got = Vec::new();
    std::fs::File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut got))
        .expect("reading the file back");
    assert_eq!(got.len() as u64, blocks * BLOCK as u64, "file size");
    for i in 0..blocks {
        let at = i as usize * BLOCK;
        assert!(
            got[at..at + BLOCK] == block(i)[..],
            "block {i} of {blocks} differs"
        );
    }
    // New files reach the new brick: the mount uses it.
    std::fs::write(m.join("after-switch"), b"new graph").unwrap();
    assert!(
        tests::wait_until(Duration::from_secs(5), || {
            std::fs::read(new_dir.join("after-switch")).is_ok_and(|d| d == b"new graph")
        }),
        "a file written after the switch is not on the new brick"
    );
}

#[test]
fn a_closed_graph_gives_its_locks_back_and_fails_fast() {
    let cluster = TestCluster::start(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = client::StackConfig {
            volume: VOLUME.to_string(),
            bricks: (0..3).map(|i| cluster.brick_addr(i)).collect(),
            op_timeout: Duration::from_secs(2),
            ..client::StackConfig::default()
        };
        let a = client::connect(config.clone()).await.expect("client a");
        let b = client::connect(config).await.expect("client b");
        let file = a
            .create(
                Gfid::ROOT,
                client::NewEntry {
                    name: Name::from("locked"),
                    kind: FileKind::File,
                    perm: 0o644,
                    rdev: 0,
                    uid: 0,
                    gid: 0,
                    target: None,
                },
            )
            .await
            .expect("create");
        a.write(file.gfid, 0, b"held".to_vec())
            .await
            .expect("write");
        let lock = RecordLock {
            owner: 7,
            pid: 1,
            start: 0,
            end: u64::MAX,
            typ: RecordLockType::Write,
            flock: false,
        };
        a.setlk(file.gfid, lock, false).await.expect("a locks");
        assert!(
            matches!(
                b.setlk(file.gfid, lock, false).await,
                Err(FsError::WouldBlock)
            ),
            "b got a lock a holds"
        );

        a.close().await;
        // The bricks dropped a's record lock with its connections: b gets it
        // at once (a's connections would otherwise live on, pinging).
        let started = std::time::Instant::now();
        loop {
            match b.setlk(file.gfid, lock, false).await {
                Ok(()) => break,
                Err(FsError::WouldBlock) if started.elapsed() < Duration::from_secs(3) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                other => panic!(
                    "b did not get the lock after a closed ({:?}): {other:?}",
                    started.elapsed()
                ),
            }
        }
        // b can write the inode at once too: a gave back its replication
        // lock (with the post-op) when it closed.
        let wrote = tokio::time::timeout(
            Duration::from_secs(1),
            b.write(file.gfid, 0, b"mine".to_vec()),
        )
        .await;
        assert!(
            matches!(wrote, Ok(Ok(_))),
            "b could not write after a closed: {wrote:?}"
        );
        // The closed graph fails at once, saying why.
        let t = std::time::Instant::now();
        let err = a
            .write(file.gfid, 0, b"late".to_vec())
            .await
            .expect_err("a closed graph wrote");
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        assert!(err.to_string().contains("closed"), "{err}");
        assert_eq!(b.read(file.gfid, 0, 4).await.expect("read"), b"mine");
        b.close().await;
    });
}

#[test]
fn the_nfs_gateway_switches_graphs_too() {
    tests::nfs::require_libnfs_tools();
    let cluster = TestCluster::start(3);
    let vol = StoreVolume::create_on(&cluster, 3);
    let gw = cluster.start_gateway_from_store(&vol.url);
    let local = cluster.root().join("local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("before"), b"old graph").unwrap();
    tests::nfs::nfs_cp(local.join("before"), gw.url(&format!("{VOLUME}/before"))).assert_ok();

    cluster.kill_brick(2);
    let new_dir = cluster.root().join("new-brick");
    let new = ExtraBrick::start(&cluster, &new_dir, None);
    let old = cluster.brick_addr(2).to_string();
    vol.ok(&["volume", "replace-brick", VOLUME, &old, &new.addr]);
    assert!(
        tests::wait_until(Duration::from_secs(15), || tests::log_has(
            gw.log(),
            "switched to graph 2"
        )),
        "the gateway did not switch graphs:\n{}",
        std::fs::read_to_string(gw.log()).unwrap_or_default()
    );
    std::fs::write(local.join("after"), b"new graph").unwrap();
    tests::nfs::nfs_cp(local.join("after"), gw.url(&format!("{VOLUME}/after"))).assert_ok();
    assert_eq!(std::fs::read(new_dir.join("after")).unwrap(), b"new graph");
    let cat = tests::nfs::nfs_cat(&gw.url(&format!("{VOLUME}/before")));
    assert_eq!(cat.stdout, b"old graph", "nfs-cat: {:?}", cat.stderr);
}
