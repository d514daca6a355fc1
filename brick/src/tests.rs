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
        data: Default::default(),
        times: Default::default(),
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
fn copy_range_copies_within_the_brick_what_the_source_has() {
    let t = brick();
    let a = t.create(Gfid::ROOT, "a", FileKind::File);
    let b = t.create(Gfid::ROOT, "b", FileKind::File);
    t.b.write(&none(), a, WriteAt::Offset(0), b"0123456789")
        .expect("write");
    let copy = |src_offset, dst_offset, len| proto::CopyRange {
        src: a,
        src_offset,
        dst: b,
        dst_offset,
        len,
    };
    let (n, attr) = t.b.copy_range(&none(), &copy(2, 4, 100)).expect("copy");
    assert_eq!((n, attr.size), (8, 12));
    assert_eq!(
        std::fs::read(t.dir.join("b")).expect("read"),
        [&[0u8; 4][..], b"23456789"].concat()
    );
    // Past the source's end nothing is copied and nothing changes.
    let (n, attr) = t.b.copy_range(&none(), &copy(50, 0, 10)).expect("copy");
    assert_eq!((n, attr.size), (0, 12));
    let too_big = copy(0, 0, proto::MAX_COPY + 1);
    assert_eq!(
        t.b.copy_range(&none(), &too_big).unwrap_err().errno(),
        libc::EINVAL
    );
    let unknown = proto::CopyRange {
        src: Gfid::random(),
        ..copy(0, 0, 1)
    };
    assert!(t.b.copy_range(&none(), &unknown).is_err());
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
fn a_retracted_blame_takes_back_one_op_and_no_more() {
    let t = brick();
    let f = t.create(Gfid::ROOT, "f", FileKind::File);
    assert!(t.b.inodelks.try_acquire(f, C));
    let blame = Txn::blaming(vec![2]);
    t.b.write(&blame, f, WriteAt::Offset(0), b"x")
        .expect("write");
    t.b.write(&blame, f, WriteAt::Offset(1), b"y")
        .expect("write");
    let data_blame = |t: &Brick| {
        t.b.getattr(f)
            .expect("getattr")
            .pending
            .iter()
            .find(|(i, _)| *i == 2)
            .map_or(0, |(_, c)| c.data)
    };
    t.b.retract_pending(f, &[2], PendingKind::Data)
        .expect("retract");
    assert_eq!(data_blame(&t), 1);
    t.b.retract_pending(f, &[2], PendingKind::Data)
        .expect("retract");
    assert_eq!(data_blame(&t), 0);
    // Nothing below zero, and nothing of another kind.
    t.b.retract_pending(f, &[2], PendingKind::Data)
        .expect("retract");
    t.b.retract_pending(f, &[1], PendingKind::Metadata)
        .expect("retract");
    assert!(t.b.getattr(f).expect("getattr").pending.is_empty());
}

#[test]
fn blame_writes_pending_and_heal_index_and_unlock_clears_dirty() {
    let t = brick();
    let f = t.create(Gfid::ROOT, "f", FileKind::File);
    // Transactions run under the replication lock; the holder owns the marks.
    assert!(t.b.inodelks.try_acquire(f, C));
    let blame = Txn::blaming(vec![2]);
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
    assert!(t.b.hello("", true).is_ok());
    assert!(matches!(t.b.hello("vol1", false), Err(FsError::Refused(_))));
    assert!(t.b.hello("vol1", true).is_ok());
    assert!(t.b.hello("vol1", false).is_ok());
    assert!(t.b.hello("vol1", true).is_ok());
    assert_eq!(
        t.b.hello("vol2", true).err(),
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

// Crash recovery (`crate::staging`): each test builds, by hand, what a kill
// at one failpoint leaves on disk, restarts the brick and checks the state
// it comes back in. (`crash_sweep` below, with the `failpoints` feature,
// kills an operation at every failpoint for real.)

fn reopen(t: Brick) -> Brick {
    let Brick { _tmp, dir, b } = t;
    drop(b);
    let b = Backend::open(&dir).expect("reopen brick");
    Brick { _tmp, dir, b }
}

fn staging(t: &Brick) -> PathBuf {
    t.dir.join(".brickfs/staging")
}

fn staged(t: &Brick, tag: &str, g: Gfid) -> PathBuf {
    staging(t).join(format!("{tag}.{}.7", g.to_hex()))
}

/// What is inconsistent in brick directory `dir` (empty when nothing): a
/// staged leftover, an entry without gfid, a missing or wrong index link or
/// pointer, an index entry nothing names, a link count that is not the
/// names plus the index link.
fn inconsistencies(dir: &std::path::Path) -> Vec<String> {
    use std::collections::HashMap;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join(".brickfs/staging")).expect("staging") {
        out.push(format!("staged: {:?}", e.expect("entry").file_name()));
    }
    let index = |hex: &str| dir.join(".brickfs/gfid").join(&hex[..2]).join(hex);
    let gfid_of = |p: &std::path::Path| {
        let t = crate::store::Target {
            path: p.to_path_buf(),
            follow: false,
        };
        crate::store::xget(&t, crate::store::GFID_XATTR.as_bytes())
            .ok()
            .and_then(|v| <[u8; 16]>::try_from(v.as_slice()).ok())
            .map(|b| Gfid(b).to_hex())
    };
    let mut files: HashMap<String, (u64, u64)> = HashMap::new();
    let mut dirs = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), Gfid::ROOT.to_hex())];
    while let Some((d, parent)) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("list") {
            let e = e.expect("entry");
            let p = e.path();
            if d == dir && e.file_name() == ".brickfs" {
                continue;
            }
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            let Some(hex) = gfid_of(&p) else {
                out.push(format!("no gfid: {}", p.display()));
                continue;
            };
            if md.is_dir() {
                let want = format!("{parent}/{}", e.file_name().to_string_lossy());
                match std::fs::read_link(index(&hex)) {
                    Ok(t) if t.to_string_lossy() == want => {}
                    other => out.push(format!("pointer of {}: {other:?}", p.display())),
                }
                dirs.push(hex.clone());
                todo.push((p, hex));
            } else {
                match std::fs::symlink_metadata(index(&hex)) {
                    Ok(i) if i.ino() == md.ino() => {}
                    other => out.push(format!("index link of {}: {other:?}", p.display())),
                }
                files.entry(hex).or_insert((md.nlink(), 0)).1 += 1;
            }
        }
    }
    for (hex, (nlink, names)) in &files {
        if *nlink != names + 1 {
            out.push(format!("{hex}: {nlink} links, {names} names"));
        }
    }
    for fan in std::fs::read_dir(dir.join(".brickfs/gfid")).expect("index") {
        for e in std::fs::read_dir(fan.expect("fan").path()).expect("fan dir") {
            let e = e.expect("entry");
            let hex = e.file_name().to_string_lossy().into_owned();
            if !files.contains_key(&hex) && !dirs.contains(&hex) {
                out.push(format!("index entry {hex} named by nothing"));
            }
        }
    }
    out
}

