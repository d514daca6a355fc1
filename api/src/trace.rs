//! A span per request (`req=N method path`) and one line per answer with
//! its status and time, so a log reader can follow any request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use std::sync::{Arc, OnceLock};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use telemetry::OpTable;
use tracing::Instrument;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The endpoints of `routes.rs`, by the name `/metrics` counts them under.
const ENDPOINTS: &[&str] = &[
    "healthz",
    "whoami",
    "list",
    "create",
    "info",
    "resize",
    "delete",
    "archive",
    "scope_token",
];

/// Requests by endpoint: time to answer, and answers of 400 and above as
/// errors.
pub fn requests() -> &'static Arc<OpTable> {
    static TABLE: OnceLock<Arc<OpTable>> = OnceLock::new();
    TABLE.get_or_init(|| {
        Arc::new(OpTable::new(
            "brickfs_api_request",
            "Requests the management API answered, by endpoint",
            ENDPOINTS,
        ))
    })
}

fn endpoint(method: &Method, route: Option<&str>) -> &'static str {
    let Some(route) = route else {
        return telemetry::ops::OTHER;
    };
    match (method.as_str(), route) {
        (_, "/healthz") => "healthz",
        (_, "/v1/whoami") => "whoami",
        ("GET", "/v1/volumes/{vol}/subvolumes") => "list",
        ("POST", "/v1/volumes/{vol}/subvolumes") => "create",
        ("GET", "/v1/volumes/{vol}/subvolumes/{name}") => "info",
        ("PATCH", "/v1/volumes/{vol}/subvolumes/{name}") => "resize",
        ("DELETE", "/v1/volumes/{vol}/subvolumes/{name}") => "delete",
        (_, "/v1/volumes/{vol}/subvolumes/{name}/archive") => "archive",
        (_, "/v1/volumes/{vol}/scope-token") => "scope_token",
        _ => telemetry::ops::OTHER,
    }
}

pub async fn per_request(req: Request, next: Next) -> Response {
    let endpoint = endpoint(
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let span =
        tracing::info_span!("request", req = id, method = %req.method(), path = %req.uri().path());
    async move {
        let started = Instant::now();
        let resp = next.run(req).await;
        requests().record(endpoint, started.elapsed(), resp.status().as_u16() >= 400);
        tracing::info!(
            status = resp.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "answered"
        );
        resp
    }
    .instrument(span)
    .await
}
