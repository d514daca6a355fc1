//! Backend tests on a real filesystem (needs root for trusted xattrs and chown).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use proto::{
    FileKind, FsError, Gfid, LockMode, Name, NewObject, PendingKind, RecordLock, RecordLockType,
    RenameReq, SetAttr, Txn,
};

use crate::ops::Backend;
use proto::data::WriteAt;

struct Brick {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    b: Backend,
}

fn brick() -> Brick {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("brick");
    let b = Backend::open(&dir).expect("open brick");
    Brick { _tmp: tmp, dir, b }
}

fn obj(name: &str, kind: FileKind) -> NewObject {
    NewObject {
        name: Name::from(name),
        gfid: Gfid::random(),
        kind,
        perm: if kind == FileKind::Dir { 0o755 } else { 0o644 },
        rdev: 0,
        uid: 1000,
        gid: 1000,
        target: None,
        lock: false,
        xattrs: Vec::new(),
    }
}

const C: u64 = 1;
fn none() -> Txn {
    Txn::none()
}

impl Brick {
    fn create(&self, parent: Gfid, name: &str, kind: FileKind) -> Gfid {
        let new = obj(name, kind);
        let attr = self.b.create(&none(), parent, &new, C).expect("create");
        assert_eq!(attr.gfid, new.gfid);
        new.gfid
    }
    fn index(&self, g: Gfid) -> PathBuf {
        self.b.store.index_path(g)
    }
    fn names(&self, dir: Gfid) -> Vec<String> {
        let page = self.b.readdir(dir, None, 4096).expect("readdir");
        page.entries.iter().map(|e| e.name.to_string()).collect()
    }
}

#[test]
fn layout_and_create_lookup_write_read_truncate() {
    let t = brick();
    assert!(t.dir.join(".brickfs/brick-id").is_file());
    assert!(t.dir.join(".brickfs/indices/xattrop").is_dir());
    let new = NewObject {
        lock: true,
        ..obj("f", FileKind::File)
    };
    let attr = t.b.create(&none(), Gfid::ROOT, &new, C).expect("create");
    assert_eq!(
        (attr.kind, attr.perm, attr.uid, attr.gid, attr.nlink),
        (FileKind::File, 0o644, 1000, 1000, 1)
    );
    // Plain file on disk, plus its index hard link.
    let md = std::fs::metadata(t.dir.join("f")).expect("stat");
    assert_eq!(md.nlink(), 2);
    assert_eq!(
        std::fs::metadata(t.index(new.gfid)).expect("index").ino(),
        md.ino()
    );

    let looked = t.b.lookup(Gfid::ROOT, &Name::from("f")).expect("lookup");
    assert_eq!(looked.attr.gfid, new.gfid);
    assert!(
        looked.dirty,
        "create marks the object dirty until unlock_batch"
    );

    let a =
        t.b.write(&none(), new.gfid, WriteAt::Offset(3), b"hello")
            .expect("write");
    assert_eq!(a.size, 8);
    assert_eq!(t.b.read(new.gfid, 0, 100).expect("read"), b"\0\0\0hello");
    assert_eq!(t.b.read(new.gfid, 6, 100).expect("read"), b"lo");
    assert_eq!(std::fs::read(t.dir.join("f")).expect("cat"), b"\0\0\0hello");
    // An append lands at the end as the brick has it, whatever the client
    // thought the size was.
    let a =
        t.b.write(&none(), new.gfid, WriteAt::End, b"!")
            .expect("append");
    assert_eq!(a.size, 9);
    assert_eq!(
        std::fs::read(t.dir.join("f")).expect("cat"),
        b"\0\0\0hello!"
    );

    let set = SetAttr {
        size: Some(4),
        ..Default::default()
    };
    assert_eq!(
        t.b.setattr(&none(), new.gfid, &set).expect("truncate").size,
        4
    );
    // Changing only the uid keeps the gid.
    let set = SetAttr {
        uid: Some(7),
        perm: Some(0o600),
        ..Default::default()
    };
    let a = t.b.setattr(&none(), new.gfid, &set).expect("chown");
    assert_eq!((a.uid, a.gid, a.perm), (7, 1000, 0o600));
    assert_eq!(t.b.getattr(new.gfid).expect("getattr").attr, a);

    // A retried create is answered with the object; a different gfid is refused.
    assert_eq!(
        t.b.create(&none(), Gfid::ROOT, &new, C)
            .expect("retry")
            .gfid,
        new.gfid
    );
    let other = NewObject {
        gfid: Gfid::random(),
        ..new.clone()
    };
    assert_eq!(
        t.b.create(&none(), Gfid::ROOT, &other, C),
        Err(FsError::Exists)
    );
}

