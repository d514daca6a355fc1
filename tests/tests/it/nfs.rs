//! The NFS gateway (`brickfs-nfs`) against real bricks, with a client we did
//! not write (libnfs's `nfs-cp`, `nfs-ls`, `nfs-cat`), a FUSE mount of the
//! same volume for cross-checks, and a hand-written ONC RPC client
//! (`tests::nfs::rpc`) where the libnfs tools cannot show what matters
//! (handles across a restart, exact error statuses, bad input).

use std::fs::Permissions;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use tests::data::pattern;
use tests::nfs::rpc::{
    self, Nfs3Client, Reply, RpcClient, NFS3ERR_BADHANDLE, NFS3ERR_NAMETOOLONG, NFS3ERR_ROFS,
    NFS3ERR_STALE, PROG_MOUNT, PROG_NFS,
};
use tests::nfs::{ls_names, mount_root, nfs_cat, nfs_cp, nfs_ls, require_libnfs_tools, Gateway};
use tests::{wait_until, TestCluster};

const T: Duration = Duration::from_secs(5);
const SETTLE: Duration = Duration::from_secs(10);

fn write_local(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn read_local(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Byte equality with a short message instead of two dumped megabytes.
#[track_caller]
fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} bytes, expected {}; first difference at {first:?}",
            got.len(),
            want.len()
        );
    }
}

/// The whole file through READ calls of `chunk` bytes.
fn read_all(c: &mut Nfs3Client, fh: &[u8], chunk: u32) -> Result<Vec<u8>, u32> {
    let mut out = Vec::new();
    loop {
        let (data, eof) = c.read(fh, out.len() as u64, chunk).expect("READ call")?;
        let done = eof || data.is_empty();
        out.extend_from_slice(&data);
        if done {
            return Ok(out);
        }
    }
}

#[test]
fn copy_in_and_out_list_cat_and_cross_check_with_fuse() {
    require_libnfs_tools();
    let cluster = TestCluster::start(3);
    let mount = cluster.mount();
    let gw = cluster.start_gateway(&[]);
    let local = cluster.root();

    // In through NFS, out through NFS.
    let big = pattern(1, 1 << 20);
    write_local(&local.join("big.in"), &big);
    write_local(&local.join("empty.in"), b"");
    nfs_cp(local.join("big.in"), gw.url("test/big.bin")).assert_ok();
    nfs_cp(local.join("empty.in"), gw.url("test/empty")).assert_ok();
    nfs_cp(gw.url("test/big.bin"), local.join("big.out")).assert_ok();
    nfs_cp(gw.url("test/empty"), local.join("empty.out")).assert_ok();
    assert_same(
        "big.bin copied out",
        &read_local(&local.join("big.out")),
        &big,
    );
    assert_same(
        "empty copied out",
        &read_local(&local.join("empty.out")),
        b"",
    );

    // Written through NFS, read through FUSE.
    assert_same(
        "big.bin via FUSE",
        &read_local(&mount.join("big.bin")),
        &big,
    );
    assert_same("empty via FUSE", &read_local(&mount.join("empty")), b"");

    // Written through FUSE, read through NFS.
    let fused = pattern(2, 300_000);
    write_local(&mount.join("from-fuse.bin"), &fused);
    write_local(&mount.join("hello.txt"), b"hello over nfs\n");
    nfs_cp(gw.url("test/from-fuse.bin"), local.join("from-fuse.out")).assert_ok();
    assert_same(
        "from-fuse.bin via NFS",
        &read_local(&local.join("from-fuse.out")),
        &fused,
    );
    let cat = nfs_cat(&gw.url("test/hello.txt"));
    cat.assert_ok();
    assert_eq!(cat.stdout, b"hello over nfs\n", "{cat:?}");

    // The listing shows what is there, with sizes.
    let ls = nfs_ls(&gw.url("test"));
    ls.assert_ok();
    let mut names = ls_names(&ls);
    names.sort();
    assert_eq!(
        names,
        ["big.bin", "empty", "from-fuse.bin", "hello.txt"],
        "{ls:?}"
    );
    let text = ls.stdout_text();
    let big_line = text.lines().find(|l| l.ends_with("big.bin")).unwrap_or("");
    assert!(
        big_line.split_whitespace().any(|w| w == "1048576"),
        "nfs-ls shows no size 1048576 for big.bin: {ls:?}"
    );

    cluster.assert_replicas_identical(SETTLE);
}

