//! The endpoints of `docs/api.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use subvolume::{CreateReq, Manager, Settings, State as SubState, SubvolError, Subvolume};
use tenant::Tenant;

use crate::caller::Caller;
use crate::{ApiError, AppState};

type Shared = State<Arc<AppState>>;
type ApiResult<T> = Result<T, ApiError>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"ok": true})) }),
        )
        .route("/v1/whoami", get(whoami))
        .route("/v1/volumes/{vol}/subvolumes", get(list).post(create))
        .route(
            "/v1/volumes/{vol}/subvolumes/{name}",
            get(info).patch(resize).delete(delete),
        )
        .route("/v1/volumes/{vol}/subvolumes/{name}/archive", post(archive))
        .route(
            "/v1/volumes/{vol}/scope-token",
            post(crate::scope_token::issue),
        )
        .fallback(|uri: Uri| async move { ApiError::NoRoute(uri.path().to_string()) })
        .layer(axum::middleware::from_fn(crate::trace::per_request))
        .with_state(state)
}

fn visible(caller: &Tenant, sub: &Subvolume) -> bool {
    caller.admin || sub.settings.tenant.as_deref() == Some(caller.name.as_str())
}

pub(crate) fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("request body: {e}")))
}

/// A sub-volume as the API shows it.
#[derive(Serialize)]
struct View<'a> {
    #[serde(flatten)]
    sub: &'a Subvolume,
    /// The path to mount from the NFS gateway.
    export: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct Usage {
    bytes: u64,
    inodes: u64,
}

fn view(sub: &Subvolume, usage: Option<Option<Usage>>) -> View<'_> {
    View {
        export: format!("/{}{}", sub.volume, sub.path),
        sub,
        usage,
    }
}

fn not_found(m: &Manager, name: &str) -> ApiError {
    ApiError::NotFound {
        volume: m.volume().to_string(),
        name: name.to_string(),
    }
}

/// The manager of `vol` and `name`'s record, if the caller may see it;
/// "not found" otherwise.
async fn own(
    st: &AppState,
    caller: &Tenant,
    vol: &str,
    name: &str,
) -> ApiResult<(Arc<Manager>, Subvolume)> {
    let m = st.volumes.get(vol).await?;
    match m.record(name).await? {
        Some(sub) if visible(caller, &sub) => Ok((m, sub)),
        _ => Err(not_found(&m, name)),
    }
}

#[derive(Serialize)]
struct WhoAmI {
    tenant: String,
    admin: bool,
    networks: Vec<String>,
}

async fn whoami(Caller(t): Caller) -> ApiResult<Json<WhoAmI>> {
    Ok(Json(WhoAmI {
        networks: t.networks.iter().map(ToString::to_string).collect(),
        tenant: t.name,
        admin: t.admin,
    }))
}

async fn list(
    State(st): Shared,
    Path(vol): Path<String>,
    Caller(t): Caller,
) -> ApiResult<Response> {
    let m = st.volumes.get(&vol).await?;
    let subs = m.list((!t.admin).then_some(t.name.as_str())).await?;
    let views: Vec<View> = subs.iter().map(|s| view(s, None)).collect();
    Ok(Json(views).into_response())
}

async fn info(
    State(st): Shared,
    Path((vol, name)): Path<(String, String)>,
    Caller(t): Caller,
) -> ApiResult<Response> {
    let (m, sub) = own(&st, &t, &vol, &name).await?;
    let usage = m.usage(&sub).await?.map(|u| Usage {
        bytes: u.bytes,
        inodes: u.inodes,
    });
    Ok(Json(view(&sub, Some(usage))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    bytes: u64,
    #[serde(default)]
    inodes: Option<u64>,
    #[serde(default)]
    mode: Option<u32>,
    #[serde(default)]
    uid: u32,
    #[serde(default)]
    gid: u32,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    root_squash: Option<bool>,
}

/// Store writes are compare-and-swap: two identical creates racing for one
/// name make one lose with a conflict, and its retry finds the winner's.
const CREATE_ATTEMPTS: usize = 3;

async fn create(
    State(st): Shared,
    Path(vol): Path<String>,
    Caller(t): Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let b: CreateBody = parse(&body)?;
    let owner = match (t.admin, b.tenant) {
        (true, Some(owner)) => {
            if tenant::get(st.store.as_ref(), &owner).await?.is_none() {
                return Err(ApiError::BadRequest(format!("no tenant {owner}")));
            }
            Some(owner)
        }
        (true, None) => None,
        (false, Some(owner)) if owner != t.name => {
            return Err(ApiError::Forbidden(format!(
                "a token of tenant {} cannot make sub-volumes for {owner}",
                t.name
            )))
        }
        (false, _) => Some(t.name.clone()),
    };
    if b.bytes == 0 {
        return Err(ApiError::BadRequest("bytes must be above 0".into()));
    }
    let req = CreateReq {
        name: b.name,
        settings: Settings {
            tenant: owner,
            bytes: b.bytes,
            inodes: b.inodes,
            mode: b.mode.unwrap_or(0o755),
            uid: b.uid,
            gid: b.gid,
            labels: b.labels,
            root_squash: b.root_squash,
        },
    };
    let m = st.volumes.get(&vol).await?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = m.record(&req.name).await?;
        if let Some(sub) = &before {
            if !visible(&t, sub) {
                // Says nothing about whose it is.
                return Err(ApiError::Subvolume(SubvolError::Exists {
                    volume: vol,
                    name: req.name,
                    what: "taken".into(),
                }));
            }
        }
        match m.create(&req).await {
            Ok(sub) => {
                let status = match before {
                    Some(b) if b.state == SubState::Ready => StatusCode::OK,
                    _ => StatusCode::CREATED,
                };
                return Ok((status, Json(view(&sub, None))).into_response());
            }
            Err(SubvolError::Store(store::StoreError::Conflict { .. }))
                if attempt < CREATE_ATTEMPTS =>
            {
                continue
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResizeBody {
    bytes: u64,
    /// Absent: unchanged; 0: no limit.
    #[serde(default)]
    inodes: Option<u64>,
}

async fn resize(
    State(st): Shared,
    Path((vol, name)): Path<(String, String)>,
    Caller(t): Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let b: ResizeBody = parse(&body)?;
    if b.bytes == 0 {
        return Err(ApiError::BadRequest("bytes must be above 0".into()));
    }
    let (m, _) = own(&st, &t, &vol, &name).await?;
    let inodes = b.inodes.map(|n| (n > 0).then_some(n));
    let sub = m.resize(&name, b.bytes, inodes).await?;
    Ok(Json(view(&sub, None)).into_response())
}

async fn delete(
    State(st): Shared,
    Path((vol, name)): Path<(String, String)>,
    Caller(t): Caller,
) -> ApiResult<Response> {
    let (m, _) = own(&st, &t, &vol, &name).await?;
    m.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ArchiveBody {
    #[serde(default)]
    keep_seconds: Option<u64>,
}

async fn archive(
    State(st): Shared,
    Path((vol, name)): Path<(String, String)>,
    Caller(t): Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let b: ArchiveBody = if body.is_empty() {
        ArchiveBody::default()
    } else {
        parse(&body)?
    };
    let (m, _) = own(&st, &t, &vol, &name).await?;
    let sub = m.archive(&name, b.keep_seconds).await?;
    Ok(Json(view(&sub, None)).into_response())
}
