//! Bad input straight at brickd's RPC port: garbage, oversized frames, names
//! that try to escape, unknown gfids. Clear errors; the brick keeps serving;
//! nothing outside its directory is touched.

use std::fs;
use std::time::Duration;

use proto::{FileKind, FsError, Gfid, Name, NewObject, RenameReq, Txn};
use tests::cluster::TestCluster;
use tests::raw;

const T: Duration = Duration::from_secs(5);

fn new_file(name: &[u8]) -> NewObject {
    NewObject {
        name: Name::new(name),
        gfid: Gfid::random(),
        kind: FileKind::File,
        perm: 0o644,
        rdev: 0,
        uid: 0,
        gid: 0,
        target: None,
        lock: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brick_rejects_bad_input_and_keeps_serving() {
    let cluster = TestCluster::start(1);
    let addr = cluster.brick_addr(0);
    let outside = cluster.root().join("outside");
    fs::create_dir(&outside).unwrap();

    // Garbage and an oversized frame each cost only their own connection.
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 256) as u8).collect();
    let _ = tokio::task::spawn_blocking(move || raw::send_raw(addr, &garbage, T)).await;
    let huge = raw::frame_header(u32::MAX);
    let _ = tokio::task::spawn_blocking(move || raw::send_raw(addr, &huge, T)).await;
    let bad_payload = raw::frame(&[0xff; 64]);
    let _ = tokio::task::spawn_blocking(move || raw::send_raw(addr, &bad_payload, T)).await;
    assert!(raw::answers_ping(addr, T).await, "brick stopped serving");

    let c = raw::connect(addr).await.unwrap();
    c.hello(raw::context(T), 7, "test".into())
        .await
        .unwrap()
        .unwrap();

    // Names that are not one plain component.
    for bad in [&b".."[..], b".", b"a/b", b"../../outside/x", b"x\0y", b""] {
        let r = c
            .create(raw::context(T), Txn::none(), Gfid::ROOT, new_file(bad))
            .await
            .unwrap();
        assert!(r.is_err(), "create {bad:?} was accepted");
        let r = c
            .lookup(raw::context(T), Gfid::ROOT, Name::new(bad))
            .await
            .unwrap();
        assert!(r.is_err(), "lookup {bad:?} was accepted");
    }
    let long = vec![b'n'; 256];
    let r = c
        .create(raw::context(T), Txn::none(), Gfid::ROOT, new_file(&long))
        .await
        .unwrap();
    assert_eq!(r.unwrap_err(), FsError::NameTooLong);

    // The private directory is not reachable by name.
    let r = c
        .lookup(raw::context(T), Gfid::ROOT, Name::from(".brickfs"))
        .await
        .unwrap();
    assert!(r.is_err());
    let r = c
        .rename(
            raw::context(T),
            Txn::none(),
            RenameReq {
                parent: Gfid::ROOT,
                name: Name::from(".brickfs"),
                new_parent: Gfid::ROOT,
                new_name: Name::from("stolen"),
                flags: 0,
            },
        )
        .await
        .unwrap();
    assert!(r.is_err());

    // Unknown gfids are stale handles, not crashes.
    let ghost = Gfid::random();
    let r = c.getattr(raw::context(T), ghost).await.unwrap();
    assert!(matches!(r, Err(FsError::Stale(_))), "{r:?}");
    let r = c.read(raw::context(T), ghost, 0, 10).await.unwrap();
    assert!(matches!(r, Err(FsError::Stale(_))), "{r:?}");
    let r = c
        .create(raw::context(T), Txn::none(), ghost, new_file(b"child"))
        .await
        .unwrap();
    assert!(matches!(r, Err(FsError::Stale(_))), "{r:?}");
    let r = c.readdir(raw::context(T), ghost, None, 10).await.unwrap();
    assert!(r.is_err());

    // A symlink pointing outside cannot be used as a directory.
    let link = new_file(b"evil");
    let link = NewObject {
        kind: FileKind::Symlink,
        target: Some(proto::Bytes::from(
            outside.as_os_str().as_encoded_bytes().to_vec(),
        )),
        ..link
    };
    let evil = c
        .create(raw::context(T), Txn::none(), Gfid::ROOT, link)
        .await
        .unwrap()
        .unwrap()
        .value;
    let r = c
        .create(
            raw::context(T),
            Txn::none(),
            evil.gfid,
            new_file(b"escaped"),
        )
        .await
        .unwrap();
    assert!(r.is_err(), "created a file through a symlink");

    assert!(raw::answers_ping(addr, T).await);
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "something escaped"
    );
}