#[test]
fn subdirectory_exports_and_missing_paths() {
    require_libnfs_tools();
    let cluster = TestCluster::start(3);
    let mount = cluster.mount();
    std::fs::create_dir_all(mount.join("sub/dir")).unwrap();
    std::fs::create_dir_all(mount.join("sub/ro")).unwrap();
    write_local(&mount.join("sub/dir/inside.txt"), b"inside\n");
    write_local(&mount.join("sub/outside.txt"), b"outside\n");
    write_local(&mount.join("sub/ro/readme"), b"read only\n");
    let gw = cluster.start_gateway(&["--export", "/test/sub/ro,ro"]);
    let local = cluster.root();

    // Only the exported directory is visible, and usable both ways.
    let ls = nfs_ls(&gw.url("test/sub/dir"));
    ls.assert_ok();
    assert_eq!(ls_names(&ls), ["inside.txt"], "{ls:?}");
    let data = pattern(3, 70_000);
    write_local(&local.join("copied.in"), &data);
    nfs_cp(local.join("copied.in"), gw.url("test/sub/dir/copied.bin")).assert_ok();
    assert_same(
        "sub/dir/copied.bin via FUSE",
        &read_local(&mount.join("sub/dir/copied.bin")),
        &data,
    );
    nfs_cp(gw.url("test/sub/dir/inside.txt"), local.join("inside.out")).assert_ok();
    assert_eq!(read_local(&local.join("inside.out")), b"inside\n");

    // A read-only export: reads work, writes do not.
    let cat = nfs_cat(&gw.url("test/sub/ro/readme"));
    cat.assert_ok();
    assert_eq!(cat.stdout, b"read only\n", "{cat:?}");
    let cp = nfs_cp(local.join("copied.in"), gw.url("test/sub/ro/new.bin"));
    cp.assert_failed();
    assert!(cp.stderr.contains("NFS3ERR_ROFS"), "{cp:?}");
    assert!(
        !mount.join("sub/ro/new.bin").exists(),
        "ro export was written"
    );

    // Paths that are not there: a clear MOUNT error, not a hang or a crash.
    for missing in ["test/sub/nope", "nope"] {
        let ls = nfs_ls(&gw.url(missing));
        ls.assert_failed();
        assert!(
            ls.stderr.contains("MNT3ERR_") || ls.stdout_text().contains("MNT3ERR_"),
            "nfs-ls of /{missing} does not say which MOUNT error: {ls:?}"
        );
    }
    let mut c = Nfs3Client::connect(gw.addr()).unwrap();
    assert_eq!(
        c.mnt("/test/sub/nope").unwrap(),
        Err(rpc::MNT3ERR_NOENT),
        "MNT of a missing directory"
    );
    let other_volume = c.mnt("/nope").unwrap();
    assert!(
        matches!(other_volume, Err(rpc::MNT3ERR_NOENT | rpc::MNT3ERR_ACCES)),
        "MNT /nope: {other_volume:?}"
    );
    assert!(gw.is_running());
}

