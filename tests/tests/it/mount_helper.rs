//! `brickfs-mount` as the mount(8) helper `mount.fuse.brickfs`: installed
//! with `--install-helper`, run the way `mount -t fuse.brickfs` and fstab
//! run it, it returns once the volume is mounted and leaves the mount
//! served in the background until `umount`. Bad input mounts nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tests::cluster::{TestCluster, VOLUME};
use tests::volume::StoreVolume;
use tests::{pid_alive, wait_until};

/// `brickfs-mount --install-helper DIR`; the helper's path.
fn install_helper(cluster: &TestCluster) -> PathBuf {
    let dir = cluster.root().join("sbin");
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(&cluster.binaries().mount)
        .arg("--install-helper")
        .arg(&dir)
        .output()
        .expect("running brickfs-mount --install-helper");
    assert!(
        out.status.success(),
        "--install-helper failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let helper = dir.join("mount.fuse.brickfs");
    assert_eq!(
        std::fs::read_link(&helper).expect("the helper is a symlink"),
        cluster.binaries().mount.canonicalize().unwrap()
    );
    helper
}

fn helper(path: &Path, args: &[&str]) -> Output {
    tests::tls::command(path)
        .args(args)
        .output()
        .expect("running mount.fuse.brickfs")
}

/// The mount's line in mountinfo, if mounted.
fn mountinfo_line(mnt: &Path) -> Option<String> {
    let want = format!(" {} ", mnt.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()?
        .lines()
        .find(|l| l.contains(&want))
        .map(String::from)
}

/// Unmounts and ends the background brickfs-mount if the test did not.
struct Cleanup {
    mnt: PathBuf,
    pid: Option<u32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if mountinfo_line(&self.mnt).is_some() {
            let _ = supervise::mounts::umount_detach(&self.mnt);
        }
        if let Some(pid) = self.pid.filter(|p| pid_alive(*p)) {
            // SAFETY: the brickfs-mount this test started (through the helper).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn the_helper_mounts_in_the_background_and_umount_ends_it() {
    let cluster = TestCluster::start(3);
    let store = StoreVolume::create_on(&cluster, 3).url;
    let helper_path = install_helper(&cluster);
    let mnt = cluster.root().join("mnt-helper");
    std::fs::create_dir_all(&mnt).unwrap();
    let log = cluster.root().join("logs").join("helper-mount.log");
    let mut cleanup = Cleanup {
        mnt: mnt.clone(),
        pid: None,
    };

    // As mount(8) runs it for `mount -v -t fuse.brickfs localhost:/test MNT -o …`.
    let opts = format!("store={store},_netdev,nofail,log-file={}", log.display());
    let spec = format!("localhost:/{VOLUME}");
    let mnt_arg = mnt.to_str().unwrap();
    let out = helper(
        &helper_path,
        &[&spec, mnt_arg, "-v", "-o", &opts, "-t", "fuse.brickfs"],
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the helper failed: {}{}\nlog:\n{}",
        said,
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let pid: u32 = said
        .split("pid ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {said:?}"));
    cleanup.pid = Some(pid);

    // Mounted when the helper returned. (The kernel says type `fuse`:
    // fuser mounts with mount(2) and keeps the subtype for fusermount.)
    let line = mountinfo_line(&mnt).expect("not mounted when the helper returned");
    assert!(line.contains(&format!(" brickfs:{VOLUME} ")), "{line}");
    assert!(pid_alive(pid), "the background brickfs-mount is gone");
    std::fs::write(mnt.join("via-helper"), b"mounted by mount.fuse.brickfs").unwrap();
    assert_eq!(
        std::fs::read(mnt.join("via-helper")).unwrap(),
        b"mounted by mount.fuse.brickfs"
    );
    assert_eq!(
        std::fs::read(cluster.brick_dir(0).join("via-helper")).unwrap(),
        b"mounted by mount.fuse.brickfs"
    );

    // `mount -a` again (it does not know the mount as its fstab line):
    // nothing is stacked on the mount.
    let again = helper(&helper_path, &[&spec, mnt_arg, "-o", &opts]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let here = format!(" {} ", mnt.display());
    assert_eq!(mounts.lines().filter(|l| l.contains(&here)).count(), 1);

    let umount = Command::new("umount").arg(&mnt).output().expect("umount");
    assert!(
        umount.status.success(),
        "umount: {}",
        String::from_utf8_lossy(&umount.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(pid)),
        "brickfs-mount still runs after umount; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(mountinfo_line(&mnt).is_none());
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("unmounted externally"), "{logged}");
}

#[test]
fn bad_input_mounts_nothing_and_says_why() {
    let cluster = TestCluster::start(3);
    let store = StoreVolume::create_on(&cluster, 3).url;
    let helper_path = install_helper(&cluster);
    let mnt = cluster.root().join("mnt-never");
    std::fs::create_dir_all(&mnt).unwrap();
    let _cleanup = Cleanup {
        mnt: mnt.clone(),
        pid: None,
    };
    let mnt_arg = mnt.to_str().unwrap();
    let log = cluster.root().join("logs").join("helper-bad.log");
    let with_log = |o: &str| format!("{o},log-file={}", log.display());

    // (args, exit code, what stderr must say)
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec![
                VOLUME.into(),
                mnt_arg.into(),
                "-o".into(),
                with_log(&format!("store={store},bogus=1")),
            ],
            1,
            "unknown mount option \"bogus=1\"",
        ),
        (
            vec!["server1:/".into(), mnt_arg.into()],
            1,
            "names no volume",
        ),
        (vec![mnt_arg.into()], 1, "usage"),
        (
            vec![
                "nope".into(),
                mnt_arg.into(),
                "-o".into(),
                with_log(&format!("store={store}")),
            ],
            32,
            "unknown volume nope",
        ),
        (
            vec![
                VOLUME.into(),
                cluster.root().join("no-such-dir").display().to_string(),
                "-o".into(),
                with_log(&format!("store={store}")),
            ],
            32,
            "does not exist",
        ),
    ];
    for (args, code, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = helper(&helper_path, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: does not say {says:?}: {err}");
        assert!(mountinfo_line(&mnt).is_none(), "{args:?} mounted");
    }
}
