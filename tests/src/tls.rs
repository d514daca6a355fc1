//! The credentials of the tests: one CA and one certificate per role,
//! made once per target directory (`target/<profile>/test-tls`, beside the
//! binaries, so it goes with `cargo clean`), given to every process the
//! harness starts (`BRICKFS_TLS_DIR`) and used by the tests' own
//! in-process clients, as an admin.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

/// How a process the harness starts is secured.
#[derive(Clone, Debug)]
pub enum Security {
    /// The harness's CA (the default).
    Harness,
    /// Another credentials directory (e.g. a `brickfs dev` state dir's).
    Dir(PathBuf),
    /// `--insecure`.
    Insecure,
}

impl Security {
    pub fn apply(&self, cmd: &mut Command) {
        match self {
            Security::Harness => {
                cmd.env("BRICKFS_TLS_DIR", dir());
            }
            Security::Dir(d) => {
                cmd.env("BRICKFS_TLS_DIR", d);
            }
            Security::Insecure => {
                cmd.env_remove("BRICKFS_TLS_DIR")
                    .env("BRICKFS_INSECURE", "true");
            }
        }
    }
}

/// A command for one of our binaries, with the harness's credentials.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    Security::Harness.apply(&mut cmd);
    cmd
}

/// The harness's credentials directory, made on first use; also makes
/// this test process's in-process clients use the admin certificate.
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let deps = exe.parent().expect("test binary has a parent dir");
        let base = if deps.file_name().is_some_and(|n| n == "deps") {
            deps.parent().expect("deps has a parent")
        } else {
            deps
        };
        let dir = base.join("test-tls");
        if !dir.join(tls::ca::BUNDLE).exists() {
            // Made aside and renamed: test binaries running at once agree on one.
            let tmp = base.join(format!("test-tls.tmp{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            tls::ca::init_with_roles(&tmp, &["127.0.0.1".into(), "localhost".into()])
                .expect("making the tests' CA");
            if std::fs::rename(&tmp, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        // A directory made before scope tokens existed lacks their key.
        if !dir.join(tls::scope::SIGNING_KEY).exists() {
            tls::scope::generate(&dir, "dev").expect("making the tests' scope key");
        }
        let admin = open(&dir, tls::Role::Admin);
        tls::install(tls::Mode::Tls(admin));
        dir
    })
}

/// A tenant host's credentials directory for tenant `tenant`: ca.pem and a
/// certificate of role tenant as tenant.pem / tenant.key (what
/// `--tls-dir` of a tenant's mount holds), made once.
pub fn tenant_dir(tenant: &str) -> PathBuf {
    // Tests of one process issue one at a time (their temp dirs share the pid).
    static ISSUING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ISSUING.lock().unwrap_or_else(|e| e.into_inner());
    let d = dir().join("tenants").join(tenant);
    if !d.join("tenant.pem").exists() {
        let tmp = dir()
            .join("tenants")
            .join(format!(".{tenant}.tmp{}", std::process::id()));
        std::fs::create_dir_all(&tmp).expect("tenant dir");
        std::fs::copy(dir().join(tls::ca::BUNDLE), tmp.join(tls::ca::BUNDLE)).expect("ca.pem");
        tls::ca::issue(
            dir(),
            &tmp,
            &tls::ca::Request {
                role: tls::Role::Tenant,
                name: "tenant".into(),
                hosts: vec!["127.0.0.1".into()],
                from_days: 0,
                days: 3650,
                tenant: Some(tenant.into()),
            },
        )
        .expect("issuing a tenant certificate");
        if std::fs::rename(&tmp, &d).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    d
}

/// The credentials of a host of tenant `tenant`.
pub fn tenant_identity(tenant: &str) -> Arc<tls::Tls> {
    open(&tenant_dir(tenant), tls::Role::Tenant)
}

/// The management API's scope-token signer of the harness's cluster.
pub fn scope_signer() -> tls::scope::Signer {
    tls::scope::Signer::load(&dir().join(tls::scope::SIGNING_KEY)).expect("the tests' scope key")
}

/// The credentials of `role` in `dir`.
pub fn open(dir: &Path, role: tls::Role) -> Arc<tls::Tls> {
    tls::Tls::open(tls::Files {
        ca: dir.join(tls::ca::BUNDLE),
        cert: dir.join(format!("{role}.pem")),
        key: dir.join(format!("{role}.key")),
    })
    .expect("opening test credentials")
}

/// The harness's credentials of `role`, loaded once per test process
/// (raw clients connect often; each load parses the files and starts a
/// reload thread).
pub fn identity(role: tls::Role) -> Arc<tls::Tls> {
    static LOADED: std::sync::Mutex<Vec<(tls::Role, Arc<tls::Tls>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, tls)) = loaded.iter().find(|(r, _)| *r == role) {
        return tls.clone();
    }
    let tls = open(dir(), role);
    loaded.push((role, tls.clone()));
    tls
}
