//! `--inode-limit`: a tree far bigger than the limit, created, listed,
//! stat'ed and read through one mount, leaves the mount's inode table at
//! the limit (the kernel is asked to drop the names of files it has not
//! used lately), while every file stays reachable with its bytes, an open
//! file keeps working through its descriptor and by name, and a process
//! whose working directory is in the tree can still tell where it is.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use tests::http::{try_request, Target};
use tests::{free_port, wait_until, TestCluster};

const LIMIT: usize = 400;
const DIRS: usize = 12;
const PER_DIR: usize = 150;

fn inodes(addr: SocketAddr) -> Option<usize> {
    let answer = try_request(&Target::plain(addr), "GET", "/metrics", None, "").ok()?;
    answer
        .raw
        .lines()
        .find_map(|l| l.strip_prefix("brickfs_mount_inodes ")?.trim().parse().ok())
}

/// Waits until the table is back within the limit; its size at the end.
fn settles_within_limit(addr: SocketAddr, after: &str) -> usize {
    let mut last = None;
    let within = wait_until(Duration::from_secs(20), || {
        last = inodes(addr);
        last.is_some_and(|n| n <= LIMIT)
    });
    assert!(
        within,
        "after {after}: the mount holds {last:?} inodes, the limit is {LIMIT}"
    );
    last.unwrap_or_default()
}

fn content(d: usize, f: usize) -> Vec<u8> {
    format!("dir {d} file {f} ")
        .repeat(1 + (d * 7 + f) % 40)
        .into_bytes()
}

#[test]
fn a_tree_past_the_inode_limit_stays_within_it_and_every_file_stays_reachable() {
    let cluster = TestCluster::start(3);
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let limit = LIMIT.to_string();
    let m = cluster.mount_with_args(&[
        "--inode-limit",
        &limit,
        "--metrics-listen",
        &metrics.to_string(),
    ]);
    let tree = m.join("tree");
    fs::create_dir(&tree).unwrap();
    for d in 0..DIRS {
        fs::create_dir(tree.join(format!("d{d}"))).unwrap();
    }
    // A shell whose working directory is in the tree, and a file held open
    // from the start: neither may be disturbed by dropped names.
    let stop = m.join("stop-pwd");
    let shell = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && while [ ! -e {} ]; do sleep 0.05; done; pwd -P; ls | wc -l",
            tree.join("d0").display(),
            stop.display()
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let held_path = tree.join("d1").join("held");
    let mut held = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&held_path)
        .unwrap();
    held.write_all(b"first ").unwrap();

    for d in 0..DIRS {
        for f in 0..PER_DIR {
            fs::write(tree.join(format!("d{d}/f{f}")), content(d, f)).unwrap();
        }
    }
    let total = DIRS * PER_DIR;
    settles_within_limit(metrics, &format!("creating {total} files"));

    // ls -l of the whole tree, then every file's bytes, twice: names the
    // kernel dropped are looked up again.
    for round in 0..2 {
        for d in 0..DIRS {
            let dir = tree.join(format!("d{d}"));
            let mut names = 0;
            for e in fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                e.metadata().unwrap();
                names += 1;
            }
            let expected = PER_DIR + usize::from(d == 1);
            assert_eq!(
                names,
                expected,
                "round {round}: entries of {}",
                dir.display()
            );
            for f in 0..PER_DIR {
                let p = dir.join(format!("f{f}"));
                let want = content(d, f);
                assert_eq!(
                    fs::metadata(&p).unwrap().len(),
                    want.len() as u64,
                    "round {round}: size of {}",
                    p.display()
                );
                assert!(
                    fs::read(&p).unwrap() == want,
                    "round {round}: bytes of {}",
                    p.display()
                );
            }
        }
        settles_within_limit(metrics, &format!("reading the tree, round {round}"));
    }

    // The open file: written through its descriptor after all that, read
    // back through it and by name.
    held.write_all(b"second").unwrap();
    held.seek(SeekFrom::Start(0)).unwrap();
    let mut back = String::new();
    held.read_to_string(&mut back).unwrap();
    assert_eq!(back, "first second");
    drop(held);
    assert_eq!(fs::read_to_string(&held_path).unwrap(), "first second");

    fs::write(&stop, b"").unwrap();
    let out = shell.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let mut lines = said.lines();
    let real = fs::canonicalize(tree.join("d0")).unwrap();
    assert_eq!(
        lines.next(),
        Some(real.to_string_lossy().as_ref()),
        "the shell in the tree lost its working directory: {said}"
    );
    assert_eq!(
        lines.next().map(str::trim),
        Some(PER_DIR.to_string().as_str()),
        "{said}"
    );
    assert!(out.status.success(), "{said}");
    cluster.assert_replicas_identical(Duration::from_secs(30));
}
