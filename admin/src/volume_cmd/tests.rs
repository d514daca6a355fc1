//! The volume commands against an in-memory store and fake bricks: every
//! flow, and "nothing changed in the store" after every refused command.

use std::collections::BTreeMap;
use std::sync::Mutex;

use clap::Parser;
use proto::FsError;
use store::{Entry, Revision, Store, StoreError};
use volgen::spec::{VolumeSpec, VolumeState};

use super::ops::{self, CreateReq};
use super::probe::{Probed, Prober};
use super::{parse_create_words, show, VolumeArgs, VolumeCmd};

/// A `Store` in memory: key → (value, revision), revisions from a counter.
pub(super) struct MemStore {
    data: Mutex<BTreeMap<String, (Vec<u8>, Revision)>>,
    next: Mutex<Revision>,
}

impl MemStore {
    pub(super) fn new() -> MemStore {
        MemStore {
            data: Mutex::new(BTreeMap::new()),
            next: Mutex::new(1),
        }
    }

    pub(super) fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, Revision)> {
        self.data.lock().unwrap().clone()
    }

    pub(super) fn spec(&self, name: &str) -> VolumeSpec {
        let data = self.data.lock().unwrap();
        VolumeSpec::from_json(&data[&VolumeSpec::key(name)].0).unwrap()
    }
}

#[async_trait::async_trait]
impl Store for MemStore {
    fn url(&self) -> &str {
        "mem://test"
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self.data.lock().unwrap().get(key).map(|(v, r)| Entry {
            key: key.to_string(),
            value: v.clone(),
            revision: *r,
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .data
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (v, r))| Entry {
                key: k.clone(),
                value: v.clone(),
                revision: *r,
            })
            .collect())
    }

    async fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Revision>,
    ) -> Result<Revision, StoreError> {
        let mut data = self.data.lock().unwrap();
        let found = data.get(key).map(|(_, r)| *r);
        if found != expected {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected,
                found,
            });
        }
        let mut next = self.next.lock().unwrap();
        let rev = *next;
        *next += 1;
        data.insert(key.to_string(), (value.to_vec(), rev));
        Ok(rev)
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<(), StoreError> {
        let mut data = self.data.lock().unwrap();
        let found = data.get(key).map(|(_, r)| *r);
        if found != Some(expected) {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected: Some(expected),
                found,
            });
        }
        data.remove(key);
        Ok(())
    }

    async fn watch(
        &self,
        key: &str,
        _seen: Option<Revision>,
        _timeout: std::time::Duration,
    ) -> Result<Option<Entry>, StoreError> {
        self.get(key).await
    }
}

/// A store that cannot be reached.
pub(super) struct DownStore;

#[async_trait::async_trait]
impl Store for DownStore {
    fn url(&self) -> &str {
        "etcd://10.9.9.9:2379"
    }
    async fn get(&self, _: &str) -> Result<Option<Entry>, StoreError> {
        Err(self.down())
    }
    async fn list(&self, _: &str) -> Result<Vec<Entry>, StoreError> {
        Err(self.down())
    }
    async fn put(&self, _: &str, _: &[u8], _: Option<Revision>) -> Result<Revision, StoreError> {
        Err(self.down())
    }
    async fn delete(&self, _: &str, _: Revision) -> Result<(), StoreError> {
        Err(self.down())
    }
    async fn watch(
        &self,
        _: &str,
        _: Option<Revision>,
        _: std::time::Duration,
    ) -> Result<Option<Entry>, StoreError> {
        Err(self.down())
    }
}

impl DownStore {
    fn down(&self) -> StoreError {
        StoreError::Unreachable {
            url: self.url().into(),
            why: "connection refused".into(),
        }
    }
}

/// One fake brick: its UUID, the volume it is bound to, whether it answers.
pub(super) struct FakeBrick {
    pub(super) id: String,
    pub(super) bound: Option<String>,
    pub(super) up: bool,
}

