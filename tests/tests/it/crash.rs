//! Crash-safe bricks: a brick killed (SIGKILL) at any failpoint of any
//! operation (`brick::failpoints::ALL`) restarts into a state that heal
//! turns into identical replicas, with every heal index empty, nothing left
//! in staging, and every object with its gfid and index entry; the client
//! sees the operation succeed (two bricks of three did it). And what heal
//! cannot resolve, `volume heal NAME info` names with the reason.
//!
//! One cluster serves many failpoints in turn: the victim brick is
//! restarted as `brickd-failpoints` armed at one point, the operation runs
//! through a FUSE mount, the brick dies there, is restarted as plain brickd
//! (its recovery runs), `volume heal` runs, and the bricks are compared and
//! checked. The victim changes every time (brick k mod 3).

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tests::cluster::{Mount, TestCluster};
use tests::failpoints::{arm, check_brick, death_line};
use tests::{log_lines, wait_until, xattr};

const STEP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    CreateFile,
    Mknod,
    Symlink,
    Mkdir,
    Link,
    UnlinkLast,
    UnlinkOpen,
    Rmdir,
    RenameFileOverFile,
    RenameDirOverDir,
    Chmod,
    Chown,
    Utimes,
    Truncate,
    Setxattr,
    Removexattr,
    Write,
    Fallocate,
    CopyRange,
}

/// The operations through a mount that reach failpoint `point` (each is
/// crash-tested there).
fn ops_for(point: &str) -> Vec<Op> {
    use Op::*;
    let Some((op, step)) = point.split_once("::") else {
        return Vec::new();
    };
    match (op, step) {
        ("create", _) => vec![CreateFile],
        ("mknod", _) => vec![Mknod],
        ("symlink", _) => vec![Symlink],
        ("mkdir", _) => vec![Mkdir],
        ("link", _) => vec![Link],
        ("unlink", "after_keep") => vec![UnlinkOpen],
        ("unlink", "after_name") => vec![UnlinkLast, UnlinkOpen],
        ("unlink", _) => vec![UnlinkLast],
        ("rmdir", _) => vec![Rmdir],
        // A file over a file parks the target's index link; a directory
        // over an empty one stages the new pointer and parks the old.
        ("rename", _) => vec![RenameFileOverFile, RenameDirOverDir],
        ("setattr", "after_owner") => vec![Chown],
        ("setattr", "after_times") => vec![Utimes],
        ("setattr", _) => vec![Chmod],
        ("truncate", _) => vec![Truncate],
        ("setxattr", _) => vec![Setxattr],
        ("removexattr", _) => vec![Removexattr],
        ("write", _) => vec![Write],
        ("fallocate", _) => vec![Fallocate],
        ("copy_range", _) => vec![CopyRange],
        _ => Vec::new(),
    }
}

fn points(ops: &[&str]) -> Vec<&'static str> {
    brick::failpoints::ALL
        .iter()
        .copied()
        .filter(|p| ops.iter().any(|op| p.split("::").next() == Some(*op)))
        .collect()
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What an operation works on, made before the brick is armed.
struct Prepared {
    path: PathBuf,
    other: PathBuf,
    /// Held open across the operation (an open-unlinked file), closed after.
    _open: Option<File>,
}

