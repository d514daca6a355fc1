use thiserror::Error;

#[derive(Debug, Error)]
pub enum SubvolError {
    #[error("bad sub-volume name {0:?} (1 to 100 of [A-Za-z0-9._-], not starting with '.')")]
    BadName(String),
    #[error("{0}")]
    Invalid(String),
    #[error("sub-volume {volume}/{name} does not exist")]
    NotFound { volume: String, name: String },
    #[error("sub-volume {volume}/{name} exists with other settings ({what})")]
    Exists {
        volume: String,
        name: String,
        what: String,
    },
    #[error("pool full: {0}")]
    PoolFull(String),
    #[error("limit below usage: {0}")]
    BelowUsage(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Open(#[from] volume::OpenError),
    #[error("{what}: {source}")]
    Fs {
        what: String,
        source: proto::FsError,
    },
    #[error("corrupt sub-volume record {key}: {why}")]
    Corrupt { key: String, why: String },
}

impl SubvolError {
    pub(crate) fn fs(what: impl Into<String>) -> impl FnOnce(proto::FsError) -> SubvolError {
        let what = what.into();
        move |source| SubvolError::Fs { what, source }
    }
}
