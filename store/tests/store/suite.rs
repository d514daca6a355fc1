//! What every store must do, run against each backend. `a` and `b` are two
//! handles (two `open`s) on the same store, as two processes would have.

use std::sync::Arc;

use store::{Revision, Store, StoreError};

pub async fn run(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    missing_key(&*a).await;
    create_update_delete(&*a, &*b).await;
    list_by_prefix(&*a).await;
    bad_keys(&*a).await;
    arbitrary_bytes(&*a, &*b).await;
    watch_sees_changes(a.clone(), b.clone()).await;
    concurrent_cas(a, b).await;
}

/// `watch` returns at once when the key is not at the revision the caller
/// saw, within moments of a change by another handle, and at the timeout
/// when nothing changes.
async fn watch_sees_changes(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    use std::time::{Duration, Instant};
    let key = "watch/volume";
    let t = Instant::now();
    assert_eq!(
        a.watch(key, None, Duration::from_millis(300))
            .await
            .unwrap(),
        None
    );
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );

    let writer = {
        let b = b.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            b.put(key, b"v1", None).await.unwrap()
        })
    };
    let t = Instant::now();
    let seen = a
        .watch(key, None, Duration::from_secs(20))
        .await
        .unwrap()
        .unwrap();
    let r1 = writer.await.unwrap();
    assert_eq!((&seen.value[..], seen.revision), (&b"v1"[..], r1));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // Already changed: no wait at all.
    let r2 = b.put(key, b"v2", Some(r1)).await.unwrap();
    let t = Instant::now();
    let now = a
        .watch(key, Some(r1), Duration::from_secs(20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.revision, r2);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // A delete is a change too.
    let deleter = {
        let b = b.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            b.delete(key, r2).await.unwrap()
        })
    };
    assert_eq!(
        a.watch(key, Some(r2), Duration::from_secs(20))
            .await
            .unwrap(),
        None
    );
    deleter.await.unwrap();
}

async fn missing_key(s: &dyn Store) {
    assert_eq!(s.get("missing/key").await.unwrap(), None);
    assert!(s.list("missing/").await.unwrap().is_empty());
}

