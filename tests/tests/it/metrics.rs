//! `/metrics` of brickd, brickfs-mount, brickfs-nfs and heald: what a user
//! did shows up as counts and latencies of the right operations, next to
//! the process's memory and CPU, in Prometheus's text format.

use std::net::SocketAddr;
use std::time::Duration;

use tests::http::{try_request, Target};
use tests::{free_port, wait_until, TestCluster};

fn loopback_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

fn scrape(addr: SocketAddr) -> Option<String> {
    let answer = try_request(&Target::plain(addr), "GET", "/metrics", None, "").ok()?;
    (answer.status == 200).then_some(answer.raw)
}

/// The value of the sample `series` (name and labels as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes until `series` reaches `at_least`; the last text for the message.
fn wait_for(addr: SocketAddr, series: &str, at_least: f64) -> Result<String, String> {
    let mut last = String::new();
    let reached = wait_until(Duration::from_secs(15), || {
        last = scrape(addr).unwrap_or_default();
        sample(&last, series).is_some_and(|v| v >= at_least)
    });
    if reached {
        Ok(last)
    } else {
        Err(format!(
            "{series} never reached {at_least} at {addr}:\n{last}"
        ))
    }
}

#[test]
fn each_daemon_shows_its_operations_and_its_process() {
    let cluster = TestCluster::start(3);
    let brick_metrics = cluster.restart_brick_with_metrics(0);
    let mount_metrics = loopback_port();
    let m = mount_metrics.to_string();
    let mount = cluster.mount_with_args(&["--metrics-listen", &m]);

    std::fs::write(mount.path().join("f"), vec![7u8; 100_000]).unwrap();
    assert_eq!(
        std::fs::read(mount.path().join("f")).unwrap().len(),
        100_000
    );
    std::fs::create_dir(mount.path().join("d")).unwrap();
    // A lookup that fails is counted as an error.
    assert!(std::fs::metadata(mount.path().join("missing")).is_err());

    let text = wait_for(
        brick_metrics,
        "brickfs_brick_fop_seconds_count{op=\"create\"}",
        2.0,
    )
    .unwrap();
    for series in [
        "brickfs_brick_fop_seconds_count{op=\"write\"}",
        "brickfs_brick_fop_seconds_count{op=\"lookup\"}",
        "brickfs_brick_fop_errors_total{op=\"lookup\"}",
        "process_resident_memory_bytes",
        "process_resident_memory_max_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(
            sample(&text, series).is_some_and(|v| v > 0.0),
            "{series}:\n{text}"
        );
    }
    assert!(
        text.contains("brickfs_build_info{daemon=\"brickd\""),
        "{text}"
    );
    assert!(
        text.contains("# TYPE brickfs_brick_fop_seconds histogram"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    let text = wait_for(
        mount_metrics,
        "brickfs_mount_op_seconds_count{op=\"create\"}",
        1.0,
    )
    .unwrap();
    for series in [
        "brickfs_mount_op_seconds_count{op=\"write\"}",
        "brickfs_mount_op_seconds_count{op=\"lookup\"}",
        "brickfs_mount_op_errors_total{op=\"lookup\"}",
        "process_resident_memory_bytes",
    ] {
        assert!(
            sample(&text, series).is_some_and(|v| v > 0.0),
            "{series}:\n{text}"
        );
    }
    assert!(text.contains("daemon=\"brickfs-mount\""), "{text}");

    // The gateway counts what NFS clients make it do.
    tests::nfs::require_libnfs_tools();
    let nfs_metrics = loopback_port();
    let n = nfs_metrics.to_string();
    let gw = cluster.start_gateway(&["--metrics-listen", &n]);
    tests::nfs::nfs_ls(&gw.url("test/")).assert_ok();
    wait_for(
        nfs_metrics,
        "brickfs_nfs_op_seconds_count{op=\"readdir\"}",
        1.0,
    )
    .unwrap();

    // heald: a brick that missed writes is healed, and counted.
    cluster.kill_brick(2);
    for i in 0..5 {
        std::fs::write(mount.path().join(format!("while-down-{i}")), b"x").unwrap();
    }
    cluster.restart_brick(2);
    let heal_metrics = loopback_port();
    let h = heal_metrics.to_string();
    let _heald = cluster.start_heald_with_args(1, &["--metrics-listen", &h]);
    let text = wait_for(
        heal_metrics,
        "brickfs_heal_objects_total{outcome=\"healed\"}",
        1.0,
    )
    .unwrap();
    assert!(text.contains("brickfs_heal_pending_entries"), "{text}");
    assert!(text.contains("daemon=\"heald\""), "{text}");
}

#[test]
fn a_port_that_cannot_be_bound_stops_the_daemon_with_a_reason() {
    let cluster = TestCluster::start(3);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cluster.start_gateway(&["--metrics-listen", &addr])
    }));
    let Err(panic) = refused else {
        panic!("the gateway served with its metrics port taken");
    };
    let why = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(why.contains("metrics: cannot listen on"), "{why}");
    drop(taken);
}

