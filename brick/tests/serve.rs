//! The brick over real TCP: bad peers lose only their own connection.

use std::time::Duration;

use brick::{serve, BrickConfig};
use proto::{BrickClient, FileKind, FsError, Gfid, Name, NewObject, Txn};
use tarpc::context;
use tarpc::tokio_serde::formats::Bincode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends `bytes` and expects the brick to close the connection.
async fn expect_dropped(addr: std::net::SocketAddr, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("send");
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("brick answered {n} bytes to garbage"),
        Err(_) => panic!("brick kept a garbage connection open"),
    }
}

#[tokio::test]
async fn garbage_and_oversized_frames_only_drop_their_connection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = BrickConfig {
        dir: tmp.path().join("brick"),
        volume: Some("vol".into()),
        scope_keys: None,
    };
    let server = tokio::spawn(serve(listener, config, async {
        let _ = stopped.await;
    }));

    // A well-framed message that is not bincode for any request.
    let mut garbage = 24u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xff; 24]);
    expect_dropped(addr, &garbage).await;
    // A length prefix far beyond MAX_FRAME.
    expect_dropped(addr, &u32::MAX.to_be_bytes()).await;

    let mut connect = tarpc::serde_transport::tcp::connect(addr, Bincode::default);
    connect.config_mut().max_frame_length(proto::MAX_FRAME);
    let transport = connect.await.expect("tarpc connect");
    let client = BrickClient::new(tarpc::client::Config::default(), transport).spawn();
    client.ping(context::current()).await.expect("ping");
    let info = client
        .hello(context::current(), 7, "vol".into(), proto::Purpose::Client)
        .await
        .expect("rpc")
        .expect("hello");
    assert!(info.dir.ends_with("brick"));
    let refused = client
        .hello(
            context::current(),
            7,
            "other".into(),
            proto::Purpose::Client,
        )
        .await
        .expect("rpc");
    assert!(matches!(refused, Err(FsError::Refused(_))));

    let new = NewObject {
        name: Name::from("hello.txt"),
        gfid: Gfid::random(),
        kind: FileKind::File,
        perm: 0o644,
        rdev: 0,
        uid: 0,
        gid: 0,
        target: None,
        lock: true,
        xattrs: Vec::new(),
        data: Default::default(),
        times: Default::default(),
    };
    let done = client
        .create(context::current(), Txn::none(), Gfid::ROOT, new.clone())
        .await
        .expect("rpc")
        .expect("create");
    assert!(!done.contended);
    client
        .write(
            context::current(),
            Txn::none(),
            new.gfid,
            0,
            proto::Bytes::from(b"hi".to_vec()),
        )
        .await
        .expect("rpc")
        .expect("write");
    let looked = client
        .lookup(context::current(), Gfid::ROOT, new.name.clone())
        .await
        .expect("rpc")
        .expect("lookup");
    assert_eq!(looked.attr.size, 2);
    assert_eq!(
        std::fs::read(tmp.path().join("brick/hello.txt")).expect("cat"),
        b"hi"
    );

    let _ = stop.send(());
    server.await.expect("join").expect("serve");
}
