/// Why a volume could not be opened or followed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Bad arguments (no store and no bricks, a bad volume name, …).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("unknown volume {name} (the store at {url} has no such volume)")]
    UnknownVolume { name: String, url: String },
    /// The spec is there but cannot be served (not started, malformed).
    #[error("volume {name}: {source}")]
    Spec {
        name: String,
        source: volgen::spec::SpecError,
    },
    #[error("cannot resolve brick {addr}: {why}")]
    Resolve { addr: String, why: String },
    /// The bricks did not let us build a stack.
    #[error("cannot connect to volume {name}: {source}")]
    Connect {
        name: String,
        source: proto::FsError,
    },
}
