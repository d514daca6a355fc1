//! The management API (`docs/api.md`): sub-volumes over HTTP/JSON for
//! compute clusters. Every request is authenticated by a tenant token read
//! against the store (a revoke takes effect with the next request); a
//! tenant sees only what it owns, and another tenant's sub-volume is "not
//! found", exactly like one that does not exist.
//!
//! Map: `routes` (the handlers), `scope_token` (tokens that let a
//! tenant's hosts reach its sub-volumes on the bricks), `error` (status and code of each
//! failure), `volumes` (one open `subvolume::Manager` per volume, opened on
//! first use), `trace` (a span per request).

mod error;
mod routes;
mod scope_token;
mod trace;
mod volumes;

use std::sync::Arc;

pub use error::ApiError;
use store::Store;

/// What every handler shares.
pub struct AppState {
    store: Arc<dyn Store>,
    volumes: volumes::Volumes,
    /// Signs tenants' scope tokens for the bricks (`tls::scope`); without
    /// it the API hands out none.
    scope_signer: Option<tls::scope::Signer>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        store_url: &str,
        scope_signer: Option<tls::scope::Signer>,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            store,
            volumes: volumes::Volumes::new(store_url),
            scope_signer,
        })
    }

    /// Lets go of every volume's client stack.
    pub async fn close(&self) {
        self.volumes.close().await;
    }
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = routes::router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