/// Bricks `h1:1` … by address; behaves as `brick/src/store.rs check_volume`.
pub(super) struct FakeBricks(pub(super) Mutex<BTreeMap<String, FakeBrick>>);

impl FakeBricks {
    pub(super) fn new(n: usize) -> FakeBricks {
        FakeBricks(Mutex::new(
            (1..=n)
                .map(|i| {
                    (
                        format!("h{i}:1"),
                        FakeBrick {
                            id: uuid(i),
                            bound: None,
                            up: true,
                        },
                    )
                })
                .collect(),
        ))
    }

    pub(super) fn with<R>(&self, addr: &str, f: impl FnOnce(&mut FakeBrick) -> R) -> R {
        f(self.0.lock().unwrap().get_mut(addr).unwrap())
    }

    pub(super) fn bound(&self, addr: &str) -> Option<String> {
        self.with(addr, |b| b.bound.clone())
    }
}

pub(super) fn uuid(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

impl Prober for FakeBricks {
    async fn probe(&self, addr: &str, volume: &str) -> Result<Probed, FsError> {
        let mut bricks = self.0.lock().unwrap();
        let Some(b) = bricks.get_mut(addr) else {
            return Err(FsError::BrickDown(format!("{addr}: connection refused")));
        };
        if !b.up {
            return Err(FsError::BrickDown(format!("{addr}: connection refused")));
        }
        if !volume.is_empty() {
            match &b.bound {
                None => b.bound = Some(volume.to_string()),
                Some(v) if v == volume => {}
                Some(v) => {
                    return Err(FsError::Refused(format!("brick belongs to volume {v}")));
                }
            }
        }
        Ok(Probed {
            id: b.id.clone(),
            heal_entries: 7,
        })
    }
}

pub(super) fn addrs(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("h{i}:1")).collect()
}

pub(super) async fn create(
    store: &dyn Store,
    bricks: &FakeBricks,
    name: &str,
    replica: u8,
    addrs: &[String],
) -> crate::error::Result<VolumeSpec> {
    ops::create(
        store,
        bricks,
        CreateReq {
            name,
            replica,
            addrs,
            id: format!("vol-{name}"),
            created_by: "brickfs test".into(),
            created_at: 1,
        },
    )
    .await
}

pub(super) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `f`, which must fail with an error containing `want`, and checks
/// that the store is exactly as before.
pub(super) async fn refused<
    F: std::future::Future<Output = crate::error::Result<T>>,
    T: std::fmt::Debug,
>(
    store: &MemStore,
    want: &str,
    f: F,
) {
    let before = store.snapshot();
    match f.await {
        Ok(v) => panic!("expected an error with {want:?}, got {v:?}"),
        Err(e) => assert!(e.to_string().contains(want), "{want:?} not in: {e}"),
    }
    assert_eq!(store.snapshot(), before, "the store changed");
}

#[test]
fn create_start_set_stop_delete() {
    rt().block_on(async {
        let store = MemStore::new();
        let bricks = FakeBricks::new(6);
        let spec = create(&store, &bricks, "gv0", 3, &addrs(1..=6))
            .await
            .unwrap();
        assert_eq!(spec.state, VolumeState::Created);
        assert_eq!(spec.bricks[4].id, uuid(5));
        assert_eq!(store.spec("gv0"), spec);
        assert_eq!(bricks.bound("h1:1").as_deref(), Some("gv0"));
        assert!(show::info(&spec).contains("Number of Bricks: 2 x 3 = 6"));
        assert!(show::info(&spec).contains("Type: Distributed-Replicate"));

        let (started, offline) = ops::start(&store, &bricks, "gv0").await.unwrap();
        assert!(offline.is_empty());
        assert_eq!(started.state, VolumeState::Started);
        assert_eq!(store.spec("gv0").state, VolumeState::Started);

        assert_eq!(
            ops::set(&store, "gv0", "network.op-timeout", "3.0")
                .await
                .unwrap(),
            "3"
        );
        assert_eq!(store.spec("gv0").option("network.op-timeout"), Some("3"));

        let (spec, st) = ops::status(&store, &bricks, "gv0").await.unwrap();
        let text = show::status(&spec, &st);
        assert!(text.contains("h5:1"), "{text}");
        assert!(!text.contains("note:"), "{text}");

        ops::stop(&store, "gv0").await.unwrap();
        assert_eq!(store.spec("gv0").state, VolumeState::Stopped);
        ops::delete(&store, "gv0").await.unwrap();
        assert!(store.snapshot().is_empty());
    });
}

