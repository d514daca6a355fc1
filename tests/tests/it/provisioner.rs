//! The Kubernetes provisioner (`brickfs-provisioner`, crate `k8s`) against
//! a real control plane (kube-apiserver and the PV binder and expander of
//! kube-controller-manager 1.20.2) and a real storage side (bricks, a
//! volume, the management API, tenants). The provisioner runs as its
//! ServiceAccount with exactly `k8s/deploy/compute/provisioner-rbac.yaml`, so a
//! missing permission fails these tests.
//!
//! Needs the cached Kubernetes binaries (`scripts/k8s-bins.sh`), etcd and
//! kubectl. `cargo test -p tests --test it -- provisioner::`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::api::Api;
use tests::k8s::{rss_kib, ControlPlane, Provisioner, ProvisionerOpts};
use tests::volume::StoreVolume;
use tests::{wait_until, TestCluster};

const BOUND: Duration = Duration::from_secs(60);
const EVENT: Duration = Duration::from_secs(60);
/// The test cluster's volume (`tests::cluster::VOLUME`).
const VOL: &str = "test";

/// A storage side and a control plane, and a token file per tenant.
struct Env<'a> {
    vol: StoreVolume<'a>,
    api: Api,
    admin: String,
    cp: ControlPlane,
}

impl<'a> Env<'a> {
    fn start(cluster: &'a TestCluster) -> Env<'a> {
        let vol = StoreVolume::create(cluster);
        let api = vol.start_api();
        let admin = vol.tenant("admin", &[], true);
        let cp = ControlPlane::start();
        Env {
            vol,
            api,
            admin,
            cp,
        }
    }

    fn api_url(&self) -> String {
        self.api.url()
    }

    /// A tenant's token in a file, as a mounted Secret.
    fn tenant_token_file(&self, tenant: &str) -> PathBuf {
        let token = self.vol.tenant(tenant, &["127.0.0.0/8"], false);
        self.token_file(tenant, &token)
    }

    fn token_file(&self, name: &str, token: &str) -> PathBuf {
        let p = self.cp.root().join(format!("{name}.token"));
        std::fs::write(&p, format!("{token}\n")).expect("writing token file");
        p
    }

    fn provisioner(&self, opts: &ProvisionerOpts) -> Provisioner {
        Provisioner::start(&self.cp, self.vol.cluster.binaries(), opts)
    }

    /// A provisioner acting now (it holds the lease).
    fn acting(&self, opts: &ProvisionerOpts) -> Provisioner {
        let p = self.provisioner(opts);
        p.wait_log(Duration::from_secs(30), "acquired the leader lease");
        p
    }

    /// Every sub-volume of the volume (admin view).
    fn subvolumes(&self) -> Vec<Value> {
        let a = self.api.call(
            "GET",
            &format!("/v1/volumes/{VOL}/subvolumes"),
            &self.admin,
            None,
        );
        assert_eq!(a.status, 200, "listing sub-volumes: {}", a.raw);
        a.body.as_array().cloned().unwrap_or_default()
    }

    /// The sub-volumes labelled with this claim's uid.
    fn subvolumes_of(&self, claim_uid: &str) -> Vec<Value> {
        self.subvolumes()
            .into_iter()
            .filter(|s| s["labels"]["k8s.pvc-uid"] == claim_uid)
            .filter(|s| s["archived"].is_null())
            .collect()
    }

    fn subvolume(&self, name: &str, token: &str) -> Option<Value> {
        let a = self.api.call(
            "GET",
            &format!("/v1/volumes/{VOL}/subvolumes/{name}"),
            token,
            None,
        );
        match a.status {
            200 => Some(a.body),
            404 => None,
            s => panic!("GET sub-volume {name}: {s} {}", a.raw),
        }
    }

    fn claim(&self, ns: &str, name: &str, class: &str, size: &str, annotations: Value) {
        let obj = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations},
            "spec": {
                "storageClassName": class,
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": size}}
            }
        });
        self.cp.apply(&obj.to_string());
    }

    fn class(&self, name: &str, provisioner: &str, params: Value, reclaim: &str, expand: bool) {
        let mut p = json!({"volume": VOL, "server": "127.0.0.1"});
        for (k, v) in params.as_object().expect("params object") {
            p[k] = v.clone();
        }
        let obj = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": provisioner,
            "parameters": p,
            "reclaimPolicy": reclaim,
            "allowVolumeExpansion": expand,
            "mountOptions": ["nfsvers=3", "hard"]
        });
        self.cp.apply(&obj.to_string());
    }

    fn namespace(&self, ns: &str) {
        self.cp.apply(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}).to_string(),
        );
    }

    /// Waits until the claim is Bound; returns (claim, its PV).
    #[track_caller]
    fn bound(&self, ns: &str, name: &str) -> (Value, Value) {
        let c = self.cp.wait_for(BOUND, "pvc", ns, name, "Bound", |c| {
            c["status"]["phase"] == "Bound"
        });
        let pv_name = c["spec"]["volumeName"]
            .as_str()
            .expect("volumeName")
            .to_string();
        let pv = self
            .cp
            .get("pv", "", &pv_name)
            .expect("the bound PV exists");
        (c, pv)
    }

    fn uid(&self, ns: &str, name: &str) -> String {
        let c = self.cp.get("pvc", ns, name).expect("claim exists");
        c["metadata"]["uid"].as_str().expect("uid").to_string()
    }

    fn delete_claim(&self, ns: &str, name: &str) {
        self.cp
            .kubectl_ok(&["delete", "pvc", "-n", ns, name, "--wait=false"]);
    }

    fn resize_claim(&self, ns: &str, name: &str, size: &str) {
        let patch = json!({"spec": {"resources": {"requests": {"storage": size}}}}).to_string();
        self.cp
            .kubectl_ok(&["patch", "pvc", "-n", ns, name, "-p", &patch]);
    }
}

