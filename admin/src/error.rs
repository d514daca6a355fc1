//! The one error type of the `brickfs` binary: every command returns it, and
//! `main` prints it as `brickfs: error: ...` and exits 1.

/// What went wrong, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A complete message for the user (bad arguments, unknown volume, ...).
    #[error("{0}")]
    Msg(String),
    /// A local I/O error, with what we were doing.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// An error from the bricks or the client stack, with what we were doing.
    #[error("{context}: {source}")]
    Fs {
        context: String,
        source: proto::FsError,
    },
    /// An error from the cluster store (names the store's URL where it
    /// matters, e.g. unreachable).
    #[error("{0}")]
    Store(#[from] store::StoreError),
    /// A volume could not be opened (unknown, not started, unreachable).
    #[error("{0}")]
    Open(#[from] volume::OpenError),
    /// Certificates: making, reading or using them.
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Adds what we were doing to an io::Error.
pub trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: what(),
            source,
        })
    }
}

/// Adds what we were doing to an error from the bricks.
pub trait FsContext<T> {
    fn fs_ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> FsContext<T> for proto::FsResult<T> {
    fn fs_ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Fs {
            context: what(),
            source,
        })
    }
}