fn assert_consistent(t: &Brick) {
    let found = inconsistencies(&t.dir);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn recovery_drops_objects_staged_but_never_named() {
    // create/mknod/symlink/mkdir killed after `stage` … `gfid`.
    let t = brick();
    let (f, p, d) = (Gfid::random(), Gfid::random(), Gfid::random());
    std::fs::write(staged(&t, "new", f), b"").expect("stage file");
    std::os::unix::fs::symlink("x", staged(&t, "new", p)).expect("stage symlink");
    std::fs::create_dir(staged(&t, "new", d)).expect("stage dir");
    let t = reopen(t);
    assert_consistent(&t);
    for g in [f, p, d] {
        assert!(matches!(t.b.getattr(g), Err(FsError::Stale(_))));
    }
}

#[test]
fn recovery_completes_a_create_killed_after_its_name() {
    // create/mknod/symlink killed after `name`: named, with gfid, no index
    // link yet (its staged name is the second link).
    let t = brick();
    let f = t.create(Gfid::ROOT, "f", FileKind::File);
    let p = t.create(Gfid::ROOT, "p", FileKind::Fifo);
    for g in [f, p] {
        std::fs::rename(t.index(g), staged(&t, "new", g)).expect("unindex");
    }
    let t = reopen(t);
    assert_consistent(&t);
    assert_eq!(t.b.getattr(f).expect("by gfid").attr.nlink, 1);
    assert_eq!(t.b.getattr(p).expect("by gfid").attr.kind, FileKind::Fifo);
}

#[test]
fn recovery_undoes_a_mkdir_killed_after_its_pointer() {
    let t = brick();
    let d = Gfid::random();
    std::fs::create_dir(staged(&t, "new", d)).expect("stage dir");
    t.b.store
        .write_new_pointer(d, Gfid::ROOT, &Name::from("d"))
        .expect("pointer");
    let t = reopen(t);
    assert_consistent(&t);
    assert!(std::fs::symlink_metadata(t.index(d)).is_err());
    // The name is free for heal to make.
    t.b.create(&none(), Gfid::ROOT, &obj("d", FileKind::Dir), C)
        .expect("mkdir again");
}

#[test]
fn recovery_settles_index_links_parked_by_an_unlink() {
    let t = brick();
    // Killed after `park`: the name is still there.
    let kept = t.create(Gfid::ROOT, "kept", FileKind::File);
    std::fs::rename(t.index(kept), staged(&t, "unlinked", kept)).expect("park");
    // Killed after `name`: the name is gone.
    let gone = t.create(Gfid::ROOT, "gone", FileKind::File);
    std::fs::rename(t.index(gone), staged(&t, "unlinked", gone)).expect("park");
    std::fs::remove_file(t.dir.join("gone")).expect("unlink name");
    let t = reopen(t);
    assert_consistent(&t);
    assert_eq!(t.b.getattr(kept).expect("kept").attr.gfid, kept);
    assert!(matches!(t.b.getattr(gone), Err(FsError::Stale(_))));
}

#[test]
fn recovery_leaves_a_staged_link_claiming_a_taken_gfid_and_drops_strangers() {
    let t = brick();
    let a = t.create(Gfid::ROOT, "a", FileKind::File);
    let b = t.create(Gfid::ROOT, "b", FileKind::File);
    // A staged index link for a's gfid that is another object (b's inode):
    // neither may lose its index entry, so it stays for an operator.
    let claim = staged(&t, "unlinked", a);
    std::fs::hard_link(t.dir.join("b"), &claim).expect("stage a false claim");
    let stranger = staging(&t).join("not-a-staged-name");
    std::fs::write(&stranger, b"").expect("stranger");
    let t = reopen(t);
    assert!(
        claim.exists(),
        "the claim was settled over the real index link"
    );
    assert!(!stranger.exists(), "a stranger stayed in staging");
    let look = |name: &str| {
        t.b.lookup(Gfid::ROOT, &Name::from(name))
            .expect(name)
            .attr
            .gfid
    };
    assert_eq!((look("a"), look("b")), (a, b));
    assert_eq!(t.b.getattr(a).expect("a by gfid").attr.nlink, 1);
    assert_eq!(t.b.getattr(b).expect("b by gfid").attr.gfid, b);
}

#[test]
fn recovery_settles_pointers_of_rmdir_and_rename() {
    let t = brick();
    // rmdir killed after `park`: the directory is still there.
    let kept = t.create(Gfid::ROOT, "kept", FileKind::Dir);
    std::fs::rename(t.index(kept), staged(&t, "rmdir", kept)).expect("park");
    // rmdir killed after `remove`.
    let gone = t.create(Gfid::ROOT, "gone", FileKind::Dir);
    std::fs::rename(t.index(gone), staged(&t, "rmdir", gone)).expect("park");
    std::fs::remove_dir(t.dir.join("gone")).expect("rmdir");
    // rename killed after `stage`: nothing moved.
    let still = t.create(Gfid::ROOT, "still", FileKind::Dir);
    t.create(still, "in", FileKind::File);
    t.b.store
        .stage_pointer(still, Gfid::ROOT, &Name::from("elsewhere"))
        .expect("stage pointer");
    // rename killed after `rename`, a directory and its subdirectory both
    // renamed (their new pointers staged, the child's naming the parent).
    let outer = t.create(Gfid::ROOT, "outer", FileKind::Dir);
    let inner = t.create(outer, "inner", FileKind::Dir);
    let leaf = t.create(inner, "leaf", FileKind::File);
    std::fs::rename(t.dir.join("outer"), t.dir.join("outer2")).expect("mv outer");
    std::fs::rename(t.dir.join("outer2/inner"), t.dir.join("outer2/inner2")).expect("mv inner");
    t.b.store
        .stage_pointer(inner, outer, &Name::from("inner2"))
        .expect("stage");
    t.b.store
        .stage_pointer(outer, Gfid::ROOT, &Name::from("outer2"))
        .expect("stage");
    let t = reopen(t);
    assert_consistent(&t);
    assert_eq!(t.names(kept), Vec::<String>::new());
    assert!(matches!(t.b.getattr(gone), Err(FsError::Stale(_))));
    assert_eq!(t.names(still), vec!["in"]);
    assert_eq!(t.names(inner), vec!["leaf"]);
    assert_eq!(
        t.b.store.locate(inner).expect("locate"),
        Some((outer, Name::from("inner2")))
    );
    assert!(t.b.getattr(leaf).is_ok());
}

#[test]
fn restart_repairs_the_directories_of_unconfirmed_operations() {
    // What an older brickd (objects made at their name first) left in a
    // directory whose operation it never confirmed.
    let t = brick();
    let d = t.create(Gfid::ROOT, "d", FileKind::Dir);
    t.b.changelog.mark_dirty(d, None).expect("dirty");
    let dd = t.dir.join("d");
    std::fs::write(dd.join(".B-11.tmp"), b"").expect("empty leftover");
    std::fs::create_dir(dd.join("dir-leftover")).expect("dir leftover");
    std::fs::write(dd.join("stranger"), b"data").expect("stranger");
    // Killed between the gfid xattr and the index entry.
    let f = t.create(d, "f", FileKind::File);
    std::fs::remove_file(t.index(f)).expect("drop index link");
    let sub = t.create(d, "sub", FileKind::Dir);
    std::fs::remove_file(t.index(sub)).expect("drop pointer");
    let t = reopen(t);
    let mut left: Vec<String> = std::fs::read_dir(&dd)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["f", "stranger", "sub"]);
    assert!(t.b.getattr(f).is_ok());
    assert!(t.b.getattr(sub).is_ok());
    // The stranger holds data brickfs did not make: left alone, invisible.
    assert_eq!(t.names(d), vec!["f", "sub"]);
}