#[test]
fn handles_survive_a_gateway_restart_and_go_stale_after_delete() {
    let cluster = TestCluster::start(3);
    let mount = cluster.mount();
    let data = pattern(4, 200_000);
    write_local(&mount.join("stable.bin"), &data);
    let gw = cluster.start_gateway(&[]);

    let mut c = Nfs3Client::connect(gw.addr()).unwrap();
    let root = mount_root(&mut c);
    let fh = c
        .lookup(&root, b"stable.bin")
        .unwrap()
        .unwrap_or_else(|s| panic!("LOOKUP stable.bin: nfsstat3 {s}"));
    let before = c
        .getattr(&fh)
        .unwrap()
        .unwrap_or_else(|s| panic!("GETATTR: nfsstat3 {s}"));
    assert_eq!((before.ftype, before.size), (1, data.len() as u64));
    let first = c.read(&fh, 0, 4096).unwrap().expect("READ before restart");
    assert_same("first 4 KiB before restart", &first.0, &data[..4096]);

    let old_pid = gw.pid();
    gw.restart();
    assert_ne!(gw.pid(), old_pid, "the gateway was not restarted");
    assert!(
        c.null().is_err(),
        "the connection to the old gateway process still answers"
    );

    // The same client reconnects (as the kernel does) and keeps using its handles.
    let mut c = Nfs3Client::connect(gw.addr()).unwrap();
    let after = c
        .getattr(&fh)
        .unwrap()
        .unwrap_or_else(|s| panic!("GETATTR with the old handle after restart: nfsstat3 {s}"));
    assert_eq!(after.fileid, before.fileid, "fileid changed across restart");
    assert_eq!(after.size, before.size);
    let all = read_all(&mut c, &fh, 65536)
        .unwrap_or_else(|s| panic!("READ with the old handle after restart: nfsstat3 {s}"));
    assert_same("stable.bin read with the old handle", &all, &data);
    let again = c.lookup(&root, b"stable.bin").unwrap();
    assert_eq!(again, Ok(fh.clone()), "LOOKUP gives another handle now");

    // Deleted through FUSE: the handle goes stale.
    std::fs::remove_file(mount.join("stable.bin")).unwrap();
    let mut last = None;
    let stale = wait_until(T, || {
        last = Some(c.getattr(&fh).unwrap().map(|a| a.fileid));
        last == Some(Err(NFS3ERR_STALE))
    });
    assert!(stale, "GETATTR of a deleted file: {last:?}, expected STALE");
    // READ checks the file against the gateway's attribute cache (1 s, the
    // coherence window between clients), so it may still see the file for
    // that long.
    let mut last = None;
    let stale = wait_until(T, || {
        last = Some(c.read(&fh, 0, 10).unwrap().map(|(d, _)| d.len()));
        last == Some(Err(NFS3ERR_STALE))
    });
    assert!(stale, "READ of a deleted file: {last:?}, expected STALE");
}

#[test]
fn quorum_lost_behind_the_gateway_refuses_writes_and_serves_reads() {
    require_libnfs_tools();
    let cluster = TestCluster::start(3);
    let gw = cluster.start_gateway(&[]);
    let local = cluster.root();
    write_local(
        &local.join("existing.in"),
        b"written while all bricks were up\n",
    );
    nfs_cp(local.join("existing.in"), gw.url("test/existing.txt")).assert_ok();
    let mut c = Nfs3Client::connect(gw.addr()).unwrap();
    let root = mount_root(&mut c);
    let existing = c.lookup(&root, b"existing.txt").unwrap().unwrap();

    cluster.kill_brick(1);
    cluster.kill_brick(2);

    // The client stack may need a moment to see both bricks gone; from
    // then on a create is refused as a read-only file system.
    let mut seen = Vec::new();
    let refused = wait_until(SETTLE, || {
        let r = c.create(&root, b"new.txt", 0o644).unwrap().map(drop);
        seen.push(r);
        r == Err(NFS3ERR_ROFS)
    });
    assert!(
        refused,
        "CREATE with 1 of 3 bricks up answered {seen:?}, expected ROFS (30)"
    );
    assert_eq!(
        c.write(&existing, 0, b"overwrite").unwrap(),
        Err(NFS3ERR_ROFS),
        "WRITE with 1 of 3 bricks up"
    );
    let cp = nfs_cp(local.join("existing.in"), gw.url("test/another.txt"));
    cp.assert_failed();
    assert!(cp.stderr.contains("NFS3ERR_ROFS"), "{cp:?}");

    // Reads still work.
    let cat = nfs_cat(&gw.url("test/existing.txt"));
    cat.assert_ok();
    assert_eq!(cat.stdout, b"written while all bricks were up\n", "{cat:?}");
    assert_eq!(
        read_all(&mut c, &existing, 4096),
        Ok(b"written while all bricks were up\n".to_vec())
    );
}

