//! `brickfs volume add-brick` and `brickfs volume rebalance` through the
//! CLI against real bricks: bad input that must leave the store as it was,
//! a volume growing from 2 x 3 to 3 x 3, and the rebalance runner's life
//! cycle (start, status, stop) as far as it does not depend on files being
//! spread (tests/tests/rebalance.rs does that).

use std::time::Duration;

use tests::cluster::{wait_until, TestCluster, VOLUME};
use tests::extra_brick::ExtraBrick;
use tests::volume::{assert_refused, brickfs, create_volume, store_files};

#[test]
fn bad_add_brick_input_leaves_the_store_unchanged_and_good_input_adds_a_set() {
    let cluster = TestCluster::start(9);
    let dir = cluster.root().join("store");
    let store = format!("file://{}", dir.display());
    let a = cluster.brick_addrs(0..9);
    create_volume(&cluster, &store, VOLUME, &a[..6]);
    brickfs(&cluster, &store, &["volume", "start", VOLUME]).assert_ok();
    // Another volume, and a brick bound to a volume the store does not know.
    let others: Vec<ExtraBrick> = (0..3)
        .map(|i| ExtraBrick::start(&cluster, &cluster.root().join(format!("other{i}")), None))
        .collect();
    let other_addrs: Vec<String> = others.iter().map(|b| b.addr.clone()).collect();
    create_volume(&cluster, &store, "other", &other_addrs);
    let elsewhere = ExtraBrick::start(
        &cluster,
        &cluster.root().join("elsewhere"),
        Some("elsewhere"),
    );
    let before = store_files(&dir);

    let (b6, b7, b8) = (a[6].as_str(), a[7].as_str(), a[8].as_str());
    let port6 = cluster.brick_addr(6).port();
    // 127.1 is 127.0.0.1 to the resolver: brick 6 under a second address.
    let alias6 = format!("127.1:{port6}");
    let refused: Vec<(Vec<&str>, &str)> = vec![
        (add(&[b6, b7]), "multiple of 3"),
        (add(&[b6, b7, b8, a[0].as_str()]), "multiple of 3"),
        (add(&[b6, b7, b6]), "given twice"),
        (add(&["replica", "2", b6, b7]), "cannot make them replica 2"),
        (add(&[b6, b7, "no-port"]), "bad brick address"),
        (
            add(&[b6, b7, a[1].as_str()]),
            "already brick 2 of volume test",
        ),
        (
            add(&[b6, b7, other_addrs[0].as_str()]),
            "already brick 1 of volume other",
        ),
        (add(&[b6, b7, alias6.as_str()]), "are the same brick"),
        (
            add(&[b6, b7, elsewhere.addr.as_str()]),
            "belongs to volume elsewhere",
        ),
        (add(&[b6, b7, "127.0.0.1:1"]), "cannot reach brick"),
        (
            vec!["volume", "add-brick", "nope", b6, b7, b8],
            "unknown volume nope",
        ),
    ];
    assert_refused(&cluster, &store, &dir, &refused);
    let unreachable = brickfs(&cluster, "etcd://127.0.0.1:1", &add(&[b6, b7, b8]));
    assert!(
        !unreachable.ok && unreachable.err.contains("unreachable"),
        "{}",
        unreachable.err
    );
    assert_eq!(store_files(&dir), before);

    // The bricks refused above are fine on their own: 2 x 3 → 3 x 3.
    let out = brickfs(&cluster, &store, &add(&[b6, b7, b8])).assert_ok();
    assert!(out.contains("volume add-brick: test: success"), "{out}");
    assert!(
        out.contains(&format!("replica set 3: {b6} {b7} {b8}")),
        "{out}"
    );
    assert!(out.contains("volume rebalance test start"), "{out}");
    let info = brickfs(&cluster, &store, &["volume", "info", VOLUME]).assert_ok();
    assert!(
        info.contains("Number of Bricks: 3 x 3 = 9")
            && info.contains("Type: Distributed-Replicate")
            && info.contains("Status: Started")
            && info.contains(&format!("Brick9: {b8}")),
        "{info}"
    );
    let status = brickfs(&cluster, &store, &["volume", "status", VOLUME]).assert_ok();
    for (i, brick) in a.iter().enumerate() {
        let line = status
            .lines()
            .find(|l| l.starts_with(brick.as_str()))
            .unwrap_or_else(|| panic!("brick {brick} not in:\n{status}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cols[1..4],
            [(i / 3 + 1).to_string().as_str(), "Y", "ok"],
            "{status}"
        );
    }
    // The other volume is untouched.
    let other = brickfs(&cluster, &store, &["volume", "info", "other"]).assert_ok();
    assert!(other.contains("1 x 3 = 3"), "{other}");
    // And the bricks are taken now.
    let again = brickfs(&cluster, &store, &add(&[b6, b7, b8]));
    assert!(
        !again.ok && again.err.contains("already brick 7 of volume test"),
        "{}",
        again.err
    );
}

/// `volume add-brick test BRICKS...`.
fn add<'a>(bricks: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["volume", "add-brick", VOLUME];
    args.extend_from_slice(bricks);
    args
}

