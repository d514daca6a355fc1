//! Who is calling: the certificate of the connection, then the tenant
//! token of the request, and that the two agree.

use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use tenant::Tenant;
use tls::{Peer, Role};

use crate::listen::Remote;
use crate::{ApiError, AppState};

/// The tenant whose token came with the request, over a connection whose
/// certificate may call the API for it.
pub struct Caller(pub Tenant);

/// Certificates that may call the API at all: the compute clusters'
/// provisioners, tenants' hosts (fetching their scope tokens) and admins.
/// A brick's, a gateway's or a mount's key is no key to the API, whatever
/// token comes with it.
fn may_call(role: Role) -> bool {
    matches!(role, Role::Provisioner | Role::Tenant | Role::Admin)
}

/// The certificate's part of the check, before any token is looked at.
fn check_certificate(peer: &Peer) -> Result<(), ApiError> {
    match peer.role() {
        None => Ok(()),
        Some(role) if may_call(role) => Ok(()),
        Some(role) => Err(ApiError::Forbidden(format!(
            "the connection's certificate is {peer}; a {role} certificate may not call the \
             management API (provisioner, tenant or admin certificates may)"
        ))),
    }
}

/// A tenant's certificate speaks for its tenant only: another tenant's
/// token (or an admin's) over it is refused, so a leaked token is of no use
/// from another tenant's hosts.
fn check_agreement(peer: &Peer, tenant: &Tenant) -> Result<(), ApiError> {
    match peer.tenant() {
        Some(t) if t != tenant.name => Err(ApiError::Forbidden(format!(
            "the certificate is tenant {t}'s but the token is {}'s",
            if tenant.admin {
                "an admin".to_string()
            } else {
                format!("tenant {}", tenant.name)
            }
        ))),
        _ => Ok(()),
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Caller, ApiError> {
        // Every connection comes through `listen`, which names its peer; a
        // request without one was not served by it, and gets nothing.
        let peer = parts
            .extensions
            .get::<ConnectInfo<Remote>>()
            .map(|c| c.0.peer.clone())
            .ok_or_else(|| ApiError::Forbidden("a request of unknown origin".into()))?;
        check_certificate(&peer)?;
        let tenant = tenant::authenticate(state.store.as_ref(), bearer(&parts.headers)?).await?;
        check_agreement(&peer, &tenant)?;
        tracing::debug!(tenant = %tenant.name, %peer, "authenticated");
        Ok(Caller(tenant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(role: Role, tenant: Option<&str>) -> Peer {
        Peer::Certified {
            role,
            name: "x".into(),
            tenant: tenant.map(str::to_string),
        }
    }

    fn tenant(name: &str, admin: bool) -> Tenant {
        Tenant {
            name: name.into(),
            admin,
            networks: Vec::new(),
            token_hash: String::new(),
            created: 0,
        }
    }

    #[test]
    fn only_callers_roles_pass() {
        for role in tls::role::ALL_ROLES {
            let ok = check_certificate(&cert(role, None)).is_ok();
            assert_eq!(ok, may_call(role), "{role}");
        }
        assert!(check_certificate(&Peer::Insecure).is_ok());
        assert!(check_certificate(&cert(Role::Brick, None)).is_err());
        assert!(check_certificate(&cert(Role::Gateway, None)).is_err());
        assert!(check_certificate(&cert(Role::Client, None)).is_err());
    }

    #[test]
    fn a_tenant_certificate_takes_only_its_tenants_token() {
        let a = cert(Role::Tenant, Some("a"));
        assert!(check_agreement(&a, &tenant("a", false)).is_ok());
        assert!(check_agreement(&a, &tenant("b", false)).is_err());
        assert!(check_agreement(&a, &tenant("admin", true)).is_err());
        let p = cert(Role::Provisioner, None);
        assert!(check_agreement(&p, &tenant("b", false)).is_ok());
    }
}