#[test]
fn a_retried_mkdir_keeps_the_directory_and_its_pointer() {
    let t = brick();
    let d = obj("d", FileKind::Dir);
    t.b.create(&none(), Gfid::ROOT, &d, C).expect("mkdir");
    t.create(d.gfid, "in", FileKind::File);
    // The same directory again (a retry, or heal beside a client): the
    // one in place stays reachable.
    assert_eq!(
        t.b.create(&none(), Gfid::ROOT, &d, C).expect("retry").gfid,
        d.gfid
    );
    // Another gfid at the taken name: refused, and the pointer it wrote
    // for itself is gone.
    let other = obj("d", FileKind::Dir);
    assert_eq!(
        t.b.create(&none(), Gfid::ROOT, &other, C).err(),
        Some(FsError::Exists)
    );
    assert!(std::fs::symlink_metadata(t.index(other.gfid)).is_err());
    assert_eq!(t.names(d.gfid), vec!["in"]);
    assert_consistent(&t);
}

#[test]
fn a_create_replaces_an_empty_leftover_without_gfid_but_not_data() {
    let t = brick();
    std::fs::write(t.dir.join("x"), b"").expect("leftover");
    let g = t.create(Gfid::ROOT, "x", FileKind::File);
    assert_eq!(
        t.b.lookup(Gfid::ROOT, &Name::from("x"))
            .expect("x")
            .attr
            .gfid,
        g
    );
    std::fs::write(t.dir.join("y"), b"data").expect("stranger");
    let err =
        t.b.create(&none(), Gfid::ROOT, &obj("y", FileKind::File), C)
            .expect_err("data without gfid");
    assert_eq!(err.errno(), libc::EEXIST);
    assert!(err.to_string().contains("without a gfid"), "{err}");
    assert_eq!(std::fs::read(t.dir.join("y")).expect("y"), b"data");
    assert_eq!(std::fs::read_dir(staging(&t)).expect("staging").count(), 0);
}

