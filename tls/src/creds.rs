//! One process's credentials (the CA bundle it trusts, its certificate and
//! key), the rustls configurations made from them, and their reload: the
//! files are read again every [`RELOAD_EVERY`] and, when they changed and
//! load, new handshakes use them; established connections keep theirs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::role::{Peer, Role};
use crate::verify::RoleVerifier;
use crate::{identity, Alpn, TlsError};

/// How often the files are looked at for a rotation.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct Files {
    /// PEM bundle of the CAs whose certificates are accepted.
    pub ca: PathBuf,
    /// PEM chain: this process's certificate first.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The configurations of one version of the files.
pub(crate) struct Loaded {
    pub server: Arc<ServerConfig>,
    clients: HashMap<(Role, Alpn), Arc<ClientConfig>>,
    pub me: Peer,
    fingerprint: blake3::Hash,
}

impl Loaded {
    pub fn client(&self, role: Role, alpn: Alpn) -> Option<Arc<ClientConfig>> {
        self.clients.get(&(role, alpn)).cloned()
    }
}

/// What a process connects to, and with which protocol name.
const CLIENT_KINDS: [(Role, Alpn); 4] = [
    (Role::Brick, Alpn::BrickRpc),
    (Role::Brick, Alpn::BrickData),
    (Role::Store, Alpn::Http),
    (Role::Api, Alpn::Http),
];

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::io(path, e))
}

fn fingerprint(files: &Files) -> Result<blake3::Hash, TlsError> {
    let mut h = blake3::Hasher::new();
    for p in [&files.ca, &files.cert, &files.key] {
        h.update(&read(p)?);
        h.update(b"\0");
    }
    Ok(h.finalize())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem(path.to_path_buf(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Pem(
            path.to_path_buf(),
            "no certificate in it".into(),
        ));
    }
    Ok(certs)
}

pub(crate) fn load(files: &Files) -> Result<Loaded, TlsError> {
    let fingerprint = fingerprint(files)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certs(&files.ca)? {
        roots
            .add(ca)
            .map_err(|e| TlsError::Pem(files.ca.clone(), e.to_string()))?;
    }
    let roots = Arc::new(roots);
    let chain = certs(&files.cert)?;
    let key_bytes = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|e| TlsError::Pem(files.key.clone(), e.to_string()))?;
    let me = identity::of_cert(&chain[0])?;

    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Rustls)?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(TlsError::Rustls)?;
    server.alpn_protocols = Alpn::ALL.iter().map(|a| a.name().to_vec()).collect();

    let mut clients = HashMap::new();
    for (role, alpn) in CLIENT_KINDS {
        let verifier = RoleVerifier::new(roots.clone(), provider.clone(), role);
        let mut client = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::Rustls)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(TlsError::Rustls)?;
        client.alpn_protocols = vec![alpn.name().to_vec()];
        clients.insert((role, alpn), Arc::new(client));
    }
    Ok(Loaded {
        server: Arc::new(server),
        clients,
        me,
        fingerprint,
    })
}

/// The credentials of this process, as of the last good reload.
pub struct Tls {
    files: Files,
    current: RwLock<Arc<Loaded>>,
}

impl Tls {
    /// Loads the files (failing if they do not), then keeps reloading them
    /// from a thread of its own (it needs no runtime).
    pub fn open(files: Files) -> Result<Arc<Tls>, TlsError> {
        let loaded = load(&files)?;
        let tls = Arc::new(Tls {
            files,
            current: RwLock::new(Arc::new(loaded)),
        });
        let weak = Arc::downgrade(&tls);
        std::thread::Builder::new()
            .name("tls-reload".into())
            .spawn(move || loop {
                std::thread::sleep(RELOAD_EVERY);
                match weak.upgrade() {
                    Some(tls) => tls.reload(),
                    None => return,
                }
            })
            .map_err(|e| TlsError::Config(format!("starting the reload thread: {e}")))?;
        Ok(tls)
    }

    pub(crate) fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn me(&self) -> Peer {
        self.current().me.clone()
    }

    /// The client configuration for servers of role `server`, as of now.
    pub fn client_config(&self, server: Role, alpn: Alpn) -> Option<Arc<ClientConfig>> {
        self.current().client(server, alpn)
    }

    pub fn files(&self) -> &Files {
        &self.files
    }

    /// Loads the files again if they changed; a broken set (a key that is
    /// not the certificate's, half a rotation) keeps the old one in use.
    pub fn reload(&self) {
        let old = self.current();
        match fingerprint(&self.files) {
            Ok(f) if f == old.fingerprint => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "TLS credentials unreadable; keeping the ones in use");
                return;
            }
        }
        match load(&self.files) {
            Ok(new) => {
                tracing::info!(identity = %new.me, cert = %self.files.cert.display(),
                    "TLS credentials reloaded; new connections use them");
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(new);
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS credentials changed but do not load; keeping the ones in use")
            }
        }
    }
}
