//! The status document, `start`'s claim and `stop` against an in-memory
//! store (`volume_cmd::tests`), and the text of `status`.

use std::time::Duration;

use client::rebalance::RebalanceProgress;
use store::Store;

use super::doc::{self, RebalanceDoc, RunState, STALE_SECS};
use super::{claim, default_log, runner, show, stop};
use crate::volume_cmd::ops;
use crate::volume_cmd::tests::{addrs, create, refused, rt, FakeBricks, MemStore};

const T0: u64 = 1_700_000_000;

fn doc_at(state: RunState, updated: u64) -> RebalanceDoc {
    let mut d = RebalanceDoc::new_run("gv0", 2, T0, "/var/lib/brickfs/rebalance-gv0.log".into());
    d.state = state;
    d.updated = updated;
    d.pid = 4242;
    d.host = "h1".into();
    d
}

#[test]
fn document_round_trip() {
    let mut d = doc_at(RunState::Running, T0 + 5);
    d.set_progress(&RebalanceProgress {
        dirs_fixed: 3,
        files_scanned: 1200,
        files_migrated: 400,
        bytes_migrated: 12 << 20,
        files_skipped: 2,
        failures: 1,
        stopped: false,
    });
    d.error = Some("set 2 down".into());
    let json = d.to_json();
    assert!(json.contains("\"state\": \"running\""), "{json}");
    assert!(json.contains("\"files_migrated\": 400"), "{json}");
    assert_eq!(RebalanceDoc::from_json(json.as_bytes()).unwrap(), d);
    for (state, word) in [
        (RunState::Stopping, "stopping"),
        (RunState::Completed, "completed"),
        (RunState::Stopped, "stopped"),
        (RunState::Failed, "failed"),
    ] {
        let mut e = d.clone();
        e.state = state;
        e.finished = Some(T0 + 9);
        let json = e.to_json();
        assert!(json.contains(&format!("\"state\": \"{word}\"")), "{json}");
        assert_eq!(RebalanceDoc::from_json(json.as_bytes()).unwrap(), e);
    }
    // Counters, error, finished and log may be missing (defaults).
    let minimal = br#"{"format":1,"volume":"gv0","run_id":"r","state":"completed","sets":3,
        "started":1,"updated":2,"host":"h","pid":7}"#;
    let m = RebalanceDoc::from_json(minimal).unwrap();
    assert_eq!((m.files_migrated, m.error, m.finished), (0, None, None));
    assert!(RebalanceDoc::from_json(b"{not json").is_err());
    let newer = d.to_json().replace("\"format\": 1", "\"format\": 99");
    assert!(RebalanceDoc::from_json(newer.as_bytes())
        .unwrap_err()
        .contains("newer"));
    assert_eq!(RebalanceDoc::key("gv0"), "rebalance/gv0");
}

#[test]
fn liveness() {
    let d = doc_at(RunState::Running, T0);
    assert!(d.is_active(T0 + STALE_SECS - 1));
    assert!(!d.is_active(T0 + STALE_SECS));
    assert_eq!(d.silent_for(T0 - 5), 0);
    assert!(doc_at(RunState::Stopping, T0).is_active(T0 + 1));
    assert!(!doc_at(RunState::Completed, T0).is_active(T0 + 1));
    let mut f = doc_at(RunState::Completed, T0 + 70);
    f.finished = Some(T0 + 72);
    assert_eq!(f.elapsed(T0 + 1000), 72);
    assert_eq!(doc_at(RunState::Running, T0).elapsed(T0 + 30), 30);
}

/// gv0: started, 2 x 3; gv1: started, 1 x 3; gv2: created, 2 x 3.
async fn volumes(store: &MemStore) {
    let bricks = FakeBricks::new(15);
    create(store, &bricks, "gv0", 3, &addrs(1..=6))
        .await
        .unwrap();
    create(store, &bricks, "gv1", 3, &addrs(7..=9))
        .await
        .unwrap();
    create(store, &bricks, "gv2", 3, &addrs(10..=15))
        .await
        .unwrap();
    ops::start(store, &bricks, "gv0").await.unwrap();
    ops::start(store, &bricks, "gv1").await.unwrap();
}

#[test]
fn start_claims_one_run_of_a_started_volume_of_several_sets() {
    rt().block_on(async {
        let store = MemStore::new();
        volumes(&store).await;
        refused(
            &store,
            "unknown volume nope",
            claim(&store, "nope", T0, String::new()),
        )
        .await;
        refused(
            &store,
            "volume gv2 is Created: start it first (brickfs volume start gv2)",
            claim(&store, "gv2", T0, String::new()),
        )
        .await;
        refused(
            &store,
            "volume gv1 has one replica set: nothing to rebalance",
            claim(&store, "gv1", T0, String::new()),
        )
        .await;

        let d = claim(&store, "gv0", T0, "/l".into()).await.unwrap();
        assert_eq!(
            (d.state, d.sets, d.pid, d.log.as_str()),
            (RunState::Running, 2, 0, "/l")
        );
        let (stored, _) = doc::load(&store, "gv0").await.unwrap().unwrap();
        assert_eq!(stored, d);
        refused(
            &store,
            "a rebalance of volume gv0 is already in progress",
            claim(&store, "gv0", T0 + 5, String::new()),
        )
        .await;
        // A runner silent for STALE_SECS is replaced.
        let again = claim(&store, "gv0", T0 + STALE_SECS, String::new())
            .await
            .unwrap();
        assert_ne!(again.run_id, d.run_id);
        // The old run may not write any more.
        let w = doc::update(&store, "gv0", &d.run_id, |d| d.files_migrated = 9)
            .await
            .unwrap();
        assert!(w.is_none());
        assert_eq!(doc::load(&store, "gv0").await.unwrap().unwrap().0, again);
        // A finished run does not stand in the way.
        doc::update(&store, "gv0", &again.run_id, |d| {
            d.state = RunState::Completed
        })
        .await
        .unwrap()
        .unwrap();
        claim(&store, "gv0", T0 + STALE_SECS + 1, String::new())
            .await
            .unwrap();
    });
}

