//! The TLS flags every binary takes, and the one decision they lead to.

use std::path::PathBuf;

use crate::role::Role;
use crate::{ca, Files, Mode, Tls, TlsError};

#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// Directory of TLS credentials: the CA bundle ca.pem, and this
    /// process's certificate and key, ROLE.pem and ROLE.key by default
    /// (as `brickfs ca init DIR` and `brickfs ca issue` write them; ROLE is
    /// this program's: brick, client, gateway, heal, admin).
    #[arg(long, global = true, env = "BRICKFS_TLS_DIR", value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
    /// The CA bundle to trust, instead of DIR/ca.pem (during a CA rotation:
    /// the old and the new CA in one file).
    #[arg(long, global = true, env = "BRICKFS_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// This process's certificate chain, instead of DIR/ROLE.pem.
    #[arg(long, global = true, env = "BRICKFS_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// This process's private key, instead of DIR/ROLE.key.
    #[arg(long, global = true, env = "BRICKFS_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Plaintext, unauthenticated connections: anyone who reaches a port
    /// can do anything. For a closed test network only; refused together
    /// with TLS credentials.
    #[arg(long, global = true, env = "BRICKFS_INSECURE")]
    pub insecure: bool,
    /// A scope token of the management API (a file; read again when it
    /// changes, so renewing it needs no restart). A tenant's host must
    /// have one: it reaches only the sub-volumes the token names.
    #[arg(long, global = true, env = "BRICKFS_SCOPE_TOKEN", value_name = "FILE")]
    pub scope_token: Option<PathBuf>,
}

impl TlsArgs {
    /// The files for a process of role `role`, if any were given.
    pub fn files(&self, role: Role) -> Result<Option<Files>, TlsError> {
        let dir = self.tls_dir.as_ref();
        let pick = |given: &Option<PathBuf>, default: String| -> Option<PathBuf> {
            given.clone().or_else(|| dir.map(|d| d.join(default)))
        };
        // A tenant's host mounts with the tenant certificate it was given.
        let own = match (role, dir) {
            (Role::Client, Some(d))
                if !d.join("client.pem").exists() && d.join("tenant.pem").exists() =>
            {
                Role::Tenant
            }
            _ => role,
        };
        let ca = pick(&self.tls_ca, ca::BUNDLE.to_string());
        let cert = pick(&self.tls_cert, format!("{own}.pem"));
        let key = pick(&self.tls_key, format!("{own}.key"));
        match (ca, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(Files { ca, cert, key })),
            _ => Err(TlsError::Usage(
                "give --tls-dir, or all three of --tls-ca, --tls-cert and --tls-key".into(),
            )),
        }
    }

    /// Decides this process's mode for good: TLS with the credentials
    /// given, or plaintext with an explicit --insecure, and nothing else.
    pub fn install(&self, role: Role) -> Result<&'static Mode, TlsError> {
        if let Some(t) = &self.scope_token {
            crate::set_scope_token_file(t.clone());
        }
        let mode = match (self.files(role)?, self.insecure) {
            (Some(_), true) => {
                return Err(TlsError::Usage(
                    "--insecure and TLS credentials together: choose one".into(),
                ))
            }
            (Some(files), false) => {
                let tls = Tls::open(files)?;
                tracing::info!(identity = %tls.me(), "TLS on");
                Mode::Tls(tls)
            }
            (None, true) => {
                tracing::warn!("--insecure: plaintext, unauthenticated connections");
                Mode::Insecure
            }
            (None, false) => {
                return Err(TlsError::Usage(format!(
                    "no TLS credentials: give --tls-dir DIR (BRICKFS_TLS_DIR) holding ca.pem, \
                     {role}.pem and {role}.key (`brickfs ca init DIR`, then `brickfs ca issue \
                     --role {role} {role} --ca DIR`), or --insecure for plaintext"
                )))
            }
        };
        Ok(crate::install(mode))
    }
}
