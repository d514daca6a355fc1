//! The management API (`docs/api.md`): sub-volumes over HTTPS/JSON for
//! compute clusters. Every request is authenticated by a tenant token read
//! against the store (a revoke takes effect with the next request); a
//! tenant sees only what it owns, and another tenant's sub-volume is "not
//! found", exactly like one that does not exist.
//!
//! Map: `listen` (the port: each connection's TLS handshake in its own
//! task), `caller` (the certificate and the token of a request, and that
//! they agree), `routes` (the handlers), `scope_token` (tokens that let a
//! tenant's hosts reach its sub-volumes on the bricks), `error` (status and code of each
//! failure), `volumes` (one open `subvolume::Manager` per volume, opened on
//! first use), `trace` (a span per request).

mod caller;
mod error;
pub mod listen;
mod routes;
mod scope_token;
mod trace;
mod volumes;

use std::sync::Arc;

pub use error::ApiError;
use store::Store;
pub use trace::requests as request_table;

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

/// Serves the API on `listener` until `shutdown` completes: HTTPS with
/// `server`'s certificate (and clients' certificates required), or plain
/// HTTP without it (`--insecure`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: Option<Arc<tls::Tls>>,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = routes::router(state);
    let listener = listen::Handshaken::start(listener, server)?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<listen::Remote>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
