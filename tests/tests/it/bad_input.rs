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
    raw::new_object(name, FileKind::File, 0o644)
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
    c.hello(raw::context(T), 7, "test".into(), proto::Purpose::Client)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_port_rejects_bad_frames_and_keeps_serving() {
    use proto::data::{self, RequestHeader, MAGIC, OP_READ, OP_WRITE, RESP_FIXED};

    let cluster = TestCluster::start(1);
    let addr = cluster.brick_addr(0);
    let c = raw::connect(addr).await.unwrap();
    let session = c
        .hello(raw::context(T), 9, "test".into(), proto::Purpose::Client)
        .await
        .unwrap()
        .unwrap()
        .session;
    let opening = |token: u64| {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&token.to_le_bytes());
        b
    };
    let send =
        |bytes: Vec<u8>| tokio::task::spawn_blocking(move || raw::send_raw_data(addr, &bytes, T));

    // A session the brick never handed out.
    let out = send(opening(session.wrapping_add(1)))
        .await
        .unwrap()
        .unwrap();
    assert!(out.is_empty(), "an unknown session was served");

    // An oversized frame, and a write whose length does not add up.
    let mut huge = opening(session);
    huge.extend_from_slice(&raw::frame_header(u32::MAX));
    assert!(send(huge).await.unwrap().unwrap().is_empty());
    let short = RequestHeader {
        id: 1,
        op: OP_WRITE,
        gfid: Gfid::ROOT,
        offset: 0,
        size: 100,
        blame: vec![],
    };
    let mut lying = opening(session);
    lying.extend_from_slice(&short.encode(3));
    lying.extend_from_slice(b"abc");
    assert!(send(lying).await.unwrap().unwrap().is_empty());

    // A well-formed read of a gfid nobody has: an error answer, not a crash.
    let ghost = RequestHeader {
        id: 7,
        op: OP_READ,
        gfid: Gfid::random(),
        offset: 0,
        size: 16,
        blame: vec![],
    };
    let mut ask = opening(session);
    ask.extend_from_slice(&ghost.encode(0));
    let out = send(ask).await.unwrap().unwrap();
    assert!(out.len() > 4 + RESP_FIXED, "no answer to a valid request");
    let mut fixed = [0u8; RESP_FIXED];
    fixed.copy_from_slice(&out[4..4 + RESP_FIXED]);
    assert_eq!(data::decode_response(&fixed), (7, data::STATUS_ERR));
    let err: FsError = data::decode_value(&out[4 + RESP_FIXED..]).unwrap();
    assert!(matches!(err, FsError::Stale(_)), "{err:?}");

    assert!(raw::answers_ping(addr, T).await, "brick stopped serving");
    drop(c);
}
