//! The NLM v4 procedures.
//!
//! What the Linux client sends (fs/lockd/clntproc.c): TEST, LOCK (with
//! `block` for F_SETLKW, `reclaim` after our restart), UNLOCK and CANCEL
//! as synchronous calls; it answers our GRANTED callback. The `_MSG`
//! variants (replies as separate `_RES` calls to the client's lockd) are
//! served for other clients; SHARE (DOS share reservations) is refused;
//! FREE_ALL frees the calling host's locks.

use std::sync::Arc;
use std::time::Instant;

use nfs3_types::nfs3::nfsstat3;
use proto::{FsError, Gfid, RecordLockType};
use tracing::{debug, info, warn};

use super::hosts::HostKey;
use super::table::{BlockedKey, OwnerKey};
use super::xdr::{self, procs, Holder, Lock, LockArgs, Stat};
use super::{record_lock, LockManager};
use crate::access::{self, READ, WRITE};
use crate::{Caller, Gateway, Outcome};

/// Answers one NLM v4 call.
pub async fn handle_nlm(gw: &Arc<Gateway>, caller: &Caller, proc_: u32, args: &[u8]) -> Outcome {
    let m = &gw.locks;
    macro_rules! args {
        ($t:ty) => {
            match <$t>::decode(args) {
                Some(a) => a,
                None => return Outcome::GarbageArgs,
            }
        };
    }
    match proc_ {
        procs::NULL => Outcome::Reply(Vec::new()),
        procs::TEST => {
            let a = args!(xdr::TestArgs);
            Outcome::Reply(xdr::encode_testres(&a.cookie, m.test(gw, caller, &a).await))
        }
        procs::LOCK => {
            let a = args!(LockArgs);
            Outcome::Reply(xdr::encode_res(&a.cookie, m.lock(gw, caller, &a).await))
        }
        procs::NM_LOCK => {
            // Non-monitored locks never block (the client cannot be called
            // back); otherwise they are locks like any other.
            let mut a = args!(LockArgs);
            a.block = false;
            Outcome::Reply(xdr::encode_res(&a.cookie, m.lock(gw, caller, &a).await))
        }
        procs::CANCEL => {
            let a = args!(xdr::CancelArgs);
            Outcome::Reply(xdr::encode_res(&a.cookie, m.cancel(gw, caller, &a).await))
        }
        procs::UNLOCK => {
            let a = args!(xdr::UnlockArgs);
            Outcome::Reply(xdr::encode_res(
                &a.cookie,
                m.unlock(gw, caller, &a.lock).await,
            ))
        }
        // We are nobody's client: there is no blocked request of ours to grant.
        procs::GRANTED => {
            let a = args!(xdr::TestArgs);
            Outcome::Reply(xdr::encode_res(&a.cookie, Stat::Denied))
        }
        procs::TEST_MSG | procs::LOCK_MSG | procs::CANCEL_MSG | procs::UNLOCK_MSG => {
            message(gw, caller, proc_, args)
        }
        // Answers to calls we do not make, and grants to a client we are not.
        procs::GRANTED_MSG
        | procs::TEST_RES
        | procs::LOCK_RES
        | procs::CANCEL_RES
        | procs::UNLOCK_RES
        | procs::GRANTED_RES => Outcome::Reply(Vec::new()),
        procs::SHARE | procs::UNSHARE => {
            let a = args!(xdr::ShareArgs);
            let stat = if proc_ == procs::UNSHARE {
                Stat::Granted
            } else if m.in_grace() && !a.reclaim {
                Stat::DeniedGracePeriod
            } else {
                debug!(peer = %caller.peer, "SHARE refused: share reservations are not supported");
                Stat::Failed
            };
            Outcome::Reply(xdr::encode_shareres(&a.cookie, stat))
        }
        procs::FREE_ALL => {
            let a = args!(xdr::Notify);
            let host = hosts_key(caller, &a.name);
            m.free_host(&host, "FREE_ALL");
            Outcome::Reply(Vec::new())
        }
        _ => Outcome::ProcUnavail,
    }
}