/// With the `failpoints` feature: every operation, a client's or heal's,
/// killed (a panic, in process) at each of its failpoints leaves a brick
/// that reopens consistent.
#[cfg(feature = "failpoints")]
mod crash_sweep {
    use super::*;
    use proto::EntryFix;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    /// Runs one operation of the kind `point` belongs to; `variant` picks
    /// among those that reach it.
    fn op(t: &Brick, point: &str, variant: usize) -> proto::FsResult<()> {
        let (kind, step) = point.split_once("::").expect("op::step");
        if variant == HEAL {
            return heal_op(t, kind);
        }
        let root = Gfid::ROOT;
        let n = |s: &str| Name::from(s);
        let file = |name: &str| t.create(root, name, FileKind::File);
        let mv = |a: &str, b: &str| RenameReq {
            parent: root,
            name: n(a),
            new_parent: root,
            new_name: n(b),
            flags: 0,
        };
        let make = |k: FileKind| {
            let mut o = obj("new", k);
            o.target = (k == FileKind::Symlink).then(|| proto::Bytes::from(b"t".to_vec()));
            // user.* xattrs are for files and directories only.
            if matches!(k, FileKind::File | FileKind::Dir) {
                o.xattrs = vec![(n("user.born"), proto::Bytes::from(b"1".to_vec()))];
            }
            o.uid = 4242;
            o.perm = 0o4755 & if k == FileKind::Dir { 0o7777 } else { 0o777 };
            if k == FileKind::File {
                // A small file's create carries its first bytes and times.
                o.data = proto::Bytes::from(b"first bytes".to_vec());
                o.times.mtime = Some(proto::Timespec { secs: 1, nsecs: 0 });
            }
            t.b.create(&none(), root, &o, C).map(drop)
        };
        match kind {
            "create" => make(FileKind::File),
            "mknod" => make(FileKind::Fifo),
            "symlink" => {
                let mut o = obj("new", FileKind::Symlink);
                o.target = Some(proto::Bytes::from(b"t".to_vec()));
                t.b.create(&none(), root, &o, C).map(drop)
            }
            "mkdir" => make(FileKind::Dir),
            "link" => {
                let g = file("f");
                t.b.link(&none(), g, root, &n("f2")).map(drop)
            }
            "unlink" if step == "after_keep" || variant == 1 => {
                file("f");
                t.b.unlink(&none(), root, &n("f"), false, Some(7)).map(drop)
            }
            "unlink" => {
                file("f");
                t.b.unlink(&none(), root, &n("f"), false, None).map(drop)
            }
            "rmdir" => {
                t.create(root, "d", FileKind::Dir);
                t.b.unlink(&none(), root, &n("d"), true, None).map(drop)
            }
            "rename" if variant == 0 => {
                file("a");
                file("b");
                t.b.rename(&none(), &mv("a", "b"))
            }
            "rename" => {
                let a = t.create(root, "a", FileKind::Dir);
                t.create(a, "in", FileKind::File);
                t.create(root, "b", FileKind::Dir);
                t.b.rename(&none(), &mv("a", "b"))
            }
            "setattr" | "truncate" => {
                let g = file("f");
                let set = match step {
                    "after_owner" => SetAttr {
                        uid: Some(9),
                        ..Default::default()
                    },
                    "after_times" => SetAttr {
                        mtime: Some(proto::TimeSet::Now),
                        ..Default::default()
                    },
                    _ if kind == "truncate" => SetAttr {
                        size: Some(3),
                        ..Default::default()
                    },
                    _ => SetAttr {
                        perm: Some(0o600),
                        ..Default::default()
                    },
                };
                t.b.setattr(&none(), g, &set).map(drop)
            }
            "setxattr" => {
                let g = file("f");
                t.b.setxattr(&none(), g, &n("user.k"), b"v", 0)
            }
            "removexattr" => {
                let g = file("f");
                t.b.setxattr(&none(), g, &n("user.k"), b"v", 0)?;
                t.b.removexattr(&none(), g, &n("user.k"))
            }
            "write" => {
                let g = file("f");
                t.b.write(&none(), g, WriteAt::Offset(0), b"data").map(drop)
            }
            "fallocate" => {
                let g = file("f");
                t.b.fallocate(&none(), g, 0, 0, 4096).map(drop)
            }
            "copy_range" => {
                let (a, b) = (file("a"), file("b"));
                t.b.write(&none(), a, WriteAt::Offset(0), b"data")?;
                let copy = proto::CopyRange {
                    src: a,
                    src_offset: 0,
                    dst: b,
                    dst_offset: 2,
                    len: 4,
                };
                t.b.copy_range(&none(), &copy).map(drop)
            }
            other => panic!("no operation for {other}"),
        }
    }

