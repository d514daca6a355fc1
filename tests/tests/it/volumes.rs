//! Volumes by name in the cluster store (file and etcd): `brickfs volume
//! create/start/info/list/set`, mounting by name, brick identities, and bad
//! input that must leave the store as it was.

use std::time::Duration;

use tests::cluster::{TestCluster, VOLUME};
use tests::etcd::Etcd;
use tests::extra_brick::ExtraBrick;
use tests::volume::{assert_refused, brickfs, create_volume, StoreVolume};

fn addrs(cluster: &TestCluster) -> Vec<String> {
    cluster.brick_addrs(0..cluster.brick_count())
}

/// The test volume over every brick, in `store`, not started.
fn create(cluster: &TestCluster, store: &str) {
    create_volume(cluster, store, VOLUME, &addrs(cluster));
}

/// brickfs-mount with the store, expected to fail: its message.
fn mount_fails(cluster: &TestCluster, store: &str) -> String {
    let mnt = cluster.root().join("never-mounted");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = tests::tls::command(&cluster.binaries().mount)
        .args(["--store", store, VOLUME])
        .arg(&mnt)
        .output()
        .expect("running brickfs-mount");
    assert!(
        !out.status.success(),
        "mounted a volume that is not started"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_volume_in_the_file_store_is_created_started_and_mounted_by_name() {
    let cluster = TestCluster::start(3);
    let store = format!("file://{}", cluster.root().join("store").display());
    create(&cluster, &store);
    let msg = mount_fails(&cluster, &store);
    assert!(msg.contains("start it first"), "{msg}");
    brickfs(&cluster, &store, &["volume", "start", VOLUME]).assert_ok();
    brickfs(
        &cluster,
        &store,
        &["volume", "set", VOLUME, "network.op-timeout", "3"],
    )
    .assert_ok();
    let info = brickfs(&cluster, &store, &["volume", "info", VOLUME]).assert_ok();
    assert!(
        info.contains("Started") && info.contains("1 x 3 = 3"),
        "{info}"
    );
    assert!(info.contains("network.op-timeout"), "{info}");
    let list = brickfs(&cluster, &store, &["volume", "list"]).assert_ok();
    assert!(list.lines().any(|l| l.trim() == VOLUME), "{list}");

    let m = cluster.mount_from_store(&store, VOLUME);
    std::fs::write(m.join("by-name"), b"mounted by name").unwrap();
    assert_eq!(
        std::fs::read(m.join("by-name")).unwrap(),
        b"mounted by name"
    );
    cluster.assert_replicas_identical(Duration::from_secs(10));
    // The heal CLI finds the volume in the same store.
    let heal = brickfs(&cluster, &store, &["volume", "heal", VOLUME, "info"]).assert_ok();
    assert_eq!(heal.matches("Number of entries: 0").count(), 3, "{heal}");
}

#[test]
fn bad_input_leaves_the_store_unchanged() {
    let cluster = TestCluster::start(3);
    let dir = cluster.root().join("store");
    let store = format!("file://{}", dir.display());
    create(&cluster, &store);
    let a = addrs(&cluster);
    let (b0, b1, b2) = (a[0].as_str(), a[1].as_str(), a[2].as_str());
    let refused: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["volume", "create", VOLUME, "replica", "3", b0, b1, b2],
            "exists",
        ),
        (
            vec!["volume", "create", "dup", "replica", "3", b0, b0, b1],
            "twice",
        ),
        (
            vec!["volume", "create", "two", "replica", "2", b0, b1],
            "replica",
        ),
        (
            vec!["volume", "create", "four", "replica", "3", b0, b1, b2, b0],
            "multiple of 3",
        ),
        (
            vec!["volume", "create", "other", "replica", "3", b0, b1, b2],
            "already brick",
        ),
        (vec!["volume", "info", "nope"], "nope"),
        (
            vec!["volume", "set", VOLUME, "no.such-option", "1"],
            "option",
        ),
        (vec!["volume", "start", "nope"], "nope"),
    ];
    assert_refused(&cluster, &store, &dir, &refused);
    let unreachable = brickfs(&cluster, "etcd://127.0.0.1:1", &["volume", "list"]);
    assert!(
        !unreachable.ok && unreachable.err.contains("unreachable"),
        "{}",
        unreachable.err
    );
}