/// A `_MSG` call: answered at once with nothing; the result goes to the
/// client's lockd as the matching `_RES` call.
fn message(gw: &Arc<Gateway>, caller: &Caller, proc_: u32, args: &[u8]) -> Outcome {
    // Decoded now, so garbage is answered as garbage.
    let work = match proc_ {
        procs::TEST_MSG => xdr::TestArgs::decode(args).map(Work::Test),
        procs::LOCK_MSG => LockArgs::decode(args).map(Work::Lock),
        procs::CANCEL_MSG => xdr::CancelArgs::decode(args).map(Work::Cancel),
        _ => xdr::UnlockArgs::decode(args).map(Work::Unlock),
    };
    let Some(work) = work else {
        return Outcome::GarbageArgs;
    };
    let (gw, caller) = (gw.clone(), caller.clone());
    tokio::spawn(async move {
        let m = &gw.locks;
        let (res_proc, body) = match work {
            Work::Test(a) => (
                procs::TEST_RES,
                xdr::encode_testres(&a.cookie, m.test(&gw, &caller, &a).await),
            ),
            Work::Lock(a) => (
                procs::LOCK_RES,
                xdr::encode_res(&a.cookie, m.lock(&gw, &caller, &a).await),
            ),
            Work::Cancel(a) => (
                procs::CANCEL_RES,
                xdr::encode_res(&a.cookie, m.cancel(&gw, &caller, &a).await),
            ),
            Work::Unlock(a) => (
                procs::UNLOCK_RES,
                xdr::encode_res(&a.cookie, m.unlock(&gw, &caller, &a.lock).await),
            ),
        };
        if let Err(e) = m.send_res(&caller, res_proc, &body).await {
            warn!(peer = %caller.peer, error = %e, "cannot send an NLM _RES message");
        }
    });
    Outcome::Reply(Vec::new())
}

enum Work {
    Test(xdr::TestArgs),
    Lock(LockArgs),
    Cancel(xdr::CancelArgs),
    Unlock(xdr::UnlockArgs),
}

/// An NLM status for a handle the NFS side refused.
fn open_status(s: nfsstat3) -> Stat {
    match s {
        nfsstat3::NFS3ERR_ACCES => Stat::Denied,
        _ => Stat::StaleFh,
    }
}

/// An NLM status for a failed brick-side lock operation.
fn lock_status(e: &FsError) -> Stat {
    match e {
        FsError::WouldBlock => Stat::Denied,
        FsError::Stale(_) | FsError::NotFound => Stat::StaleFh,
        FsError::ReadOnly { .. } => Stat::Rofs,
        _ => {
            warn!(error = %e, "NLM lock operation failed");
            Stat::DeniedNoLocks
        }
    }
}

fn hosts_key(caller: &Caller, name: &[u8]) -> HostKey {
    HostKey::new(caller.peer.ip(), name)
}

fn owner_key(caller: &Caller, l: &Lock) -> OwnerKey {
    OwnerKey {
        host: hosts_key(caller, &l.caller_name),
        oh: l.oh.clone(),
        svid: l.svid,
    }
}

impl LockManager {
    /// The file a lock names and whether the caller may lock it that way:
    /// an exclusive lock needs write permission, a shared one read
    /// permission, the file's owner may always (as for its data: the open
    /// that allowed it happened on the client).
    async fn open_for_lock(
        &self,
        gw: &Gateway,
        caller: &Caller,
        fh: &[u8],
        exclusive: Option<bool>,
    ) -> Result<Gfid, Stat> {
        let o = crate::nfs::open_handle(gw, caller, fh).map_err(open_status)?;
        let gfid = o.h.gfid;
        if let Some(exclusive) = exclusive {
            let attr = gw
                .access
                .attr(gw.layer.as_ref(), gfid)
                .await
                .map_err(|e| lock_status(&e))?;
            let want = if exclusive { WRITE } else { READ };
            if !access::may_data(&attr, &o.caller, want) {
                return Err(Stat::Denied);
            }
        }
        Ok(gfid)
    }

    pub async fn test(
        &self,
        gw: &Gateway,
        caller: &Caller,
        a: &xdr::TestArgs,
    ) -> Result<(), (Stat, Option<Holder>)> {
        if self.in_grace() {
            return Err((Stat::DeniedGracePeriod, None));
        }
        let gfid = self
            .open_for_lock(gw, caller, &a.lock.fh, None)
            .await
            .map_err(|s| (s, None))?;
        let okey = owner_key(caller, &a.lock);
        // Owner 0 is nobody: an owner we do not know holds nothing here.
        let owner = self.tables().find_owner(&okey).unwrap_or(0);
        let probe = record_lock(owner, a.lock.svid, a.lock.range(), a.exclusive);
        match gw.layer.getlk(gfid, probe).await {
            Ok(None) => Ok(()),
            Ok(Some(l)) => {
                let t = self.tables();
                // One of ours (its number and svid match): named as its
                // client named it; otherwise (a FUSE client) by its numbers.
                let (svid, oh) = match t.owner_key(l.owner).filter(|k| k.svid as u32 == l.pid) {
                    Some(k) => (k.svid, k.oh.clone()),
                    None => (l.pid as i32, l.owner.to_be_bytes().to_vec()),
                };
                Err((
                    Stat::Denied,
                    Some(Holder {
                        exclusive: l.typ == RecordLockType::Write,
                        svid,
                        oh,
                        offset: l.start,
                        len: xdr::len_of(l.start, l.end),
                    }),
                ))
            }
            Err(e) => Err((lock_status(&e), None)),
        }
    }