fn conflict(r: Result<impl std::fmt::Debug, StoreError>) -> (Option<Revision>, Option<Revision>) {
    match r {
        Err(StoreError::Conflict {
            expected, found, ..
        }) => (expected, found),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn create_update_delete(a: &dyn Store, b: &dyn Store) {
    let key = "crud/volume";
    let r1 = a.put(key, b"one", None).await.unwrap();
    let e = b.get(key).await.unwrap().unwrap();
    assert_eq!(
        (e.key.as_str(), &e.value[..], e.revision),
        (key, &b"one"[..], r1)
    );

    // Creating what exists: refused, value kept.
    assert_eq!(conflict(b.put(key, b"two", None).await), (None, Some(r1)));
    assert_eq!(a.get(key).await.unwrap().unwrap().value, b"one");

    // Update with the right revision: a larger one back.
    let r2 = b.put(key, b"two", Some(r1)).await.unwrap();
    assert!(r2 > r1, "{r2} > {r1}");
    let e = a.get(key).await.unwrap().unwrap();
    assert_eq!((&e.value[..], e.revision), (&b"two"[..], r2));

    // A stale revision: refused, value kept.
    assert_eq!(
        conflict(a.put(key, b"three", Some(r1)).await),
        (Some(r1), Some(r2))
    );
    assert_eq!(
        conflict(a.put(key, b"three", Some(0)).await),
        (Some(0), Some(r2))
    );
    assert_eq!(b.get(key).await.unwrap().unwrap().value, b"two");

    // Delete with a wrong revision: refused, key kept.
    assert_eq!(conflict(a.delete(key, r1).await), (Some(r1), Some(r2)));
    assert_eq!(b.get(key).await.unwrap().unwrap().revision, r2);

    b.delete(key, r2).await.unwrap();
    assert_eq!(a.get(key).await.unwrap(), None);
    assert_eq!(conflict(a.delete(key, r2).await), (Some(r2), None));
    assert_eq!(conflict(a.put(key, b"x", Some(r2)).await), (Some(r2), None));
    assert_eq!(conflict(a.put(key, b"x", Some(0)).await), (Some(0), None));

    // Created again: revisions never go back, so the old one cannot match.
    let r3 = a.put(key, b"again", None).await.unwrap();
    assert!(r3 > r2, "{r3} > {r2}");
    assert_eq!(
        conflict(a.put(key, b"x", Some(r2)).await),
        (Some(r2), Some(r3))
    );

    // A key and keys below it (a file and a directory in the file store).
    let r4 = a.put("crud/volume/brick1", b"below", None).await.unwrap();
    assert_eq!(a.get(key).await.unwrap().unwrap().value, b"again");
    a.delete(key, r3).await.unwrap();
    assert_eq!(
        a.get("crud/volume/brick1").await.unwrap().unwrap().revision,
        r4
    );
    a.delete("crud/volume/brick1", r4).await.unwrap();
    assert!(a.list("crud/").await.unwrap().is_empty());
}

async fn list_by_prefix(s: &dyn Store) {
    // Put out of order; `.` sorts before `/` bytewise.
    let keys = ["list/b/c", "list/a/z", "list/a", "list/b/a", "list/a.b"];
    let mut revs = Vec::new();
    for k in keys {
        revs.push(s.put(k, k.as_bytes(), None).await.unwrap());
    }
    for other in ["lista", "other/list/a", "lis"] {
        s.put(other, b"not listed", None).await.unwrap();
    }
    let keys_of = |v: Vec<store::Entry>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();

    let all = s.list("list/").await.unwrap();
    for e in &all {
        let i = keys.iter().position(|k| *k == e.key).unwrap();
        assert_eq!((&e.value[..], e.revision), (keys[i].as_bytes(), revs[i]));
    }
    assert_eq!(
        keys_of(all),
        ["list/a", "list/a.b", "list/a/z", "list/b/a", "list/b/c"]
    );
    assert_eq!(
        keys_of(s.list("list/b/").await.unwrap()),
        ["list/b/a", "list/b/c"]
    );
    assert_eq!(
        keys_of(s.list("list/a").await.unwrap()),
        ["list/a", "list/a.b", "list/a/z"]
    );
    assert_eq!(keys_of(s.list("list/a/").await.unwrap()), ["list/a/z"]);
    assert_eq!(
        keys_of(s.list("list").await.unwrap()),
        ["list/a", "list/a.b", "list/a/z", "list/b/a", "list/b/c", "lista"]
    );
    assert!(s.list("list/c").await.unwrap().is_empty());
    let everything = keys_of(s.list("").await.unwrap());
    assert!(everything.windows(2).all(|w| w[0] < w[1]), "{everything:?}");
    assert!(everything.contains(&"other/list/a".to_string()));
}

async fn bad_keys(s: &dyn Store) {
    // The longest key: 512 bytes, in names of at most 200.
    let name = "k".repeat(200);
    let longest = format!("long/{name}/{name}/{}", "k".repeat(512 - 407));
    let too_long = format!("{longest}k");
    let long_name = format!("long/{name}k");
    for key in [
        "",
        "/abs",
        "trailing/",
        "a//b",
        ".",
        "..",
        "a/../b",
        "sp ace",
        "ü",
        &too_long,
        &long_name,
    ] {
        let bad = |r: Result<_, StoreError>| matches!(r, Err(StoreError::BadKey(_)));
        assert!(bad(s.get(key).await.map(|_| ())), "get {key:?}");
        assert!(bad(s.put(key, b"v", None).await.map(|_| ())), "put {key:?}");
        assert!(bad(s.delete(key, 1).await), "delete {key:?}");
    }
    for prefix in ["/", "../", "a//", "sp ace"] {
        assert!(
            matches!(s.list(prefix).await, Err(StoreError::BadKey(_))),
            "list {prefix:?}"
        );
    }
    assert_eq!(longest.len(), 512);
    let rev = s.put(&longest, b"longest", None).await.unwrap();
    assert_eq!(s.get(&longest).await.unwrap().unwrap().revision, rev);
    assert_eq!(s.list("long/").await.unwrap().len(), 1);
}

async fn arbitrary_bytes(a: &dyn Store, b: &dyn Store) {
    let every_byte: Vec<u8> = (0..=255).collect();
    let big: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    let values: [&[u8]; 5] = [
        b"",
        &every_byte,
        b"rev 7\nlooks like a header\n",
        b"\n\n\0",
        &big,
    ];
    for (i, v) in values.iter().enumerate() {
        let key = format!("bytes/{i}");
        let rev = a.put(&key, v, None).await.unwrap();
        let e = b.get(&key).await.unwrap().unwrap();
        assert_eq!((&e.value[..], e.revision), (*v, rev), "value {i}");
    }
    let listed = b.list("bytes/").await.unwrap();
    assert_eq!(listed.len(), values.len());
    for (e, v) in listed.iter().zip(values) {
        assert_eq!(e.value, v);
    }
}

/// Adds one to the decimal counter at `key`, `times` times, by
/// read-modify-write with retries on conflict. Returns the conflicts seen.
pub async fn increment(s: &dyn Store, key: &str, times: usize) -> usize {
    let mut conflicts = 0;
    for _ in 0..times {
        loop {
            let e = s.get(key).await.unwrap().unwrap();
            let n: u64 = std::str::from_utf8(&e.value).unwrap().parse().unwrap();
            match s
                .put(key, (n + 1).to_string().as_bytes(), Some(e.revision))
                .await
            {
                Ok(_) => break,
                Err(StoreError::Conflict { .. }) => conflicts += 1,
                Err(e) => panic!("increment: {e}"),
            }
            assert!(conflicts < 100_000, "no progress");
        }
    }
    conflicts
}

pub fn counter(value: &[u8]) -> u64 {
    std::str::from_utf8(value).unwrap().parse().unwrap()
}

/// 8 tasks (4 on each handle), 20 increments each: nothing may be lost.
async fn concurrent_cas(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let key = "cas/counter";
    a.put(key, b"0", None).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { increment(&*s, key, 20).await })
        })
        .collect();
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let e = a.get(key).await.unwrap().unwrap();
    assert_eq!(counter(&e.value), 160, "after {conflicts} conflicts");
    eprintln!(
        "concurrent CAS on {}: 160 increments, {conflicts} conflicts",
        a.url()
    );
}
