//! `k8s/deploy/` against a real API server: every kustomization builds
//! (`kubectl kustomize`), and a real Kubernetes 1.20.2 control plane
//! (`scripts/k8s-control-plane.sh`) accepts every object of it in a
//! server-side dry run, the examples that are not part of a kustomization
//! too. A refusal fails the test with kubectl's own words.
//!
//! What that covers: API versions this server serves (1.20: no policy/v1,
//! no mixed-protocol LoadBalancer Services), the API server's validation
//! and defaulting of every object, and, because a 1.20 server does no
//! field validation of its own, kubectl's check of every field against the
//! server's OpenAPI schema (a misspelt field is refused, not dropped).
//! Namespaces are created for real first: a dry-run object in a namespace
//! that does not exist is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent dir")
        .to_path_buf()
}

fn deploy(rel: &str) -> String {
    workspace()
        .join("k8s/deploy")
        .join(rel)
        .display()
        .to_string()
}

/// The kustomizations, in the order a user applies them.
const KUSTOMIZATIONS: &[&str] = &["storage", "compute", "compute/example"];

/// Manifests outside any kustomization, applied by hand.
const EXAMPLES: &[&str] = &[
    "storage/local-pvs.example.yaml",
    "compute/token-secret.example.yaml",
];

/// Made for real before the dry runs.
const NAMESPACES: &[&str] = &["storage/namespace.yaml", "compute/example/namespace.yaml"];

fn shown(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A control plane in a temp dir, stopped on drop (also when the test
/// fails) by the script, which stops only the pids it recorded.
struct ControlPlane {
    dir: Option<tempfile::TempDir>,
    cp: PathBuf,
    kubeconfig: PathBuf,
}

impl ControlPlane {
    fn start() -> ControlPlane {
        let base = std::env::var_os("BRICKFS_TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("brickfs-k8s-deploy-")
            .tempdir_in(&base)
            .expect("creating temp dir");
        let cp = dir
            .path()
            .canonicalize()
            .expect("canonical temp dir")
            .join("cp");
        // The guard exists before the script runs: a start that fails
        // half-way is stopped too.
        let plane = ControlPlane {
            dir: Some(dir),
            kubeconfig: cp.join("kubeconfig"),
            cp,
        };
        let out = Command::new(workspace().join("scripts/k8s-control-plane.sh"))
            .arg("start")
            .arg(&plane.cp)
            .stdin(Stdio::null())
            .output()
            .expect("running scripts/k8s-control-plane.sh");
        assert!(
            out.status.success(),
            "{}",
            shown("the control plane did not start", &out)
        );
        plane
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running kubectl")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "{}",
            shown(&format!("kubectl {}", args.join(" ")), &out)
        );
        String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let out = Command::new(workspace().join("scripts/k8s-control-plane.sh"))
            .arg("stop")
            .arg(&self.cp)
            .stdin(Stdio::null())
            .output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!(
                "stopping the control plane in {}: {out:?}",
                self.cp.display()
            );
        }
        if std::thread::panicking() {
            for name in ["kube-apiserver", "etcd"] {
                let log = self.cp.join(format!("{name}.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!("--- last lines of {}", log.display());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
            if std::env::var_os("BRICKFS_TEST_KEEP").is_some() {
                if let Some(dir) = self.dir.take() {
                    eprintln!("kept {}", dir.keep().display());
                }
            }
        }
    }
}

/// The objects of a multi-document YAML stream, as (kind, name).
fn objects(yaml: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for doc in yaml.split("\n---\n") {
        let top = |key: &str| {
            doc.lines()
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        };
        // `metadata:` is followed by its fields, of which `name:` is the
        // one at two spaces of indent.
        let name = doc
            .split_once("\nmetadata:\n")
            .and_then(|(_, rest)| {
                rest.lines()
                    .take_while(|l| l.starts_with(' '))
                    .find_map(|l| l.strip_prefix("  name: "))
            })
            .map(|n| n.trim().to_string());
        if let (Some(kind), Some(name)) = (top("kind: "), name) {
            found.push((kind, name));
        }
    }
    found
}

/// The items of `kubectl apply -o json`: one object or a List of them.
fn items(json: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(json).expect("kubectl -o json prints JSON");
    match v.get("items") {
        Some(Value::Array(items)) if v["kind"] == "List" => items.clone(),
        _ => vec![v],
    }
}

fn find<'a>(items: &'a [Value], kind: &str, name: &str) -> &'a Value {
    items
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the server's answer has no {kind} {name}"))
}

#[test]
fn deploy_manifests_are_accepted_by_the_api_server() {
    let cp = ControlPlane::start();

    let mut built = Vec::new();
    for dir in KUSTOMIZATIONS {
        let yaml = cp.kubectl_ok(&["kustomize", &deploy(dir)]);
        let objs = objects(&yaml);
        assert!(!objs.is_empty(), "kubectl kustomize {dir} made no objects");
        built.push((dir, objs));
    }

    for ns in NAMESPACES {
        cp.kubectl_ok(&["apply", "-f", &deploy(ns)]);
    }

    let mut accepted = Vec::new();
    for (dir, objs) in &built {
        let json = cp.kubectl_ok(&[
            "apply",
            "--dry-run=server",
            "-o",
            "json",
            "-k",
            &deploy(dir),
        ]);
        let items = items(&json);
        // Each object the kustomization makes, accepted by name: kubectl
        // stops at the first refusal (failing above), so this catches only
        // an object it skipped.
        for (kind, name) in objs {
            find(&items, kind, name);
        }
        accepted.push((*dir, items));
    }
    for ex in EXAMPLES {
        cp.kubectl_ok(&["apply", "--dry-run=server", "-f", &deploy(ex)]);
    }

    // What the manifests promise users, as the server stored it.
    let storage = &accepted[0].1;
    let compute = &accepted[1].1;
    let class = find(compute, "StorageClass", "brickfs-nfs");
    assert_eq!(class["provisioner"], "brickfs.io/nfs");
    // The server's address comes from kustomization.yaml's brickfs-endpoints.
    let endpoints = compute
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("brickfs-endpoints"))
        })
        .expect("the brickfs-endpoints ConfigMap");
    assert_eq!(class["parameters"]["server"], endpoints["data"]["server"]);
    assert_eq!(
        class["mountOptions"],
        serde_json::json!(["vers=3", "proto=tcp", "hard"]),
        "the gateway serves NLM: no nolock"
    );
    for svc in ["brickfs-nfs", "brickfs-nfs-udp"] {
        assert_eq!(
            find(storage, "Service", svc)["spec"]["externalTrafficPolicy"],
            "Local",
            "{svc} must keep clients' addresses: tenants are told apart by them"
        );
    }
    let bricks = find(storage, "StatefulSet", "brickd");
    assert_eq!(bricks["spec"]["replicas"], 3);
    let caps = &bricks["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        ["capabilities"]["add"];
    assert!(
        caps.as_array()
            .is_some_and(|c| c.iter().any(|c| c == "SYS_ADMIN")),
        "bricks need CAP_SYS_ADMIN for trusted.* xattrs: {caps}"
    );
}
