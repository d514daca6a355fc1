//! The crate's one error type. Every variant keeps its cause; [`Error::reason`]
//! turns one into the short reason of the Event a user sees on the claim.

use std::path::PathBuf;

use crate::params::ParamError;

/// The management API's error codes (docs/api.md, "Errors").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    UnknownVolume,
    Exists,
    BelowUsage,
    PoolFull,
    Unavailable,
    Other(String),
}

impl ApiCode {
    pub fn parse(code: &str) -> ApiCode {
        match code {
            "bad_request" => ApiCode::BadRequest,
            "unauthorized" => ApiCode::Unauthorized,
            "forbidden" => ApiCode::Forbidden,
            "not_found" => ApiCode::NotFound,
            "unknown_volume" => ApiCode::UnknownVolume,
            "exists" => ApiCode::Exists,
            "below_usage" => ApiCode::BelowUsage,
            "pool_full" => ApiCode::PoolFull,
            "unavailable" => ApiCode::Unavailable,
            other => ApiCode::Other(other.to_string()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("StorageClass {class}: {source}")]
    Param {
        class: String,
        #[source]
        source: ParamError,
    },
    #[error("{0}")]
    Claim(String),
    #[error(
        "sub-volume name {name:?} is taken by another claim or with other settings ({message})"
    )]
    Collision { name: String, message: String },
    #[error("{what}: HTTP {status} {code:?}: {message}")]
    Api {
        what: String,
        status: u16,
        code: ApiCode,
        message: String,
    },
    #[error("{what}: {source}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("reading the API token from {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("lost the leader lease {0}")]
    LostLease(String),
}

impl Error {
    pub fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Kube { what, source }
    }

    pub fn api_code(&self) -> Option<&ApiCode> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The Event reason for this failure: what the user has to look at.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Param { .. } => "BadParameter",
            Error::Claim(_) => "BadClaim",
            Error::Collision { .. } => "NameCollision",
            Error::Api { code, .. } => match code {
                ApiCode::PoolFull => "PoolFull",
                ApiCode::UnknownVolume => "UnknownVolume",
                ApiCode::Unauthorized => "TokenRefused",
                ApiCode::Forbidden => "Forbidden",
                ApiCode::BelowUsage => "QuotaBelowUsage",
                ApiCode::Exists => "NameCollision",
                ApiCode::BadRequest => "Refused",
                ApiCode::NotFound => "SubvolumeNotFound",
                ApiCode::Unavailable => "StorageUnavailable",
                ApiCode::Other(_) => "ApiError",
            },
            Error::Http { .. } => "ApiUnreachable",
            Error::TokenFile { .. } => "TokenUnreadable",
            Error::Kube { .. } => "KubernetesError",
            Error::Config(_) => "Config",
            Error::LostLease(_) => "LostLease",
        }
    }

    /// Whether retrying without a change by the user can help; the others
    /// are retried only slowly (the user may fix the cause meanwhile).
    pub fn transient(&self) -> bool {
        match self {
            Error::Api { code, .. } => matches!(code, ApiCode::Unavailable | ApiCode::Other(_)),
            Error::Http { .. } | Error::Kube { .. } => true,
            _ => false,
        }
    }
}