#[test]
fn setgid_directories_pass_their_group_on() {
    let t = brick();
    let d = t.create(Gfid::ROOT, "d", FileKind::Dir);
    let set = SetAttr {
        perm: Some(0o2775),
        gid: Some(55),
        ..Default::default()
    };
    t.b.setattr(&none(), d, &set).expect("setattr");
    let sub =
        t.b.create(&none(), d, &obj("sub", FileKind::Dir), C)
            .expect("mkdir");
    assert_eq!(sub.gid, 55);
    assert_eq!(sub.perm, 0o2755);
}

#[test]
fn rename_file_dir_and_over_existing_target() {
    let t = brick();
    let d1 = t.create(Gfid::ROOT, "d1", FileKind::Dir);
    let d2 = t.create(Gfid::ROOT, "d2", FileKind::Dir);
    let f = t.create(d1, "f", FileKind::File);
    let victim = t.create(d2, "g", FileKind::File);
    let mv = |parent, name: &str, new_parent, new_name: &str, flags| RenameReq {
        parent,
        name: Name::from(name),
        new_parent,
        new_name: Name::from(new_name),
        flags,
    };
    // Over an existing file: the victim loses its index link.
    t.b.rename(&none(), &mv(d1, "f", d2, "g", 0))
        .expect("rename file");
    assert_eq!(
        t.b.lookup(d2, &Name::from("g")).expect("lookup").attr.gfid,
        f
    );
    assert!(!t.index(victim).exists());
    assert_eq!(
        t.b.getattr(victim).err(),
        Some(FsError::Stale(victim.to_hex()))
    );
    // NOREPLACE refuses to replace.
    let h = t.create(d2, "h", FileKind::File);
    assert_eq!(
        t.b.rename(&none(), &mv(d2, "g", d2, "h", 1)),
        Err(FsError::Exists)
    );

    // A moved directory stays reachable by gfid, and so does its content.
    let sub = t.create(d1, "sub", FileKind::Dir);
    let inner = t.create(sub, "inner", FileKind::File);
    assert!(t.b.getattr(sub).is_ok()); // warm the path cache
    t.b.rename(&none(), &mv(d1, "sub", d2, "moved", 0))
        .expect("rename dir");
    assert_eq!(t.b.getattr(sub).expect("moved dir").attr.gfid, sub);
    assert_eq!(t.names(sub), vec!["inner"]);
    assert!(t.b.getattr(inner).is_ok());
    assert!(t.dir.join("d2/moved/inner").exists());

    // A dir over an empty dir: the replaced one is gone by gfid.
    let empty = t.create(d1, "empty", FileKind::Dir);
    t.b.rename(&none(), &mv(d2, "moved", d1, "empty", 0))
        .expect("dir over dir");
    assert!(matches!(t.b.getattr(empty), Err(FsError::Stale(_))));
    assert_eq!(t.names(sub), vec!["inner"]);

    // EXCHANGE swaps a file and a dir and keeps both reachable.
    t.b.rename(&none(), &mv(d2, "h", d1, "empty", 2))
        .expect("exchange");
    assert_eq!(t.b.lookup(d2, &Name::from("h")).expect("h").attr.gfid, sub);
    assert_eq!(t.names(sub), vec!["inner"]);
    assert_eq!(t.b.getattr(h).expect("h").attr.kind, FileKind::File);
    assert_eq!(
        t.b.rename(&none(), &mv(d2, "h", d1, "x", 3))
            .err()
            .map(|e| e.errno()),
        Some(libc::EINVAL)
    );
}