#[test]
fn a_wiped_brick_is_refused_by_its_identity() {
    let cluster = TestCluster::start(3);
    let store = format!("file://{}", cluster.root().join("store").display());
    create(&cluster, &store);
    brickfs(&cluster, &store, &["volume", "start", VOLUME]).assert_ok();
    cluster.kill_brick(1);
    let dir = cluster.brick_dir(1);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    cluster.restart_brick(1);

    // The volume still mounts and writes (2 of 3), but never on the new disk.
    let m = cluster.mount_from_store(&store, VOLUME);
    std::fs::write(m.join("after-wipe"), b"x").unwrap();
    assert!(
        !dir.join("after-wipe").exists(),
        "data went to a brick the spec does not name"
    );
    let log = std::fs::read_to_string(m.log()).unwrap_or_default();
    assert!(
        log.contains("wiped or swapped"),
        "mount log does not say why:\n{log}"
    );
    let status = brickfs(&cluster, &store, &["volume", "start", VOLUME]);
    assert!(!status.ok, "start accepted a wiped brick: {}", status.out);
}

#[test]
fn the_etcd_store_serves_the_same_volumes() {
    let cluster = TestCluster::start(3);
    let etcd = Etcd::start(&cluster.root().join("etcd"));
    let store = etcd.url();
    create(&cluster, &store);
    brickfs(&cluster, &store, &["volume", "start", VOLUME]).assert_ok();
    let info = brickfs(&cluster, &store, &["volume", "info", VOLUME]).assert_ok();
    assert!(info.contains("Started"), "{info}");
    let again = {
        let a = addrs(&cluster);
        let mut args = vec!["volume", "create", VOLUME, "replica", "3"];
        args.extend(a.iter().map(String::as_str));
        brickfs(&cluster, &store, &args)
    };
    assert!(!again.ok && again.err.contains("exists"), "{}", again.err);
    let m = cluster.mount_from_store(&store, VOLUME);
    std::fs::write(m.join("via-etcd"), b"etcd").unwrap();
    assert_eq!(std::fs::read(m.join("via-etcd")).unwrap(), b"etcd");
}

/// etcd with client certificates (`etcds://`): the CLI, the mount and the
/// API's store reach it over mutual TLS with their own certificates; a
/// plaintext client and a certificate of another CA get nothing.
#[test]
fn the_etcd_store_over_mutual_tls() {
    let cluster = TestCluster::start(3);
    let etcd = Etcd::start_tls(&cluster.root().join("etcd"));
    let store = etcd.url();
    assert!(store.starts_with("etcds://"), "{store}");
    create(&cluster, &store);
    brickfs(&cluster, &store, &["volume", "start", VOLUME]).assert_ok();
    let m = cluster.mount_from_store(&store, VOLUME);
    std::fs::write(m.join("via-etcds"), b"tls").unwrap();
    assert_eq!(std::fs::read(m.join("via-etcds")).unwrap(), b"tls");

    // Plaintext to the TLS port: etcd answers no request.
    let plain = store.replacen("etcds://", "etcd://", 1);
    let r = brickfs(&cluster, &plain, &["volume", "list"]);
    assert!(!r.ok, "plaintext reached etcd: {}", r.out);
    // Another CA's certificate: refused by etcd's client-cert check.
    let other = tempfile::tempdir().unwrap();
    tls::ca::init_with_roles(other.path(), &["127.0.0.1".into()]).unwrap();
    // Trusting etcd, so only etcd's check of the client is left to refuse.
    std::fs::copy(
        tests::tls::dir().join(tls::ca::BUNDLE),
        other.path().join(tls::ca::BUNDLE),
    )
    .unwrap();
    let out = std::process::Command::new(&cluster.binaries().brickfs)
        .args(["--store", &store, "volume", "list"])
        .env("BRICKFS_TLS_DIR", other.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "another CA's certificate reached etcd"
    );
    // --insecure with etcds:// says why it cannot work.
    let out = std::process::Command::new(&cluster.binaries().brickfs)
        .args(["--store", &store, "volume", "list"])
        .env_remove("BRICKFS_TLS_DIR")
        .env("BRICKFS_INSECURE", "true")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("etcds://"), "{err}");
}