#[test]
fn volume_profile_shows_each_bricks_fops_since_start() {
    let cluster = TestCluster::start(3);
    let v = tests::volume::StoreVolume::create(&cluster);
    let mount = v.mount();
    std::fs::write(mount.path().join("before"), b"x").unwrap();

    let started = v.ok(&["volume", "profile", "test", "start"]);
    assert!(started.contains("started on 3 of 3 bricks"), "{started}");
    for i in 0..20 {
        std::fs::write(mount.path().join(format!("f{i}")), b"data").unwrap();
    }
    let info = v.ok(&["volume", "profile", "test", "info"]);
    assert_eq!(info.matches("Brick: ").count(), 3, "{info}");
    assert_eq!(info.matches("Since `profile start`").count(), 3, "{info}");
    // Each brick made the 20 files since the start (and "before" only
    // before it): the interval table's create row says 20.
    let interval_creates: Vec<&str> = info
        .split("Since `profile start`")
        .skip(1)
        .filter_map(|part| {
            let interval = part.split("Since the brick started").next()?;
            interval
                .lines()
                .find(|l| l.trim_start().starts_with("create "))
        })
        .collect();
    assert_eq!(interval_creates.len(), 3, "{info}");
    for row in interval_creates {
        let calls: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(calls[1], "20", "{row}\n{info}");
    }

    let stopped = v.ok(&["volume", "profile", "test", "stop"]);
    assert!(stopped.contains("stopped on 3 of 3 bricks"), "{stopped}");
    let info = v.ok(&["volume", "profile", "test", "info"]);
    assert_eq!(
        info.matches("Not started on this brick").count(),
        3,
        "{info}"
    );

    // A brick that is down is named, and the command fails.
    cluster.kill_brick(1);
    let run = v.cli(&["volume", "profile", "test", "info"]);
    assert!(!run.ok, "{}{}", run.out, run.err);
    assert!(run.out.contains("2 of 3 bricks"), "{}{}", run.out, run.err);
}

#[test]
fn the_api_counts_requests_by_endpoint() {
    let cluster = TestCluster::start(3);
    let v = tests::volume::StoreVolume::create(&cluster);
    let port = loopback_port();
    let p = port.to_string();
    let api = v
        .try_start_api(&["--metrics-listen".as_ref(), p.as_ref()])
        .unwrap();
    let admin = v.tenant("ops", &[], true);
    assert_eq!(api.call("GET", "/v1/whoami", &admin, None).status, 200);
    assert_eq!(
        api.call("GET", "/v1/whoami", "bfs1.nobody.00", None).status,
        401
    );
    let text = wait_for(
        port,
        "brickfs_api_request_seconds_count{op=\"whoami\"}",
        2.0,
    )
    .unwrap();
    assert!(
        sample(&text, "brickfs_api_request_errors_total{op=\"whoami\"}").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(text.contains("daemon=\"brickfs-api\""), "{text}");
}

#[test]
fn volume_top_lists_each_bricks_busiest_files_by_path() {
    use std::io::Read;
    use std::os::unix::fs::FileExt;

    let cluster = TestCluster::start(3);
    let v = tests::volume::StoreVolume::create(&cluster);
    let mount = v.mount();
    std::fs::create_dir(mount.path().join("d")).unwrap();
    let hot = mount.path().join("d/hot");
    let f = std::fs::File::create(&hot).unwrap();
    // Each write its own call to the bricks: fsync drains write-behind.
    for i in 0..40u64 {
        f.write_all_at(&[7u8; 4096], i * 4096).unwrap();
        f.sync_data().unwrap();
    }
    drop(f);
    std::fs::write(mount.path().join("d/cold"), b"once").unwrap();
    // An open drops the file's pages, so every pass reads from a brick.
    for _ in 0..5 {
        let mut back = Vec::new();
        std::fs::File::open(&hot)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back.len(), 40 * 4096);
    }

    let by_writes = v.ok(&["volume", "top", "test", "write", "--list-cnt", "1"]);
    assert!(by_writes.contains("read on 3 of 3 bricks"), "{by_writes}");
    let tops: Vec<&str> = by_writes
        .split("Brick: ")
        .skip(1)
        .map(|b| b.lines().nth(2).unwrap_or(""))
        .collect();
    assert_eq!(tops.len(), 3, "{by_writes}");
    for row in tops {
        // Every replica applied every write, and knows the name it was
        // created with.
        assert!(row.ends_with(" /d/hot"), "{row}\n{by_writes}");
        let writes: u64 = row.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!(writes >= 40, "{row}");
    }
    assert!(
        !by_writes.contains("/d/cold"),
        "the limit holds: {by_writes}"
    );

    let by_reads = v.ok(&["volume", "top", "test", "read"]);
    let read_rows: Vec<&str> = by_reads
        .lines()
        .filter(|l| l.ends_with(" /d/hot"))
        .filter(|l| l.split_whitespace().next().is_some_and(|r| r != "0"))
        .collect();
    assert!(
        !read_rows.is_empty(),
        "no brick counted the reads: {by_reads}"
    );
    let read_mib: f64 = read_rows
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(
        read_mib >= 0.7,
        "5 reads of 160 KiB: {read_mib} MiB\n{by_reads}"
    );

    let cleared = v.ok(&["volume", "top", "test", "clear"]);
    assert!(cleared.contains("counts cleared"), "{cleared}");
    let after = v.ok(&["volume", "top", "test"]);
    assert_eq!(after.matches("(no reads or writes").count(), 3, "{after}");

    // A brick that does not answer is named, and the command fails.
    cluster.kill_brick(1);
    let run = v.cli(&["volume", "top", "test"]);
    assert!(!run.ok, "{}{}", run.out, run.err);
    assert!(
        run.out.contains("read on 2 of 3 bricks"),
        "{}{}",
        run.out,
        run.err
    );
    assert_eq!(run.out.matches("Brick: ").count(), 3, "{}", run.out);
}
