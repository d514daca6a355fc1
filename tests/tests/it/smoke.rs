//! Smoke test: a 3-brick cluster, one mount, a file written and read back,
//! and the same tree on every brick.

use std::time::Duration;

use tests::TestCluster;

#[test]
fn write_read_and_replicas_identical() {
    let cluster = TestCluster::start(3);
    let mount = cluster.mount();

    let path = mount.join("hello.txt");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).expect("write through the mount");
    assert_eq!(std::fs::read(&path).expect("read back"), data);

    std::fs::create_dir(mount.join("dir")).expect("mkdir");
    std::fs::write(mount.join("dir/small"), b"small").expect("write small");

    // The data is plain files on every brick.
    for i in 0..3 {
        let on_brick = cluster.brick_dir(i).join("hello.txt");
        assert!(
            tests::wait_until(Duration::from_secs(10), || std::fs::read(&on_brick)
                .ok()
                .as_deref()
                == Some(&data[..])),
            "brick {i} does not hold hello.txt"
        );
    }
    cluster.assert_replicas_identical(Duration::from_secs(10));
    assert_eq!(cluster.tree_digest(0), cluster.tree_digest(1));
    assert_eq!(cluster.tree_digest(0), cluster.tree_digest(2));
}
