//! Volumes of several replica sets on a test cluster, made the way a user
//! makes them: `brickfs volume create/start` in a file store under the
//! cluster's temp dir, mounted by name.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::cluster::{wait_until, Mount, TestCluster, VOLUME};
use crate::tree;

/// Bricks per replica set.
pub const REPLICA: usize = 3;

/// The output of one `brickfs --store URL …` run.
pub struct CliRun {
    pub ok: bool,
    pub out: String,
    pub err: String,
}

/// A volume named [`VOLUME`] over every brick of `cluster`, in a file store.
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
        let addrs: Vec<String> = (0..bricks)
            .map(|i| cluster.brick_addr(i).to_string())
            .collect();
        let mut args = vec!["volume", "create", VOLUME, "replica", "3"];
        args.extend(addrs.iter().map(String::as_str));
        v.ok(&args);
        v.ok(&["volume", "start", VOLUME]);
        v
    }

    pub fn cli(&self, args: &[&str]) -> CliRun {
        let out = Command::new(&self.cluster.binaries().brickfs)
            .args(["--store", &self.url])
            .args(args)
            .output()
            .expect("running brickfs");
        CliRun {
            ok: out.status.success(),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs the CLI and panics with its output if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.cli(args);
        assert!(r.ok, "brickfs {args:?} failed:\n{}\n{}", r.out, r.err);
        r.out
    }

    pub fn mount(&self) -> Mount {
        self.cluster.mount_from_store(&self.url, VOLUME)
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

/// Regular files (inodes: hard links count once) under a brick directory,
/// leaving out its private dir and link files (mode 01000: they only point
/// at another set).
pub fn count_files(brick_dir: &Path) -> usize {
    let mut inodes = std::collections::HashSet::new();
    let mut stack = vec![brick_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if d == brick_dir && e.file_name() == ".brickfs" {
                continue;
            }
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() && md.mode() & 0o7777 != 0o1000 {
                inodes.insert(md.ino());
            }
        }
    }
    inodes.len()
}
