//! Developer tools on a shared volume: git and make on one mount, their
//! results read and used on another (the CI runner and the build pod of
//! one ReadWriteMany claim).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tests::{run_ok, TestCluster};

const SETTLE: Duration = Duration::from_secs(30);

/// git with no user or system configuration of the host.
fn git(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["-c", "user.name=brickfs", "-c", "user.email=t@brickfs"])
        .args(["-c", "safe.directory=*"])
        .args(args);
    cmd
}

/// Commits, a repack and a commit from the other side: git renames lock
/// files into place, rewrites the index and mmaps its packs, so each
/// mount must see the other's closed files whole.
#[test]
fn a_repository_committed_on_one_mount_is_whole_on_another() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    let repo_a = a.join("repo");
    run_ok(&mut git(a.path(), &["init", "-q", "repo"]));
    for c in 1..=4 {
        for i in 0..40 {
            let body = format!("commit {c} file {i}\n").repeat(1 + (c * 37 + i * 11) % 200);
            fs::write(repo_a.join(format!("f{i:02}.txt")), body).unwrap();
        }
        run_ok(&mut git(&repo_a, &["add", "-A"]));
        run_ok(&mut git(&repo_a, &["commit", "-q", "-m", &format!("c{c}")]));
    }
    run_ok(&mut git(&repo_a, &["gc", "-q"]));

    let repo_b = b.join("repo");
    run_ok(&mut git(&repo_b, &["fsck", "--full", "--strict"]));
    assert_eq!(
        run_ok(&mut git(&repo_b, &["log", "--format=%s"])),
        "c4\nc3\nc2\nc1\n"
    );
    assert_eq!(run_ok(&mut git(&repo_b, &["status", "--porcelain"])), "");
    fs::write(repo_b.join("f00.txt"), "changed on b\n").unwrap();
    run_ok(&mut git(&repo_b, &["commit", "-q", "-a", "-m", "from b"]));

    assert_eq!(
        run_ok(&mut git(&repo_a, &["log", "-1", "--format=%s"])),
        "from b\n"
    );
    run_ok(&mut git(&repo_a, &["fsck", "--full", "--strict"]));
    let clone = b.join("clone");
    run_ok(&mut git(
        b.path(),
        &["clone", "-q", repo_a.to_str().unwrap(), "clone"],
    ));
    for i in 0..40 {
        let name = format!("f{i:02}.txt");
        assert_eq!(
            fs::read(clone.join(&name)).unwrap(),
            fs::read(repo_a.join(&name)).unwrap(),
            "{name} of the clone made on b differs from a's checkout"
        );
    }
    cluster.assert_replicas_identical(SETTLE);
}

/// A parallel build on one mount; the other runs the program and finds
/// every target up to date (make compares the objects' mtimes).
#[test]
fn a_parallel_build_on_one_mount_is_up_to_date_and_runs_on_another() {
    let cluster = TestCluster::start(3);
    let a = cluster.mount();
    let b = cluster.mount();
    let proj = a.join("proj");
    fs::create_dir(&proj).unwrap();
    let mut main = String::from("int main(void) { long s = 0;\n");
    for i in 0..30 {
        fs::write(
            proj.join(format!("f{i}.c")),
            format!("long f{i}(long x) {{ return x * {i} + 1; }}\n"),
        )
        .unwrap();
        main += &format!("extern long f{i}(long); s += f{i}(2);\n");
    }
    // Σ (2i + 1) over i < 30 = 900.
    main += "return s == 900 ? 0 : 1; }\n";
    fs::write(proj.join("main.c"), main).unwrap();
    fs::write(
        proj.join("Makefile"),
        "OBJS := $(patsubst %.c,%.o,$(wildcard *.c))\n\
         prog: $(OBJS)\n\tcc -o $@ $^\n\
         %.o: %.c\n\tcc -c -o $@ $<\n",
    )
    .unwrap();
    run_ok(Command::new("make").args(["-s", "-j4"]).current_dir(&proj));
    let proj_b = b.join("proj");
    run_ok(&mut Command::new(proj_b.join("prog")));
    run_ok(
        Command::new("make")
            .args(["-q", "prog"])
            .current_dir(&proj_b),
    );
    // A change on b rebuilds on a only what it touches.
    fs::write(
        proj_b.join("f7.c"),
        "long f7(long x) { return x * 7 + 1; }\n",
    )
    .unwrap();
    let made = run_ok(Command::new("make").args(["-j4"]).current_dir(&proj));
    assert!(
        made.contains("-o f7.o f7.c") && !made.contains("-o f8.o"),
        "make on a after f7.c changed on b ran: {made}"
    );
    run_ok(&mut Command::new(proj.join("prog")));
    cluster.assert_replicas_identical(SETTLE);
}
