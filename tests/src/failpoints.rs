//! Crash tests: bricks that die at a chosen failpoint, and a check that a
//! brick directory is consistent (what a restart after any kill must give).
//!
//! The failpoints exist only in `brickd-failpoints` (`brick` built with its
//! `failpoints` feature; brickd itself has none). [`brickd_failpoints`]
//! builds it on first use, into the target dir the harness takes its other
//! binaries from (`cargo build -p brick --features failpoints --bin
//! brickd-failpoints`: a no-op when it is up to date; `scripts/test.sh`
//! builds it beforehand). With `BRICKFS_BIN_DIR` set it must already be
//! there.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::cluster::{Binaries, TestCluster};

/// `brickd-failpoints` next to the other binaries, built if needed.
pub fn brickd_failpoints(bins: &Binaries) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let dir = bins
            .brickd
            .parent()
            .ok_or("brickd has no parent dir")?
            .to_path_buf();
        let exe = dir.join("brickd-failpoints");
        if std::env::var_os("BRICKFS_BIN_DIR").is_some() {
            return if exe.is_file() {
                Ok(exe)
            } else {
                Err(format!(
                    "{} not found (BRICKFS_BIN_DIR is set, so it is not built here)",
                    exe.display()
                ))
            };
        }
        let target = dir.parent().ok_or("the binaries' dir has no parent")?;
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or("tests crate has no parent dir")?;
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "brick",
            "--features",
            "failpoints",
        ])
        .args(["--bin", "brickd-failpoints", "--manifest-path"])
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out = cmd
            .output()
            .map_err(|e| format!("running cargo to build brickd-failpoints: {e}"))?;
        if !out.status.success() || !exe.is_file() {
            return Err(format!(
                "building brickd-failpoints failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(exe)
    });
    match built {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// Restarts brick `i` as `brickd-failpoints` that kills itself (SIGKILL) the
/// first time it reaches `point`.
pub fn arm(cluster: &TestCluster, i: usize, point: &str) {
    let exe = brickd_failpoints(cluster.binaries());
    let spec = format!("{point}=kill");
    cluster.restart_brick_with(i, &exe, &[("FAILPOINTS", spec.as_str())]);
}

/// The line brickd-failpoints logs as it kills itself at `point`.
pub fn death_line(point: &str) -> String {
    format!("failpoint {point}: SIGKILL")
}

/// What is wrong with the brick directory `dir`, one line per problem:
/// anything left in `.brickfs/staging`; an entry without a gfid; a
/// non-directory whose index link is missing, another inode, or whose link
/// count is not its names plus the index link; a directory whose pointer
/// does not name where it is; an index entry (link or pointer) that no
/// name leads to (files kept open-unlinked aside). Empty when consistent.
pub fn check_brick(dir: &Path) -> Vec<String> {
    let private = dir.join(proto::PRIVATE_DIR);
    let mut c = Check {
        index: private.join("gfid"),
        problems: Vec::new(),
        files: HashMap::new(),
        dirs: HashSet::new(),
    };
    if let Ok(rd) = std::fs::read_dir(private.join("staging")) {
        for e in rd.filter_map(Result::ok) {
            c.problems.push(format!(
                "left in staging: {}",
                e.file_name().to_string_lossy()
            ));
        }
    }
    c.walk(dir, Path::new(""), &proto::Gfid::ROOT.to_hex(), true);
    for (hex, (ino, nlink, names)) in &c.files {
        if *nlink != names.len() as u64 + 1 {
            c.problems.push(format!(
                "{hex} ({}) has {nlink} links for {} names and its index link (inode {ino})",
                names.join(", "),
                names.len()
            ));
        }
    }
    let kept: HashSet<String> = std::fs::read_dir(private.join("indices/open-unlinked"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for fan in std::fs::read_dir(&c.index).into_iter().flatten().flatten() {
        for e in std::fs::read_dir(fan.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let hex = e.file_name().to_string_lossy().into_owned();
            let Ok(md) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            let named = if md.file_type().is_symlink() && gfid_of(&e.path()).is_none() {
                c.dirs.contains(&hex)
            } else {
                c.files.contains_key(&hex) || kept.contains(&hex)
            };
            if !named {
                c.problems
                    .push(format!("index entry {hex} has no name (a leak)"));
            }
        }
    }
    c.problems
}

struct Check {
    index: PathBuf,
    problems: Vec<String>,
    /// gfid → (inode, link count, names) of every non-directory.
    files: HashMap<String, (u64, u64, Vec<String>)>,
    dirs: HashSet<String>,
}

impl Check {
    fn index_path(&self, hex: &str) -> PathBuf {
        self.index.join(&hex[..2]).join(hex)
    }

    fn walk(&mut self, dir: &Path, rel: &Path, parent: &str, top: bool) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            self.problems.push(format!("cannot list {}", rel.display()));
            return;
        };
        let mut names: Vec<_> = rd.filter_map(Result::ok).map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            if top && name.as_bytes() == proto::PRIVATE_DIR.as_bytes() {
                continue;
            }
            let path = dir.join(&name);
            let rel = rel.join(&name);
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let Some(hex) = gfid_of(&path) else {
                self.problems.push(format!("{} has no gfid", rel.display()));
                continue;
            };
            if md.is_dir() {
                let want = format!("{parent}/{}", name.to_string_lossy());
                match std::fs::read_link(self.index_path(&hex)) {
                    Ok(t) if t.as_os_str().as_bytes() == want.as_bytes() => {}
                    Ok(t) => self.problems.push(format!(
                        "directory {} ({hex}): pointer says {t:?}, not {want:?}",
                        rel.display()
                    )),
                    Err(e) => self.problems.push(format!(
                        "directory {} ({hex}) has no pointer: {e}",
                        rel.display()
                    )),
                }
                if !self.dirs.insert(hex.clone()) {
                    self.problems
                        .push(format!("directory gfid {hex} appears twice"));
                }
                self.walk(&path, &rel, &hex, false);
                continue;
            }
            match std::fs::symlink_metadata(self.index_path(&hex)) {
                Ok(imd) if imd.ino() == md.ino() => {}
                Ok(_) => self.problems.push(format!(
                    "{} ({hex}): the index link is another inode",
                    rel.display()
                )),
                Err(e) => self
                    .problems
                    .push(format!("{} ({hex}) has no index link: {e}", rel.display())),
            }
            let entry = self
                .files
                .entry(hex)
                .or_insert((md.ino(), md.nlink(), Vec::new()));
            entry.2.push(rel.display().to_string());
        }
    }
}

/// The gfid xattr of `path` (not followed) in hex, if it has one.
pub fn gfid_of(path: &Path) -> Option<String> {
    let gfid = crate::xattr::get(path, "trusted.brickfs.gfid").ok()?;
    (gfid.len() == 16).then(|| gfid.iter().map(|b| format!("{b:02x}")).collect())
}
