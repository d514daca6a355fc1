//! The harness itself: brick lifecycle (kill, stop/continue, restart on the
//! same port and dir) and cleanup. Needs only brickd, no client stack.

use std::time::Duration;

use tests::{wait_until, TestCluster};

#[test]
fn brick_lifecycle() {
    let cluster = TestCluster::start(3);
    assert_eq!(cluster.brick_count(), 3);
    let ids: Vec<_> = (0..3).map(|i| cluster.brick_id(i)).collect();
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "brick ids are not unique"
    );
    for i in 0..3 {
        assert!(cluster.brick_running(i));
    }
    let id = cluster.brick_id(1);
    let addr = cluster.brick_addr(1);

    cluster.kill_brick(1);
    assert!(!cluster.brick_running(1));
    assert!(
        wait_until(Duration::from_secs(5), || std::net::TcpStream::connect(
            addr
        )
        .is_err()),
        "killed brick still accepts connections"
    );

    cluster.restart_brick(1);
    assert!(cluster.brick_running(1));
    assert_eq!(cluster.brick_addr(1), addr, "restart keeps the port");
    assert_eq!(
        cluster.brick_id(1),
        id,
        "restart keeps the brick's identity"
    );
    assert!(std::net::TcpStream::connect(addr).is_ok());

    cluster.stop_brick(2);
    assert!(cluster.brick_running(2), "a stopped brick is still alive");
    cluster.cont_brick(2);
    // Left stopped on purpose: drop must continue and kill it.
    cluster.stop_brick(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_client_reaches_a_brick() {
    let cluster = TestCluster::start(1);
    let addr = cluster.brick_addr(0);
    let timeout = Duration::from_secs(5);
    assert!(
        tests::raw::answers_ping(addr, timeout).await,
        "brick does not answer ping"
    );
    // Garbage then a ping on a fresh connection: the brick keeps serving.
    let junk = tokio::task::spawn_blocking(move || {
        tests::raw::send_raw(addr, b"\x00\x00\x00\x05hello, not bincode", timeout)
    });
    junk.await.unwrap().expect("connecting to the brick");
    assert!(
        tests::raw::answers_ping(addr, timeout).await,
        "brick stopped serving after garbage"
    );
}
