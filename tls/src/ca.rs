//! The cluster CA (`brickfs ca init`) and the certificates it issues
//! (`brickfs ca issue`): ECDSA P-256 keys, a role in every leaf, and
//! files written whole (temp file + rename), so a process reloading them
//! never reads half of one.
//!
//! Layout of a CA directory: `ca.crt` and `ca.key` are the CA itself;
//! `ca.pem` is the bundle processes trust (at first the CA alone; during a
//! rotation the old and the new CA side by side). A leaf is `NAME.pem`
//! (certificate, then the CA's) and `NAME.key`.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::role::{Role, ROLE_URI, TENANT_URI};
use crate::TlsError;

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const BUNDLE: &str = "ca.pem";

/// What `issue` makes.
#[derive(Clone, Debug)]
pub struct Request {
    pub role: Role,
    pub name: String,
    /// Host names and addresses the certificate also answers to (for
    /// clients that check them, such as kubelet's or a browser's HTTPS).
    pub hosts: Vec<String>,
    /// Valid from this many days from now (negative: in the past).
    pub from_days: i64,
    pub days: u32,
    /// Role tenant: whose host it is (required for that role, refused for
    /// the others).
    pub tenant: Option<String>,
}

/// Makes a new CA in `dir` (created if missing), and the management API's
/// scope-token key for `cluster` (`scope.rs`). Refuses to overwrite a CA.
pub fn init(dir: &Path, name: &str, cluster: &str, days: u32) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| TlsError::io(dir, e))?;
    for f in [CA_CERT, CA_KEY] {
        let p = dir.join(f);
        if p.exists() {
            return Err(TlsError::Usage(format!(
                "{} exists: a CA is already there (remove it first to make a new one)",
                p.display()
            )));
        }
    }
    let key = KeyPair::generate().map_err(TlsError::Issue)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(TlsError::Issue)?;
    params.distinguished_name = subject(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(days));
    let cert = params.self_signed(&key).map_err(TlsError::Issue)?;
    write_whole(&dir.join(CA_KEY), key.serialize_pem().as_bytes(), true)?;
    write_whole(&dir.join(CA_CERT), cert.pem().as_bytes(), false)?;
    let bundle = dir.join(BUNDLE);
    if !bundle.exists() {
        write_whole(&bundle, cert.pem().as_bytes(), false)?;
    }
    if !dir.join(crate::scope::SIGNING_KEY).exists() {
        crate::scope::generate(dir, cluster)?;
    }
    Ok(())
}

/// Issues a leaf certificate signed by the CA in `ca_dir`, written to
/// `out/NAME.pem` and `out/NAME.key`. Returns the certificate's path.
pub fn issue(ca_dir: &Path, out: &Path, req: &Request) -> Result<PathBuf, TlsError> {
    check_name(&req.name)?;
    let ca_pem = read_string(&ca_dir.join(CA_CERT))?;
    let ca_key = KeyPair::from_pem(&read_string(&ca_dir.join(CA_KEY))?).map_err(TlsError::Issue)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(TlsError::Issue)?;

    let key = KeyPair::generate().map_err(TlsError::Issue)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(TlsError::Issue)?;
    params.distinguished_name = subject(&req.name);
    let role_uri = format!("{ROLE_URI}{}", req.role);
    params
        .subject_alt_names
        .push(SanType::URI(role_uri.try_into().map_err(TlsError::Issue)?));
    match (req.role, &req.tenant) {
        (Role::Tenant, Some(t)) => {
            check_name(t)?;
            let uri = format!("{TENANT_URI}{t}");
            params
                .subject_alt_names
                .push(SanType::URI(uri.try_into().map_err(TlsError::Issue)?));
        }
        (Role::Tenant, None) => {
            return Err(TlsError::Usage(
                "a tenant certificate names its tenant: give --tenant".into(),
            ))
        }
        (_, Some(_)) => return Err(TlsError::Usage("--tenant is for --role tenant only".into())),
        (_, None) => {}
    }
    for host in &req.hosts {
        params.subject_alt_names.push(match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.clone().try_into().map_err(TlsError::Issue)?),
        });
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Most processes are both: a brick serves, the gateway calls bricks,
    // the API serves and calls bricks.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now + Duration::days(req.from_days) - Duration::minutes(5);
    params.not_after = now + Duration::days(req.from_days) + Duration::days(i64::from(req.days));
    let cert = params.signed_by(&key, &issuer).map_err(TlsError::Issue)?;

    std::fs::create_dir_all(out).map_err(|e| TlsError::io(out, e))?;
    let cert_path = out.join(format!("{}.pem", req.name));
    // The key first: a reloader that sees the new certificate before its
    // key fails the pair check and keeps the old pair until both are there.
    write_whole(
        &out.join(format!("{}.key", req.name)),
        key.serialize_pem().as_bytes(),
        true,
    )?;
    let chain = format!("{}{}", cert.pem(), ca_pem);
    write_whole(&cert_path, chain.as_bytes(), false)?;
    Ok(cert_path)
}

fn subject(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "brickfs");
    dn.push(DnType::CommonName, name);
    dn
}

/// A name becomes a file name: keep it to one plain path component.
fn check_name(name: &str) -> Result<(), TlsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(TlsError::Usage(format!(
            "bad certificate name {name:?}: 1 to 64 of a-z, A-Z, 0-9, '-', '_', '.', not starting with '.'"
        )))
    }
}

fn read_string(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|e| TlsError::io(path, e))
}

/// Writes `bytes` to `path` through a temp file and a rename.
pub fn write_whole(path: &Path, bytes: &[u8], secret: bool) -> Result<(), TlsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(|e| TlsError::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| TlsError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TlsError::io(path, e))
}

/// A CA and one certificate per role named after its role, in `dir`
/// (`brickfs dev`, the test clusters): what `--tls-dir` finds by default.
pub fn init_with_roles(dir: &Path, hosts: &[String]) -> Result<(), TlsError> {
    init(dir, "brickfs dev CA", "dev", 3650)?;
    for role in crate::role::ALL_ROLES {
        if role == Role::Tenant {
            // Tenants are named: `ca issue --role tenant --tenant T`.
            continue;
        }
        issue(
            dir,
            dir,
            &Request {
                role,
                name: role.as_str().to_string(),
                hosts: hosts.to_vec(),
                from_days: 0,
                days: 3650,
                tenant: None,
            },
        )?;
    }
    Ok(())
}