#[test]
fn bad_creates_change_nothing() {
    rt().block_on(async {
        let store = MemStore::new();
        let bricks = FakeBricks::new(9);
        create(&store, &bricks, "gv1", 3, &addrs(7..=9))
            .await
            .unwrap();
        let bad = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();

        refused(
            &store,
            "bad volume name",
            create(&store, &bricks, "g v", 3, &addrs(1..=3)),
        )
        .await;
        refused(
            &store,
            "replica 2 is not supported",
            create(&store, &bricks, "gv0", 2, &addrs(1..=2)),
        )
        .await;
        refused(
            &store,
            "4 bricks given",
            create(&store, &bricks, "gv0", 3, &addrs(1..=4)),
        )
        .await;
        refused(
            &store,
            "brick H1:1 is given twice (bricks 1 and 3)",
            create(&store, &bricks, "gv0", 3, &bad(&["h1:1", "h2:1", "H1:1"])),
        )
        .await;
        refused(
            &store,
            "volume gv1 already exists",
            create(&store, &bricks, "gv1", 3, &addrs(1..=3)),
        )
        .await;
        // A brick of another volume, by address and by UUID (another name for it).
        refused(
            &store,
            "brick h8:1 is already brick 2 of volume gv1",
            create(&store, &bricks, "gv0", 3, &bad(&["h1:1", "h2:1", "h8:1"])),
        )
        .await;
        bricks.0.lock().unwrap().insert(
            "alias:1".into(),
            FakeBrick {
                id: uuid(8),
                bound: Some("gv1".into()),
                up: true,
            },
        );
        refused(
            &store,
            "is already in volume gv1 (as h8:1)",
            create(
                &store,
                &bricks,
                "gv0",
                3,
                &bad(&["h1:1", "h2:1", "alias:1"]),
            ),
        )
        .await;
        // The same brick under two addresses.
        bricks.0.lock().unwrap().insert(
            "h1-alias:1".into(),
            FakeBrick {
                id: uuid(1),
                bound: None,
                up: true,
            },
        );
        refused(
            &store,
            "bricks h1:1 and h1-alias:1 are the same brick",
            create(
                &store,
                &bricks,
                "gv0",
                3,
                &bad(&["h1:1", "h2:1", "h1-alias:1"]),
            ),
        )
        .await;
        // Unreachable and bound-elsewhere bricks.
        bricks.with("h2:1", |b| b.up = false);
        refused(
            &store,
            "cannot reach brick h2:1: connection refused",
            create(&store, &bricks, "gv0", 3, &addrs(1..=3)),
        )
        .await;
        refused(
            &store,
            "cannot reach brick nowhere:1",
            create(
                &store,
                &bricks,
                "gv0",
                3,
                &bad(&["h1:1", "h3:1", "nowhere:1"]),
            ),
        )
        .await;
        bricks.with("h2:1", |b| b.up = true);
        bricks.with("h3:1", |b| b.bound = Some("old".into()));
        refused(
            &store,
            "brick h3:1 refuses volume gv0: brick belongs to volume old",
            create(&store, &bricks, "gv0", 3, &addrs(1..=3)),
        )
        .await;
        // None of the refusals above bound a brick before the last check.
        assert_eq!(bricks.bound("h4:1"), None);
        // An unreachable store: the error names it.
        let e = create(&DownStore, &bricks, "gv0", 3, &addrs(4..=6))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("etcd://10.9.9.9:2379") && e.contains("unreachable"),
            "{e}"
        );
        assert_eq!(bricks.bound("h4:1"), None);
    });
}