#[test]
fn link_symlink_readlink_unlink_and_index_cleanup() {
    let t = brick();
    let f = t.create(Gfid::ROOT, "f", FileKind::File);
    let a =
        t.b.link(&none(), f, Gfid::ROOT, &Name::from("f2"))
            .expect("link");
    assert_eq!(a.nlink, 2);
    t.b.unlink(&none(), Gfid::ROOT, &Name::from("f"), false, None)
        .expect("unlink");
    assert!(t.index(f).exists(), "another name still refers to it");
    assert_eq!(t.b.getattr(f).expect("getattr").attr.nlink, 1);
    t.b.unlink(&none(), Gfid::ROOT, &Name::from("f2"), false, None)
        .expect("unlink");
    assert!(!t.index(f).exists());
    assert!(matches!(t.b.getattr(f), Err(FsError::Stale(_))));

    let mut s = obj("s", FileKind::Symlink);
    s.target = Some(proto::Bytes::from(b"/etc/passwd".to_vec()));
    let a = t.b.create(&none(), Gfid::ROOT, &s, C).expect("symlink");
    assert_eq!(a.kind, FileKind::Symlink);
    assert_eq!(t.b.readlink(s.gfid).expect("readlink"), b"/etc/passwd");
    assert!(matches!(t.b.read(s.gfid, 0, 10), Err(FsError::Invalid(_))));
    let set = SetAttr {
        perm: Some(0o600),
        ..Default::default()
    };
    assert!(matches!(
        t.b.setattr(&none(), s.gfid, &set),
        Err(FsError::NotSupported(_))
    ));
    let fifo = t.create(Gfid::ROOT, "p", FileKind::Fifo);
    assert_eq!(t.b.getattr(fifo).expect("fifo").attr.kind, FileKind::Fifo);

    // Directories: NotEmpty, then rmdir drops the pointer.
    let d = t.create(Gfid::ROOT, "d", FileKind::Dir);
    t.create(d, "x", FileKind::File);
    assert_eq!(
        t.b.unlink(&none(), Gfid::ROOT, &Name::from("d"), true, None),
        Err(FsError::NotEmpty)
    );
    assert_eq!(
        t.b.unlink(&none(), Gfid::ROOT, &Name::from("d"), false, None),
        Err(FsError::IsDir)
    );
    t.b.unlink(&none(), d, &Name::from("x"), false, None)
        .expect("unlink x");
    t.b.unlink(&none(), Gfid::ROOT, &Name::from("d"), true, None)
        .expect("rmdir");
    assert!(std::fs::symlink_metadata(t.index(d)).is_err());
    assert!(matches!(t.b.getattr(d), Err(FsError::Stale(_))));
}

#[test]
fn readdir_is_sorted_paged_and_hides_private_state() {
    let t = brick();
    for n in ["c", "a", "b", "e", "d"] {
        t.create(Gfid::ROOT, n, FileKind::File);
    }
    std::fs::write(t.dir.join("handmade"), b"x").expect("write");
    assert_eq!(t.names(Gfid::ROOT), vec!["a", "b", "c", "d", "e"]);
    let p1 = t.b.readdir(Gfid::ROOT, None, 2).expect("page 1");
    assert_eq!(p1.entries.len(), 2);
    assert!(!p1.eof);
    let p2 =
        t.b.readdir(Gfid::ROOT, Some(&Name::from("b")), 2)
            .expect("page 2");
    let names: Vec<_> = p2.entries.iter().map(|e| e.name.to_string()).collect();
    assert_eq!(names, vec!["c", "d"]);
    let p3 =
        t.b.readdir(Gfid::ROOT, Some(&Name::from("d")), 10)
            .expect("page 3");
    assert!(p3.eof);
    assert_eq!(
        p3.entries
            .iter()
            .map(|e| e.name.to_string())
            .collect::<Vec<_>>(),
        vec!["e"]
    );

    let private = Name::from(".brickfs");
    assert_eq!(
        t.b.lookup(Gfid::ROOT, &private).err(),
        Some(FsError::NotFound)
    );
    let new = NewObject {
        name: private.clone(),
        ..obj("x", FileKind::File)
    };
    assert_eq!(
        t.b.create(&none(), Gfid::ROOT, &new, C).err(),
        Some(FsError::Perm)
    );
    assert_eq!(
        t.b.unlink(&none(), Gfid::ROOT, &private, true, None).err(),
        Some(FsError::Perm)
    );
    let f =
        t.b.lookup(Gfid::ROOT, &Name::from("a"))
            .expect("a")
            .attr
            .gfid;
    assert_eq!(
        t.b.link(&none(), f, Gfid::ROOT, &private).err(),
        Some(FsError::Perm)
    );
    let mv = RenameReq {
        parent: Gfid::ROOT,
        name: Name::from("a"),
        new_parent: Gfid::ROOT,
        new_name: private,
        flags: 0,
    };
    assert_eq!(t.b.rename(&none(), &mv).err(), Some(FsError::Perm));
}

