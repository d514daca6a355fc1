//! `brickfs-nfs`: the volume over NFSv3 for hosts and pods whose kernel
//! mounts NFS, running the same client stack as the FUSE mount (the two see
//! each other's writes).
//!
//! Our own ONC RPC server (record marking, call decoding, replies) over the
//! XDR types of the `nfs3_types` crate, so every procedure the Linux client
//! uses is ours to answer (LINK, MKNOD, COMMIT included), AUTH_UNIX
//! credentials reach every procedure (ownership of new files, permission
//! checks), and each export carries its own rules (sub-directory, read-only,
//! allowed client networks).
//!
//! - `rpc`: record marking, call header, reply encoding.
//! - `xdr`: XDR by hand for the types `nfs3_types` lacks.
//! - `server`: accept loop, per-connection tasks, dispatch by program;
//!   `udp`: the same for the few programs served over UDP.
//! - `mount`: the MOUNT v3 program (exports and their rules).
//! - `portmap`: enough of portmap v2 for clients that ask where we are;
//!   `rpcbind`: registering with the host's rpcbind instead.
//! - `nlm`: the NLM v4 lock manager over the bricks' record locks.
//! - `nsm`: the status monitor: restart notification, the state directory.
//! - `rpc_client`: the calls we make (callbacks, probes, notifications).
//! - `tenancy`: tenants' sub-volumes served only to their networks.
//! - `exports`: export rules (`/vol`, `/vol/sub/dir`, `ro`, `allow=CIDR`).
//! - `nfs`: the NFS v3 program over the client stack.
//! - `unstable`: UNSTABLE writes answered once queued (write-behind), the
//!   records of idle files dropped.
//! - `handles`: file handles from the volume and the gfid, stable across
//!   restarts and identical on every gateway of the volume.
//! - `attrs`: attributes between `proto` and NFS.
//! - `cookies`: READDIR cookies and the names they stand for.
//! - `access`: permission checks for AUTH_UNIX callers.
//! - `shape`: lengths in NFS arguments checked before decoding.
//! - `error`: the crate's error type and the errno → nfsstat3 table.

pub mod access;
pub mod attrs;
pub mod cookies;
pub mod error;
pub mod exports;
pub mod handles;
pub mod mount;
pub mod nfs;
pub mod nlm;
pub mod nsm;
pub mod portmap;
pub mod rpc;
pub mod rpc_client;
pub mod rpcbind;
pub mod server;
pub mod shape;
pub mod tenancy;
pub mod udp;
pub mod unstable;
pub mod xdr;

use std::net::SocketAddr;
use std::sync::Arc;

pub use error::GatewayError;

/// Who is calling, from the RPC credential: AUTH_UNIX ids, or nobody
/// (65534) for AUTH_NULL. Root is squashed to nobody when the export says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub gids: Vec<u32>,
    pub peer: SocketAddr,
    /// Our end of the connection: the address the client knows us by.
    pub local: SocketAddr,
}

impl Caller {
    pub const NOBODY: u32 = 65534;

    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.gids.contains(&gid)
    }
}

/// What a program handler answers one call with.
#[derive(Debug)]
pub enum Outcome {
    /// Accepted, SUCCESS; the XDR-encoded result of the procedure (which may
    /// itself carry an error status, as NFS results do).
    Reply(Vec<u8>),
    /// The procedure number is not one of the program's.
    ProcUnavail,
    /// The arguments could not be decoded.
    GarbageArgs,
    /// The server failed to encode a reply.
    SystemErr,
}

impl Outcome {
    /// A result encoded for the reply; an encoding failure (a bug, not
    /// input) answers SYSTEM_ERR.
    pub fn encode(result: &impl nfs3_types::xdr_codec::Pack) -> Outcome {
        let mut out = Vec::with_capacity(result.packed_size());
        match result.pack(&mut out) {
            Ok(_) => Outcome::Reply(out),
            Err(e) => {
                tracing::error!("cannot encode a reply: {e}");
                Outcome::SystemErr
            }
        }
    }
}

/// State shared by every connection of one gateway.
pub struct Gateway {
    pub layer: Arc<dyn client::Layer>,
    /// Volume name: exports are `/<volume>` and directories below it.
    pub volume: String,
    /// Makes and checks file handles (the volume's key and the cluster's
    /// handle key: a handle of another volume is stale, a forged one bad).
    pub handles: handles::Codec,
    pub exports: exports::Exports,
    /// Attributes for permission checks, briefly cached.
    pub access: access::AccessCache,
    /// Which name each recent READDIR cookie stands for.
    pub cookies: cookies::Cookies,
    /// The NLM lock manager (and the NSM state it depends on).
    pub locks: Arc<nlm::LockManager>,
    /// Which networks may reach which tenant's sub-volumes.
    pub tenancy: Arc<tenancy::Tenancy>,
}

impl Gateway {
    pub fn new(
        layer: Arc<dyn client::Layer>,
        volume: &str,
        handle_key: [u8; handles::KEY_LEN],
        exports: exports::Exports,
        locks: Arc<nlm::LockManager>,
    ) -> Gateway {
        Gateway {
            layer,
            volume: volume.to_string(),
            handles: handles::Codec::new(volume, handle_key),
            exports,
            access: access::AccessCache::default(),
            cookies: cookies::Cookies::default(),
            locks,
            tenancy: Arc::default(),
        }
    }
}
