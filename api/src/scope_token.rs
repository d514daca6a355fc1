//! `POST /v1/volumes/{vol}/scope-token`: a token that lets the caller's
//! hosts (certificates of role tenant, for the same tenant) reach its
//! sub-volumes on the bricks, and nothing else. Signed with the API's key;
//! bricks verify it with the public half (`tls::scope`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use subvolume::State as SubState;
use tls::scope::ScopeRoot;

use crate::caller::Caller;
use crate::routes::parse;
use crate::{ApiError, AppState};

/// A token lives this long unless asked otherwise: hosts renew it (the
/// mount reads its file again) well before.
const DEFAULT_TTL_SECS: u64 = 24 * 3600;
const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Body {
    /// The sub-volumes to include; all the caller's ready ones if absent.
    #[serde(default)]
    subvolumes: Option<Vec<String>>,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

#[derive(Serialize)]
struct Issued {
    token: String,
    tenant: String,
    volume: String,
    subvolumes: Vec<String>,
    /// Unix seconds.
    expires: u64,
}

pub async fn issue(
    State(st): State<Arc<AppState>>,
    Path(vol): Path<String>,
    Caller(t): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: Body = if body.is_empty() {
        Body::default()
    } else {
        parse(&body)?
    };
    let Some(signer) = st.scope_signer.as_ref() else {
        return Err(ApiError::Forbidden(
            "this API has no scope signing key (--scope-signing-key): it hands out no scope tokens"
                .into(),
        ));
    };
    let ttl = b.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    if ttl == 0 || ttl > MAX_TTL_SECS {
        return Err(ApiError::BadRequest(format!(
            "ttl_secs must be 1 to {MAX_TTL_SECS}"
        )));
    }
    let m = st.volumes.get(&vol).await?;
    // Only the caller's own, even for an admin token: a scope is one
    // tenant's (the bricks match it against the host certificate's).
    let own = m.list(Some(t.name.as_str())).await?;
    let chosen: Vec<_> = match &b.subvolumes {
        None => own.iter().filter(|s| s.state == SubState::Ready).collect(),
        Some(names) => {
            let mut chosen = Vec::new();
            for n in names {
                match own.iter().find(|s| &s.name == n) {
                    Some(s) if s.state == SubState::Ready => chosen.push(s),
                    _ => {
                        return Err(ApiError::NotFound {
                            volume: vol.clone(),
                            name: n.clone(),
                        })
                    }
                }
            }
            chosen
        }
    };
    let roots: Vec<ScopeRoot> = chosen
        .iter()
        .filter_map(|s| {
            Some(ScopeRoot {
                name: s.name.clone(),
                id: s.id.clone()?,
                squash: s.settings.squashes_root(),
            })
        })
        .collect();
    if roots.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "tenant {} has no ready sub-volume in volume {vol} to put in a scope token",
            t.name
        )));
    }
    if roots.len() > tls::scope::MAX_ROOTS {
        return Err(ApiError::BadRequest(format!(
            "at most {} sub-volumes in one token",
            tls::scope::MAX_ROOTS
        )));
    }
    let now = tls::scope::now();
    let subvolumes = roots.iter().map(|r| r.name.clone()).collect();
    let token = signer
        .issue(&t.name, &vol, roots, now, ttl)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    tracing::info!(tenant = %t.name, volume = %vol, ?subvolumes, ttl, "scope token issued");
    Ok(Json(Issued {
        token,
        tenant: t.name,
        volume: vol,
        subvolumes,
        expires: now + ttl,
    })
    .into_response())
}