#[test]
fn bad_state_changes_change_nothing() {
    rt().block_on(async {
        let store = MemStore::new();
        let bricks = FakeBricks::new(3);
        create(&store, &bricks, "gv0", 3, &addrs(1..=3))
            .await
            .unwrap();

        refused(
            &store,
            "unknown volume nope (the store at mem://test has: gv0)",
            ops::stop(&store, "nope"),
        )
        .await;
        refused(
            &store,
            "unknown volume nope",
            ops::start(&store, &bricks, "nope"),
        )
        .await;
        refused(&store, "unknown volume nope", ops::delete(&store, "nope")).await;
        refused(
            &store,
            "unknown volume nope",
            ops::set(&store, "nope", "network.op-timeout", "3"),
        )
        .await;
        refused(
            &store,
            "unknown volume nope",
            ops::status(&store, &bricks, "nope"),
        )
        .await;
        refused(
            &store,
            "volume gv0 is not started (status: Created)",
            ops::stop(&store, "gv0"),
        )
        .await;
        refused(
            &store,
            "unknown option \"foo.bar\" (known options: performance.attr-timeout",
            ops::set(&store, "gv0", "foo.bar", "1"),
        )
        .await;
        refused(
            &store,
            "bad value \"-3\" for network.op-timeout",
            ops::set(&store, "gv0", "network.op-timeout", "-3"),
        )
        .await;

        // A wiped disk: the brick answers with a new UUID.
        bricks.with("h2:1", |b| b.id = uuid(99));
        refused(
            &store,
            "brick h2:1 answers as 00000000-0000-4000-8000-000000000099",
            ops::start(&store, &bricks, "gv0"),
        )
        .await;
        let (spec, st) = ops::status(&store, &bricks, "gv0").await.unwrap();
        let text = show::status(&spec, &st);
        assert!(
            text.contains("WRONG") && text.contains("wiped or replaced"),
            "{text}"
        );
        bricks.with("h2:1", |b| b.id = uuid(2));

        // Two bricks down: no quorum, not started; one down: started, with a warning.
        bricks.with("h1:1", |b| b.up = false);
        bricks.with("h2:1", |b| b.up = false);
        refused(
            &store,
            "replica set 1 has 1 of 3 bricks reachable, 2 needed",
            ops::start(&store, &bricks, "gv0"),
        )
        .await;
        let (spec, st) = ops::status(&store, &bricks, "gv0").await.unwrap();
        let text = show::status(&spec, &st);
        assert!(
            text.contains(
                "quorum lost: replica set 1 has 1 of 3 bricks usable (needs 2): its files are \
                 read-only (EROFS) for every client; missing: h1:1 (brick down: h1:1: \
                 connection refused), h2:1 (brick down: h2:1: connection refused)"
            ),
            "{text}"
        );
        bricks.with("h2:1", |b| b.up = true);
        let (_, offline) = ops::start(&store, &bricks, "gv0").await.unwrap();
        assert_eq!(offline, ["cannot reach brick h1:1: connection refused"]);
        let (spec, st) = ops::status(&store, &bricks, "gv0").await.unwrap();
        let text = show::status(&spec, &st);
        assert!(text.contains("note: cannot reach brick h1:1"), "{text}");
        assert!(!text.contains("quorum lost"), "{text}");

        refused(
            &store,
            "volume gv0 is already started",
            ops::start(&store, &bricks, "gv0"),
        )
        .await;
        refused(
            &store,
            "volume gv0 is started: stop it first",
            ops::delete(&store, "gv0"),
        )
        .await;
    });
}