    /// Heal's own changes (`heal_entry`) go through the same steps, without
    /// the pre-op of a client's transaction.
    const HEAL: usize = 2;

    fn variants(point: &str) -> Vec<usize> {
        let (kind, step) = point.split_once("::").expect("op::step");
        let mut v = vec![0];
        if kind == "rename" || point == "unlink::after_name" {
            v.push(1);
        }
        let heal_kind = matches!(
            kind,
            "create" | "mknod" | "symlink" | "mkdir" | "unlink" | "rmdir"
        );
        // Heal creates a file empty and copies its data after.
        let heal_skips = matches!(
            step,
            "after_dirty" | "after_blame" | "after_keep" | "after_data"
        );
        if heal_kind && !heal_skips {
            v.push(HEAL);
        }
        v
    }

    fn heal_op(t: &Brick, kind: &str) -> proto::FsResult<()> {
        let root = Gfid::ROOT;
        let fix = |name: &str, fix: EntryFix| t.b.heal_entry(root, &Name::from(name), &fix);
        let create = |k: FileKind| {
            let mut o = obj("new", k);
            o.target = (k == FileKind::Symlink).then(|| proto::Bytes::from(b"t".to_vec()));
            fix("new", EntryFix::Create(o))
        };
        match kind {
            "create" => create(FileKind::File),
            "mknod" => create(FileKind::Socket),
            "symlink" => create(FileKind::Symlink),
            "mkdir" => create(FileKind::Dir),
            "unlink" => {
                let gfid = t.create(root, "f", FileKind::File);
                fix("f", EntryFix::Remove { gfid, keep: false })
            }
            "rmdir" => {
                let gfid = t.create(root, "d", FileKind::Dir);
                let sub = t.create(gfid, "sub", FileKind::Dir);
                t.create(sub, "f", FileKind::File);
                fix("d", EntryFix::Remove { gfid, keep: false })
            }
            other => panic!("heal does not {other}"),
        }
    }

    #[test]
    fn every_failpoint_leaves_a_brick_that_reopens_consistent() {
        for point in crate::failpoints::ALL {
            for variant in variants(point) {
                let t = brick();
                let me = std::thread::current().id();
                let name = point.to_string();
                // Only this thread's operations die: other tests run beside.
                fail::cfg_callback(*point, move || {
                    if std::thread::current().id() == me {
                        panic!("killed at {name}");
                    }
                })
                .expect("arm");
                let died = catch_unwind(AssertUnwindSafe(|| op(&t, point, variant)));
                fail::remove(*point);
                assert!(
                    died.is_err(),
                    "{point} (variant {variant}) was not reached: {died:?}"
                );
                let t = reopen(t);
                let found = inconsistencies(&t.dir);
                assert!(found.is_empty(), "{point} (variant {variant}): {found:#?}");
            }
        }
        assert_eq!(crate::failpoints::unknown(), Vec::<String>::new());
    }
}