#[test]
fn xattrs_and_private_names() {
    let t = brick();
    let f = t.create(Gfid::ROOT, "f", FileKind::File);
    let d = t.create(Gfid::ROOT, "d", FileKind::Dir);
    for g in [f, d] {
        let n = Name::from("user.color");
        t.b.setxattr(&none(), g, &n, b"blue", 0).expect("setxattr");
        assert_eq!(t.b.getxattr(g, &n).expect("getxattr"), b"blue");
        assert_eq!(
            t.b.setxattr(&none(), g, &n, b"red", libc::XATTR_CREATE)
                .err(),
            Some(FsError::Exists)
        );
        let list = t.b.listxattr(g).expect("list");
        assert_eq!(list, vec![n.clone()], "private xattrs are hidden");
        t.b.removexattr(&none(), g, &n).expect("remove");
        assert_eq!(t.b.getxattr(g, &n).err(), Some(FsError::NoAttr));
        let private = Name::from("trusted.brickfs.gfid");
        assert_eq!(t.b.getxattr(g, &private).err(), Some(FsError::NoAttr));
        assert_eq!(
            t.b.setxattr(&none(), g, &private, b"x", 0).err(),
            Some(FsError::Perm)
        );
        assert_eq!(
            t.b.removexattr(&none(), g, &private).err(),
            Some(FsError::Perm)
        );
    }
}

#[test]
fn blame_writes_pending_and_heal_index_and_unlock_clears_dirty() {
    let t = brick();
    let f = t.create(Gfid::ROOT, "f", FileKind::File);
    // Transactions run under the replication lock; the holder owns the marks.
    assert!(t.b.inodelks.try_acquire(f, C));
    let blame = Txn { blame: vec![2] };
    t.b.write(&blame, f, WriteAt::Offset(0), b"x")
        .expect("write");
    t.b.write(&blame, f, WriteAt::Offset(1), b"y")
        .expect("write");
    t.b.setattr(
        &blame,
        f,
        &SetAttr {
            perm: Some(0o600),
            ..Default::default()
        },
    )
    .expect("chmod");
    t.b.create(&blame, Gfid::ROOT, &obj("g", FileKind::File), C)
        .expect("create");
    t.b.mark_pending(f, &[1], PendingKind::Entry).expect("mark");

    let looked = t.b.getattr(f).expect("getattr");
    let mut pending = looked.pending.clone();
    pending.sort_by_key(|p| p.0);
    assert_eq!(pending.len(), 2);
    assert_eq!((pending[0].0, pending[0].1.entry), (1, 1));
    assert_eq!(
        (pending[1].0, pending[1].1.data, pending[1].1.metadata),
        (2, 2, 1)
    );
    let root = t.b.getattr(Gfid::ROOT).expect("root");
    assert_eq!(
        root.pending,
        vec![(
            2,
            proto::PendingCounts {
                data: 0,
                metadata: 0,
                entry: 1
            }
        )]
    );
    let xattrop = t.dir.join(".brickfs/indices/xattrop");
    assert!(xattrop.join(f.to_hex()).exists());
    assert!(xattrop.join(Gfid::ROOT.to_hex()).exists());

    assert!(looked.dirty);
    // Only the connection whose transaction made the mark confirms it.
    t.b.unlock_batch(C + 1, &[f]).expect("unlock");
    assert!(t.b.getattr(f).expect("getattr").dirty);
    t.b.unlock_batch(C, &[f]).expect("unlock");
    assert!(!t.b.getattr(f).expect("getattr").dirty);
    // The dirty set survives a restart.
    assert!(t.b.getattr(Gfid::ROOT).expect("root").dirty);
    let again = Backend::open(&t.dir).expect("reopen");
    assert!(again.getattr(Gfid::ROOT).expect("root").dirty);
    assert_eq!(again.store.id, t.b.store.id);
}

fn lk(owner: u64, start: u64, end: u64, typ: RecordLockType) -> RecordLock {
    RecordLock {
        owner,
        pid: 1,
        start,
        end,
        typ,
        flock: false,
    }
}

