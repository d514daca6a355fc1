//! The gateway's error type (start-up and configuration), and the table
//! from the client stack's errors to NFS status codes: every errno keeps its
//! meaning (ENOSPC, EDQUOT, EACCES, EROFS when quorum is lost, ESTALE, …)
//! and only what has no NFS equivalent becomes NFS3ERR_IO.

use nfs3_types::nfs3::nfsstat3;
use proto::FsError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bad export {spec:?}: {why}")]
    BadExport { spec: String, why: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("cannot reach the volume: {0}")]
    Volume(#[from] FsError),
}

/// The status for `e`; trouble with bricks is logged here, the one place
/// every failed call passes, with what failed and why.
pub fn nfsstat(e: &FsError) -> nfsstat3 {
    if e.is_brick_trouble() {
        tracing::warn!(err = %e, "nfs call failed");
    }
    errno_status(e.errno())
}

pub fn errno_status(errno: i32) -> nfsstat3 {
    use nfsstat3::*;
    match errno {
        0 => NFS3_OK,
        libc::EPERM => NFS3ERR_PERM,
        libc::ENOENT => NFS3ERR_NOENT,
        libc::ENXIO | libc::ENODEV => NFS3ERR_NXIO,
        libc::EACCES => NFS3ERR_ACCES,
        libc::EEXIST => NFS3ERR_EXIST,
        libc::EXDEV => NFS3ERR_XDEV,
        libc::ENOTDIR => NFS3ERR_NOTDIR,
        libc::EISDIR => NFS3ERR_ISDIR,
        libc::EINVAL | libc::EBADF => NFS3ERR_INVAL,
        libc::EFBIG => NFS3ERR_FBIG,
        libc::ENOSPC => NFS3ERR_NOSPC,
        libc::EROFS => NFS3ERR_ROFS,
        libc::EMLINK => NFS3ERR_MLINK,
        libc::ENAMETOOLONG => NFS3ERR_NAMETOOLONG,
        libc::ENOTEMPTY => NFS3ERR_NOTEMPTY,
        libc::EDQUOT => NFS3ERR_DQUOT,
        libc::ESTALE => NFS3ERR_STALE,
        libc::EOPNOTSUPP | libc::ENOTTY => NFS3ERR_NOTSUPP,
        // The bricks are unreachable or slow: the client should retry.
        libc::ETIMEDOUT | libc::ENOTCONN | libc::EAGAIN | libc::EBUSY => NFS3ERR_JUKEBOX,
        libc::ERANGE | libc::ENODATA => NFS3ERR_INVAL,
        _ => NFS3ERR_IO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_meaning() {
        assert_eq!(
            nfsstat(&FsError::ReadOnly {
                need: 2,
                down: String::new()
            }),
            nfsstat3::NFS3ERR_ROFS
        );
        assert_eq!(nfsstat(&FsError::NoSpace), nfsstat3::NFS3ERR_NOSPC);
        assert_eq!(
            nfsstat(&FsError::Stale("x".into())),
            nfsstat3::NFS3ERR_STALE
        );
        assert_eq!(nfsstat(&FsError::Access), nfsstat3::NFS3ERR_ACCES);
        assert_eq!(errno_status(libc::EDQUOT), nfsstat3::NFS3ERR_DQUOT);
        assert_eq!(
            nfsstat(&FsError::NameTooLong),
            nfsstat3::NFS3ERR_NAMETOOLONG
        );
        assert_eq!(errno_status(libc::EIO), nfsstat3::NFS3ERR_IO);
    }
}
