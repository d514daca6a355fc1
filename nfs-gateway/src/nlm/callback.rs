//! Calls to a client host's lockd: the GRANTED callback of a blocked lock,
//! the `_RES` answers of `_MSG` calls, and NULL (the liveness probe). The
//! lockd is found through the host's portmapper (`Config::rpcbind_port`,
//! 111 unless a test says otherwise), and every call leaves from our
//! address as the host knows it: the Linux client takes a grant only from
//! the server it locked with (fs/lockd/clntlock.c: `nlmclnt_grant`).

use std::net::IpAddr;

use super::hosts::HostKey;
use super::xdr::{self, procs, Stat, TestArgs};
use super::LockManager;
use crate::rpc::RpcError;
use crate::rpc_client;
use crate::Caller;

impl LockManager {
    async fn call_lockd(
        &self,
        host: IpAddr,
        from: IpAddr,
        proc_: u32,
        args: &[u8],
    ) -> Result<Vec<u8>, RpcError> {
        rpc_client::call_via_portmap(
            host,
            self.cfg.rpcbind_port,
            Some(from),
            xdr::PROGRAM,
            xdr::VERSION,
            proc_,
            args,
            self.cfg.call_timeout,
        )
        .await
    }

    /// NLM4_GRANTED to `host`: the client's answer (GRANTED: it takes the
    /// lock; DENIED: it no longer waits for it).
    pub(super) async fn send_granted(
        &self,
        host: &HostKey,
        from: IpAddr,
        grant: &TestArgs,
    ) -> Result<Stat, RpcError> {
        let body = self
            .call_lockd(host.addr, from, procs::GRANTED, &grant.encode())
            .await?;
        xdr::decode_res(&body)
            .map(|(_, stat)| stat)
            .ok_or(RpcError::BadReply("GRANTED result"))
    }

    /// The `_RES` call answering a `_MSG` call of `caller`.
    pub(super) async fn send_res(
        &self,
        caller: &Caller,
        proc_: u32,
        body: &[u8],
    ) -> Result<(), RpcError> {
        self.call_lockd(caller.peer.ip(), caller.local.ip(), proc_, body)
            .await
            .map(drop)
    }

    /// NLM NULL at the host's lockd: does it still answer?
    pub(super) async fn probe(&self, host: IpAddr, from: IpAddr) -> Result<(), RpcError> {
        self.call_lockd(host, from, procs::NULL, &[])
            .await
            .map(drop)
    }
}
