//! UNSTABLE writes through the NFS gateway: answered once queued in the
//! gateway (`nfs-gateway/src/unstable.rs`), read back at once by the
//! gateway's clients, on the bricks for every client after COMMIT, a
//! failure on the way reported by COMMIT, and nothing dropped by a clean
//! stop; the verifier tells a client when a gateway restart lost what it
//! had not committed.

use std::time::Duration;

use tests::data::{model_write, pattern};
use tests::nfs::mount_root;
use tests::nfs::rpc::{Nfs3Client, NFS3ERR_IO, NFS3ERR_ROFS};
use tests::{wait_until, TestCluster};

const UNSTABLE: u32 = 0;
/// Off by default (`brickfs-nfs --help`).
const BEHIND: &[&str] = &["--write-behind-mib", "32"];
const SETTLE: Duration = Duration::from_secs(30);

fn create(c: &mut Nfs3Client, root: &[u8], name: &str) -> Vec<u8> {
    c.create(root, name.as_bytes(), 0o644)
        .expect("CREATE call")
        .unwrap_or_else(|s| panic!("CREATE {name}: nfsstat3 {s}"))
        .expect("CREATE returned no handle")
}

fn read_all(c: &mut Nfs3Client, fh: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let (data, eof) = c
            .read(fh, out.len() as u64, 1 << 20)
            .expect("READ call")
            .unwrap_or_else(|s| panic!("READ: nfsstat3 {s}"));
        let done = eof || data.is_empty();
        out.extend_from_slice(&data);
        if done {
            return out;
        }
    }
}

fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(g, w)| g != w);
        panic!(
            "{what}: {} bytes, {} expected, first difference at {at:?}",
            got.len(),
            want.len()
        );
    }
}

#[test]
fn unstable_writes_are_read_back_at_once_and_on_the_bricks_after_commit() {
    let cluster = TestCluster::start(3);
    let gw = cluster.start_gateway(BEHIND);
    let mount = cluster.mount();
    let mut c = Nfs3Client::connect(gw.addr()).unwrap();
    let root = mount_root(&mut c);
    let fh = create(&mut c, &root, "unstable.dat");
    // A stream of 64 KiB writes, then overwrites inside it and one past
    // its end that leaves a hole, as a client's page cache sends them.
    let mut plan: Vec<(u64, usize)> = (0..64).map(|i| (i * 65_536, 65_536)).collect();
    plan.extend([
        (100_000, 3_000),
        (4_000_000, 70_000),
        (5 << 20, 12_345),
        (0, 17),
    ]);
    let (mut model, mut verf) = (Vec::new(), None);
    for (i, &(offset, len)) in plan.iter().enumerate() {
        let data = pattern(i as u64, len);
        let w = c
            .write_how(&fh, offset, &data, UNSTABLE)
            .expect("WRITE call")
            .unwrap_or_else(|s| panic!("WRITE {offset}+{len}: nfsstat3 {s}"));
        model_write(&mut model, offset, &data);
        assert_eq!(w.count as usize, len, "WRITE {offset}+{len} count");
        assert_eq!(
            w.committed, UNSTABLE,
            "WRITE {offset}+{len} was stored as asked"
        );
        assert_eq!(
            w.size,
            Some(model.len() as u64),
            "the size WRITE {offset}+{len} answered with"
        );
        assert_eq!(*verf.get_or_insert(w.verf), w.verf, "the verifier changed");
    }
    // Before any COMMIT the gateway's own clients read what was written.
    let got = c.getattr(&fh).expect("GETATTR call").expect("GETATTR");
    assert_eq!(got.size, model.len() as u64, "GETATTR before COMMIT");
    assert_same(&read_all(&mut c, &fh), &model, "READ before COMMIT");
    let committed = c.commit(&fh).expect("COMMIT call").expect("COMMIT");
    assert_eq!(Some(committed), verf, "COMMIT's verifier");
    // After it, every client: the FUSE mount reads the bricks' copies.
    let via_mount = std::fs::read(mount.join("unstable.dat")).unwrap();
    assert_same(&via_mount, &model, "the FUSE mount after COMMIT");
    cluster.assert_replicas_identical(SETTLE);
}

