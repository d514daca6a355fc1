//! The API's one error type: every failure as an HTTP status, a stable
//! code a program can switch on, and a message a person can act on.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use subvolume::SubvolError;
use tenant::TenantError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or refused token: send `Authorization: Bearer <token>` with a token from `brickfs tenant create`")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("sub-volume {volume}/{name} does not exist")]
    NotFound { volume: String, name: String },
    #[error("no started volume {volume}: {why}")]
    UnknownVolume { volume: String, why: String },
    #[error("no such endpoint: {0}")]
    NoRoute(String),
    #[error(transparent)]
    Subvolume(#[from] SubvolError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
}

impl ApiError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::BadRequest(_) => (S::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized | ApiError::Tenant(TenantError::Refused) => {
                (S::UNAUTHORIZED, "unauthorized")
            }
            ApiError::Forbidden(_) => (S::FORBIDDEN, "forbidden"),
            ApiError::NotFound { .. } | ApiError::Subvolume(SubvolError::NotFound { .. }) => {
                (S::NOT_FOUND, "not_found")
            }
            ApiError::NoRoute(_) => (S::NOT_FOUND, "no_route"),
            ApiError::UnknownVolume { .. } => (S::NOT_FOUND, "unknown_volume"),
            ApiError::Subvolume(e) => match e {
                SubvolError::BadName(_) | SubvolError::Invalid(_) => {
                    (S::BAD_REQUEST, "bad_request")
                }
                SubvolError::Exists { .. } => (S::CONFLICT, "exists"),
                SubvolError::PoolFull(_) => (S::INSUFFICIENT_STORAGE, "pool_full"),
                SubvolError::BelowUsage(_) => (S::UNPROCESSABLE_ENTITY, "below_usage"),
                SubvolError::NotFound { .. } => (S::NOT_FOUND, "not_found"),
                SubvolError::Open(_) => (S::NOT_FOUND, "unknown_volume"),
                SubvolError::Store(_) | SubvolError::Fs { .. } | SubvolError::Corrupt { .. } => {
                    (S::SERVICE_UNAVAILABLE, "unavailable")
                }
            },
            ApiError::Tenant(e) => match e {
                TenantError::BadName(_) | TenantError::BadNetwork(_) => {
                    (S::BAD_REQUEST, "bad_request")
                }
                TenantError::Exists(_) => (S::CONFLICT, "exists"),
                TenantError::NotFound(_) => (S::NOT_FOUND, "not_found"),
                TenantError::Refused => (S::UNAUTHORIZED, "unauthorized"),
                TenantError::Store(_) | TenantError::Corrupt { .. } => {
                    (S::SERVICE_UNAVAILABLE, "unavailable")
                }
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(error = %self, code, "request failed");
        } else {
            tracing::info!(error = %self, code, "request refused");
        }
        let body = Body {
            error: code,
            message: self.to_string(),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