#[test]
fn rebalance_start_status_stop_through_the_cli() {
    let cluster = TestCluster::start(9);
    let dir = cluster.root().join("store");
    let store = format!("file://{}", dir.display());
    let a = cluster.brick_addrs(0..9);
    create_volume(&cluster, &store, VOLUME, &a[..3]);
    let rebalance = |what: &str| brickfs(&cluster, &store, &["volume", "rebalance", VOLUME, what]);

    let r = rebalance("start");
    assert!(!r.ok && r.err.contains("start it first"), "{}", r.err);
    brickfs(&cluster, &store, &["volume", "start", VOLUME]).assert_ok();
    let r = rebalance("start");
    assert!(!r.ok && r.err.contains("nothing to rebalance"), "{}", r.err);
    let s = rebalance("status").assert_ok();
    assert!(s.contains("no rebalance has been started"), "{s}");
    let r = rebalance("stop");
    assert!(!r.ok && r.err.contains("no rebalance"), "{}", r.err);
    let r = brickfs(&cluster, &store, &["volume", "rebalance", "nope", "status"]);
    assert!(!r.ok && r.err.contains("unknown volume nope"), "{}", r.err);

    let mut args = vec!["volume", "add-brick", VOLUME];
    args.extend(a[3..6].iter().map(String::as_str));
    brickfs(&cluster, &store, &args).assert_ok();

    // In the background: a runner with a pid and a log next to the store.
    let out = rebalance("start").assert_ok();
    let log = dir.join("rebalance-test.log");
    assert!(
        out.contains("started over 2 replica sets") && out.contains(&log.display().to_string()),
        "{out}"
    );
    let pid: u32 = out
        .split("runner pid ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out:?}"));
    // Whatever the engine makes of an empty volume, the run ends, says
    // how, and its runner exits.
    let mut last = String::new();
    let ended = wait_until(Duration::from_secs(60), || {
        last = rebalance("status").assert_ok();
        ["completed", "failed"]
            .iter()
            .any(|s| last.contains(&format!(" {s} ")))
    });
    assert!(ended, "the rebalance did not end:\n{last}");
    assert!(last.contains("over 2 replica sets"), "{last}");
    assert!(
        wait_until(Duration::from_secs(10), || !tests::pid_alive(pid)),
        "runner {pid} still runs"
    );
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log_text.contains("rebalance started"), "log:\n{log_text}");
    let r = rebalance("stop");
    assert!(
        !r.ok && r.err.contains("is running (the last one"),
        "{}",
        r.err
    );
    let status = brickfs(&cluster, &store, &["volume", "status", VOLUME]).assert_ok();
    assert!(status.contains("Task: Rebalance"), "{status}");

    // In the foreground, with the outcome as the exit status.
    let fg = brickfs(
        &cluster,
        &store,
        &["volume", "rebalance", VOLUME, "start", "--foreground"],
    );
    let completed = fg.out.contains(" completed ");
    let failed = fg.out.contains(" failed ");
    assert!(completed || failed, "{}\n{}", fg.out, fg.err);
    assert_eq!(fg.ok, completed, "{}\n{}", fg.out, fg.err);
}
