//! Reading the role and name out of a certificate the handshake verified.

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::role::{Peer, Role, ROLE_URI, TENANT_URI};
use crate::TlsError;

/// The role (from the `urn:brickfs:role:` name) and the common name of
/// `cert`. A certificate of the CA without a role is refused: it was not
/// made by `brickfs ca issue`, and guessing what it may do is not safe.
pub fn of_cert(cert: &CertificateDer<'_>) -> Result<Peer, TlsError> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| TlsError::Identity(format!("unreadable certificate: {e}")))?;
    let name = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_string();
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| TlsError::Identity(format!("bad subject alternative names: {e}")))?;
    let uris: Vec<&str> = san
        .into_iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|n| match n {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    let mut roles = uris.iter().filter_map(|u| u.strip_prefix(ROLE_URI));
    let role: Role = match (roles.next(), roles.next()) {
        (Some(r), None) => r.parse()?,
        (None, _) => {
            return Err(TlsError::Identity(format!(
                "certificate {name:?} carries no brickfs role (issue it with `brickfs ca issue --role`)"
            )))
        }
        (Some(_), Some(_)) => {
            return Err(TlsError::Identity(format!(
                "certificate {name:?} carries more than one role"
            )))
        }
    };
    let tenants: Vec<&str> = uris
        .iter()
        .filter_map(|u| u.strip_prefix(TENANT_URI))
        .collect();
    let tenant = match (role, tenants.as_slice()) {
        (Role::Tenant, [t]) if !t.is_empty() => Some(t.to_string()),
        (Role::Tenant, _) => {
            return Err(TlsError::Identity(format!(
                "tenant certificate {name:?} does not name exactly one tenant"
            )))
        }
        (_, []) => None,
        (_, _) => {
            return Err(TlsError::Identity(format!(
                "certificate {name:?} names a tenant but its role is {role}"
            )))
        }
    };
    Ok(Peer::Certified { role, name, tenant })
}
