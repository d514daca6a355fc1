//! The etcd backend against a real etcd.

use std::time::{Duration, Instant};

use store::StoreError;

use tests::etcd::Etcd;
use tests::free_port;

use crate::suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_suite() {
    let etcd = Etcd::start_in_temp_dir();
    let url = etcd.url();
    let a = store::open(&url).await.unwrap();
    let b = store::open(&url).await.unwrap();
    assert_eq!(a.url(), url);
    suite::run(a.clone(), b).await;

    // Everything is under /brickfs/, and keys outside it are not ours.
    assert_eq!(
        etcd.raw_get("/brickfs/cas/counter").as_deref(),
        Some(&b"160"[..])
    );
    etcd.raw_put("/elsewhere/x", b"y");
    etcd.raw_put("/brickfsx", b"y");
    assert_eq!(etcd.raw_get("/elsewhere/x").as_deref(), Some(&b"y"[..]));
    let keys: Vec<_> = a
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert!(keys.contains(&"cas/counter".to_string()));
    assert!(
        keys.iter()
            .all(|k| !k.contains("elsewhere") && !k.contains("brickfs")),
        "{keys:?}"
    );
    assert_eq!(a.get("elsewhere/x").await.unwrap(), None);
}

#[tokio::test]
async fn etcd_unreachable_is_reported_quickly() {
    let url = format!("etcd://127.0.0.1:{}", free_port());
    let t = Instant::now();
    match store::open(&url).await {
        Err(StoreError::Unreachable { url: u, .. }) => assert_eq!(u, url),
        Err(e) => panic!("expected Unreachable, got {e}"),
        Ok(_) => panic!("expected Unreachable, got a store"),
    }
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
}

/// etcd dies and comes back: calls meanwhile fail quickly with
/// `Unreachable`, and the same store works again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_reconnects() {
    let mut etcd = Etcd::start_in_temp_dir();
    let s = store::open(&etcd.url()).await.unwrap();
    let rev = s.put("volumes/gv0", b"spec", None).await.unwrap();

    etcd.kill();
    let t = Instant::now();
    match s.get("volumes/gv0").await {
        Err(StoreError::Unreachable { url, why }) => {
            assert_eq!(url, etcd.url());
            eprintln!("while down: {why}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    match s.put("volumes/gv0", b"new", Some(rev)).await {
        Err(StoreError::Unreachable { .. }) => {}
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(12), "{:?}", t.elapsed());

    etcd.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let e = loop {
        match s.get("volumes/gv0").await {
            Ok(e) => break e.unwrap(),
            Err(StoreError::Unreachable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("after etcd came back: {e}"),
        }
    };
    assert_eq!((&e.value[..], e.revision), (&b"spec"[..], rev));
    let rev2 = s.put("volumes/gv0", b"new", Some(rev)).await.unwrap();
    assert!(rev2 > rev);
}

/// A watch outlives etcd going away and coming back: the change made after
/// the restart is still reported to the watch started before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watch_survives_a_restart() {
    let mut etcd = Etcd::start_in_temp_dir();
    let s = store::open(&etcd.url()).await.unwrap();
    let rev = s.put("volumes/gv0", b"spec", None).await.unwrap();
    let watcher = {
        let s = s.clone();
        tokio::spawn(async move {
            s.watch("volumes/gv0", Some(rev), Duration::from_secs(60))
                .await
        })
    };
    assert!(
        tests::wait_until(Duration::from_secs(10), || etcd.watchers() >= Some(1)),
        "the watch did not reach etcd"
    );
    etcd.kill();
    // An outage, not a blip: the watch has to find etcd gone and retry.
    // Nothing to poll from here; the retries are the store's own.
    tokio::time::sleep(Duration::from_secs(1)).await;
    etcd.restart();
    let other = store::open(&etcd.url()).await.unwrap();
    let rev2 = other
        .put("volumes/gv0", b"changed", Some(rev))
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .expect("watch did not return after the change")
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((&seen.value[..], seen.revision), (&b"changed"[..], rev2));
}

/// Of several endpoints, one that refuses is passed over; with all of them
/// gone, the error names each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_tries_the_next_endpoint() {
    let mut etcd = Etcd::start_in_temp_dir();
    let dead = format!("127.0.0.1:{}", free_port());
    let url = format!("etcd://{dead},{}", etcd.url().trim_start_matches("etcd://"));
    let s = store::open(&url).await.unwrap();
    let rev = s.put("volumes/gv0", b"spec", None).await.unwrap();
    assert_eq!(s.get("volumes/gv0").await.unwrap().unwrap().revision, rev);

    etcd.kill();
    match s.get("volumes/gv0").await {
        Err(StoreError::Unreachable { why, .. }) => {
            assert!(why.contains(&dead), "{why}");
            assert!(why.matches("refused").count() == 2, "{why}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

/// Something that is not etcd's gateway answering: an error that says so,
/// not a hang and not `Unreachable`.
#[tokio::test]
async fn etcd_not_etcd() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("etcd://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut request = [0; 4096];
            let _ = conn.read(&mut request).await;
            let _ = conn
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nNot Found\n")
                .await;
        }
    });
    match store::open(&url).await {
        Err(StoreError::Io { context, source }) => {
            assert!(context.contains(&url), "{context}");
            assert!(source.to_string().contains("404"), "{source}");
        }
        Err(e) => panic!("expected Io, got {e}"),
        Ok(_) => panic!("expected Io, got a store"),
    }
}

/// A watch on a key whose last write is older than etcd's compaction
/// (etcd cancels a watch that starts before it) still sees the next change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watch_after_compaction() {
    let etcd = Etcd::start_in_temp_dir();
    let s = store::open(&etcd.url()).await.unwrap();
    let rev = s.put("volumes/gv0", b"spec", None).await.unwrap();
    let mut other = s.put("volumes/other", b"0", None).await.unwrap();
    for i in 1..5 {
        other = s
            .put("volumes/other", i.to_string().as_bytes(), Some(other))
            .await
            .unwrap();
    }
    etcd.raw_compact(other);

    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            s.put("volumes/gv0", b"changed", Some(rev)).await.unwrap()
        })
    };
    let t = Instant::now();
    let seen = s
        .watch("volumes/gv0", Some(rev), Duration::from_secs(20))
        .await
        .unwrap()
        .unwrap();
    let rev2 = writer.await.unwrap();
    assert_eq!((&seen.value[..], seen.revision), (&b"changed"[..], rev2));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}