mod quota {
    use super::*;
    use proto::{QuotaLimit, QUOTA_XATTR};

    fn limit(bytes: u64, inodes: Option<u64>) -> Vec<u8> {
        QuotaLimit { bytes, inodes }.encode()
    }

    fn used(t: &Brick, at: Gfid) -> (u64, u64) {
        let q =
            t.b.statfs(at)
                .expect("statfs")
                .quota
                .expect("in a sub-volume");
        (q.bytes, q.inodes)
    }

    fn write(t: &Brick, g: Gfid, at: u64, len: usize) -> Result<(), FsError> {
        t.b.write(&none(), g, WriteAt::Offset(at), &vec![7u8; len])
            .map(|_| ())
    }

    #[test]
    fn a_create_carrying_data_counts_its_bytes_and_stops_at_the_limit() {
        let t = brick();
        let sv = t.create(Gfid::ROOT, "sv", FileKind::Dir);
        t.b.setxattr(
            &none(),
            sv,
            &Name::new(QUOTA_XATTR),
            &limit(10_000, None),
            0,
        )
        .expect("set quota");
        let with = |name: &str, len: usize| NewObject {
            data: proto::Bytes::from(vec![9u8; len]),
            ..obj(name, FileKind::File)
        };
        let a = with("a", 6000);
        let attr = t.b.create(&none(), sv, &a, C).expect("create with data");
        assert_eq!(attr.size, 6000);
        assert_eq!(
            std::fs::read(t.dir.join("sv/a")).expect("read"),
            vec![9u8; 6000]
        );
        assert_eq!(used(&t, sv), (6000, 1));
        // Over the limit: refused whole, nothing left behind or counted.
        let err = t.b.create(&none(), sv, &with("b", 4001), C).unwrap_err();
        assert_eq!(err.errno(), libc::EDQUOT);
        assert!(!t.dir.join("sv/b").exists());
        assert_eq!(used(&t, sv), (6000, 1));
        assert!(std::fs::read_dir(staging(&t))
            .expect("staging")
            .next()
            .is_none());
        // Only files carry data, and only a small file's worth.
        let dir = NewObject {
            data: proto::Bytes::from(vec![1u8]),
            ..obj("d", FileKind::Dir)
        };
        assert_eq!(
            t.b.create(&none(), sv, &dir, C).unwrap_err().errno(),
            libc::EINVAL
        );
        let big = with("big", proto::MAX_CREATE_DATA + 1);
        assert_eq!(
            t.b.create(&none(), Gfid::ROOT, &big, C)
                .unwrap_err()
                .errno(),
            libc::EINVAL
        );
        assert_eq!(used(&t, sv), (6000, 1));
    }

