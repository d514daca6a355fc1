//! The file backend.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use store::StoreError;

use crate::suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let url = format!("file://{}", dir.display());
    let a = store::open(&url).await.unwrap();
    // The plain path is the same store.
    let b = store::open(dir.to_str().unwrap()).await.unwrap();
    assert_eq!(a.url(), url);
    suite::run(a.clone(), b).await;

    // The layout the module doc promises.
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let raw = std::fs::read(dir.join("kv/cas/counter,v")).unwrap();
    let rev = a.get("cas/counter").await.unwrap().unwrap().revision;
    assert_eq!(raw, format!("rev {rev}\n160").into_bytes());
    let counter: u64 = std::fs::read_to_string(dir.join("revision"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(counter >= rev);
    // Deleting the last key below a directory removed the directory.
    assert!(!dir.join("kv/crud").exists());
}

#[tokio::test]
async fn file_urls() {
    // Every spelling of one directory (with a space) is the same store.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("my store");
    let plain = dir.to_str().unwrap().to_string();
    let escaped = plain.replace(' ', "%20");
    let a = store::open(&plain).await.unwrap();
    let rev = a.put("k", b"v", None).await.unwrap();
    for url in [
        format!("file://{escaped}"),
        format!("file://localhost{escaped}"),
        format!("file:{escaped}"),
    ] {
        let s = store::open(&url).await.unwrap();
        assert_eq!(s.get("k").await.unwrap().unwrap().revision, rev, "{url}");
    }

    for bad in [
        "relative/dir",
        "file://relative",
        "file://host/dir",
        "http://x",
        "",
        "etc",
    ] {
        assert!(
            matches!(store::open(bad).await, Err(StoreError::BadUrl(_))),
            "{bad}"
        );
    }
}

/// Reading and opening create nothing; the directory appears on the first
/// write.
#[tokio::test]
async fn file_created_on_first_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b");
    let s = store::open(dir.to_str().unwrap()).await.unwrap();
    assert_eq!(s.get("k").await.unwrap(), None);
    assert!(s.list("").await.unwrap().is_empty());
    assert!(matches!(
        s.delete("k", 1).await,
        Err(StoreError::Conflict { found: None, .. })
    ));
    assert!(!tmp.path().join("a").exists());
    s.put("k", b"v", None).await.unwrap();
    for d in [tmp.path().join("a"), dir.clone(), dir.join("kv")] {
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}

#[tokio::test]
async fn file_corrupt_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store::open(tmp.path().to_str().unwrap()).await.unwrap();
    s.put("ok", b"v", None).await.unwrap();
    std::fs::write(tmp.path().join("kv/bad,v"), b"no header").unwrap();
    assert!(matches!(
        s.get("bad").await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(s.list("").await, Err(StoreError::Corrupt { .. })));
    // Leftovers of a crashed write are not keys.
    std::fs::remove_file(tmp.path().join("kv/bad,v")).unwrap();
    std::fs::write(tmp.path().join("kv/ok,v,tmp"), b"rev 99\nhalf").unwrap();
    let keys: Vec<_> = s
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["ok"]);
}

/// A writer stuck holding the lock makes others fail after a few seconds
/// instead of hanging.
#[tokio::test]
async fn file_lock_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store::open(tmp.path().to_str().unwrap()).await.unwrap();
    s.put("k", b"v", None).await.unwrap();
    let held = std::fs::File::open(tmp.path().join("lock")).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let t = Instant::now();
    match s.put("k2", b"v", None).await {
        Err(StoreError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::TimedOut)
        }
        other => panic!("expected a lock timeout, got {other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_secs(4) && t.elapsed() < Duration::from_secs(10));
    // Reads take no lock.
    assert!(s.get("k").await.unwrap().is_some());
    drop(held);
    s.put("k2", b"v", None).await.unwrap();
}

const CHILD_ENV: &str = "STORE_TEST_CAS_CHILD_DIR";

/// Real processes this time (the suite's two handles share one process):
/// two children of this test binary increment one counter, 4 tasks × 20
/// each; the flock must serialise them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_cas_across_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store::open(tmp.path().to_str().unwrap()).await.unwrap();
    s.put("counter", b"0", None).await.unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "file::cas_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, tmp.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        let status = tokio::task::spawn_blocking(move || c.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "child: {status}");
    }
    let e = s.get("counter").await.unwrap().unwrap();
    assert_eq!(suite::counter(&e.value), 160);
}

/// The child side of `file_cas_across_processes` (does nothing on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cas_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let s = store::open(Path::new(&dir).to_str().unwrap())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { suite::increment(&*s, "counter", 20).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}