#[test]
fn auth_unix_callers_own_what_they_create_and_are_checked() {
    let cluster = TestCluster::start(3);
    let mount = cluster.mount();
    std::fs::create_dir(mount.join("shared")).unwrap();
    std::fs::set_permissions(mount.join("shared"), Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir(mount.join("private")).unwrap();
    std::fs::set_permissions(mount.join("private"), Permissions::from_mode(0o755)).unwrap();
    let gw = cluster.start_gateway(&[]);

    let mut c = Nfs3Client::connect(gw.addr()).unwrap();
    let root = mount_root(&mut c);
    let shared = c.lookup(&root, b"shared").unwrap().unwrap();
    let private = c.lookup(&root, b"private").unwrap().unwrap();
    c.auth = rpc::Auth::Unix {
        uid: 1000,
        gid: 1000,
        gids: vec![],
    };
    assert_eq!(
        c.create(&private, b"nope", 0o644).unwrap().map(drop),
        Err(rpc::NFS3ERR_ACCES),
        "uid 1000 created a file in root's 0755 directory"
    );
    let fh = c
        .create(&shared, b"mine", 0o640)
        .unwrap()
        .unwrap_or_else(|s| panic!("CREATE as uid 1000 in a 0777 directory: nfsstat3 {s}"));
    let fh = match fh {
        Some(fh) => fh,
        None => c.lookup(&shared, b"mine").unwrap().unwrap(),
    };
    let a = c.getattr(&fh).unwrap().unwrap();
    assert_eq!((a.uid, a.gid, a.mode & 0o7777), (1000, 1000, 0o640));
    let meta = std::fs::metadata(mount.join("shared/mine")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (1000, 1000),
        "owner seen through FUSE"
    );
    assert!(!mount.join("private/nope").exists());

    // A sticky directory: only the file's owner (or root) removes it.
    c.auth = rpc::Auth::root();
    std::fs::create_dir(mount.join("tmp")).unwrap();
    std::fs::set_permissions(mount.join("tmp"), Permissions::from_mode(0o1777)).unwrap();
    let tmp = c.lookup(&root, b"tmp").unwrap().unwrap();
    c.auth = rpc::Auth::Unix {
        uid: 1000,
        gid: 1000,
        gids: vec![],
    };
    c.create(&tmp, b"owned", 0o666).unwrap().unwrap();
    c.auth = rpc::Auth::Unix {
        uid: 2000,
        gid: 2000,
        gids: vec![],
    };
    assert_eq!(
        c.remove(&tmp, b"owned").unwrap(),
        Err(rpc::NFS3ERR_ACCES),
        "uid 2000 removed uid 1000's file from a sticky directory"
    );
    c.auth = rpc::Auth::Unix {
        uid: 1000,
        gid: 1000,
        gids: vec![],
    };
    assert_eq!(c.remove(&tmp, b"owned").unwrap(), Ok(()));
    assert!(!mount.join("tmp/owned").exists());
}

#[test]
fn portmap_on_the_same_port_names_it() {
    let cluster = TestCluster::start(3);
    let gw = cluster.start_gateway(&[]);
    let mut c = RpcClient::connect(gw.addr(), T).unwrap();
    let port = u32::from(gw.port());
    assert_eq!(rpc::getport(&mut c, PROG_NFS, 3).unwrap(), port, "NFS v3");
    assert_eq!(
        rpc::getport(&mut c, PROG_MOUNT, 3).unwrap(),
        port,
        "MOUNT v3"
    );
    assert_eq!(rpc::getport(&mut c, PROG_NFS, 4).unwrap(), 0, "NFS v4");
    // The lock manager answers on the same port (tests/tests/nlm.rs).
    assert_eq!(rpc::getport(&mut c, 100_021, 4).unwrap(), port, "NLM v4");
    assert_eq!(rpc::getport(&mut c, 100_021, 1).unwrap(), 0, "NLM v1");
    assert_eq!(rpc::getport(&mut c, 100_024, 1).unwrap(), port, "NSM");
}

/// A fresh connection for the next bad call (the last may have been dropped).
fn fresh(gw: &Gateway) -> Nfs3Client {
    Nfs3Client::connect(gw.addr()).expect("connecting to the gateway")
}

#[test]
fn bad_input_gets_errors_and_the_gateway_keeps_serving() {
    require_libnfs_tools();
    let cluster = TestCluster::start(3);
    let gw = cluster.start_gateway(&[]);
    let addr = gw.addr();
    write_local(&cluster.root().join("keep.in"), b"still here\n");
    nfs_cp(cluster.root().join("keep.in"), gw.url("test/keep.txt")).assert_ok();

    // Byte-level abuse: each costs only its own connection, closed promptly.
    let garbage = pattern(5, 4096);
    let r = rpc::exchange_raw(addr, &garbage, true, T).unwrap();
    assert!(r.closed, "garbage: connection left open ({r:?})");
    let huge = 0xFFFF_FFFFu32.to_be_bytes();
    let r = rpc::exchange_raw(addr, &huge, false, T).unwrap();
    assert!(
        r.closed && r.received.is_empty(),
        "a 2 GiB record header was not refused: {r:?}"
    );
    let mut short_record = (0x8000_0000u32 | 100).to_be_bytes().to_vec();
    short_record.extend_from_slice(&[0u8; 40]);
    let r = rpc::exchange_raw(addr, &short_record, true, T).unwrap();
    assert!(r.closed, "record cut short: connection left open ({r:?})");
    // A whole record holding only the start of a call header.
    let mut head = rpc::XdrOut::new();
    head.u32(0x1234).u32(0).u32(2).u32(PROG_NFS);
    let r = rpc::exchange_raw(addr, &rpc::record(head.bytes()), true, T).unwrap();
    assert!(
        r.closed,
        "truncated call header: connection left open ({r:?})"
    );
    if r.received.len() > 4 {
        let reply = rpc::parse_reply(0x1234, &r.received[4..]);
        assert!(
            !matches!(reply, Ok(Reply::Success(_))),
            "truncated call header answered SUCCESS: {reply:?}"
        );
    }

    // RPC-level errors, as RFC 5531 says.
    let root_auth = rpc::Auth::root();
    let mut rpcc = RpcClient::connect(addr, T).unwrap();
    assert_eq!(
        rpcc.call(0x2000_0123, 1, 0, &root_auth, &[]).unwrap(),
        Reply::ProgUnavail,
        "bogus program"
    );
    let v2 = rpcc.call(PROG_NFS, 2, 0, &root_auth, &[]).unwrap();
    assert!(
        matches!(v2, Reply::ProgMismatch { low, high } if low <= 3 && high >= 3),
        "NFS version 2: {v2:?}"
    );
    assert_eq!(
        rpcc.call(PROG_NFS, 3, 99, &root_auth, &[]).unwrap(),
        Reply::ProcUnavail,
        "NFS procedure 99"
    );
    assert_eq!(
        rpcc.call(PROG_MOUNT, 3, 99, &root_auth, &[]).unwrap(),
        Reply::ProcUnavail,
        "MOUNT procedure 99"
    );
    // GETATTR whose handle is cut short.
    let mut cut = rpc::XdrOut::new();
    cut.u32(29).u32(0x4246_4801);
    assert_eq!(
        rpcc.call(PROG_NFS, 3, rpc::NFSPROC3_GETATTR, &root_auth, cut.bytes())
            .unwrap(),
        Reply::GarbageArgs,
        "GETATTR with truncated arguments"
    );

    // NFS-level errors.
    let mut c = fresh(&gw);
    let root = mount_root(&mut c);
    assert_eq!(
        c.getattr(b"garbage handle!!").unwrap().map(drop),
        Err(NFS3ERR_BADHANDLE),
        "GETATTR with a garbage handle"
    );
    assert_eq!(
        c.getattr(b"").unwrap().map(drop),
        Err(NFS3ERR_BADHANDLE),
        "GETATTR with an empty handle"
    );
    let over = c.getattr(&[7u8; 65]);
    assert!(
        !matches!(over, Ok(Ok(_))),
        "GETATTR with a 65-byte handle (over NFS3_FHSIZE) succeeded"
    );
    let mut c = fresh(&gw);
    // The root handle of the same gfid in volume "other", by the gateway's
    // own layout (nfs-gateway/src/handles.rs).
    let root_fh = nfs3_types::nfs3::nfs_fh3 {
        data: nfs3_types::xdr_codec::Opaque::owned(root.clone()),
    };
    // The gateway's handle key is in its state directory (no store here).
    let key = std::fs::read_to_string(
        gw.state_dir()
            .join(nfs_gateway::handles::handle_key::KEY_FILE),
    )
    .expect("the gateway's handle key");
    let mut k = [0u8; nfs_gateway::handles::KEY_LEN];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&key.trim()[2 * i..2 * i + 2], 16).expect("hex");
    }
    let ours = nfs_gateway::handles::Codec::new("test", k)
        .decode(&root_fh)
        .expect("MNT returned a handle the gateway's own layout and key decode");
    let foreign = nfs_gateway::handles::Codec::new("other", k).encode(ours);
    let foreign: &[u8] = foreign.data.as_ref();
    assert_eq!(
        c.getattr(foreign).unwrap().map(drop),
        Err(NFS3ERR_STALE),
        "GETATTR with another volume's handle"
    );
    // Guessed or altered handles: any byte of a real one changed, or the
    // same handle under another cluster's key, is refused.
    for i in 0..root.len() {
        let mut changed = root.clone();
        changed[i] ^= 0x80;
        let r = c.getattr(&changed).unwrap().map(drop);
        assert!(
            r == Err(NFS3ERR_BADHANDLE) || r == Err(NFS3ERR_STALE),
            "GETATTR with byte {i} of the root handle changed: {r:?}"
        );
    }
    let other_key = nfs_gateway::handles::Codec::new("test", [0x42; 32]).encode(ours);
    assert_eq!(
        c.getattr(other_key.data.as_ref()).unwrap().map(drop),
        Err(NFS3ERR_BADHANDLE),
        "GETATTR with a handle made under another key"
    );
    assert_eq!(
        c.lookup(&root, &[b'n'; 256]).unwrap().map(drop),
        Err(NFS3ERR_NAMETOOLONG),
        "LOOKUP of a 256-byte name"
    );
    for bad in [&b"a/b"[..], b"", b"../../etc"] {
        let r = c.lookup(&root, bad).unwrap();
        assert!(
            r.is_err(),
            "LOOKUP {:?} succeeded",
            String::from_utf8_lossy(bad)
        );
    }

    // MOUNT paths that try to leave the volume.
    for path in [
        "/test/../..",
        "/test/sub/../../x",
        "/test/..",
        "../test",
        "/",
        "",
    ] {
        let mut c = fresh(&gw);
        let r = c.mnt(path);
        assert!(!matches!(r, Ok(Ok(_))), "MNT {path:?} was accepted");
    }
    let long_path = format!("/test/{}", "d".repeat(2000));
    let mut c = fresh(&gw);
    assert!(
        !matches!(c.mnt(&long_path), Ok(Ok(_))),
        "MNT of a 2006-byte path was accepted"
    );

    // Still serving, to a client we did not write.
    assert!(gw.is_running(), "the gateway died");
    fresh(&gw).null().expect("NULL after the bad input");
    let ls = nfs_ls(&gw.url("test"));
    ls.assert_ok();
    assert_eq!(ls_names(&ls), ["keep.txt"], "{ls:?}");
}