    #[test]
    fn a_create_sets_the_times_it_carries_after_its_data() {
        use std::os::unix::fs::MetadataExt;
        let t = brick();
        let mtime = proto::Timespec {
            secs: 1_577_836_800,
            nsecs: 5,
        };
        let new = NewObject {
            data: proto::Bytes::from(b"tar's bytes".to_vec()),
            times: proto::NewTimes {
                atime: None,
                mtime: Some(mtime),
            },
            ..obj("f", FileKind::File)
        };
        let attr = t.b.create(&none(), Gfid::ROOT, &new, C).expect("create");
        assert_eq!((attr.mtime, attr.size), (mtime, 11));
        let meta = std::fs::metadata(t.dir.join("f")).expect("stat");
        assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_577_836_800, 5));
        assert!(meta.atime() > 1_577_836_800, "an atime not given is now");
        // Times only on files, and only real ones; nothing left staged.
        let dir = NewObject {
            times: new.times,
            ..obj("d", FileKind::Dir)
        };
        let err = t.b.create(&none(), Gfid::ROOT, &dir, C).unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL);
        let bad = NewObject {
            times: proto::NewTimes {
                atime: Some(proto::Timespec {
                    secs: 0,
                    nsecs: 1_000_000_000,
                }),
                mtime: None,
            },
            ..obj("g", FileKind::File)
        };
        let err = t.b.create(&none(), Gfid::ROOT, &bad, C).unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL);
        assert!(!t.dir.join("g").exists() && !t.dir.join("d").exists());
        assert!(std::fs::read_dir(staging(&t))
            .expect("staging")
            .next()
            .is_none());
    }

    #[test]
    fn writes_truncates_fallocates_and_creates_stop_at_the_limit() {
        let t = brick();
        let sv = t.create(Gfid::ROOT, "sv", FileKind::Dir);
        let q = Name::new(QUOTA_XATTR);
        t.b.setxattr(&none(), sv, &q, &limit(10_000, Some(3)), 0)
            .expect("set quota");
        let f = t.create(sv, "f", FileKind::File);
        assert_eq!(used(&t, f), (0, 1));
        write(&t, f, 0, 8000).expect("within the limit");
        // Overwriting costs nothing; growing past the limit is refused whole.
        write(&t, f, 0, 8000).expect("overwrite");
        assert_eq!(write(&t, f, 8000, 2001).unwrap_err().errno(), libc::EDQUOT);
        write(&t, f, 8000, 2000).expect("exactly to the limit");
        assert_eq!(used(&t, sv), (10_000, 1));
        let grow = SetAttr {
            size: Some(10_001),
            ..SetAttr::default()
        };
        assert_eq!(
            t.b.setattr(&none(), f, &grow).unwrap_err().errno(),
            libc::EDQUOT
        );
        assert_eq!(
            t.b.fallocate(&none(), f, 0, 0, 20_000).unwrap_err().errno(),
            libc::EDQUOT
        );
        let shrink = SetAttr {
            size: Some(4000),
            ..SetAttr::default()
        };
        t.b.setattr(&none(), f, &shrink).expect("shrink");
        assert_eq!(used(&t, sv), (4000, 1));
        // Objects: three allowed.
        t.create(sv, "d", FileKind::Dir);
        t.create(sv, "s", FileKind::File);
        let err =
            t.b.create(&none(), sv, &obj("x", FileKind::File), C)
                .unwrap_err();
        assert_eq!(err.errno(), libc::EDQUOT);
        // Maintenance (heal) is counted, never refused.
        let heal = Txn {
            maintenance: true,
            ..Txn::none()
        };
        t.b.write(&heal, f, WriteAt::Offset(0), &vec![1u8; 12_000])
            .expect("heal write");
        assert_eq!(used(&t, sv), (12_000, 3));
        // Outside the sub-volume nothing is counted or refused.
        let out = t.create(Gfid::ROOT, "out", FileKind::File);
        write(&t, out, 0, 50_000).expect("outside");
        assert!(t.b.statfs(out).expect("statfs").quota.is_none());
    }

    #[test]
    fn unlink_rename_and_links_keep_the_count_and_cross_is_exdev() {
        let t = brick();
        let sv = t.create(Gfid::ROOT, "sv", FileKind::Dir);
        let other = t.create(Gfid::ROOT, "other", FileKind::Dir);
        let q = Name::new(QUOTA_XATTR);
        t.b.setxattr(&none(), sv, &q, &limit(1 << 20, None), 0)
            .expect("set quota");
        t.b.setxattr(&none(), other, &q, &limit(1 << 20, None), 0)
            .expect("set quota");
        let a = t.create(sv, "a", FileKind::File);
        let b = t.create(sv, "b", FileKind::File);
        write(&t, a, 0, 1000).unwrap();
        write(&t, b, 0, 300).unwrap();
        assert_eq!(used(&t, sv), (1300, 2));
        // A second name of `a`: one object, counted once.
        t.b.link(&none(), a, sv, &Name::from("a2")).expect("link");
        assert_eq!(used(&t, sv), (1300, 2));
        // Out of the sub-volume: EXDEV, for rename and link alike.
        let out = RenameReq {
            parent: sv,
            name: Name::from("a"),
            new_parent: Gfid::ROOT,
            new_name: Name::from("a"),
            flags: 0,
        };
        assert_eq!(t.b.rename(&none(), &out).unwrap_err().errno(), libc::EXDEV);
        let across = RenameReq {
            new_parent: other,
            ..out.clone()
        };
        assert_eq!(
            t.b.rename(&none(), &across).unwrap_err().errno(),
            libc::EXDEV
        );
        assert_eq!(
            t.b.link(&none(), a, Gfid::ROOT, &Name::from("x"))
                .unwrap_err()
                .errno(),
            libc::EXDEV
        );
        // `b` renamed over `a`: `a` keeps its other name, so nothing leaves.
        let over = RenameReq {
            parent: sv,
            name: Name::from("b"),
            new_parent: sv,
            new_name: Name::from("a"),
            flags: 0,
        };
        t.b.rename(&none(), &over).expect("rename over");
        assert_eq!(used(&t, sv), (1300, 2));
        t.b.unlink(&none(), sv, &Name::from("a2"), false, None)
            .expect("unlink last name of a");
        assert_eq!(used(&t, sv), (300, 1));
        // The count survives a restart (recounted from the tree).
        let dir = t.dir.clone();
        let again = Backend::open(&dir).expect("reopen");
        let u = again.statfs(sv).expect("statfs").quota.expect("quota");
        assert_eq!((u.bytes, u.inodes), (300, 1));
        // Moving a whole sub-volume (archiving it) is allowed.
        let aside = RenameReq {
            parent: Gfid::ROOT,
            name: Name::from("sv"),
            new_parent: Gfid::ROOT,
            new_name: Name::from("sv.archived"),
            flags: 0,
        };
        t.b.rename(&none(), &aside).expect("move the sub-volume");
        // Users cannot see or set the brick's tag.
        let tag = Name::new(crate::quota::SUBVOL_XATTR);
        assert!(t.b.setxattr(&none(), b, &tag, &other.0, 0).is_err());
        assert!(!t.b.listxattr(b).expect("list").contains(&tag));
    }

    #[test]
    fn a_directory_given_limits_counts_what_it_already_holds() {
        let t = brick();
        let sv = t.create(Gfid::ROOT, "sv", FileKind::Dir);
        let sub = t.create(sv, "sub", FileKind::Dir);
        let f = t.create(sub, "f", FileKind::File);
        write(&t, f, 0, 5000).unwrap();
        let q = Name::new(QUOTA_XATTR);
        t.b.setxattr(&none(), sv, &q, &limit(6000, None), 0)
            .expect("set quota");
        assert_eq!(used(&t, f), (5000, 2));
        assert_eq!(write(&t, f, 5000, 1001).unwrap_err().errno(), libc::EDQUOT);
        // Nested sub-volumes are refused.
        let err =
            t.b.setxattr(&none(), sub, &q, &limit(100, None), 0)
                .unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL);
        // Limits removed: nothing is refused any more.
        t.b.removexattr(&none(), sv, &q).expect("remove");
        write(&t, f, 5000, 5000).expect("no limit");
    }
}