#[test]
fn a_write_that_fails_behind_the_gateway_is_reported_by_commit() {
    let cluster = TestCluster::start(3);
    let gw = cluster.start_gateway(BEHIND);
    let mut c = Nfs3Client::connect(gw.addr()).unwrap();
    let root = mount_root(&mut c);
    let fh = create(&mut c, &root, "failing.dat");
    c.write_how(&fh, 0, b"kept", UNSTABLE)
        .expect("WRITE call")
        .expect("WRITE with every brick up");
    c.commit(&fh)
        .expect("COMMIT call")
        .expect("COMMIT with every brick up");

    cluster.kill_brick(1);
    cluster.kill_brick(2);
    // Answered from the gateway's memory: one brick is no quorum, yet the
    // WRITE is accepted; what happened to it is COMMIT's to say.
    let w = c
        .write_how(&fh, 4, b" and lost", UNSTABLE)
        .expect("WRITE call");
    assert!(
        matches!(&w, Ok(w) if w.committed == UNSTABLE),
        "WRITE UNSTABLE right after quorum was lost answered {w:?}: it waited for the bricks"
    );
    let commit = c.commit(&fh).expect("COMMIT call");
    assert!(
        matches!(commit, Err(NFS3ERR_ROFS) | Err(NFS3ERR_IO)),
        "COMMIT after a write failed behind the gateway answered {commit:?}, expected ROFS or IO"
    );

    cluster.restart_brick(1);
    cluster.restart_brick(2);
    // Reported once: from now on the file writes and commits again.
    let mut last = None;
    let again = wait_until(SETTLE, || {
        last = Some(
            c.write_how(&fh, 4, b" again", UNSTABLE)
                .expect("WRITE call"),
        );
        matches!(last, Some(Ok(_))) && c.commit(&fh).expect("COMMIT call").is_ok()
    });
    assert!(
        again,
        "no WRITE + COMMIT succeeded after the bricks returned: {last:?}"
    );
    let _heald = cluster.start_heald(1);
    cluster.assert_replicas_identical(SETTLE);
    assert_same(
        &read_all(&mut c, &fh),
        b"kept again",
        "the file after it all",
    );
}

#[test]
fn a_clean_stop_sends_the_writes_it_holds_and_a_restart_changes_the_verifier() {
    let cluster = TestCluster::start(3);
    let gw = cluster.start_gateway(BEHIND);
    let mut c = Nfs3Client::connect(gw.addr()).unwrap();
    let root = mount_root(&mut c);
    let fh = create(&mut c, &root, "held.dat");
    // A hung brick makes every write wait for the op timeout before it
    // goes on with the other two: the writes are still in the gateway
    // when it is told to stop.
    cluster.stop_brick(0);
    let mut model = Vec::new();
    let mut verf = None;
    for i in 0..8u64 {
        let data = pattern(i, 256 << 10);
        let w = c
            .write_how(&fh, i * (256 << 10), &data, UNSTABLE)
            .expect("WRITE call")
            .unwrap_or_else(|s| panic!("WRITE {i}: nfsstat3 {s}"));
        verf.get_or_insert(w.verf);
        model_write(&mut model, i * (256 << 10), &data);
    }
    drop(c);
    let status = gw.terminate(SETTLE);
    assert!(
        status.is_some_and(|s| s.success()),
        "the gateway did not stop cleanly within {SETTLE:?}: {status:?}"
    );
    cluster.cont_brick(0);

    // Another start, another verifier: a client that had not committed
    // would send its writes again. The new gateway reads what the old one
    // sent before it stopped (a fresh client asks every brick until their
    // pings say no replica is blamed: brick 0 missed the writes).
    gw.restart();
    let mut c = Nfs3Client::connect(gw.addr()).unwrap();
    let committed = c.commit(&fh).expect("COMMIT call").expect("COMMIT");
    assert_ne!(
        Some(committed),
        verf,
        "the restarted gateway kept its verifier"
    );
    assert_same(
        &read_all(&mut c, &fh),
        &model,
        "the file after the gateway stopped",
    );
    let _heald = cluster.start_heald(1);
    cluster.assert_replicas_identical(SETTLE);
}
