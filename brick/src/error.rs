//! Errors of the brick daemon itself (start-up, listening), and the glue that
//! turns raw syscall errors into the wire's `FsError` with the errno intact.

use proto::FsError;

/// Why a brick could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum BrickError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("brick directory {dir} is unusable: {why}")]
    BadDir { dir: String, why: String },
    #[error("{what}: {source}")]
    Fs {
        what: String,
        #[source]
        source: FsError,
    },
    #[error("brick refused: {0}")]
    Refused(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

impl BrickError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> BrickError {
        BrickError::Io {
            what: what.into(),
            source,
        }
    }

    pub fn fs(what: impl Into<String>, source: FsError) -> BrickError {
        BrickError::Fs {
            what: what.into(),
            source,
        }
    }
}

/// `?` only applies one `From`, and neither `rustix::io::Errno` nor `FsError`
/// are ours, so rustix results are converted with `.os()`.
pub trait OsResult<T> {
    fn os(self) -> Result<T, FsError>;
}

impl<T> OsResult<T> for rustix::io::Result<T> {
    fn os(self) -> Result<T, FsError> {
        self.map_err(|e| FsError::from_errno(e.raw_os_error()))
    }
}

/// Turns a failed `spawn_blocking` (a panic in a syscall wrapper) into an
/// EIO for the one request, instead of taking the brick down.
pub fn join_error(e: tokio::task::JoinError) -> FsError {
    tracing::error!(error = %e, "blocking filesystem task failed");
    FsError::Os {
        errno: libc::EIO,
        msg: format!("brick internal error: {e}"),
    }
}
