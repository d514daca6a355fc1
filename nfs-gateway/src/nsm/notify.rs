//! SM_NOTIFY after a start: every host recorded by an earlier run is told
//! that we restarted (its statd then has its lockd reclaim its locks, during
//! our grace period). Sent to the host's statd, found through its
//! portmapper, from our address as the host knew it and naming us by that
//! address: the Linux client monitors a server by the address it mounted.
//! A host that does not answer is tried again, less and less often, for
//! 15 minutes, as sm-notify does.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use proto::backoff::Backoff;
use tracing::{info, warn};

use super::state_dir::Record;
use super::{StatChange, PROGRAM, SM_NOTIFY, VERSION};
use crate::rpc_client;

const GIVE_UP_AFTER: Duration = Duration::from_secs(15 * 60);
const AT_ONCE: usize = 16;

pub async fn notify_all(hosts: Vec<Record>, state: i32, rpcbind_port: u16, timeout: Duration) {
    // Several names at one address share one statd.
    let targets: BTreeSet<(IpAddr, IpAddr)> =
        hosts.iter().map(|r| (r.key.addr, r.server)).collect();
    futures::stream::iter(targets)
        .for_each_concurrent(AT_ONCE, |(host, server)| {
            notify_one(host, server, state, rpcbind_port, timeout)
        })
        .await;
}

async fn notify_one(
    host: IpAddr,
    server: IpAddr,
    state: i32,
    rpcbind_port: u16,
    timeout: Duration,
) {
    let args = StatChange {
        mon_name: server.to_string().into_bytes(),
        state,
    }
    .encode();
    let started = Instant::now();
    let mut pause = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let sent = rpc_client::call_via_portmap(
            host,
            rpcbind_port,
            Some(server),
            PROGRAM,
            VERSION,
            SM_NOTIFY,
            &args,
            timeout,
        )
        .await;
        match sent {
            Ok(_) => {
                info!(%host, %server, state, "told the client host of our restart (SM_NOTIFY)");
                return;
            }
            Err(e) if started.elapsed() >= GIVE_UP_AFTER => {
                warn!(%host, attempts = attempt, error = %e, "giving up telling the client host of our restart");
                return;
            }
            Err(e) => {
                if attempt == 1 {
                    warn!(%host, error = %e, "SM_NOTIFY failed; trying again");
                }
                tokio::time::sleep(pause.next_pause()).await;
            }
        }
    }
}
