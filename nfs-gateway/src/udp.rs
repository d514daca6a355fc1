//! ONC RPC over UDP, for the programs some clients only call that way:
//! portmap (sm-notify asks a host's port 111 over UDP) and NSM (its
//! SM_NOTIFY). One datagram is one call, answered in order; both programs
//! answer at once, so one task serves the socket. Replies are no larger
//! than a portmap DUMP, so answering forged sources amplifies little.

use std::future::Future;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tracing::{debug, info_span, warn, Instrument};

use crate::rpc::{self, Accepted, Decoded};
use crate::server::Programs;

/// Calls over UDP are small; a larger datagram is cut and then refused.
const MAX_DATAGRAM: usize = 8 * 1024;

pub(crate) async fn serve_udp<P: Programs>(
    programs: Arc<P>,
    socket: UdpSocket,
    shutdown: impl Future<Output = ()>,
) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "UDP socket without an address; not serving it");
            return;
        }
    };
    tokio::pin!(shutdown);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = tokio::select! {
            _ = &mut shutdown => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(got) => got,
                Err(e) => {
                    // ICMP errors of earlier replies surface here; not fatal.
                    debug!(error = %e, "UDP receive failed");
                    continue;
                }
            },
        };
        let reply = match rpc::decode_call(&buf[..n]) {
            Ok(Decoded::Call(h)) => {
                let span =
                    info_span!("udp_call", %peer, xid = h.xid, prog = h.prog, "proc" = h.proc_);
                async {
                    let accepted = if programs.over_udp(h.prog) {
                        let caller = h.cred.caller(peer, local);
                        let args = buf.get(h.args_at..n).unwrap_or_default();
                        programs.call(&caller, h.prog, h.vers, h.proc_, args).await
                    } else {
                        Accepted::ProgUnavail
                    };
                    rpc::accepted(h.xid, accepted)
                }
                .instrument(span)
                .await
            }
            Ok(Decoded::Denied { xid, why }) => rpc::denied(xid, why),
            Err(e) => {
                debug!(%peer, error = %e, "not an RPC call; dropped");
                continue;
            }
        };
        if let Err(e) = socket.send_to(&reply.datagram(), peer).await {
            debug!(%peer, error = %e, "UDP reply not sent");
        }
    }
}
