//! Volumes in a cluster store, made and changed the way a user does it:
//! the `brickfs --store URL …` CLI ([`brickfs`]), a [`StoreVolume`] of
//! several replica sets over a test cluster in a file store under its temp
//! dir, mounted by name; and what the bricks of such a volume hold.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::{wait_until, Mount, TestCluster, VOLUME};
use crate::heal::Heald;
use crate::tree;

/// Bricks per replica set.
pub const REPLICA: usize = 3;

/// The output of one `brickfs --store URL …` run.
pub struct CliRun {
    pub args: Vec<String>,
    pub ok: bool,
    pub out: String,
    pub err: String,
}

impl CliRun {
    /// Its stdout; panics with everything it printed unless it exited 0.
    #[track_caller]
    pub fn assert_ok(self) -> String {
        assert!(
            self.ok,
            "brickfs {:?} failed:\n{}\n{}",
            self.args, self.out, self.err
        );
        self.out
    }
}

/// Runs `brickfs --store STORE ARGS…` to completion.
pub fn brickfs(cluster: &TestCluster, store: &str, args: &[&str]) -> CliRun {
    let out = crate::tls::command(&cluster.binaries().brickfs)
        .args(["--store", store])
        .args(args)
        .output()
        .expect("running brickfs");
    CliRun {
        args: args.iter().map(|a| a.to_string()).collect(),
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `brickfs volume create NAME replica 3 BRICKS…` in `store`; panics if it
/// fails. The volume is not started.
pub fn create_volume(cluster: &TestCluster, store: &str, name: &str, bricks: &[String]) {
    let mut args = vec!["volume", "create", name, "replica", "3"];
    args.extend(bricks.iter().map(String::as_str));
    brickfs(cluster, store, &args).assert_ok();
}

/// Every file of a file store under `dir` with its content (its lock file
/// aside), to show that a refused command changed nothing.
pub fn store_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n != "lock") {
                out.push((p.display().to_string(), fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

/// Runs every command of `refused` (its arguments, and what its error must
/// say, in lower case) and panics unless each fails, says so, and leaves
/// the file store in `dir` as it was.
#[track_caller]
pub fn assert_refused(
    cluster: &TestCluster,
    store: &str,
    dir: &Path,
    refused: &[(Vec<&str>, &str)],
) {
    let before = store_files(dir);
    for (args, says) in refused {
        let r = brickfs(cluster, store, args);
        assert!(!r.ok, "{args:?} succeeded:\n{}", r.out);
        assert!(
            r.err.to_lowercase().contains(says),
            "{args:?}: error does not mention {says:?}: {}",
            r.err
        );
        assert_eq!(store_files(dir), before, "{args:?} changed the store");
    }
}

/// A volume named [`VOLUME`] over bricks of `cluster`, in a file store.
pub struct StoreVolume<'a> {
    pub cluster: &'a TestCluster,
    pub url: String,
}

impl<'a> StoreVolume<'a> {
    /// Creates and starts the volume over the cluster's bricks, in order
    /// (bricks 0..3 set 0, 3..6 set 1, …).
    pub fn create(cluster: &'a TestCluster) -> StoreVolume<'a> {
        StoreVolume::create_on(cluster, cluster.brick_count())
    }

    /// Creates and starts the volume over the first `bricks` bricks; the
    /// others are left for `add-brick`.
    pub fn create_on(cluster: &'a TestCluster, bricks: usize) -> StoreVolume<'a> {
        let url = format!("file://{}", cluster.root().join("store").display());
        let v = StoreVolume { cluster, url };
        create_volume(cluster, &v.url, VOLUME, &cluster.brick_addrs(0..bricks));
        v.ok(&["volume", "start", VOLUME]);
        v
    }

    pub fn cli(&self, args: &[&str]) -> CliRun {
        brickfs(self.cluster, &self.url, args)
    }

    /// Runs the CLI and panics with its output if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        self.cli(args).assert_ok()
    }

    pub fn mount(&self) -> Mount {
        self.cluster.mount_from_store(&self.url, VOLUME)
    }

    /// A mount with extra `brickfs-mount` options, e.g. [`crate::NO_CACHE`].
    pub fn mount_with_args(&self, extra: &[&str]) -> Mount {
        self.cluster
            .mount_from_store_with_args(&self.url, VOLUME, extra)
    }

    /// `brickfs heald --store URL --volume test` (retrying what it cannot
    /// heal every `retry_secs`); stopped on drop.
    pub fn start_heald(&self, retry_secs: u32) -> Heald {
        self.cluster.start_heald_from_store(&self.url, retry_secs)
    }

    /// Adds bricks `from..from+3` as a new replica set and waits until
    /// every mount of `mounts` runs the new graph.
    pub fn add_set(&self, from: usize, mounts: &[&Mount]) {
        let addrs = self.cluster.brick_addrs(from..from + REPLICA);
        let mut args = vec!["volume", "add-brick", VOLUME];
        args.extend(addrs.iter().map(String::as_str));
        self.ok(&args);
        for m in mounts {
            assert!(
                wait_until(Duration::from_secs(20), || m.log_has("switched to graph")),
                "mount {} did not switch graphs",
                m.path().display()
            );
        }
    }

    pub fn sets(&self) -> usize {
        self.cluster.brick_count() / REPLICA
    }

    /// Regular files (not link files) on the first brick of `set`.
    pub fn files_on_set(&self, set: usize) -> usize {
        count_files(&self.cluster.brick_dir(set * REPLICA))
    }

    /// Waits until the bricks of every set agree; panics with the first
    /// difference otherwise.
    pub fn assert_sets_identical(&self, timeout: Duration) {
        for set in 0..self.sets() {
            let bricks: Vec<usize> = (set * REPLICA..(set + 1) * REPLICA).collect();
            let same = wait_until(timeout, || {
                let first = self.cluster.tree_digest(bricks[0]);
                bricks[1..]
                    .iter()
                    .all(|b| self.cluster.tree_digest(*b) == first)
            });
            if !same {
                let base = tree::manifest(&self.cluster.brick_dir(bricks[0]));
                let mut report = String::new();
                for b in &bricks[1..] {
                    let other = tree::manifest(&self.cluster.brick_dir(*b));
                    for l in base.iter().filter(|l| !other.contains(l)).take(10) {
                        report.push_str(&format!("  only on brick {}: {l}\n", bricks[0]));
                    }
                    for l in other.iter().filter(|l| !base.contains(l)).take(10) {
                        report.push_str(&format!("  only on brick {b}: {l}\n"));
                    }
                }
                panic!("replicas of set {set} differ after {timeout:?}:\n{report}");
            }
        }
    }
}

/// Every object under a brick directory (its private dir left out), as
/// paths relative to it, sorted.
pub fn brick_objects(brick_dir: &Path) -> Vec<(PathBuf, fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![brick_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            if d == brick_dir && e.file_name() == proto::PRIVATE_DIR {
                continue;
            }
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            }
            let rel = e
                .path()
                .strip_prefix(brick_dir)
                .expect("below the brick dir")
                .to_path_buf();
            out.push((rel, md));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Whether a brick's object is a link file: a regular file of mode 01000
/// that only points at the set holding the file.
pub fn is_link_file(md: &fs::Metadata) -> bool {
    md.is_file() && md.mode() & 0o7777 == 0o1000
}

/// Regular files (inodes: hard links count once) under a brick directory,
/// leaving out its private dir and link files.
pub fn count_files(brick_dir: &Path) -> usize {
    let inodes: std::collections::HashSet<u64> = brick_objects(brick_dir)
        .into_iter()
        .filter(|(_, md)| md.is_file() && !is_link_file(md))
        .map(|(_, md)| md.ino())
        .collect();
    inodes.len()
}