#[test]
fn concurrent_changes_are_refused() {
    rt().block_on(async {
        let store = MemStore::new();
        let bricks = FakeBricks::new(3);
        create(&store, &bricks, "gv0", 3, &addrs(1..=3))
            .await
            .unwrap();
        let read = super::load::load(&store, "gv0").await.unwrap();
        ops::set(&store, "gv0", "cluster.heal-retry", "10")
            .await
            .unwrap();
        // Another admin's write with the old revision (as a racing `stop` would do).
        let mut stale = read.spec.clone();
        stale.state = VolumeState::Stopped;
        let before = store.snapshot();
        let e = store
            .put(
                "volumes/gv0",
                stale.to_json().as_bytes(),
                Some(read.revision),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict { .. }));
        assert_eq!(store.snapshot(), before);
        assert_eq!(store.spec("gv0").option("cluster.heal-retry"), Some("10"));
    });
}

#[test]
fn corrupt_entries_are_named() {
    rt().block_on(async {
        let store = MemStore::new();
        store.put("volumes/gv0", b"{not json", None).await.unwrap();
        let e = super::load::load(&store, "gv0")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("corrupt store entry volumes/gv0"), "{e}");
        let bricks = FakeBricks::new(3);
        refused(
            &store,
            "corrupt store entry volumes/gv0",
            create(&store, &bricks, "gv1", 3, &addrs(1..=3)),
        )
        .await;
    });
}

#[test]
fn info_and_list_text() {
    let mut spec = VolumeSpec {
        format: 1,
        name: "gv0".into(),
        id: "8c3e2f6a-1b4d-4e5f-9a7b-0c1d2e3f4a5b".into(),
        replica: 3,
        bricks: (1..=3)
            .map(|i| volgen::spec::BrickRef {
                addr: format!("h{i}:24101"),
                id: uuid(i),
            })
            .collect(),
        options: BTreeMap::new(),
        state: VolumeState::Created,
        created_by: String::new(),
        created_at: 0,
    };
    spec.set_option("network.op-timeout", "3").unwrap();
    assert_eq!(
        show::info(&spec),
        "Volume Name: gv0\n\
         Type: Replicate\n\
         Volume ID: 8c3e2f6a-1b4d-4e5f-9a7b-0c1d2e3f4a5b\n\
         Status: Created\n\
         Number of Bricks: 1 x 3 = 3\n\
         Transport-type: tcp\n\
         Bricks:\n\
         Brick1: h1:24101 (00000000-0000-4000-8000-000000000001)\n\
         Brick2: h2:24101 (00000000-0000-4000-8000-000000000002)\n\
         Brick3: h3:24101 (00000000-0000-4000-8000-000000000003)\n\
         Options Reconfigured:\n\
         network.op-timeout: 3\n"
    );
    assert_eq!(show::list(&[]), "No volumes present in cluster\n");
    assert_eq!(show::list(&[spec.clone()]), "gv0\n");
}

/// Parses `brickfs volume ARGS...` the way main does.
pub(super) fn parse(args: &[&str]) -> Result<VolumeCmd, clap::Error> {
    #[derive(clap::Parser, Debug)]
    struct Top {
        #[command(subcommand)]
        cmd: Sub,
    }
    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        Volume(VolumeArgs),
    }
    let argv = std::iter::once("brickfs")
        .chain(std::iter::once("volume"))
        .chain(args.iter().copied());
    Top::try_parse_from(argv).map(|t| match t.cmd {
        Sub::Volume(v) => v.cmd,
    })
}

