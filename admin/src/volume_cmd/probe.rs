//! Asking a brick who it is: one tarpc connection, `hello` and `ping`, as
//! `client::protocol::BrickConn::connect_once` does it, without the data
//! connection or anything that stays.

use std::time::{Duration, Instant};

use proto::FsError;
use tarpc::client::RpcError;
use tarpc::context::Context;

/// What a brick says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probed {
    /// Its UUID (`DIR/.brickfs/brick-id`).
    pub id: String,
    /// Size of its heal index (with unconfirmed dirty marks), from `ping`.
    pub heal_entries: u64,
}

/// Asks bricks who they are. `volume` is what the `hello` names: a brick
/// not yet bound to a volume binds itself to it, one bound to another
/// answers `FsError::Refused`; `""` checks nothing and binds nothing.
#[allow(async_fn_in_trait)] // used with concrete types only, never boxed
pub trait Prober {
    async fn probe(&self, addr: &str, volume: &str) -> Result<Probed, FsError>;
}

/// The real thing: over TCP, everything within `timeout`.
pub struct TarpcProber {
    pub timeout: Duration,
}

impl Prober for TarpcProber {
    async fn probe(&self, addr: &str, volume: &str) -> Result<Probed, FsError> {
        let t = self.timeout;
        let down = |e: &dyn std::fmt::Display| FsError::BrickDown(format!("{addr}: {e}"));
        let sock = tokio::time::timeout(t, tokio::net::lookup_host(addr))
            .await
            .map_err(|_| FsError::Timeout(addr.to_string()))?
            .map_err(|e| down(&e))?
            .next()
            .ok_or_else(|| down(&"resolves to no address"))?;
        let client = client::protocol::connect_rpc(sock, t).await?;
        let rpc = |e: RpcError| match e {
            RpcError::DeadlineExceeded => FsError::Timeout(addr.to_string()),
            other => down(&other),
        };
        let deadline = || {
            let mut ctx: Context = tarpc::context::current();
            ctx.deadline = Instant::now() + t;
            ctx
        };
        let client_id = uuid::Uuid::new_v4().as_u128();
        let info = client
            .hello(
                deadline(),
                client_id,
                volume.to_string(),
                proto::Purpose::Client,
            )
            .await
            .map_err(rpc)??;
        let pong = client.ping(deadline()).await.map_err(rpc)?;
        Ok(Probed {
            id: info.id.to_string(),
            heal_entries: pong.heal_entries,
        })
    }
}

/// A brick's failure to answer, for people.
pub fn probe_error(addr: &str, volume: &str, e: &FsError) -> String {
    match e {
        FsError::BrickDown(m) => format!("cannot reach brick {m}"),
        FsError::Timeout(_) => format!("brick {addr} did not answer in time"),
        FsError::Refused(m) => format!("brick {addr} refuses volume {volume}: {m}"),
        other => format!("brick {addr}: {other}"),
    }
}

/// Asks every brick at once.
pub async fn probe_all<P: Prober>(
    prober: &P,
    addrs: &[&str],
    volume: &str,
) -> Vec<std::result::Result<Probed, FsError>> {
    futures::future::join_all(addrs.iter().map(|a| prober.probe(a, volume))).await
}
