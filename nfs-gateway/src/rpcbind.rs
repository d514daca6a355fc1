//! Registering with this host's rpcbind, for hosts that run one: the Linux
//! client's lockd looks for NLM through the server's port 111, so either
//! rpcbind there maps our programs to our port (PMAPPROC_SET at start,
//! PMAPPROC_UNSET at stop), or the gateway answers portmap on 111 itself
//! (`--portmap-listen`). Registration fails for a program another process
//! registered already: on a host that is itself an NFS client, its own
//! lockd and rpc.statd hold NLM and NSM.

use std::net::SocketAddr;
use std::time::Duration;

use tracing::{info, warn};

use crate::portmap::Served;
use crate::rpc::RpcError;
use crate::rpc_client::{self, Auth, Target};
use crate::xdr::{XdrReader, XdrWriter};
use nfs3_types::portmap::{PMAP_PROG, PROGRAM as PMAP_PROGRAM, VERSION as PMAP_VERSION};

pub const DEFAULT: &str = "127.0.0.1:111";
const TIMEOUT: Duration = Duration::from_secs(2);

fn target(at: SocketAddr) -> Target {
    Target {
        to: at,
        from: None,
        reserved_port: true,
    }
}

/// Whether a portmapper answers NULL at `at`.
pub async fn answers(at: SocketAddr) -> bool {
    rpc_client::call(
        target(at),
        PMAP_PROGRAM,
        PMAP_VERSION,
        PMAP_PROG::PMAPPROC_NULL as u32,
        Auth::Null,
        &[],
        TIMEOUT,
    )
    .await
    .is_ok()
}

async fn set(
    at: SocketAddr,
    proc_: PMAP_PROG,
    (prog, vers, prot): (u32, u32, u32),
    port: u16,
) -> Result<bool, RpcError> {
    let mut a = XdrWriter::new();
    a.u32(prog).u32(vers).u32(prot).u32(u32::from(port));
    let body = rpc_client::call(
        target(at),
        PMAP_PROGRAM,
        PMAP_VERSION,
        proc_ as u32,
        Auth::Root,
        &a.into_bytes(),
        TIMEOUT,
    )
    .await?;
    XdrReader::new(&body)
        .bool()
        .ok_or(RpcError::BadReply("SET/UNSET without a boolean"))
}

/// Maps every program we serve (but portmap) to our port at the rpcbind at
/// `at`; what it registered, to unregister at stop.
pub async fn register(at: SocketAddr, served: &Served) -> Result<Vec<(u32, u32, u32)>, RpcError> {
    let mut done = Vec::new();
    for entry in served.entries() {
        if entry.0 == PMAP_PROGRAM {
            continue;
        }
        if set(at, PMAP_PROG::PMAPPROC_SET, entry, served.port).await? {
            done.push(entry);
        } else {
            warn!(
                prog = entry.0,
                vers = entry.1,
                prot = entry.2,
                "rpcbind at {at} refused to map the program to us: another process (this host's own lockd or rpc.statd?) registered it"
            );
        }
    }
    info!(%at, port = served.port, registered = done.len(), "registered with rpcbind");
    Ok(done)
}

/// Takes back what `register` mapped.
pub async fn unregister(at: SocketAddr, entries: &[(u32, u32, u32)], port: u16) {
    for &entry in entries {
        if let Err(e) = set(at, PMAP_PROG::PMAPPROC_UNSET, entry, port).await {
            warn!(%at, prog = entry.0, error = %e, "cannot unregister from rpcbind");
            return;
        }
    }
}
