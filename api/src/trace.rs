//! A span per request (`req=N method path`) and one line per answer with
//! its status and time, so a log reader can follow any request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub async fn per_request(req: Request, next: Next) -> Response {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let span =
        tracing::info_span!("request", req = id, method = %req.method(), path = %req.uri().path());
    async move {
        let started = Instant::now();
        let resp = next.run(req).await;
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