fn opts(env: &Env<'_>, token_file: &std::path::Path) -> ProvisionerOpts {
    ProvisionerOpts::new(&env.api_url(), token_file)
}

#[test]
fn claim_is_bound_to_a_pv_of_its_subvolume() {
    let cluster = TestCluster::start(3);
    let env = Env::start(&cluster);
    let token = env.tenant_token_file("t1");
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], tests::free_port()));
    let mut o = opts(&env, &token);
    o.metrics = Some(metrics);
    let _p = env.acting(&o);
    env.class(
        "brickfs",
        "brickfs.io/nfs",
        json!({"mode": "0770", "uid": "1000", "gid": "1000"}),
        "Delete",
        false,
    );
    env.claim(
        "default",
        "data",
        "brickfs",
        "10Mi",
        json!({"brickfs.io/uid": "2000"}),
    );
    let (claim, pv) = env.bound("default", "data");
    // The create it made shows on its /metrics.
    let scraped = tests::http::request_raw(
        &tests::http::Target::plain(metrics),
        "GET",
        "/metrics",
        None,
        "",
    )
    .raw;
    let creates: f64 = scraped
        .lines()
        .find_map(|l| l.strip_prefix("brickfs_provisioner_api_call_seconds_count{op=\"create\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(creates >= 1.0, "{scraped}");
    assert!(
        scraped.contains("daemon=\"brickfs-provisioner\""),
        "{scraped}"
    );
    let uid = claim["metadata"]["uid"].as_str().unwrap();
    let name = format!("default-data-pvc-{uid}");
    assert_eq!(pv["metadata"]["name"], format!("pvc-{uid}"));
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "brickfs.io/nfs"
    );
    let spec = &pv["spec"];
    assert_eq!(spec["nfs"]["server"], "127.0.0.1");
    assert_eq!(spec["nfs"]["path"], format!("/{VOL}/{name}"));
    assert_eq!(spec["capacity"]["storage"], "10Mi");
    assert_eq!(spec["accessModes"], json!(["ReadWriteMany"]));
    assert_eq!(spec["mountOptions"], json!(["nfsvers=3", "hard"]));
    assert_eq!(spec["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(spec["storageClassName"], "brickfs");
    assert_eq!(spec["claimRef"]["uid"], uid);
    assert_eq!(claim["status"]["capacity"]["storage"], "10Mi");

    let sub = env
        .subvolume(&name, &env.admin)
        .expect("the sub-volume exists");
    assert_eq!(sub["tenant"], "t1");
    assert_eq!(sub["bytes"], 10 << 20);
    assert_eq!(
        (
            sub["mode"].as_u64(),
            sub["uid"].as_u64(),
            sub["gid"].as_u64()
        ),
        (Some(0o770), Some(2000), Some(1000))
    );
    let labels = &sub["labels"];
    assert_eq!(labels["k8s.pvc-uid"], uid);
    assert_eq!(labels["k8s.pv"], format!("pvc-{uid}"));
    assert_eq!(labels["k8s.namespace"], "default");
    assert_eq!(labels["k8s.pvc"], "data");
    env.cp
        .wait_event(EVENT, "default", "data", "ProvisioningSucceeded", &name);
}

#[test]
fn tenants_are_isolated() {
    let cluster = TestCluster::start(3);
    let env = Env::start(&cluster);
    let (t1, t2) = (env.tenant_token_file("t1"), env.tenant_token_file("t2"));
    let _p1 = env.acting(&opts(&env, &t1));
    let mut o2 = opts(&env, &t2);
    o2.name = "t2.example/nfs".into();
    o2.lease_name = "t2-provisioner".into();
    let _p2 = env.acting(&o2);
    env.namespace("ns1");
    env.namespace("ns2");
    env.class("c1", "brickfs.io/nfs", json!({}), "Delete", false);
    env.class("c2", "t2.example/nfs", json!({}), "Delete", false);
    env.claim("ns1", "a", "c1", "1Mi", json!({}));
    env.claim("ns2", "b", "c2", "1Mi", json!({}));
    let (_, pv_a) = env.bound("ns1", "a");
    let (_, pv_b) = env.bound("ns2", "b");
    let name = |pv: &Value| {
        pv["spec"]["nfs"]["path"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string()
    };
    let (a, b) = (name(&pv_a), name(&pv_b));
    assert_eq!(env.subvolume(&a, &env.admin).unwrap()["tenant"], "t1");
    assert_eq!(env.subvolume(&b, &env.admin).unwrap()["tenant"], "t2");
    let tok = |p: &PathBuf| std::fs::read_to_string(p).unwrap().trim().to_string();
    assert!(
        env.subvolume(&a, &tok(&t2)).is_none(),
        "t2 sees t1's sub-volume"
    );
    assert!(
        env.subvolume(&b, &tok(&t1)).is_none(),
        "t1 sees t2's sub-volume"
    );
    assert!(env.subvolume(&a, &tok(&t1)).is_some());
}

#[test]
fn claim_grows() {
    let cluster = TestCluster::start(3);
    let env = Env::start(&cluster);
    let token = env.tenant_token_file("t1");
    let _p = env.acting(&opts(&env, &token));
    env.class("grow", "brickfs.io/nfs", json!({}), "Delete", true);
    env.claim("default", "data", "grow", "10Mi", json!({}));
    let (_, pv) = env.bound("default", "data");
    let pv_name = pv["metadata"]["name"].as_str().unwrap().to_string();
    env.resize_claim("default", "data", "20Mi");
    env.cp
        .wait_for(BOUND, "pvc", "default", "data", "grown", |c| {
            c["status"]["capacity"]["storage"] == "20Mi"
        });
    let pv = env.cp.get("pv", "", &pv_name).unwrap();
    assert_eq!(pv["spec"]["capacity"]["storage"], "20Mi");
    let uid = env.uid("default", "data");
    let subs = env.subvolumes_of(&uid);
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["bytes"], 20 << 20);
    env.cp
        .wait_event(EVENT, "default", "data", "VolumeResized", "20Mi");
}

#[test]
fn reclaim_deletes_archives_or_retains() {
    let cluster = TestCluster::start(3);
    let env = Env::start(&cluster);
    let token = env.tenant_token_file("t1");
    let _p = env.acting(&opts(&env, &token));
    let cases = [
        ("del", json!({"onDelete": "delete"}), "Delete"),
        (
            "arc",
            json!({"onDelete": "archive", "archiveKeep": "1h"}),
            "Delete",
        ),
        ("ret", json!({"onDelete": "retain"}), "Delete"),
        ("keep", json!({}), "Retain"),
    ];
    let mut made = Vec::new();
    for (class, params, policy) in &cases {
        env.class(class, "brickfs.io/nfs", params.clone(), policy, false);
        env.claim("default", class, class, "1Mi", json!({}));
    }
    for (class, _, _) in &cases {
        let (_, pv) = env.bound("default", class);
        let sub = pv["metadata"]["annotations"]["brickfs.io/subvolume"]
            .as_str()
            .unwrap()
            .to_string();
        made.push((pv["metadata"]["name"].as_str().unwrap().to_string(), sub));
        env.delete_claim("default", class);
    }
    let gone = Duration::from_secs(60);
    // delete: the sub-volume and the PV are gone.
    env.cp.wait_gone(gone, "pv", "", &made[0].0);
    assert!(env.subvolume(&made[0].1, &env.admin).is_none());
    // archive: the name is free (the archive is kept), the PV is gone.
    env.cp.wait_gone(gone, "pv", "", &made[1].0);
    assert!(env.subvolume(&made[1].1, &env.admin).is_none());
    // retain: the sub-volume stays, the PV is gone.
    env.cp.wait_gone(gone, "pv", "", &made[2].0);
    assert!(env.subvolume(&made[2].1, &env.admin).is_some());
    // reclaimPolicy Retain: everything stays, the PV Released.
    env.cp
        .wait_for(gone, "pv", "", &made[3].0, "Released", |p| {
            p["status"]["phase"] == "Released"
        });
    assert!(env.subvolume(&made[3].1, &env.admin).is_some());
}

/// Kills the provisioner (SIGKILL, at a failpoint) between every two
/// steps; a restarted one finishes the work with no sub-volume or PV twice
/// or left over.
#[test]
fn killed_at_every_step() {
    let cluster = TestCluster::start(3);
    let env = Env::start(&cluster);
    let token = env.tenant_token_file("t1");
    let plain = opts(&env, &token);
    let at = |point: &str| {
        let mut o = opts(&env, &token);
        o.failpoints = Some(format!("{point}=kill"));
        o
    };
    let died = |p: &Provisioner, point: &str| {
        p.wait_exit(Duration::from_secs(60));
        assert!(
            p.log_has(&format!("failpoint {point}: SIGKILL")),
            "died elsewhere"
        );
    };
    env.class("c", "brickfs.io/nfs", json!({}), "Delete", true);

    // Provisioning, after the sub-volume, before the PV.
    let p = env.provisioner(&at("provision::after_subvolume"));
    env.claim("default", "a", "c", "1Mi", json!({}));
    died(&p, "provision::after_subvolume");
    let uid = env.uid("default", "a");
    assert_eq!(env.subvolumes_of(&uid).len(), 1);
    assert!(env.cp.get("pv", "", &format!("pvc-{uid}")).is_none());
    let p = env.acting(&plain);
    env.bound("default", "a");
    assert_eq!(env.subvolumes_of(&uid).len(), 1, "one sub-volume per claim");
    p.kill();

    // After the PV, before the Event.
    let p = env.provisioner(&at("provision::after_pv"));
    env.claim("default", "b", "c", "1Mi", json!({}));
    died(&p, "provision::after_pv");
    let p = env.acting(&plain);
    env.bound("default", "b");
    assert_eq!(env.subvolumes_of(&env.uid("default", "b")).len(), 1);
    p.kill();

    // Expansion, after the sub-volume, then after the PV.
    for (claim, point) in [("a", "expand::after_subvolume"), ("b", "expand::after_pv")] {
        let p = env.provisioner(&at(point));
        env.resize_claim("default", claim, "2Mi");
        died(&p, point);
        let p = env.acting(&plain);
        env.cp
            .wait_for(BOUND, "pvc", "default", claim, "grown", |c| {
                c["status"]["capacity"]["storage"] == "2Mi"
            });
        let uid = env.uid("default", claim);
        let pv = env.cp.get("pv", "", &format!("pvc-{uid}")).unwrap();
        assert_eq!(pv["spec"]["capacity"]["storage"], "2Mi");
        let subs = env.subvolumes_of(&uid);
        assert_eq!((subs.len(), subs[0]["bytes"].as_u64()), (1, Some(2 << 20)));
        p.kill();
    }

    // Reclaim, after the sub-volume is deleted, before the PV is.
    let uid = env.uid("default", "a");
    let p = env.provisioner(&at("reclaim::after_subvolume"));
    p.wait_log(Duration::from_secs(30), "acquired the leader lease");
    env.delete_claim("default", "a");
    died(&p, "reclaim::after_subvolume");
    assert!(env.subvolumes_of(&uid).is_empty());
    assert!(env.cp.get("pv", "", &format!("pvc-{uid}")).is_some());
    let p = env.acting(&plain);
    env.cp.wait_gone(BOUND, "pv", "", &format!("pvc-{uid}"));
    p.kill();

    // A claim deleted while the provisioner was dead between sub-volume
    // and PV: the sweep removes the sub-volume, and no PV appears.
    let p = env.provisioner(&at("provision::after_subvolume"));
    env.claim("default", "gone", "c", "1Mi", json!({}));
    died(&p, "provision::after_subvolume");
    let uid = env.uid("default", "gone");
    env.delete_claim("default", "gone");
    env.cp.wait_gone(BOUND, "pvc", "default", "gone");
    assert_eq!(env.subvolumes_of(&uid).len(), 1);
    let mut sweeping = plain.clone();
    sweeping.sweep_secs = 1;
    let _p = env.acting(&sweeping);
    assert!(
        wait_until(Duration::from_secs(30), || env
            .subvolumes_of(&uid)
            .is_empty()),
        "the sweep left the sub-volume of a deleted claim"
    );
    assert!(env.cp.get("pv", "", &format!("pvc-{uid}")).is_none());
    // The sweep leaves bound claims' sub-volumes alone.
    assert_eq!(env.subvolumes_of(&env.uid("default", "b")).len(), 1);
}

#[test]
fn one_of_two_replicas_acts() {
    let cluster = TestCluster::start(3);
    let env = Env::start(&cluster);
    let token = env.tenant_token_file("t1");
    let o = opts(&env, &token);
    let a = env.provisioner(&o);
    let b = env.provisioner(&o);
    assert!(
        wait_until(Duration::from_secs(30), || {
            (a.log_has("acquired the leader lease") || b.log_has("acquired the leader lease"))
                && (a.log_has("standing by") || b.log_has("standing by"))
        }),
        "no leader and standby"
    );
    let (leader, standby) = if a.log_has("acquired the leader lease") {
        (a, b)
    } else {
        (b, a)
    };
    assert!(!standby.log_has("acquired the leader lease"), "both lead");
    env.class("c", "brickfs.io/nfs", json!({}), "Delete", false);
    env.claim("default", "one", "c", "1Mi", json!({}));
    env.bound("default", "one");
    assert!(leader.log_has("sub-volume ready"));
    assert!(!standby.log_has("sub-volume ready"), "the standby acted");
    let lease = env
        .cp
        .get("lease", "brickfs-system", "brickfs-provisioner")
        .expect("lease");
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        holder.ends_with(&format!("_{}", leader.pid())),
        "holder {holder}"
    );

    let killed = Instant::now();
    leader.kill();
    standby.wait_log(Duration::from_secs(30), "acquired the leader lease");
    let takeover = killed.elapsed();
    eprintln!("standby took over {takeover:?} after the leader's SIGKILL (lease 3 s)");
    env.claim("default", "two", "c", "1Mi", json!({}));
    env.bound("default", "two");
    let lease = env
        .cp
        .get("lease", "brickfs-system", "brickfs-provisioner")
        .expect("lease");
    assert!(lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .ends_with(&format!("_{}", standby.pid())));
    // A clean stop hands the lease over at once.
    let c = env.provisioner(&o);
    c.wait_log(Duration::from_secs(30), "standing by");
    standby.stop();
    c.wait_log(Duration::from_secs(10), "acquired the leader lease");
}

#[test]
fn refusals_become_events_on_the_claim() {
    let cluster = TestCluster::start(3);
    let env = Env::start(&cluster);
    let token = env.tenant_token_file("t1");
    let _p = env.acting(&opts(&env, &token));
    env.class(
        "color",
        "brickfs.io/nfs",
        json!({"color": "red"}),
        "Delete",
        false,
    );
    env.class(
        "mode",
        "brickfs.io/nfs",
        json!({"mode": "999"}),
        "Delete",
        false,
    );
    env.class(
        "novol",
        "brickfs.io/nfs",
        json!({"volume": "nope"}),
        "Delete",
        false,
    );
    env.class(
        "fixed",
        "brickfs.io/nfs",
        json!({"pathPattern": "shared"}),
        "Delete",
        false,
    );
    env.class("ok", "brickfs.io/nfs", json!({}), "Delete", false);
    env.claim("default", "color", "color", "1Mi", json!({}));
    env.claim("default", "mode", "mode", "1Mi", json!({}));
    env.claim("default", "novol", "novol", "1Mi", json!({}));
    env.claim("default", "huge", "ok", "1000Pi", json!({}));
    env.claim(
        "default",
        "badann",
        "ok",
        "1Mi",
        json!({"brickfs.io/mode": "rwx"}),
    );
    env.claim("default", "first", "fixed", "1Mi", json!({}));
    env.bound("default", "first");
    env.claim("default", "second", "fixed", "1Mi", json!({}));
    env.cp
        .wait_event(EVENT, "default", "color", "BadParameter", "\"color\"");
    env.cp
        .wait_event(EVENT, "default", "mode", "BadParameter", "\"mode\"");
    env.cp.wait_event(
        EVENT,
        "default",
        "badann",
        "BadParameter",
        "brickfs.io/mode",
    );
    env.cp
        .wait_event(EVENT, "default", "novol", "UnknownVolume", "nope");
    env.cp.wait_event(EVENT, "default", "huge", "PoolFull", "");
    env.cp
        .wait_event(EVENT, "default", "second", "NameCollision", "shared");
    for c in ["color", "mode", "novol", "huge", "badann", "second"] {
        assert_eq!(
            env.cp.get("pvc", "default", c).unwrap()["status"]["phase"],
            "Pending"
        );
    }

    // A refused token.
    let bad = env.token_file(
        "bad",
        "bfs1.t1.0000000000000000000000000000000000000000000000000000000000000000",
    );
    let mut o = opts(&env, &bad);
    o.name = "bad.example/nfs".into();
    o.lease_name = "bad".into();
    let _b = env.acting(&o);
    env.class("badtoken", "bad.example/nfs", json!({}), "Delete", false);
    env.claim("default", "badtoken", "badtoken", "1Mi", json!({}));
    env.cp
        .wait_event(EVENT, "default", "badtoken", "TokenRefused", "");
}

/// Latency and footprint, printed (`cargo test -p tests --test it --
/// --ignored provisioner::measure --nocapture`); the numbers are in
/// docs/k8s.md.
#[test]
#[ignore]
fn measure() {
    let cluster = TestCluster::start(3);
    let env = Env::start(&cluster);
    let token = env.tenant_token_file("t1");
    let p = env.acting(&opts(&env, &token));
    env.class("c", "brickfs.io/nfs", json!({}), "Delete", false);
    let mut lat = Vec::new();
    for i in 0..20 {
        let name = format!("seq-{i}");
        let t = Instant::now();
        env.claim("default", &name, "c", "1Mi", json!({}));
        env.cp
            .wait_for(BOUND, "pvc", "default", &name, "Bound", |c| {
                c["status"]["phase"] == "Bound"
            });
        lat.push(t.elapsed());
    }
    lat.sort();
    eprintln!(
        "MEASURE PVC-to-Bound of 20 one by one: median {:?}, worst {:?}",
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    let rss_idle = rss_kib(p.pid());
    let mut docs = String::new();
    for i in 0..100 {
        let obj = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": format!("burst-{i}"), "namespace": "default"},
            "spec": {"storageClassName": "c", "accessModes": ["ReadWriteMany"],
                     "resources": {"requests": {"storage": "1Mi"}}}
        });
        docs.push_str(&format!("---\n{obj}\n"));
    }
    let t = Instant::now();
    env.cp.apply(&docs);
    let mut peak = 0;
    let all = wait_until(Duration::from_secs(600), || {
        peak = peak.max(rss_kib(p.pid()).unwrap_or(0));
        env.cp
            .list("pvc", "default")
            .iter()
            .filter(|c| {
                c["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("burst-"))
            })
            .filter(|c| c["status"]["phase"] == "Bound")
            .count()
            == 100
    });
    assert!(all, "100 claims not all Bound in 10 minutes");
    eprintln!(
        "MEASURE 100 claims at once: all Bound after {:?}",
        t.elapsed()
    );
    eprintln!(
        "MEASURE provisioner RSS: {:?} KiB after 20 claims, peak {peak} KiB during 100, {:?} KiB after",
        rss_idle,
        rss_kib(p.pid())
    );
}

/// The whole path a pod's volume takes: a claim becomes a PV, and the real
/// Linux kernel NFS client in a qemu guest (standing in for kubelet, from
/// the network registered for the tenant) mounts the PV's nfs source with
/// the PV's mountOptions, exactly as kubelet's `mount -t nfs -o …` would:
/// df shows the claim's size, writing past it is EDQUOT, a lock works (no
/// nolock in the options), freeing works.
#[test]
fn the_kernel_client_mounts_the_pv_as_kubelet_does_and_sees_its_quota() {
    use tests::kernel_nfs::{self, Net};
    kernel_nfs::prepare();
    let cluster = TestCluster::start(3);
    let env = Env::start(&cluster);
    let net = Net::up();
    let token = env.vol.tenant("compute-k", &[&net.guest_network()], false);
    let token_file = env.token_file("compute-k", &token);
    let listen = format!("{}:0", net.host).parse().expect("address");
    let portmap = format!("{}:111", net.host);
    let gw =
        cluster.start_gateway_from_store_on(&env.vol.url, listen, &["--portmap-listen", &portmap]);
    let port = gw.port();
    let class = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "kernel"},
        "provisioner": "brickfs.io/nfs",
        "parameters": {"volume": VOL, "server": net.host, "mode": "0777"},
        "reclaimPolicy": "Delete",
        "mountOptions": ["vers=3", "proto=tcp", "mountproto=tcp", "hard",
                         format!("port={port}"), format!("mountport={port}")]
    });
    env.cp.apply(&class.to_string());
    let _p = env.acting(&opts(&env, &token_file));
    env.namespace("apps");
    env.claim("apps", "data", "kernel", "16Mi", json!({}));
    let (_, pv) = env.bound("apps", "data");
    let nfs = &pv["spec"]["nfs"];
    let server = nfs["server"].as_str().expect("nfs.server");
    let path = nfs["path"].as_str().expect("nfs.path");
    let options: Vec<String> = pv["spec"]["mountOptions"]
        .as_array()
        .expect("the PV carries the class's mountOptions")
        .iter()
        .map(|o| o.as_str().expect("option").to_string())
        .collect();
    assert_eq!(server, net.host);
    let run = kernel_nfs::check_pv(&net, server, path, &options, 16 << 20, cluster.root());
    run.assert_passed(
        &[
            "df size = the limit",
            "writing past the limit fails with EDQUOT",
            "fcntl lock on the PV",
        ],
        gw.log(),
    );
}
