//! Writes seed inputs for every fuzz target into `fuzz/corpus/<target>/`
//! (or the directory given), each made by the project's own encoders: real
//! tarpc requests, data frames, RPC calls, NFS/MOUNT/NLM arguments,
//! handles, stored JSON. The fuzzer mutates from these, which gets it past
//! the framing and into the decoders at once. `scripts/fuzz.sh --seed`
//! runs it; `cargo fuzz cmin` then keeps what adds coverage.

use std::fs;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::{Opaque, Pack};
use proto::data::{RequestHeader, OP_APPEND, OP_READ, OP_WRITE};
use proto::*;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_serde::Serializer;

struct Out {
    root: PathBuf,
    count: usize,
}

impl Out {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).expect("corpus directory");
        fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed file");
        self.count += 1;
    }
}

/// One tarpc frame as a client sends it: a 4-byte big-endian length
/// (tokio-util's LengthDelimitedCodec default), then bincode.
fn tarpc_frame(msg: &tarpc::ClientMessage<BrickRequest>) -> Vec<u8> {
    let mut codec =
        Bincode::<tarpc::Response<BrickResponse>, tarpc::ClientMessage<BrickRequest>>::default();
    let body = Pin::new(&mut codec).serialize(msg).expect("bincode");
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn request(id: u64, message: BrickRequest) -> tarpc::ClientMessage<BrickRequest> {
    tarpc::ClientMessage::Request(tarpc::Request {
        context: tarpc::context::current(),
        id,
        message,
    })
}

fn brick_rpc(out: &mut Out) {
    let g = Gfid([0x11; 16]);
    let name = Name::from("file.txt");
    let new = NewObject {
        name: name.clone(),
        gfid: g,
        kind: FileKind::Symlink,
        perm: 0o644,
        rdev: 0,
        uid: 1000,
        gid: 1000,
        target: Some(Bytes::from(b"target".to_vec())),
        xattrs: vec![(Name::from("user.a"), Bytes::from(b"v".to_vec()))],
        lock: true,
        data: Default::default(),
        times: Default::default(),
    };
    let requests = vec![
        (
            "hello",
            BrickRequest::Hello {
                client: 7,
                volume: "gv0".into(),
                purpose: Purpose::Client,
            },
        ),
        ("ping", BrickRequest::Ping {}),
        (
            "lookup",
            BrickRequest::Lookup {
                parent: Gfid::ROOT,
                name: name.clone(),
            },
        ),
        ("getattr", BrickRequest::Getattr { gfid: g }),
        (
            "setattr",
            BrickRequest::Setattr {
                txn: Txn::blaming(vec![1]),
                gfid: g,
                set: SetAttr {
                    perm: Some(0o600),
                    size: Some(10),
                    atime: Some(TimeSet::Now),
                    mtime: Some(TimeSet::At(Timespec { secs: 1, nsecs: 2 })),
                    ..SetAttr::default()
                },
            },
        ),
        (
            "create",
            BrickRequest::Create {
                txn: Txn::none(),
                parent: Gfid::ROOT,
                new: new.clone(),
            },
        ),
        (
            "unlink",
            BrickRequest::Unlink {
                txn: Txn::none(),
                parent: Gfid::ROOT,
                name: name.clone(),
                is_dir: false,
                keep_open: true,
            },
        ),
        ("purge", BrickRequest::Purge { gfids: vec![g, g] }),
        (
            "rename",
            BrickRequest::Rename {
                txn: Txn::none(),
                req: RenameReq {
                    parent: Gfid::ROOT,
                    name: name.clone(),
                    new_parent: g,
                    new_name: Name::from("b"),
                    flags: 1,
                },
            },
        ),
        (
            "write",
            BrickRequest::Write {
                txn: Txn::none(),
                gfid: g,
                offset: 4096,
                data: Bytes::from(b"hello world".to_vec()),
            },
        ),
        (
            "read",
            BrickRequest::Read {
                gfid: g,
                offset: 0,
                size: 65536,
            },
        ),
        (
            "readdir",
            BrickRequest::Readdir {
                gfid: Gfid::ROOT,
                after: Some(name.clone()),
                max: 100,
            },
        ),
        (
            "quota_elsewhere",
            BrickRequest::QuotaElsewhere { others: Vec::new() },
        ),
        (
            "setxattr",
            BrickRequest::Setxattr {
                txn: Txn::none(),
                gfid: g,
                name: Name::from("user.x"),
                value: Bytes::from(vec![1, 2, 3]),
                flags: 0,
            },
        ),
        (
            "inodelk",
            BrickRequest::Inodelk {
                gfid: g,
                mode: LockMode::Acquire { wait_ms: 100 },
            },
        ),
        (
            "mark_pending",
            BrickRequest::MarkPending {
                gfid: g,
                blame: vec![0, 2],
                kind: PendingKind::Entry,
            },
        ),
        (
            "setlk",
            BrickRequest::Setlk {
                gfid: g,
                lock: RecordLock {
                    owner: 9,
                    pid: 10,
                    start: 0,
                    end: u64::MAX,
                    typ: RecordLockType::Write,
                    flock: false,
                },
            },
        ),
        (
            "heal_entry",
            BrickRequest::HealEntry {
                parent: Gfid::ROOT,
                name: name.clone(),
                fix: EntryFix::Create(new),
            },
        ),
        (
            "heal_done",
            BrickRequest::HealDone {
                gfid: g,
                seen: vec![(
                    1,
                    PendingCounts {
                        data: 1,
                        metadata: 2,
                        entry: 3,
                    },
                )],
            },
        ),
        (
            "checksums",
            BrickRequest::Checksums {
                gfid: g,
                offset: 0,
                block: 1 << 20,
                count: 4,
            },
        ),
        (
            "heal_note",
            BrickRequest::HealNote {
                gfid: g,
                note: "no source".into(),
            },
        ),
    ];
    let mut all = Vec::new();
    for (i, (name, message)) in requests.into_iter().enumerate() {
        let frame = tarpc_frame(&request(i as u64 + 1, message));
        out.put("brick_rpc", name, &frame);
        all.extend_from_slice(&frame);
    }
    let cancel = tarpc_frame(&tarpc::ClientMessage::Cancel {
        trace_context: tarpc::context::current().trace_context,
        request_id: 3,
    });
    out.put("brick_rpc", "cancel", &cancel);
    all.extend_from_slice(&cancel);
    // A connection's worth: the server reads frame after frame.
    out.put("brick_rpc", "stream", &all);
}

fn brick_data(out: &mut Out) {
    let header = |id, op, size, blame: Vec<u8>| RequestHeader {
        id,
        op,
        gfid: Gfid([0x22; 16]),
        offset: 8192,
        size,
        blame,
    };
    let mut write = header(1, OP_WRITE, 5, vec![1]).encode(5);
    write.extend_from_slice(b"hello");
    let read = header(2, OP_READ, 4096, vec![]).encode(0);
    let mut append = header(3, OP_APPEND, 3, vec![0, 2]).encode(3);
    append.extend_from_slice(b"end");
    // Request seeds start with 0 (the target's request mode).
    let with = |mode: u8, frames: &[&[u8]]| {
        let mut v = vec![mode];
        for f in frames {
            v.extend_from_slice(f);
        }
        v
    };
    out.put("brick_data", "write", &with(0, &[&write]));
    out.put("brick_data", "read", &with(0, &[&read]));
    out.put("brick_data", "append", &with(0, &[&append]));
    out.put("brick_data", "stream", &with(0, &[&write, &read, &append]));
    // Responses (mode 1): a write's Done<Attr>, an error.
    let done = Done {
        value: Attr::bare(Gfid([0x22; 16]), FileKind::File, 0o644),
        contended: true,
        parents: vec![Attr::bare(Gfid::ROOT, FileKind::Dir, 0o755)],
    };
    let body = proto::data::encode_value(&done);
    let mut ok = proto::data::response_header(1, proto::data::STATUS_OK, body.len()).to_vec();
    ok.extend_from_slice(&body);
    out.put("brick_data", "response-done", &with(1, &[&ok]));
    for (i, e) in [
        FsError::NotFound,
        FsError::Quorum {
            need: 2,
            got: 1,
            detail: "h2 down".into(),
        },
        FsError::Invalid("bad".into()),
    ]
    .iter()
    .enumerate()
    {
        let body = proto::data::encode_value(e);
        let mut err = proto::data::response_header(2, proto::data::STATUS_ERR, body.len()).to_vec();
        err.extend_from_slice(&body);
        out.put(
            "brick_data",
            &format!("response-error-{i}"),
            &with(1, &[&err]),
        );
    }
}

fn packed(v: &impl Pack) -> Vec<u8> {
    let mut out = Vec::new();
    v.pack(&mut out).expect("xdr");
    out
}

fn handle_codec() -> nfs_gateway::handles::Codec {
    // The key the nfs_handle target uses, so handle seeds decode there.
    nfs_gateway::handles::Codec::new("gv0", [7; 32])
}

fn fh() -> nfs_fh3 {
    handle_codec().encode(nfs_gateway::handles::Handle {
        export: 0,
        gfid: Gfid([0x33; 16]),
        subvol: Some(Gfid([0x44; 16])),
    })
}

fn dirop(name: &'static [u8]) -> diropargs3<'static> {
    diropargs3 {
        dir: fh(),
        name: filename3(Opaque::borrowed(name)),
    }
}

fn sattr() -> sattr3 {
    sattr3 {
        mode: Nfs3Option::Some(0o644),
        uid: Nfs3Option::Some(1000),
        gid: Nfs3Option::None,
        size: Nfs3Option::Some(0),
        atime: set_atime::SET_TO_SERVER_TIME,
        mtime: set_mtime::SET_TO_CLIENT_TIME(nfstime3 {
            seconds: 1,
            nseconds: 2,
        }),
    }
}

/// (procedure, its arguments) for every NFS v3 procedure.
fn nfs_calls() -> Vec<(u32, &'static str, Vec<u8>)> {
    vec![
        (0, "null", Vec::new()),
        (1, "getattr", packed(&GETATTR3args { object: fh() })),
        (
            2,
            "setattr",
            packed(&SETATTR3args {
                object: fh(),
                new_attributes: sattr(),
                guard: Nfs3Option::Some(nfstime3 {
                    seconds: 5,
                    nseconds: 0,
                }),
            }),
        ),
        (
            3,
            "lookup",
            packed(&LOOKUP3args {
                what: dirop(b"a.txt"),
            }),
        ),
        (
            4,
            "access",
            packed(&ACCESS3args {
                object: fh(),
                access: 0x3f,
            }),
        ),
        (5, "readlink", packed(&READLINK3args { symlink: fh() })),
        (
            6,
            "read",
            packed(&READ3args {
                file: fh(),
                offset: 0,
                count: 4096,
            }),
        ),
        (
            7,
            "write",
            packed(&WRITE3args {
                file: fh(),
                offset: 10,
                count: 5,
                stable: stable_how::FILE_SYNC,
                data: Opaque::borrowed(b"hello"),
            }),
        ),
        (
            8,
            "create",
            packed(&CREATE3args {
                where_: dirop(b"new"),
                how: createhow3::GUARDED(sattr()),
            }),
        ),
        (
            9,
            "mkdir",
            packed(&MKDIR3args {
                where_: dirop(b"dir"),
                attributes: sattr(),
            }),
        ),
        (
            10,
            "symlink",
            packed(&SYMLINK3args {
                where_: dirop(b"link"),
                symlink: symlinkdata3 {
                    symlink_attributes: sattr(),
                    symlink_data: nfspath3(Opaque::borrowed(b"../target")),
                },
            }),
        ),
        (
            11,
            "mknod",
            packed(&MKNOD3args {
                where_: dirop(b"fifo"),
                what: mknoddata3::NF3FIFO(sattr()),
            }),
        ),
        (
            12,
            "remove",
            packed(&REMOVE3args {
                object: dirop(b"a"),
            }),
        ),
        (
            13,
            "rmdir",
            packed(&RMDIR3args {
                object: dirop(b"d"),
            }),
        ),
        (
            14,
            "rename",
            packed(&RENAME3args {
                from: dirop(b"a"),
                to: dirop(b"b"),
            }),
        ),
        (
            15,
            "link",
            packed(&LINK3args {
                file: fh(),
                link: dirop(b"hard"),
            }),
        ),
        (
            16,
            "readdir",
            packed(&READDIR3args {
                dir: fh(),
                cookie: 0,
                cookieverf: cookieverf3::default(),
                count: 4096,
            }),
        ),
        (
            17,
            "readdirplus",
            packed(&READDIRPLUS3args {
                dir: fh(),
                cookie: 7,
                cookieverf: cookieverf3::default(),
                dircount: 1024,
                maxcount: 8192,
            }),
        ),
        (18, "fsstat", packed(&FSSTAT3args { fsroot: fh() })),
        (19, "fsinfo", packed(&FSINFO3args { fsroot: fh() })),
        (20, "pathconf", packed(&PATHCONF3args { object: fh() })),
        (
            21,
            "commit",
            packed(&COMMIT3args {
                file: fh(),
                offset: 0,
                count: 0,
            }),
        ),
    ]
}

fn rpc_and_nfs(out: &mut Out) {
    use nfs_gateway::rpc_client::{call_record, Auth};
    let mut stream = Vec::new();
    for (proc_, name, args) in nfs_calls() {
        let mut v = vec![proc_ as u8];
        v.extend_from_slice(&args);
        out.put("nfs_args", name, &v);
        for (auth_name, auth) in [("null", Auth::Null), ("unix", Auth::Root)] {
            let rec = call_record(
                0x1000 + proc_,
                nfs3_types::nfs3::PROGRAM,
                3,
                proc_,
                auth,
                &args,
            )
            .expect("record");
            // Record-stream mode (0) keeps the record mark; the
            // call-header mode (1) takes the record without it.
            if auth_name == "unix" {
                stream.extend_from_slice(&rec);
            }
            let mut s = vec![0];
            s.extend_from_slice(&rec);
            out.put("rpc_record", &format!("stream-nfs-{name}-{auth_name}"), &s);
            let mut c = vec![1];
            c.extend_from_slice(&rec[4..]);
            out.put("rpc_record", &format!("call-nfs-{name}-{auth_name}"), &c);
        }
    }
    let mut s = vec![0];
    s.extend_from_slice(&stream);
    out.put("rpc_record", "stream-all", &s);
    // Replies to our calls (mode 2): xid, then the reply record.
    for (name, reply) in [
        (
            "success",
            nfs_gateway::rpc::accepted(
                0x77,
                nfs_gateway::rpc::Accepted::Success(vec![0, 0, 0, 0, 0, 0, 0, 1]),
            ),
        ),
        (
            "prog-unavail",
            nfs_gateway::rpc::accepted(0x77, nfs_gateway::rpc::Accepted::ProgUnavail),
        ),
        (
            "denied",
            nfs_gateway::rpc::denied(0x77, nfs_gateway::rpc::Denial::RpcMismatch),
        ),
    ] {
        let mut v = vec![2];
        v.extend_from_slice(&0x77u32.to_be_bytes());
        v.extend_from_slice(&reply.datagram());
        out.put("rpc_record", &format!("reply-{name}"), &v);
    }
}

fn xdr_opaque(w: &mut Vec<u8>, b: &[u8]) {
    w.extend_from_slice(&(b.len() as u32).to_be_bytes());
    w.extend_from_slice(b);
    w.resize(w.len() + (4 - b.len() % 4) % 4, 0);
}

fn mount_portmap(out: &mut Out) {
    for (name, path) in [
        ("root", &b"/gv0"[..]),
        ("sub", b"/gv0/pvc-1/x"),
        ("deep", b"/gv0/pvc-1/deep/y"),
        ("dotdot", b"/gv0/../etc"),
        ("other", b"/other"),
    ] {
        let mut v = Vec::new();
        xdr_opaque(&mut v, path);
        out.put("mount_args", name, &v);
    }
    let mut getport = vec![3];
    for w in [nfs3_types::mount::PROGRAM, 3, 6, 0] {
        getport.extend_from_slice(&w.to_be_bytes());
    }
    out.put("portmap_args", "getport", &getport);
    out.put("portmap_args", "dump-udp", &[0x84]);
    out.put("portmap_args", "null", &[0]);
}

fn nlm(out: &mut Out) {
    use nfs_gateway::nlm::xdr::{encode_res, Lock, Stat, TestArgs};
    let lock = Lock {
        caller_name: b"client1".to_vec(),
        fh: fh().data.as_ref().to_vec(),
        oh: b"owner-1".to_vec(),
        svid: 42,
        offset: 100,
        len: 0,
    };
    let test = TestArgs {
        cookie: vec![1, 2, 3, 4],
        exclusive: true,
        lock: lock.clone(),
    }
    .encode();
    // The other argument types share TEST's prefix (cookie, flags, lock):
    // built from it by hand, as their encoders are test-only.
    let with = |which: u8, body: &[u8]| {
        let mut v = vec![which];
        v.extend_from_slice(body);
        v
    };
    out.put("nlm_args", "test", &with(0, &test));
    let mut lock_args = Vec::new();
    xdr_opaque(&mut lock_args, &[9, 9]);
    lock_args.extend_from_slice(&1u32.to_be_bytes()); // block
    lock_args.extend_from_slice(&test[8..]); // exclusive + lock
    lock_args.extend_from_slice(&0u32.to_be_bytes()); // reclaim
    lock_args.extend_from_slice(&3i32.to_be_bytes()); // state
    out.put("nlm_args", "lock", &with(1, &lock_args));
    out.put(
        "nlm_args",
        "cancel",
        &with(2, &lock_args[..lock_args.len() - 8]),
    );
    let mut unlock = Vec::new();
    xdr_opaque(&mut unlock, &[5]);
    unlock.extend_from_slice(&test[12..]);
    out.put("nlm_args", "unlock", &with(3, &unlock));
    let mut share = Vec::new();
    xdr_opaque(&mut share, &[1]);
    xdr_opaque(&mut share, b"client1");
    xdr_opaque(&mut share, fh().data.as_ref());
    xdr_opaque(&mut share, b"owner");
    share.extend_from_slice(&1u32.to_be_bytes());
    share.extend_from_slice(&2u32.to_be_bytes());
    share.extend_from_slice(&0u32.to_be_bytes());
    out.put("nlm_args", "share", &with(4, &share));
    let mut notify = Vec::new();
    xdr_opaque(&mut notify, b"client1");
    notify.extend_from_slice(&7i32.to_be_bytes());
    out.put("nlm_args", "free_all", &with(5, &notify));
    out.put(
        "nlm_args",
        "res",
        &with(6, &encode_res(&[1, 2], Stat::Granted)),
    );
    let change = nfs_gateway::nsm::StatChange {
        mon_name: b"client1".to_vec(),
        state: 9,
    };
    out.put("nlm_args", "sm_notify", &with(7, &change.encode()));
}

fn handles(out: &mut Out) {
    let mut v = vec![0];
    v.extend_from_slice(fh().data.as_ref());
    out.put("nfs_handle", "signed", &v);
    let plain = handle_codec().encode(nfs_gateway::handles::Handle {
        export: 3,
        gfid: Gfid::ROOT,
        subvol: None,
    });
    let mut v = vec![0];
    v.extend_from_slice(plain.data.as_ref());
    out.put("nfs_handle", "signed-no-subvol", &v);
    let mut made = vec![1, 2];
    made.extend_from_slice(&[0x55; 16]);
    made.push(1);
    made.extend_from_slice(&[0x66; 16]);
    out.put("nfs_handle", "made", &made);
}

fn json(out: &mut Out) {
    use std::collections::BTreeMap;
    use volgen::spec::{BrickRef, VolumeSpec, VolumeState};
    let spec = |sets: usize, options: &[(&str, &str)]| VolumeSpec {
        format: 1,
        name: "gv0".into(),
        id: "8c3e2f6a-1b4d-4e5f-9a7b-0c1d2e3f4a5b".into(),
        replica: 3,
        bricks: (0..sets * 3)
            .map(|i| BrickRef {
                addr: if i == 1 {
                    "[fd00::2]:24101".to_string()
                } else {
                    format!("h{}:24101", i + 1)
                },
                id: format!("00000000-0000-4000-8000-{:012}", i + 1),
            })
            .collect(),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        state: VolumeState::Started,
        created_by: "brickfs 0.1.0".into(),
        created_at: 1_700_000_000,
    };
    let one = spec(1, &[]);
    one.validate().expect("seed spec validates");
    out.put("volume_spec", "one-set", one.to_json().as_bytes());
    let two = spec(
        2,
        &[
            ("network.op-timeout", "2.5"),
            ("performance.attr-timeout", "0"),
            ("subvolume.overcommit", "1.5"),
            ("cluster.heal-retry", "30"),
        ],
    );
    two.validate().expect("seed spec validates");
    out.put("volume_spec", "two-sets-options", two.to_json().as_bytes());

    let settings = subvolume::Settings {
        tenant: Some("team-a".into()),
        bytes: 1 << 30,
        inodes: Some(1000),
        mode: 0o755,
        uid: 1000,
        gid: 1000,
        labels: [("pvc".to_string(), "default/data".to_string())].into(),
        root_squash: Some(true),
    };
    let sub = subvolume::Subvolume {
        volume: "gv0".into(),
        name: "pvc-1".into(),
        settings,
        state: subvolume::State::Ready,
        path: "/pvc-1".into(),
        id: Some("0123456789abcdef0123456789abcdef".into()),
        created: 1_700_000_000,
        archived: None,
        expires: None,
    };
    out.put("subvolume_record", "ready", &sub.encode());
    let archived = subvolume::Subvolume {
        state: subvolume::State::Archived,
        path: "/.archive/pvc-1.1700000100".into(),
        archived: Some(1_700_000_100),
        expires: Some(1_700_086_500),
        settings: subvolume::Settings {
            tenant: None,
            labels: Default::default(),
            inodes: None,
            ..sub.settings.clone()
        },
        ..sub
    };
    out.put("subvolume_record", "archived", &archived.encode());

    let token = tenant::Token::generate("team-a");
    let t = tenant::Tenant {
        name: "team-a".into(),
        admin: false,
        networks: tenant::parse_networks(&["10.1.0.0/16".into(), "fd00::/64".into()])
            .expect("networks"),
        token_hash: token.secret_hash(),
        created: 1_700_000_000,
    };
    out.put("tenant_record", "tenant", &t.encode());
    out.put(
        "tenant_record",
        "admin",
        &tenant::Tenant {
            admin: true,
            networks: Vec::new(),
            ..t
        }
        .encode(),
    );
    out.put("tenant_token", "token", token.to_string().as_bytes());
    out.put(
        "tenant_token",
        "token-newline",
        format!("{}\n", tenant::Token::generate("x-1")).as_bytes(),
    );
}

/// Scope tokens of the target's fixed key: valid at its fixed "now", and
/// the usual wrong ones (the target finds the rest).
fn scope_tokens(out: &mut Out) {
    let Some((signer, _)) = tls::scope::fuzzing::fixed_key() else {
        return;
    };
    let root = |name: &str| tls::scope::ScopeRoot {
        name: name.into(),
        id: "0123456789abcdef0123456789abcdef".into(),
        squash: true,
    };
    let now = 1_800_000_000 - 60;
    let mut put = |name: &str, token: String| out.put("scope_token", name, token.as_bytes());
    if let Ok(t) = signer.issue("acme", "gv0", vec![root("pvc-1")], now, 3600) {
        let parts: Vec<String> = t.split('.').map(str::to_string).collect();
        put("valid", t.clone());
        put("alg-none", format!("eyJhbGciOiJub25lIn0.{}.", parts[1]));
        put("no-signature", format!("{}.{}.", parts[0], parts[1]));
    }
    if let Ok(t) = signer.issue("acme", "gv0", vec![root("a"), root("b")], now, 60) {
        put("two-roots", t);
    }
    if let Ok(t) = signer.issue("acme", "gv0", vec![root("pvc-1")], 1_000, 60) {
        put("expired", t);
    }
}

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus"));
    let mut out = Out { root, count: 0 };
    brick_rpc(&mut out);
    brick_data(&mut out);
    rpc_and_nfs(&mut out);
    mount_portmap(&mut out);
    nlm(&mut out);
    handles(&mut out);
    json(&mut out);
    scope_tokens(&mut out);
    println!("{} seeds in {}", out.count, out.root.display());
}
