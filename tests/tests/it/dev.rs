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

#[test]
fn dev_with_two_replica_sets_serves_and_stops_cleanly() {
    let bins = Binaries::locate();
    let state = tempfile::tempdir().expect("state dir");
    let log = std::fs::File::create(state.path().join("dev.out")).expect("log");
    let mnt = state.path().join("mnt");
    let child = Command::new(&bins.brickfs)
        .args(["dev", "--replica-sets", "2", "--state-dir"])
        .arg(state.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("starting brickfs dev");
    let mut dev = Dev {
        child,
        mnt: mnt.clone(),
    };
    let out = || std::fs::read_to_string(state.path().join("dev.out")).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(60), || is_mounted(&mnt)),
        "brickfs dev did not mount:\n{}",
        out()
    );
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