fn prepare(op: Op, m: &Mount, k: usize) -> Prepared {
    let path = m.join(format!("w/o{k}"));
    let other = m.join(format!("w/o{k}.to"));
    let mut open = None;
    let content = format!("object {k} before the crash\n");
    match op {
        Op::CreateFile | Op::Mknod | Op::Symlink | Op::Mkdir => {}
        Op::Link
        | Op::UnlinkLast
        | Op::Chmod
        | Op::Chown
        | Op::Utimes
        | Op::Truncate
        | Op::Setxattr
        | Op::Write
        | Op::Fallocate => fs::write(&path, &content).expect("prepare file"),
        Op::CopyRange => {
            fs::write(&path, &content).expect("prepare file");
            fs::write(&other, b"").expect("prepare the copy's target");
        }
        Op::Removexattr => {
            fs::write(&path, &content).expect("prepare file");
            xattr::set(&path, "user.crash", b"before").expect("prepare xattr");
        }
        Op::UnlinkOpen => {
            fs::write(&path, &content).expect("prepare file");
            open = Some(File::open(&path).expect("open prepared file"));
        }
        Op::Rmdir => fs::create_dir(&path).expect("prepare dir"),
        Op::RenameFileOverFile => {
            fs::write(&path, &content).expect("prepare source");
            fs::write(&other, b"the target, replaced\n").expect("prepare target");
        }
        Op::RenameDirOverDir => {
            fs::create_dir(&path).expect("prepare source dir");
            fs::write(path.join("inside"), &content).expect("prepare file inside");
            fs::create_dir(&other).expect("prepare target dir");
        }
    }
    Prepared {
        path,
        other,
        _open: open,
    }
}

fn run(op: Op, p: &Prepared) -> io::Result<()> {
    let (path, other) = (&p.path, &p.other);
    match op {
        Op::CreateFile => {
            // In a directory just made, so that the create is held for the
            // file's first bytes and reaches the bricks carrying them
            // (client/src/replicate/held.rs).
            let dir = path.with_extension("d");
            fs::create_dir(&dir)?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join("f"))?;
            f.write_all(b"the new file's first bytes\n")?;
            f.sync_all()
        }
        // SAFETY: a NUL-terminated path.
        Op::Mknod => check(unsafe { libc::mkfifo(cstr(path).as_ptr(), 0o640) }),
        Op::Symlink => std::os::unix::fs::symlink("some/target", path),
        Op::Mkdir => fs::create_dir(path),
        Op::Link => fs::hard_link(path, other),
        Op::UnlinkLast | Op::UnlinkOpen => fs::remove_file(path),
        Op::Rmdir => fs::remove_dir(path),
        Op::RenameFileOverFile | Op::RenameDirOverDir => fs::rename(path, other),
        Op::Chmod => fs::set_permissions(path, fs::Permissions::from_mode(0o604)),
        Op::Chown => std::os::unix::fs::chown(path, Some(4321), Some(8765)),
        Op::Utimes => OpenOptions::new()
            .write(true)
            .open(path)?
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)),
        Op::Truncate => OpenOptions::new().write(true).open(path)?.set_len(3),
        Op::Setxattr => xattr::set(path, "user.crash", b"set at the crash"),
        Op::Removexattr => xattr::remove(path, "user.crash"),
        Op::Write => {
            let mut f = OpenOptions::new().append(true).open(path)?;
            f.write_all(b"written at the crash\n")?;
            f.sync_all()
        }
        Op::CopyRange => {
            let from = File::open(path)?;
            let to = OpenOptions::new().write(true).open(other)?;
            let (mut off_in, mut off_out): (libc::loff_t, libc::loff_t) = (0, 0);
            // SAFETY: two open fds and offsets that live across the call.
            let n = unsafe {
                libc::copy_file_range(
                    from.as_raw_fd(),
                    &mut off_in,
                    to.as_raw_fd(),
                    &mut off_out,
                    1 << 20,
                    0,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            to.sync_all()
        }
        Op::Fallocate => {
            let f = OpenOptions::new().write(true).open(path)?;
            // SAFETY: an open fd.
            check(unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 1 << 20) })?;
            f.sync_all()
        }
    }
}

/// One cluster and mount serving many crashes in turn.
struct Rig {
    cluster: TestCluster,
    mount: Mount,
    /// Crashes done (names objects and picks the victim).
    k: usize,
    /// Operations that failed (with the error), for the report.
    errors: Vec<String>,
}

impl Rig {
    fn start() -> Rig {
        let cluster = TestCluster::start(3);
        let mount = cluster.mount();
        fs::create_dir(mount.join("w")).expect("mkdir w");
        Rig {
            cluster,
            mount,
            k: 0,
            errors: Vec::new(),
        }
    }