    pub async fn lock(self: &Arc<Self>, gw: &Gateway, caller: &Caller, a: &LockArgs) -> Stat {
        let now = Instant::now();
        if !self.grace.admits(a.reclaim, now) {
            return Stat::DeniedGracePeriod;
        }
        let gfid = match self
            .open_for_lock(gw, caller, &a.lock.fh, Some(a.exclusive))
            .await
        {
            Ok(g) => g,
            Err(s) => return s,
        };
        let okey = owner_key(caller, &a.lock);
        let host = okey.host.clone();
        let range = a.lock.range();
        let (epoch, key) = {
            let mut t = self.tables();
            let epoch = match t.touch(&host, caller.local.ip(), now) {
                Ok(e) => e,
                Err(full) => {
                    warn!(%host, "NLM lock refused: {full}");
                    return Stat::DeniedNoLocks;
                }
            };
            if let Some(h) = t.host_mut(&host) {
                h.client_state = Some(a.state);
            }
            let owner = match t.owner(&okey) {
                Ok(o) => o,
                Err(full) => {
                    warn!(%host, "NLM lock refused: {full}");
                    return Stat::DeniedNoLocks;
                }
            };
            let key = BlockedKey::new(owner, gfid, range, a.exclusive);
            // The same request again: the Linux client resends a blocked
            // LOCK every 30 s, and may have missed our callback.
            if let Some(b) = t.blocked(&key) {
                if b.granted {
                    t.unblock(&key, None);
                    return Stat::Granted;
                }
                if a.block {
                    return Stat::Blocked;
                }
            }
            if let Err(full) = t.may_hold(owner, gfid) {
                warn!(%host, "NLM lock refused: {full}");
                t.forget_if_unused(owner);
                return Stat::DeniedNoLocks;
            }
            (epoch, key)
        };
        let owner = key.owner;
        if let Err(e) = self.ensure_recorded(&host).await {
            warn!(%host, error = %e, "NLM lock refused: the host cannot be recorded for notification after a restart");
            self.tables().forget_if_unused(owner);
            return Stat::DeniedNoLocks;
        }
        let rl = record_lock(owner, a.lock.svid, range, a.exclusive);
        match gw.layer.setlk(gfid, rl, false).await {
            Ok(()) => {
                let held = self.tables().hold(owner, gfid, range, epoch);
                match held {
                    Ok(true) => {
                        if a.reclaim {
                            info!(%host, %gfid, "NLM lock reclaimed");
                        }
                        Stat::Granted
                    }
                    Ok(false) | Err(_) => {
                        self.give_back(owner, gfid, range).await;
                        self.tables().forget_if_unused(owner);
                        Stat::DeniedNoLocks
                    }
                }
            }
            Err(e) if a.block && (matches!(e, FsError::WouldBlock) || e.is_brick_trouble()) => {
                let grant = xdr::TestArgs {
                    cookie: Vec::new(),
                    exclusive: a.exclusive,
                    lock: a.lock.clone(),
                };
                self.start_waiting(key, host, grant, rl)
            }
            Err(e) => {
                self.tables().forget_if_unused(owner);
                lock_status(&e)
            }
        }
    }

    pub async fn unlock(&self, gw: &Gateway, caller: &Caller, l: &Lock) -> Stat {
        // A handle that no longer opens has nothing left to unlock.
        let Ok(o) = crate::nfs::open_handle(gw, caller, &l.fh) else {
            return Stat::Granted;
        };
        let gfid = o.h.gfid;
        let okey = owner_key(caller, l);
        let owner = {
            let mut t = self.tables();
            if let Some(h) = t.host_mut(&okey.host) {
                h.last_heard = Instant::now();
            }
            t.find_owner(&okey)
        };
        let Some(owner) = owner else {
            return Stat::Granted;
        };
        let range = l.range();
        let mut unlock = record_lock(owner, l.svid, range, false);
        unlock.typ = RecordLockType::Unlock;
        match gw.layer.setlk(gfid, unlock, false).await {
            Ok(()) => {
                self.tables().release(owner, gfid, range);
                Stat::Granted
            }
            Err(e) => lock_status(&e),
        }
    }

    pub async fn cancel(&self, gw: &Gateway, caller: &Caller, a: &xdr::CancelArgs) -> Stat {
        let Ok(o) = crate::nfs::open_handle(gw, caller, &a.lock.fh) else {
            return Stat::Denied;
        };
        let gfid = o.h.gfid;
        let okey = owner_key(caller, &a.lock);
        let range = a.lock.range();
        let removed = {
            let mut t = self.tables();
            let Some(owner) = t.find_owner(&okey) else {
                return Stat::Denied;
            };
            let key = BlockedKey::new(owner, gfid, range, a.exclusive);
            t.unblock(&key, None).map(|b| (owner, b))
        };
        let Some((owner, b)) = removed else {
            return Stat::Denied;
        };
        b.cancel.notify_one();
        info!(host = %b.host, %gfid, granted = b.granted, "NLM blocked lock cancelled");
        if b.granted {
            // The bricks gave it to us for the client, which no longer wants it.
            self.give_back(owner, gfid, range).await;
            self.tables().release(owner, gfid, range);
        }
        Stat::Granted
    }
}