#[test]
fn cli_create_syntax() {
    let VolumeCmd::Create(a) =
        parse(&["create", "gv0", "replica", "3", "a:1", "b:1", "c:1"]).unwrap()
    else {
        panic!("not create")
    };
    assert_eq!(a.name, "gv0");
    let (r, bricks) = parse_create_words(&a.words).unwrap();
    assert_eq!(r, 3);
    assert_eq!(bricks, ["a:1", "b:1", "c:1"]);

    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (_, six) = parse_create_words(&words(&[
        "REPLICA", "3", "a:1", "b:1", "c:1", "d:1", "e:1", "f:1",
    ]))
    .unwrap();
    assert_eq!(six.len(), 6);
    let err = |w: &[&str]| parse_create_words(&words(w)).unwrap_err().to_string();
    assert!(err(&["a:1", "b:1", "c:1"]).contains("missing `replica 3`"));
    assert!(err(&["replica", "2", "a:1", "b:1"]).contains("replica 2 is not supported"));
    assert!(err(&["replica", "three", "a:1"]).contains("bad replica count \"three\""));
    assert!(err(&["replica", "3"]).contains("no bricks given"));
    // Without any words clap itself refuses.
    assert!(parse(&["create", "gv0"]).is_err());
}

#[test]
fn cli_other_commands() {
    assert!(matches!(parse(&["start", "gv0"]).unwrap(), VolumeCmd::Start(a) if a.name == "gv0"));
    assert!(matches!(parse(&["list"]).unwrap(), VolumeCmd::List));
    assert!(matches!(parse(&["info"]).unwrap(), VolumeCmd::Info(a) if a.name.is_none()));
    assert!(
        matches!(parse(&["set", "gv0", "network.op-timeout", "3"]).unwrap(),
        VolumeCmd::Set(a) if a.key == "network.op-timeout" && a.value == "3")
    );
    assert!(matches!(
        parse(&["graph", "gv0"]).unwrap(),
        VolumeCmd::Graph(_)
    ));
    assert!(matches!(
        parse(&["heal", "gv0", "info"]).unwrap(),
        VolumeCmd::Heal(_)
    ));
    assert!(matches!(
        parse(&["heal", "gv0", "--bricks", "127.0.0.1:1,127.0.0.1:2"]).unwrap(),
        VolumeCmd::Heal(_)
    ));
    assert!(parse(&["set", "gv0", "k"]).is_err());
    assert!(parse(&["frobnicate", "gv0"]).is_err());
}

async fn add(
    store: &dyn Store,
    bricks: &FakeBricks,
    name: &str,
    words: &[&str],
) -> crate::error::Result<super::add_brick::Added> {
    let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
    let (replica, addrs) = super::add_brick::parse_words(&words)?;
    super::add_brick::add_brick(store, bricks, name, replica, &addrs).await
}

#[test]
fn add_brick_appends_replica_sets() {
    rt().block_on(async {
        let store = MemStore::new();
        let bricks = FakeBricks::new(12);
        create(&store, &bricks, "gv0", 3, &addrs(1..=6))
            .await
            .unwrap();
        let added = add(&store, &bricks, "gv0", &["h7:1", "h8:1", "h9:1"])
            .await
            .unwrap();
        assert_eq!(added.sets_before, 2);
        assert_eq!(store.spec("gv0"), added.spec);
        assert_eq!(added.spec.bricks.len(), 9);
        assert_eq!(added.spec.bricks[6].id, uuid(7));
        assert_eq!(added.spec.state, VolumeState::Created);
        assert_eq!(bricks.bound("h9:1").as_deref(), Some("gv0"));
        let text = show::added(&added.spec, added.sets_before);
        assert!(text.contains("replica set 3: h7:1 h8:1 h9:1"), "{text}");
        assert!(text.contains("3 x 3 = 9 (Distributed-Replicate)"), "{text}");
        assert!(text.contains("rebalance gv0 start"), "{text}");
        assert!(text.contains("once the volume is started"), "{text}");
        assert!(show::info(&added.spec).contains("Number of Bricks: 3 x 3 = 9"));

        // Started volumes too, with `replica 3` spelled out.
        ops::start(&store, &bricks, "gv0").await.unwrap();
        let added = add(
            &store,
            &bricks,
            "gv0",
            &["replica", "3", "h10:1", "h11:1", "h12:1"],
        )
        .await
        .unwrap();
        assert_eq!(added.spec.replica_sets(), 4);
        assert_eq!(added.spec.state, VolumeState::Started);
        assert!(!show::added(&added.spec, 3).contains("once the volume is started"));
        let (spec, st) = ops::status(&store, &bricks, "gv0").await.unwrap();
        let text = show::status(&spec, &st);
        assert!(text.contains("4 x 3 = 12"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("h12:1") && l.contains("  4  Y")),
            "{text}"
        );
    });
}