#[test]
fn record_locks_conflict_merge_and_split() {
    let t = brick();
    let g = Gfid::random();
    let r = &t.b.records;
    r.setlk(g, 1, &lk(1, 0, 99, RecordLockType::Write))
        .expect("lock");
    assert_eq!(
        r.setlk(g, 2, &lk(1, 50, 60, RecordLockType::Read)),
        Err(FsError::WouldBlock)
    );
    assert_eq!(
        r.getlk(g, 2, &lk(1, 50, 60, RecordLockType::Read))
            .expect("getlk")
            .map(|l| l.start),
        Some(0)
    );
    assert_eq!(
        r.getlk(g, 2, &lk(1, 100, 200, RecordLockType::Write))
            .expect("getlk"),
        None
    );
    // Unlock in the middle splits the range.
    r.setlk(g, 1, &lk(1, 40, 59, RecordLockType::Unlock))
        .expect("unlock");
    let held: Vec<_> = r.held(g).iter().map(|l| (l.start, l.end)).collect();
    assert_eq!(held, vec![(0, 39), (60, 99)]);
    r.setlk(g, 2, &lk(9, 45, 50, RecordLockType::Read))
        .expect("other conn in the gap");
    // Converting part of a write lock to read, then re-merging.
    r.setlk(g, 1, &lk(1, 60, 69, RecordLockType::Read))
        .expect("convert");
    assert_eq!(r.setlk(g, 2, &lk(9, 65, 65, RecordLockType::Read)), Ok(()));
    r.setlk(g, 2, &lk(9, 0, u64::MAX, RecordLockType::Unlock))
        .expect("unlock all");
    r.setlk(g, 1, &lk(1, 60, 69, RecordLockType::Write))
        .expect("back to write");
    let held: Vec<_> = r.held(g).iter().map(|l| (l.start, l.end)).collect();
    assert_eq!(held, vec![(0, 39), (60, 99)]);
    // flock is a separate namespace.
    let fl = RecordLock {
        flock: true,
        ..lk(5, 0, 0, RecordLockType::Write)
    };
    r.setlk(g, 2, &fl).expect("flock");
    assert_eq!(r.setlk(g, 3, &fl), Err(FsError::WouldBlock));
    assert_eq!(r.setlk(g, 1, &lk(1, 5, 7, RecordLockType::Read)), Ok(()));
    r.release_all(2);
    assert_eq!(r.setlk(g, 3, &fl), Ok(()));
    assert!(matches!(
        r.setlk(g, 1, &lk(1, 9, 3, RecordLockType::Read)),
        Err(FsError::Invalid(_))
    ));
}

#[tokio::test]
async fn inodelk_waits_and_is_released_on_disconnect() {
    let t = brick();
    let g = Gfid::random();
    let locks = &t.b.inodelks;
    assert!(locks.acquire(g, 1, Duration::ZERO).await);
    assert!(
        locks.acquire(g, 1, Duration::ZERO).await,
        "re-entrant for the holder"
    );
    assert!(!locks.acquire(g, 2, Duration::from_millis(20)).await);
    let (granted, ()) = tokio::join!(locks.acquire(g, 2, Duration::from_secs(10)), async {
        // Wait until connection 2 is queued, then drop connection 1.
        while !locks.contended(1) {
            tokio::task::yield_now().await;
        }
        t.b.release_conn(1);
    });
    assert!(granted);
    assert_eq!(locks.holder(g), Some(2));
    assert!(!locks.contended(2));
    let _ = LockMode::Release;
}

#[test]
fn bad_names_and_unknown_gfids() {
    let t = brick();
    for bad in [&b".."[..], b".", b"a/b", b"a\0b", b""] {
        let n = Name::new(bad);
        assert!(
            matches!(t.b.lookup(Gfid::ROOT, &n), Err(FsError::BadName(_))),
            "{n:?}"
        );
        let new = NewObject {
            name: n.clone(),
            ..obj("x", FileKind::File)
        };
        assert!(matches!(
            t.b.create(&none(), Gfid::ROOT, &new, C),
            Err(FsError::BadName(_))
        ));
    }
    let long = Name::new(vec![b'x'; 256]);
    assert_eq!(
        t.b.lookup(Gfid::ROOT, &long).err(),
        Some(FsError::NameTooLong)
    );
    let unknown = Gfid::random();
    assert_eq!(
        t.b.getattr(unknown).err(),
        Some(FsError::Stale(unknown.to_hex()))
    );
    assert_eq!(
        t.b.lookup(unknown, &Name::from("a")).err(),
        Some(FsError::Stale(unknown.to_hex()))
    );
    assert!(matches!(t.b.read(unknown, 0, 1), Err(FsError::Stale(_))));
    let f = t.create(Gfid::ROOT, "f", FileKind::File);
    assert_eq!(t.b.lookup(f, &Name::from("a")).err(), Some(FsError::NotDir));
    assert!(matches!(
        t.b.read(f, 0, proto::MAX_IO + 1),
        Err(FsError::Invalid(_))
    ));
}