#[test]
fn replace_brick_refills_a_new_brick_by_heal() {
    let cluster = TestCluster::start(3);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    for d in 0..3 {
        std::fs::create_dir(m.join(format!("d{d}"))).unwrap();
        for f in 0..20 {
            std::fs::write(m.join(format!("d{d}/f{f}")), format!("{d}/{f}").repeat(100)).unwrap();
        }
    }
    drop(m);
    let new_dir = cluster.root().join("new-brick");
    let new = ExtraBrick::start(&cluster, &new_dir, None);
    let old = cluster.brick_addr(2).to_string();
    // A brick that still serves is not replaced: clients not yet switched
    // could write to it behind the new one's back.
    let alive = vol.cli(&["volume", "replace-brick", VOLUME, &old, &new.addr]);
    assert!(
        !alive.ok && alive.err.contains("still serving"),
        "{}\n{}",
        alive.out,
        alive.err
    );
    cluster.kill_brick(2);
    let out = vol.ok(&["volume", "replace-brick", VOLUME, &old, &new.addr]);
    assert!(out.contains("0 entries left"), "{out}");
    assert_eq!(
        tests::tree::digest(&new_dir),
        cluster.tree_digest(0),
        "the new brick does not hold the volume"
    );
    // Clients mounted from the new spec use the new brick.
    let m = vol.mount();
    std::fs::write(m.join("after"), b"after").unwrap();
    assert_eq!(std::fs::read(new_dir.join("after")).unwrap(), b"after");
    let again = vol.cli(&["volume", "replace-brick", VOLUME, &old, &new.addr]);
    assert!(!again.ok, "replaced a brick the volume no longer has");
}

#[test]
fn option_changes_reach_a_mount_while_it_writes() {
    let cluster = TestCluster::start(3);
    let vol = StoreVolume::create(&cluster);
    let m = vol.mount();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let root = m.path().to_path_buf();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::fs::write(root.join(format!("w{n}")), n.to_le_bytes())
                    .unwrap_or_else(|e| panic!("write {n} failed during the option change: {e}"));
                n += 1;
            }
            n
        })
    };
    vol.ok(&["volume", "set", VOLUME, "network.op-timeout", "3"]);
    vol.ok(&["volume", "set", VOLUME, "performance.attr-timeout", "0"]);
    let applied = tests::wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(m.log()).is_ok_and(|l| {
            l.contains("volume option changed: network.op-timeout")
                && l.contains("attribute and entry cache times")
        })
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(
        applied,
        "the mount did not apply the new options:\n{}",
        std::fs::read_to_string(m.log()).unwrap_or_default()
    );
    assert!(written > 0);
    cluster.assert_replicas_identical(Duration::from_secs(10));
}

#[test]
fn the_nfs_gateway_and_heald_serve_a_volume_from_the_store() {
    let cluster = TestCluster::start(3);
    let vol = StoreVolume::create(&cluster);
    let gw = cluster.start_gateway_from_store(&vol.url);
    let m = vol.mount();
    std::fs::write(m.join("seen-by-nfs"), b"both ways").unwrap();
    let cat = tests::nfs::nfs_cat(&gw.url(&format!("{VOLUME}/seen-by-nfs")));
    assert_eq!(cat.stdout, b"both ways", "nfs-cat: {:?}", cat.stderr);

    // heald from the store heals a brick that missed writes.
    let _heald = vol.start_heald(2);
    cluster.kill_brick(0);
    std::fs::write(m.join("while-down"), b"missed").unwrap();
    assert!(
        cluster.heal_pending().unwrap_or(0) > 0,
        "nothing blamed while a brick was down"
    );
    cluster.restart_brick(0);
    assert!(
        cluster.wait_healed(Duration::from_secs(60)),
        "heald --store did not heal: {:?}",
        cluster.heal_pending()
    );
    cluster.assert_replicas_identical(Duration::from_secs(10));
}