#[test]
fn bad_add_bricks_change_nothing() {
    rt().block_on(async {
        let store = MemStore::new();
        let bricks = FakeBricks::new(12);
        create(&store, &bricks, "gv0", 3, &addrs(1..=3))
            .await
            .unwrap();
        create(&store, &bricks, "gv1", 3, &addrs(10..=12))
            .await
            .unwrap();
        refused(
            &store,
            "unknown volume nope (the store at mem://test has: gv0, gv1)",
            add(&store, &bricks, "nope", &["h4:1", "h5:1", "h6:1"]),
        )
        .await;
        refused(
            &store,
            "2 bricks given: volume gv0 is replica 3, so add-brick takes a positive multiple of 3",
            add(&store, &bricks, "gv0", &["h4:1", "h5:1"]),
        )
        .await;
        refused(
            &store,
            "volume gv0 is replica 3: add-brick adds whole sets of 3 bricks and cannot make \
             them replica 2",
            add(&store, &bricks, "gv0", &["replica", "2", "h4:1", "h5:1"]),
        )
        .await;
        refused(
            &store,
            "bad brick address \"h4\"",
            add(&store, &bricks, "gv0", &["h4", "h5:1", "h6:1"]),
        )
        .await;
        refused(
            &store,
            "brick H4:1 is given twice (bricks 1 and 3)",
            add(&store, &bricks, "gv0", &["h4:1", "h5:1", "H4:1"]),
        )
        .await;
        refused(
            &store,
            "brick h2:1 is already brick 2 of volume gv0",
            add(&store, &bricks, "gv0", &["h4:1", "h5:1", "h2:1"]),
        )
        .await;
        refused(
            &store,
            "brick h11:1 is already brick 2 of volume gv1",
            add(&store, &bricks, "gv0", &["h4:1", "h5:1", "h11:1"]),
        )
        .await;
        // Bricks the volumes have, under another address.
        for (alias, id) in [("alias1:1", 1), ("alias12:1", 12), ("alias4:1", 4)] {
            bricks.0.lock().unwrap().insert(
                alias.into(),
                FakeBrick {
                    id: uuid(id),
                    bound: None,
                    up: true,
                },
            );
        }
        refused(
            &store,
            "brick alias1:1 (id 00000000-0000-4000-8000-000000000001) is already in volume gv0 \
             (as h1:1)",
            add(&store, &bricks, "gv0", &["h4:1", "h5:1", "alias1:1"]),
        )
        .await;
        refused(
            &store,
            "is already in volume gv1 (as h12:1)",
            add(&store, &bricks, "gv0", &["h4:1", "h5:1", "alias12:1"]),
        )
        .await;
        refused(
            &store,
            "bricks h4:1 and alias4:1 are the same brick",
            add(&store, &bricks, "gv0", &["h4:1", "h5:1", "alias4:1"]),
        )
        .await;
        bricks.with("h5:1", |b| b.up = false);
        refused(
            &store,
            "bricks not added to volume gv0: cannot reach brick h5:1",
            add(&store, &bricks, "gv0", &["h4:1", "h5:1", "h6:1"]),
        )
        .await;
        bricks.with("h5:1", |b| b.up = true);
        bricks.with("h6:1", |b| b.bound = Some("old".into()));
        refused(
            &store,
            "brick h6:1 refuses volume gv0: brick belongs to volume old (a brick stays",
            add(&store, &bricks, "gv0", &["h4:1", "h5:1", "h6:1"]),
        )
        .await;
        bricks.with("h6:1", |b| b.bound = None);
        // None of the refusals above bound a brick before the last check.
        assert_eq!(bricks.bound("h7:1"), None);
        // Not while a rebalance runs.
        let run = super::rebalance::RebalanceDoc::new_run(
            "gv0",
            2,
            super::rebalance::now(),
            String::new(),
        );
        store
            .put("rebalance/gv0", run.to_json().as_bytes(), None)
            .await
            .unwrap();
        refused(
            &store,
            "a rebalance of volume gv0 is running",
            add(&store, &bricks, "gv0", &["h7:1", "h8:1", "h9:1"]),
        )
        .await;
        assert_eq!(bricks.bound("h7:1"), None);
        let e = add(&DownStore, &bricks, "gv0", &["h7:1", "h8:1", "h9:1"])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("etcd://10.9.9.9:2379") && e.contains("unreachable"),
            "{e}"
        );
        assert_eq!(bricks.bound("h7:1"), None);
    });
}