#[test]
fn export_rules_squash_root_and_refuse_other_networks() {
    let cluster = TestCluster::start(3);
    let mount = cluster.mount();
    for d in ["squashed", "elsewhere"] {
        std::fs::create_dir(mount.join(d)).unwrap();
        std::fs::set_permissions(mount.join(d), Permissions::from_mode(0o755)).unwrap();
    }
    let gw = cluster.start_gateway(&[
        "--export",
        "/test/squashed,root_squash",
        "--export",
        "/test/elsewhere,allow=10.0.0.0/8",
    ]);
    let mut c = Nfs3Client::connect(gw.addr()).unwrap();
    // Root is nobody under the squashing export: no create in root's 0755 dir.
    let squashed = c
        .mnt("/test/squashed")
        .unwrap()
        .unwrap_or_else(|s| panic!("MNT /test/squashed: {s}"));
    assert_eq!(
        c.create(&squashed, b"f", 0o644).unwrap().map(drop),
        Err(rpc::NFS3ERR_ACCES),
        "root was not squashed"
    );
    // The same directory through the volume's own export: root is root.
    let root = mount_root(&mut c);
    let plain = c.lookup(&root, b"squashed").unwrap().unwrap();
    assert!(c.create(&plain, b"g", 0o644).unwrap().is_ok());
    // 127.0.0.1 is not in 10.0.0.0/8: MOUNT refused, and a handle reached
    // through the volume export does not carry that export's rule.
    assert_eq!(
        c.mnt("/test/elsewhere").unwrap().map(drop),
        Err(rpc::MNT3ERR_ACCES)
    );
    assert!(!mount.join("squashed/f").exists());
    assert!(mount.join("squashed/g").exists());
}