    /// Kills a brick at `point` during `op`, restarts and heals it, and
    /// checks everything.
    fn crash(&mut self, point: &str, op: Op) {
        let started = Instant::now();
        let k = self.k;
        self.k += 1;
        let victim = k % 3;
        let c = &self.cluster;
        let what = format!("{op:?} killed at {point} on brick {victim}");
        let prepared = prepare(op, &self.mount, k);
        // Nothing left over from the preparation for the armed brick to heal.
        assert!(
            c.wait_healed(STEP_TIMEOUT),
            "{what}: not healed before arming"
        );
        let addr = c.brick_addr(victim);
        let ups = self.mount.brick_ups(addr);
        let deaths = log_lines(&c.brick_log(victim), &[&death_line(point)]);
        arm(c, victim, point);
        assert!(
            wait_until(STEP_TIMEOUT, || self.mount.brick_ups(addr) > ups),
            "{what}: the mount did not reconnect to the armed brick"
        );
        let res = run(op, &prepared);
        assert!(
            wait_until(STEP_TIMEOUT, || !c.brick_running(victim)),
            "{what}: the brick never reached the failpoint"
        );
        assert_eq!(
            log_lines(&c.brick_log(victim), &[&death_line(point)]),
            deaths + 1,
            "{what}: the brick died, but not at the failpoint"
        );
        // Two bricks of three did it: the client saw it succeed.
        if let Err(e) = &res {
            self.errors.push(format!("{what}: {e}"));
        }
        drop(prepared);
        let ups = self.mount.brick_ups(addr);
        c.restart_brick(victim);
        // The next preparation must reach all three bricks, or it leaves
        // blame behind that nothing here heals.
        assert!(
            wait_until(STEP_TIMEOUT, || self.mount.brick_ups(addr) > ups),
            "{what}: the mount did not reconnect to the restarted brick"
        );
        self.heal(&what);
        assert!(self.mount.is_mounted(), "{what}: the mount is gone");
        eprintln!("{what}: ok in {:.2} s", started.elapsed().as_secs_f64());
    }