/// A brick killed between writing a root's limits and counting it still
/// enforces them after the restart (the root is listed first).
#[cfg(feature = "failpoints")]
mod quota_crash {
    use super::*;
    use proto::{EntryFix, QuotaLimit, QUOTA_XATTR};
    use std::panic::{catch_unwind, AssertUnwindSafe};

    fn killed_at(point: &'static str, op: impl FnOnce()) {
        let me = std::thread::current().id();
        fail::cfg_callback(point, move || {
            if std::thread::current().id() == me {
                panic!("killed at {point}");
            }
        })
        .expect("arm");
        let died = catch_unwind(AssertUnwindSafe(op));
        fail::remove(point);
        assert!(died.is_err(), "{point} was not reached");
    }

    fn limited(t: &Brick, dir: Gfid) {
        let f = t.create(dir, "f", FileKind::File);
        let err =
            t.b.write(&none(), f, WriteAt::Offset(0), &[0u8; 2000])
                .unwrap_err();
        assert_eq!(err.errno(), libc::EDQUOT);
    }

    #[test]
    fn limits_set_by_setxattr_survive_a_kill_before_they_are_counted() {
        let t = brick();
        let sv = t.create(Gfid::ROOT, "sv", FileKind::Dir);
        let value = QuotaLimit {
            bytes: 1000,
            inodes: None,
        }
        .encode();
        killed_at("setxattr::after_set", || {
            let _ =
                t.b.setxattr(&none(), sv, &Name::new(QUOTA_XATTR), &value, 0);
        });
        let t = reopen(t);
        limited(&t, sv);
    }

    #[test]
    fn a_root_made_by_heal_survives_a_kill_before_it_is_counted() {
        let t = brick();
        let mut new = obj("sv", FileKind::Dir);
        let value = QuotaLimit {
            bytes: 1000,
            inodes: None,
        }
        .encode();
        new.xattrs = vec![(Name::new(QUOTA_XATTR), proto::Bytes::from(value))];
        let sv = new.gfid;
        killed_at("mkdir::after_place", || {
            let _ =
                t.b.heal_entry(Gfid::ROOT, &Name::from("sv"), &EntryFix::Create(new));
        });
        let t = reopen(t);
        limited(&t, sv);
    }
}

#[test]
fn a_create_never_takes_another_objects_gfid() {
    let t = brick();
    let f = t.create(Gfid::ROOT, "f", FileKind::File);
    let d = t.create(Gfid::ROOT, "d", FileKind::Dir);
    t.b.write(&none(), f, proto::data::WriteAt::Offset(0), b"f's data")
        .expect("write");
    for (taken, kind) in [
        (f, FileKind::File),
        (d, FileKind::Dir),
        (f, FileKind::Symlink),
    ] {
        let mut twin = obj("twin", kind);
        twin.gfid = taken;
        if kind == FileKind::Symlink {
            twin.target = Some(b"x".to_vec().into());
        }
        let r = t.b.create(&none(), Gfid::ROOT, &twin, C);
        assert!(r.is_err(), "{kind:?} over {taken}: {r:?}");
        assert_eq!(t.names(Gfid::ROOT), ["d", "f"], "a name was left behind");
    }
    // f is still f, by gfid and by name.
    assert_eq!(t.b.read(f, 0, 64).expect("read"), b"f's data");
    assert_eq!(
        t.b.lookup(Gfid::ROOT, &Name::from("f")).unwrap().attr.gfid,
        f
    );
    // A retried create of the same name and gfid still succeeds.
    let again = NewObject {
        gfid: f,
        ..obj("f", FileKind::File)
    };
    assert_eq!(t.b.create(&none(), Gfid::ROOT, &again, C).unwrap().gfid, f);
}