/// As `coherence::an_open_right_after_a_close_that_missed_a_brick_…`, with
/// an NFS client as the reader: its open is a GETATTR, which the gateway
/// (for which brick 0 never went down) must answer from a copy that has
/// the FUSE client's close, not from brick 0's.
#[test]
fn a_getattr_right_after_a_close_that_missed_a_brick_shows_the_current_copy() {
    let cluster = TestCluster::start(3);
    let gw = cluster.start_gateway(&[]);
    let a = cluster.mount();
    let mut c = Nfs3Client::connect(gw.addr()).unwrap();
    let root = mount_root(&mut c);
    for round in 0..3u64 {
        let name = format!("f{round}");
        write_local(&a.join(&name), b"");
        let fh = c.lookup(&root, name.as_bytes()).unwrap().unwrap();
        assert_eq!(c.getattr(&fh).unwrap().unwrap().size, 0);
        // More than the socket buffers hold: brick 0, resumed, cannot read
        // the whole write of the connection the mount gave up on.
        let data = pattern(round, 16 << 20);
        cluster.stop_brick(0);
        write_local(&a.join(&name), &data);
        cluster.cont_brick(0);
        let size = c.getattr(&fh).unwrap().unwrap().size;
        assert_eq!(
            size,
            data.len() as u64,
            "round {round}: GETATTR right after the FUSE client closed (brick 0 missed it)"
        );
        assert_same(
            &format!("round {round}: READ after it"),
            &read_all(&mut c, &fh, 1 << 20).unwrap(),
            &data,
        );
    }
}