#[test]
fn cli_add_brick_and_rebalance_syntax() {
    let VolumeCmd::AddBrick(a) = parse(&["add-brick", "gv0", "a:1", "b:1", "c:1"]).unwrap() else {
        panic!("not add-brick")
    };
    assert_eq!(a.name, "gv0");
    assert_eq!(a.words, ["a:1", "b:1", "c:1"]);
    assert!(parse(&["add-brick", "gv0"]).is_err());
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let parse_words = |w: &[&str]| super::add_brick::parse_words(&words(w));
    assert_eq!(
        parse_words(&["REPLICA", "3", "a:1", "b:1", "c:1"]).unwrap(),
        (Some(3), words(&["a:1", "b:1", "c:1"]))
    );
    assert_eq!(parse_words(&["a:1"]).unwrap(), (None, words(&["a:1"])));
    assert!(parse_words(&["replica", "x", "a:1"])
        .unwrap_err()
        .to_string()
        .contains("bad replica count \"x\""));
    assert!(parse_words(&["replica", "3"])
        .unwrap_err()
        .to_string()
        .contains("no bricks given"));

    use super::rebalance::Action;
    let rebalance = |args: &[&str]| match parse(args) {
        Ok(VolumeCmd::Rebalance(r)) => Ok(r),
        Ok(other) => panic!("not rebalance: {other:?}"),
        Err(e) => Err(e),
    };
    let r = rebalance(&["rebalance", "gv0", "start"]).unwrap();
    assert_eq!(r.name, "gv0");
    assert!(matches!(r.action, Action::Start(s) if !s.foreground && s.log.is_none()));
    let r = rebalance(&["rebalance", "gv0", "start", "--foreground"]).unwrap();
    assert!(matches!(r.action, Action::Start(s) if s.foreground));
    let r = rebalance(&["rebalance", "gv0", "start", "--log", "/tmp/r.log"]).unwrap();
    assert!(
        matches!(r.action, Action::Start(s) if s.log.as_deref() == Some(std::path::Path::new("/tmp/r.log")))
    );
    assert!(matches!(
        rebalance(&["rebalance", "gv0", "status"]).unwrap().action,
        Action::Status
    ));
    assert!(matches!(
        rebalance(&["rebalance", "gv0", "stop"]).unwrap().action,
        Action::Stop
    ));
    assert!(rebalance(&["rebalance", "gv0", "start", "--foreground", "--log", "x"]).is_err());
    assert!(rebalance(&["rebalance", "gv0"]).is_err());
    assert!(rebalance(&["rebalance", "gv0", "fix-layout"]).is_err());
    assert!(rebalance(&["rebalance"]).is_err());
}
