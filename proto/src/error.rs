use serde::{Deserialize, Serialize};

pub type FsResult<T> = Result<T, FsError>;

/// The one error type of brickfs. Structured so that the errno of a brick's
/// failed syscall reaches the FUSE or NFS front-end intact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("no space left on device")]
    NoSpace,
    #[error("stale file handle (gfid {0} unknown)")]
    Stale(String),
    #[error("invalid name: {0}")]
    BadName(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("operation timed out on brick {0}")]
    Timeout(String),
    #[error("brick down: {0}")]
    BrickDown(String),
    #[error("quorum not met: need {need} bricks, {got} answered ({detail})")]
    Quorum {
        need: usize,
        got: usize,
        detail: String,
    },
    /// Fewer than a quorum of the replica set's bricks are up: modifications
    /// are refused before anything is sent. `down` says which and why.
    #[error("read-only: fewer than {need} bricks of the replica set are up ({down})")]
    ReadOnly { need: usize, down: String },
    #[error("lock contended")]
    WouldBlock,
    #[error("operation not supported: {0}")]
    NotSupported(String),
    #[error("permission denied")]
    Access,
    #[error("operation not permitted")]
    Perm,
    #[error("no such attribute")]
    NoAttr,
    #[error("value too large for buffer")]
    Range,
    #[error("name too long")]
    NameTooLong,
    #[error("brick refused: {0}")]
    Refused(String),
    #[error("busy, try again later: {0}")]
    Busy(String),
    #[error("disk quota exceeded: {0}")]
    Quota(String),
    #[error("cross-device link: source and target are in different sub-volumes")]
    CrossSubvolume,
    #[error("{msg} (errno {errno})")]
    Os { errno: i32, msg: String },
}

impl FsError {
    /// The errno a POSIX front-end should report.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NoSpace => libc::ENOSPC,
            FsError::Stale(_) => libc::ESTALE,
            FsError::BadName(_) | FsError::Invalid(_) => libc::EINVAL,
            FsError::Timeout(_) => libc::ETIMEDOUT,
            FsError::BrickDown(_) | FsError::Quorum { .. } => libc::ENOTCONN,
            FsError::ReadOnly { .. } => libc::EROFS,
            FsError::WouldBlock => libc::EAGAIN,
            FsError::NotSupported(_) => libc::EOPNOTSUPP,
            FsError::Access => libc::EACCES,
            FsError::Perm => libc::EPERM,
            FsError::NoAttr => libc::ENODATA,
            FsError::Range => libc::ERANGE,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::Refused(_) => libc::EACCES,
            FsError::Busy(_) => libc::EBUSY,
            FsError::Quota(_) => libc::EDQUOT,
            FsError::CrossSubvolume => libc::EXDEV,
            FsError::Os { errno, .. } => *errno,
        }
    }

    /// Builds the structured variant for an errno where one exists.
    pub fn from_errno(errno: i32) -> FsError {
        match errno {
            libc::ENOENT => FsError::NotFound,
            libc::EEXIST => FsError::Exists,
            libc::ENOTEMPTY => FsError::NotEmpty,
            libc::ENOTDIR => FsError::NotDir,
            libc::EISDIR => FsError::IsDir,
            libc::ENOSPC => FsError::NoSpace,
            libc::EACCES => FsError::Access,
            libc::EPERM => FsError::Perm,
            libc::ENODATA => FsError::NoAttr,
            libc::ERANGE => FsError::Range,
            libc::ENAMETOOLONG => FsError::NameTooLong,
            libc::EAGAIN => FsError::WouldBlock,
            libc::EDQUOT => FsError::Quota("disk quota exceeded".into()),
            libc::EXDEV => FsError::CrossSubvolume,
            _ => FsError::Os {
                errno,
                msg: std::io::Error::from_raw_os_error(errno).to_string(),
            },
        }
    }

    /// True for errors an operator should hear of: bricks unreachable or
    /// too few of them up (ENOENT and friends are the normal life of a file
    /// system). The front-ends log these at `warn`, with the cause.
    pub fn is_brick_trouble(&self) -> bool {
        self.is_transport() || matches!(self, FsError::Quorum { .. } | FsError::ReadOnly { .. })
    }

    /// True for errors that say something about the brick or the network
    /// rather than about the file: such a brick missed the operation and is
    /// blamed, instead of its answer counting as a vote.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            FsError::Timeout(_) | FsError::BrickDown(_) | FsError::Refused(_)
        )
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => FsError::from_errno(errno),
            None => FsError::Os {
                errno: libc::EIO,
                msg: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_round_trips_through_io_error() {
        for errno in [
            libc::ENOENT,
            libc::ENOSPC,
            libc::EDQUOT,
            libc::EXDEV,
            libc::ELOOP,
        ] {
            let e = FsError::from(std::io::Error::from_raw_os_error(errno));
            assert_eq!(e.errno(), errno, "{e:?}");
        }
    }

    #[test]
    fn quorum_loss_reports_erofs() {
        assert_eq!(
            FsError::ReadOnly {
                need: 2,
                down: String::new()
            }
            .errno(),
            libc::EROFS
        );
    }
}