#[test]
fn symlinks_never_lead_outside_the_brick() {
    let t = brick();
    let outside = t._tmp.path().join("outside");
    std::fs::create_dir(&outside).expect("outside");
    std::fs::write(outside.join("secret"), b"s").expect("secret");
    // A client-created symlink pointing out of the brick.
    let mut evil = obj("evil", FileKind::Symlink);
    evil.target = Some(proto::Bytes::from(
        outside.as_os_str().as_encoded_bytes().to_vec(),
    ));
    t.b.create(&none(), Gfid::ROOT, &evil, C).expect("symlink");
    // Used as a directory it is never followed.
    assert_eq!(
        t.b.lookup(evil.gfid, &Name::from("secret")).err(),
        Some(FsError::NotDir)
    );
    assert!(t
        .b
        .create(&none(), evil.gfid, &obj("planted", FileKind::File), C)
        .is_err());
    assert!(t.b.readdir(evil.gfid, None, 10).is_err());
    assert!(t
        .b
        .write(&none(), evil.gfid, WriteAt::Offset(0), b"x")
        .is_err());
    // A forged directory pointer through the symlink is refused as well.
    let d = t.create(Gfid::ROOT, "d", FileKind::Dir);
    let ptr = t.index(d);
    std::fs::remove_file(&ptr).expect("rm pointer");
    std::os::unix::fs::symlink(format!("{}/evil", Gfid::ROOT.to_hex()), &ptr).expect("forge");
    t.b.store.forget_dirs();
    assert!(matches!(t.b.readdir(d, None, 10), Err(FsError::Stale(_))));
    assert!(t
        .b
        .create(&none(), d, &obj("planted", FileKind::File), C)
        .is_err());
    // An operator swapping a directory for a symlink is caught too.
    let e = t.create(Gfid::ROOT, "e", FileKind::Dir);
    std::fs::rename(t.dir.join("e"), t.dir.join("e.old")).expect("mv");
    std::os::unix::fs::symlink(&outside, t.dir.join("e")).expect("swap");
    assert!(t
        .b
        .create(&none(), e, &obj("planted", FileKind::File), C)
        .is_err());
    let names: Vec<_> = std::fs::read_dir(&outside)
        .expect("ls")
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .expect("ls");
    assert_eq!(names, vec![std::ffi::OsString::from("secret")]);
}

#[test]
fn volume_binding() {
    let t = brick();
    assert!(t.b.hello("").is_ok());
    assert!(t.b.hello("vol1").is_ok());
    assert!(t.b.hello("vol1").is_ok());
    assert_eq!(
        t.b.hello("vol2").err(),
        Some(FsError::Refused("brick belongs to volume vol1".into()))
    );
}

#[test]
fn cached_directory_handles_follow_renames_and_die_with_rmdir() {
    let t = brick();
    let d = t.create(Gfid::ROOT, "d", FileKind::Dir);
    // Used once: its resolved fd is now cached.
    t.create(d, "a", FileKind::File);
    let req = RenameReq {
        parent: Gfid::ROOT,
        name: Name::from("d"),
        new_parent: Gfid::ROOT,
        new_name: Name::from("e"),
        flags: 0,
    };
    t.b.rename(&none(), &req).expect("rename");
    t.create(d, "b", FileKind::File);
    assert!(
        t.dir.join("e/b").exists(),
        "created through the moved directory"
    );
    t.b.unlink(&none(), d, &Name::from("a"), false, None)
        .expect("unlink a");
    t.b.unlink(&none(), d, &Name::from("b"), false, None)
        .expect("unlink b");
    t.b.unlink(&none(), Gfid::ROOT, &Name::from("e"), true, None)
        .expect("rmdir");
    assert!(matches!(t.b.getattr(d), Err(FsError::Stale(_))));
    assert!(t
        .b
        .create(&none(), d, &obj("c", FileKind::File), C)
        .is_err());
}
