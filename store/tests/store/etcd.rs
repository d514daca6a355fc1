//! The etcd backend against a real etcd.

use std::time::{Duration, Instant};

use store::StoreError;

use crate::etcd_server::{free_port, Etcd};
use crate::suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_suite() {
    let etcd = Etcd::start().await;
    let url = etcd.url();
    let a = store::open(&url).await.unwrap();
    let b = store::open(&url).await.unwrap();
    assert_eq!(a.url(), url);
    suite::run(a.clone(), b).await;

    // Everything is under /brickfs/, and keys outside it are not ours.
    let mut raw = etcd_client::Client::connect([url.replace("etcd://", "http://")], None)
        .await
        .unwrap();
    let e = raw.get("/brickfs/cas/counter", None).await.unwrap();
    assert_eq!(e.kvs()[0].value(), b"160");
    raw.put("/elsewhere/x", "y", None).await.unwrap();
    raw.put("/brickfsx", "y", None).await.unwrap();
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
    let mut etcd = Etcd::start().await;
    let s = store::open(&etcd.url()).await.unwrap();
    let rev = s.put("volumes/gv0", b"spec", None).await.unwrap();

    etcd.stop();
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

    etcd.spawn().await;
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
    let mut etcd = Etcd::start().await;
    let s = store::open(&etcd.url()).await.unwrap();
    let rev = s.put("volumes/gv0", b"spec", None).await.unwrap();
    let watcher = {
        let s = s.clone();
        tokio::spawn(async move {
            s.watch("volumes/gv0", Some(rev), Duration::from_secs(60))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    etcd.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    etcd.spawn().await;
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