#[test]
fn stop_asks_a_live_run_and_ends_a_dead_one() {
    rt().block_on(async {
        let store = MemStore::new();
        volumes(&store).await;
        refused(&store, "unknown volume nope", stop(&store, "nope", T0)).await;
        refused(
            &store,
            "no rebalance of volume gv0 has been started",
            stop(&store, "gv0", T0),
        )
        .await;
        let d = claim(&store, "gv0", T0, String::new()).await.unwrap();
        let said = stop(&store, "gv0", T0 + 1).await.unwrap();
        assert!(said.contains("stop requested"), "{said}");
        let (now, _) = doc::load(&store, "gv0").await.unwrap().unwrap();
        assert_eq!(now.state, RunState::Stopping);
        // A second stop is harmless.
        stop(&store, "gv0", T0 + 2).await.unwrap();
        // The runner went silent: marked stopped at once.
        let said = stop(&store, "gv0", T0 + STALE_SECS + 1).await.unwrap();
        assert!(said.contains("marked stopped"), "{said}");
        let (now, _) = doc::load(&store, "gv0").await.unwrap().unwrap();
        assert_eq!(now.state, RunState::Stopped);
        assert_eq!(now.finished, Some(T0 + STALE_SECS + 1));
        assert_eq!(now.run_id, d.run_id);
        refused(
            &store,
            "no rebalance of volume gv0 is running (the last one stopped)",
            stop(&store, "gv0", T0 + 100),
        )
        .await;
    });
}

#[test]
fn corrupt_document_is_named() {
    rt().block_on(async {
        let store = MemStore::new();
        volumes(&store).await;
        store.put("rebalance/gv0", b"{oops", None).await.unwrap();
        refused(
            &store,
            "corrupt store entry rebalance/gv0",
            claim(&store, "gv0", T0, String::new()),
        )
        .await;
    });
}

#[test]
fn default_log_paths() {
    assert_eq!(
        default_log("file:///var/lib/brickfs", "gv0"),
        std::path::Path::new("/var/lib/brickfs/rebalance-gv0.log")
    );
    assert_eq!(
        default_log("/srv/store", "gv0"),
        std::path::Path::new("/srv/store/rebalance-gv0.log")
    );
    assert_eq!(
        default_log("etcd://127.0.0.1:2379", "gv0"),
        std::path::Path::new("/tmp/brickfs-rebalance-gv0.log")
    );
}

#[test]
fn status_text() {
    assert!(show::status("gv0", None, T0).contains("no rebalance has been started"));
    let mut d = doc_at(RunState::Running, T0 + 60);
    d.files_scanned = 1200;
    d.files_migrated = 400;
    d.bytes_migrated = 12 << 20;
    d.files_skipped = 3;
    let text = show::status("gv0", Some(&d), T0 + 62);
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("h1 "))
        .unwrap_or_else(|| panic!("no row for h1:\n{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols,
        ["h1", "400", "12.0", "MiB", "1200", "0", "3", "in", "progress", "0:01:02"],
        "{text}"
    );
    assert!(text.contains("over 2 replica sets"), "{text}");
    assert!(
        text.contains("pid 4242 on h1, alive (last report 2 s ago)"),
        "{text}"
    );
    assert!(
        text.contains("Log: /var/lib/brickfs/rebalance-gv0.log"),
        "{text}"
    );
    let silent = show::status("gv0", Some(&d), T0 + 80);
    assert!(silent.contains("NOT alive: no report for 20 s"), "{silent}");
    d.state = RunState::Failed;
    d.finished = Some(T0 + 3700);
    d.error = Some("set 2 lost quorum".into());
    let failed = show::status("gv0", Some(&d), T0 + 9999);
    assert!(failed.contains(" failed "), "{failed}");
    assert!(failed.contains("1:01:40"), "{failed}");
    assert!(failed.contains("Error: set 2 lost quorum"), "{failed}");
    assert!(!failed.contains("Runner:"), "{failed}");
    assert!(show::task_line(&d, T0).contains("Status: failed"));
    assert_eq!(show::hms(59), "0:00:59");
    assert_eq!(show::hms(3600 * 27 + 61), "27:01:01");
}

#[test]
fn progress_lines() {
    let p = RebalanceProgress {
        dirs_fixed: 2,
        files_scanned: 10,
        files_migrated: 4,
        bytes_migrated: 3 << 19,
        files_skipped: 1,
        failures: 0,
        stopped: false,
    };
    assert_eq!(
        runner::progress_line(Duration::from_secs(12), &p),
        "   12 s  dirs 2  scanned 10  migrated 4 (1.5 MiB)  skipped 1  failures 0"
    );
}