    /// Heals until every heal index is empty, then compares and checks.
    fn heal(&self, what: &str) {
        let c = &self.cluster;
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut last = None;
        while c.heal_pending() != Some(0) && Instant::now() < deadline {
            last = Some(c.heal_cli(&[]));
            if c.heal_pending() != Some(0) {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        if c.heal_pending() != Some(0) {
            let info = c.heal_cli(&["info"]);
            panic!(
                "{what}: heal indices not empty: {:?}\nlast heal: {last:?}\nheal info:\n{}",
                c.heal_pending(),
                info.stdout
            );
        }
        c.assert_replicas_identical(Duration::from_secs(10));
        for i in 0..c.brick_count() {
            let problems = check_brick(&c.brick_dir(i));
            assert!(
                problems.is_empty(),
                "{what}: brick {i} is inconsistent:\n  {}",
                problems.join("\n  ")
            );
        }
    }

    fn crash_all(&mut self, ops: &[&str]) {
        let started = Instant::now();
        let mut n = 0;
        for point in points(ops) {
            for op in ops_for(point) {
                self.crash(point, op);
                n += 1;
            }
        }
        assert!(
            self.errors.is_empty(),
            "operations failed although two bricks of three did them:\n  {}",
            self.errors.join("\n  ")
        );
        eprintln!(
            "{n} crashes of {ops:?} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn every_failpoint_is_crash_tested() {
    let untested: Vec<&str> = brick::failpoints::ALL
        .iter()
        .copied()
        .filter(|p| ops_for(p).is_empty())
        .collect();
    assert!(untested.is_empty(), "no crash test reaches {untested:?}");
    let groups = [CREATES_A, CREATES_B, ENTRY_OPS, RENAME, DATA_AND_METADATA];
    let covered: Vec<&str> = groups.iter().flat_map(|g| points(g)).collect();
    for p in brick::failpoints::ALL {
        assert_eq!(
            covered.iter().filter(|c| *c == p).count(),
            1,
            "{p} is not in exactly one crash test"
        );
    }
}

const CREATES_A: &[&str] = &["create", "mknod"];
const CREATES_B: &[&str] = &["symlink", "mkdir"];
const ENTRY_OPS: &[&str] = &["link", "unlink", "rmdir"];
const RENAME: &[&str] = &["rename"];
const DATA_AND_METADATA: &[&str] = &[
    "setattr",
    "truncate",
    "setxattr",
    "removexattr",
    "write",
    "fallocate",
    "copy_range",
];

#[test]
fn a_brick_killed_inside_a_create_or_mknod_heals_clean() {
    Rig::start().crash_all(CREATES_A);
}

#[test]
fn a_brick_killed_inside_a_symlink_or_mkdir_heals_clean() {
    Rig::start().crash_all(CREATES_B);
}

#[test]
fn a_brick_killed_inside_link_unlink_or_rmdir_heals_clean() {
    Rig::start().crash_all(ENTRY_OPS);
}

#[test]
fn a_brick_killed_inside_a_rename_heals_clean() {
    Rig::start().crash_all(RENAME);
}

#[test]
fn a_brick_killed_inside_a_data_or_metadata_op_heals_clean() {
    Rig::start().crash_all(DATA_AND_METADATA);
}

/// What an older brickd left when killed inside a create (the report that
/// started this: an empty `w/.B-11.tmp`, mode 0600, no gfid): heal makes
/// the name it needs over it; and an entry heal cannot resolve (a file
/// without a gfid that holds data, which brickfs never makes) is listed by
/// `volume heal info` with what and why until an operator moves it.
#[test]
fn heal_info_says_why_an_entry_cannot_be_healed() {
    let c = TestCluster::start(3);
    let m = c.mount();
    fs::create_dir(m.join("w")).expect("mkdir");
    c.kill_brick(0);
    fs::write(m.join("w/.B-11.tmp"), b"made while brick 0 was down\n").expect("write");
    fs::write(m.join("w/x"), b"x, the real one\n").expect("write");
    let b0 = c.brick_dir(0).join("w");
    // An older brickd's leftover: empty, private mode, no gfid.
    fs::write(b0.join(".B-11.tmp"), b"").expect("plant leftover");
    fs::set_permissions(b0.join(".B-11.tmp"), fs::Permissions::from_mode(0o600))
        .expect("chmod leftover");
    // Not brickfs's: data, no gfid.
    fs::write(b0.join("x"), b"someone's data\n").expect("plant stranger");
    c.restart_brick(0);
    let heald = c.start_heald(1);
    // heald says what it leaves and why, not only how many.
    assert!(
        wait_until(STEP_TIMEOUT, || log_lines(
            &heald.log,
            &["without a gfid and holds data"]
        ) >= 1),
        "heald does not say why it left an entry"
    );

    let heal = c.heal_cli(&[]);
    assert!(
        heal.stdout.contains("not healed") && heal.stdout.contains("x exists on this brick"),
        "the heal does not say what it left: {heal:?}"
    );
    let info = c.heal_cli(&["info"]);
    assert!(info.ok, "{info:?}");
    let why = "making x: x exists on this brick without a gfid and holds data";
    assert!(
        info.stdout.contains("/w\n") && info.stdout.contains(why),
        "heal info does not name the entry and the reason:\n{}",
        info.stdout
    );
    // The leftover did not block the rest of the directory.
    assert_eq!(
        fs::read(b0.join(".B-11.tmp")).expect("healed name"),
        b"made while brick 0 was down\n"
    );

    // Once the stranger is moved away, everything heals.
    fs::rename(b0.join("x"), c.root().join("moved-away")).expect("move stranger");
    let heal = c.heal_cli(&[]);
    assert!(heal.ok, "{heal:?}");
    assert!(c.wait_healed(STEP_TIMEOUT), "{:?}", c.heal_pending());
    c.assert_replicas_identical(Duration::from_secs(10));
    for i in 0..3 {
        let problems = check_brick(&c.brick_dir(i));
        assert!(problems.is_empty(), "brick {i}: {problems:?}");
    }
    let info = c.heal_cli(&["info"]);
    assert_eq!(
        info.stdout.matches("Number of entries: 0").count(),
        3,
        "{}",
        info.stdout
    );
}
