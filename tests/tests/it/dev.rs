//! `brickfs dev --replica-sets 2`: the README's main command with a 2 x 3
//! volume: bricks, heald, NFS gateway and mount come up, files spread over
//! both sets, and Ctrl-C takes it all down again.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tests::cluster::Binaries;
use tests::volume::count_files;
use tests::{is_mounted, wait_until};

/// The `brickfs dev` process group: interrupted like Ctrl-C on drop, killed
/// if it does not stop, and its mount taken away, also when a test fails.
struct Dev {
    child: Child,
    mnt: PathBuf,
}

impl Dev {
    fn interrupt_and_wait(&mut self, limit: Duration) -> bool {
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGINT) };
        wait_until(limit, || matches!(self.child.try_wait(), Ok(Some(_))))
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None))
            && !self.interrupt_and_wait(Duration::from_secs(20))
        {
            // SAFETY: as above.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
            let _ = self.child.wait();
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
        }
    }
}

/// `brickfs dev ARGS --state-dir <temp>`, its output in `<temp>/dev.out`,
/// once it has mounted.
fn start_dev(bins: &Binaries, args: &[&str]) -> (tempfile::TempDir, Dev) {
    let state = tempfile::tempdir().expect("state dir");
    let log = std::fs::File::create(state.path().join("dev.out")).expect("log");
    let mnt = state.path().join("mnt");
    let child = Command::new(&bins.brickfs)
        .arg("dev")
        .args(args)
        .arg("--state-dir")
        .arg(state.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("starting brickfs dev");
    let dev = Dev { child, mnt };
    assert!(
        // cluster.json is written once everything is up, just after the mount.
        wait_until(Duration::from_secs(60), || is_mounted(&dev.mnt)
            && state.path().join("cluster.json").exists()),
        "brickfs dev did not come up:\n{}",
        dev_output(&state)
    );
    (state, dev)
}

fn dev_output(state: &tempfile::TempDir) -> String {
    std::fs::read_to_string(state.path().join("dev.out")).unwrap_or_default()
}

#[test]
fn dev_with_two_replica_sets_serves_and_stops_cleanly() {
    let bins = Binaries::locate();
    let (state, mut dev) = start_dev(&bins, &["--replica-sets", "2"]);
    let mnt = dev.mnt.clone();
    let out = || dev_output(&state);
    for i in 0..200 {
        std::fs::write(mnt.join(format!("f{i}")), format!("file {i}")).expect("write");
    }
    for i in 0..200 {
        assert_eq!(
            std::fs::read_to_string(mnt.join(format!("f{i}"))).expect("read"),
            format!("file {i}")
        );
    }
    let (set0, set1) = (
        count_files(&state.path().join("brick1")),
        count_files(&state.path().join("brick4")),
    );
    assert_eq!(set0 + set1, 200, "{set0} + {set1}");
    assert!(set0 > 40 && set1 > 40, "{set0} / {set1}");
    let info = Command::new(&bins.brickfs)
        .env("BRICKFS_TLS_DIR", state.path().join("tls"))
        .arg("--store")
        .arg(format!("file://{}", state.path().join("store").display()))
        .args(["volume", "info", "dev"])
        .output()
        .expect("volume info");
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(info.contains("2 x 3 = 6"), "{info}");

    assert!(
        dev.interrupt_and_wait(Duration::from_secs(30)),
        "brickfs dev did not stop on SIGINT:\n{}",
        out()
    );
    assert!(!is_mounted(&mnt), "still mounted after brickfs dev stopped");
}

/// Everything `brickfs dev` starts follows its store: after `volume
/// replace-brick` on the dev store, the mount, the NFS gateway and heald
/// switch to the new brick (writes reach it, heal refills it and ends with
/// empty heal indices), and `volume set dev cluster.heal-retry` reaches
/// heald.
#[test]
fn dev_children_follow_replace_brick_and_options_in_the_store() {
    let bins = Binaries::locate();
    let (state, mut dev) = start_dev(&bins, &[]);
    let mnt = dev.mnt.clone();
    let out = || dev_output(&state);
    std::fs::write(mnt.join("before"), b"written before the replace").expect("write");
    let cluster: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.path().join("cluster.json")).expect("cluster.json"),
    )
    .expect("cluster.json is JSON");
    let store = format!("file://{}", state.path().join("store").display());
    // The management API runs with an admin token in the state dir.
    let api: std::net::SocketAddr = cluster["api"]
        .as_str()
        .expect("api address in cluster.json")
        .parse()
        .expect("api address");
    let token = std::fs::read_to_string(state.path().join("admin.token")).expect("admin.token");
    let token = token.trim();
    // Over TLS, as the holder of the state dir's admin certificate.
    let admin = tests::tls::open(&state.path().join("tls"), tls::Role::Admin);
    let api = tests::http::Target::as_identity(api, &admin);
    let who = tests::http::request(&api, "GET", "/v1/whoami", Some(token), None);
    assert_eq!(
        (who.status, &who.body["admin"]),
        (200, &serde_json::json!(true)),
        "{}",
        who.raw
    );
    // Every child shows its metrics where cluster.json says.
    for child in ["brick1", "mount", "nfs", "heald", "api"] {
        let addr: std::net::SocketAddr = cluster["metrics"][child]
            .as_str()
            .unwrap_or_else(|| panic!("no metrics address of {child} in {cluster}"))
            .parse()
            .expect("metrics address");
        let text = tests::http::request_raw(
            &tests::http::Target::plain(addr),
            "GET",
            "/metrics",
            None,
            "",
        )
        .raw;
        assert!(
            text.contains("process_resident_memory_bytes"),
            "{child}: {text}"
        );
    }
    let made = tests::http::request(
        &api,
        "POST",
        "/v1/volumes/dev/subvolumes",
        Some(token),
        Some(&serde_json::json!({"name": "from-api", "bytes": 1 << 20})),
    );
    assert_eq!(made.status, 201, "{}", made.raw);
    assert!(
        wait_until(Duration::from_secs(10), || mnt.join("from-api").is_dir()),
        "the API's sub-volume is not in the mount"
    );
    let old_addr = cluster["bricks"][2]["addr"]
        .as_str()
        .expect("addr")
        .to_string();
    let old_pid = cluster["bricks"][2]["pid"].as_u64().expect("pid") as i32;
    // A dead disk: the old brick is gone, a new empty brickd takes its place.
    // SAFETY: kill(2) of a brickd that brickfs dev, our child, started.
    unsafe { libc::kill(old_pid, libc::SIGKILL) };
    let new_dir = state.path().join("new-brick");
    let new = tests::extra_brick::ExtraBrick::start_with(
        &bins,
        &new_dir,
        &state.path().join("logs").join("new-brick.log"),
        None,
        &tests::tls::Security::Dir(state.path().join("tls")),
    );
    let brickfs = |args: &[&str]| {
        let o = Command::new(&bins.brickfs)
            .env("BRICKFS_TLS_DIR", state.path().join("tls"))
            .arg("--store")
            .arg(&store)
            .args(args)
            .output()
            .expect("brickfs");
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let (ok, text) = brickfs(&["volume", "replace-brick", "dev", &old_addr, &new.addr]);
    assert!(ok, "replace-brick: {text}");
    let logs = state.path().join("logs");
    let log_says = |name: &str, what: &str| {
        std::fs::read_to_string(logs.join(name))
            .unwrap_or_default()
            .contains(what)
    };
    for (name, what) in [
        ("mount.log", "switched to graph 2"),
        ("nfs.log", "switched to graph 2"),
        ("heald.log", "healing the new graph"),
    ] {
        assert!(
            wait_until(Duration::from_secs(30), || log_says(name, what)),
            "{name} never said {what:?}"
        );
    }
    // New writes reach the new brick, and the old file is refilled there.
    std::fs::write(mnt.join("after"), b"written after the replace").expect("write");
    assert!(
        wait_until(Duration::from_secs(30), || {
            std::fs::read(new_dir.join("after")).ok().as_deref()
                == Some(b"written after the replace")
                && std::fs::read(new_dir.join("before")).ok().as_deref()
                    == Some(b"written before the replace")
        }),
        "the new brick did not get the files"
    );
    assert!(
        wait_until(Duration::from_secs(60), || {
            let (ok, text) = brickfs(&["volume", "heal", "dev", "info"]);
            ok && text.matches("Number of entries: 0").count() == 3
        }),
        "heal info never showed every brick with 0 entries: {}",
        brickfs(&["volume", "heal", "dev", "info"]).1
    );
    let (ok, text) = brickfs(&["volume", "set", "dev", "cluster.heal-retry", "7"]);
    assert!(ok, "volume set: {text}");
    assert!(
        wait_until(Duration::from_secs(20), || log_says(
            "heald.log",
            "volume option changed: cluster.heal-retry"
        )),
        "heald did not follow cluster.heal-retry"
    );
    assert!(dev.interrupt_and_wait(Duration::from_secs(30)), "{}", out());
}
