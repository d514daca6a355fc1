//! The lock manager's state: hosts, lock owners, the files each owner
//! holds locks in, and blocked requests. Plain data behind one mutex (the
//! caller's); nothing here waits or does I/O, and every table is bounded.
//!
//! Owner mapping: an NLM lock owner is (host, owner handle `oh`, `svid`),
//! and the bricks know owners as a `u64` per client connection. Each NLM
//! owner gets the next number of a counter the first time it locks, so two
//! NLM owners never share one (a hash could collide); the gateway is one
//! brick client, so its numbers cannot collide with a FUSE client's, and a
//! FUSE client and an NFS client exclude each other as two owners do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use proto::Gfid;
use tokio::sync::Notify;

use super::hosts::{Host, HostKey};
use super::ranges::Ranges;
use super::xdr::TestArgs;

/// The bounds of every table.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub hosts: usize,
    pub owners: usize,
    /// (owner, file) pairs with locks held, over all hosts.
    pub held: usize,
    /// Separate ranges one owner holds in one file.
    pub ranges: usize,
    pub blocked: usize,
    pub blocked_per_host: usize,
}

pub const LIMITS: Limits = Limits {
    hosts: 4096,
    owners: 65_536,
    held: 262_144,
    ranges: 256,
    blocked: 4096,
    blocked_per_host: 256,
};

/// Which bound a request ran into (NLM4_DENIED_NOLOCKS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    #[error("too many client hosts")]
    Hosts,
    #[error("too many lock owners")]
    Owners,
    #[error("too many locked files")]
    Held,
    #[error("too many separate ranges locked in one file by one owner")]
    Ranges,
    #[error("too many blocked lock requests")]
    Blocked,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwnerKey {
    pub host: HostKey,
    pub oh: Vec<u8>,
    pub svid: i32,
}

struct OwnerInfo {
    key: OwnerKey,
    files: usize,
    blocked: usize,
}

/// A blocked request is the same request when it is for the same owner,
/// file, range and type (the Linux client sends its blocked LOCK again
/// every 30 s, and CANCEL names the request this way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockedKey {
    pub owner: u64,
    pub gfid: Gfid,
    pub start: u64,
    pub end: u64,
    pub exclusive: bool,
}

impl BlockedKey {
    pub fn new(owner: u64, gfid: Gfid, (start, end): (u64, u64), exclusive: bool) -> BlockedKey {
        BlockedKey {
            owner,
            gfid,
            start,
            end,
            exclusive,
        }
    }

    pub fn range(&self) -> (u64, u64) {
        (self.start, self.end)
    }
}

#[derive(Clone, Debug)]
pub struct Blocked {
    /// Tells this request from an earlier one with the same key.
    pub id: u64,
    pub host: HostKey,
    /// The GRANTED callback's arguments: the client's lock as it sent it.
    pub grant: TestArgs,
    /// The bricks granted it; the client has not acknowledged the callback.
    pub granted: bool,
    /// Wakes the waiting task when the request is cancelled.
    pub cancel: Arc<Notify>,
}

/// What freeing a host took away: the locks to give back to the bricks.
#[derive(Debug)]
pub struct Freed {
    pub host: Host,
    pub held: Vec<(u64, Gfid, Ranges)>,
    pub blocked: Vec<Blocked>,
}

pub struct Tables {
    limits: Limits,
    hosts: HashMap<HostKey, Host>,
    owners: HashMap<OwnerKey, u64>,
    owner_info: HashMap<u64, OwnerInfo>,
    held: HashMap<(u64, Gfid), Ranges>,
    blocked: HashMap<BlockedKey, Blocked>,
    next_owner: u64,
    next_id: u64,
}

impl Tables {
    pub fn new(limits: Limits) -> Tables {
        Tables {
            limits,
            hosts: HashMap::new(),
            owners: HashMap::new(),
            owner_info: HashMap::new(),
            held: HashMap::new(),
            blocked: HashMap::new(),
            // 0 is never an owner: TEST by an owner we do not know uses it.
            next_owner: 1,
            next_id: 1,
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The host, created if new, heard from now; its epoch.
    pub fn touch(&mut self, key: &HostKey, server: IpAddr, now: Instant) -> Result<u64, Full> {
        if let Some(h) = self.hosts.get_mut(key) {
            h.last_heard = now;
            h.server = server.to_canonical();
            return Ok(h.epoch);
        }
        if self.hosts.len() >= self.limits.hosts {
            return Err(Full::Hosts);
        }
        let epoch = self.next_id();
        self.hosts
            .insert(key.clone(), Host::new(server, epoch, now));
        Ok(epoch)
    }

    pub fn host(&self, key: &HostKey) -> Option<&Host> {
        self.hosts.get(key)
    }

    pub fn host_mut(&mut self, key: &HostKey) -> Option<&mut Host> {
        self.hosts.get_mut(key)
    }

    pub fn hosts(&self) -> impl Iterator<Item = (&HostKey, &Host)> {
        self.hosts.iter()
    }

    /// The owner's brick-side number, allocated on first use.
    pub fn owner(&mut self, key: &OwnerKey) -> Result<u64, Full> {
        if let Some(id) = self.owners.get(key) {
            return Ok(*id);
        }
        if self.owners.len() >= self.limits.owners {
            return Err(Full::Owners);
        }
        let id = self.next_owner;
        self.next_owner += 1;
        self.owners.insert(key.clone(), id);
        self.owner_info.insert(
            id,
            OwnerInfo {
                key: key.clone(),
                files: 0,
                blocked: 0,
            },
        );
        Ok(id)
    }

    pub fn find_owner(&self, key: &OwnerKey) -> Option<u64> {
        self.owners.get(key).copied()
    }

    pub fn owner_key(&self, id: u64) -> Option<&OwnerKey> {
        self.owner_info.get(&id).map(|o| &o.key)
    }

    /// Forgets an owner that holds nothing and waits for nothing (its next
    /// lock gets a new number: the bricks hold nothing for the old one).
    pub fn forget_if_unused(&mut self, id: u64) {
        if let Some(o) = self.owner_info.get(&id) {
            if o.files == 0 && o.blocked == 0 {
                let key = o.key.clone();
                self.owner_info.remove(&id);
                self.owners.remove(&key);
            }
        }
    }

    /// Whether a lock of `owner` on `gfid` would fit (checked before the
    /// bricks are asked, so a full table costs no round trip).
    pub fn may_hold(&self, owner: u64, gfid: Gfid) -> Result<(), Full> {
        match self.held.get(&(owner, gfid)) {
            Some(r) if r.len() >= self.limits.ranges => Err(Full::Ranges),
            Some(_) => Ok(()),
            None if self.held.len() >= self.limits.held => Err(Full::Held),
            None => Ok(()),
        }
    }

    /// Records a lock the bricks granted. `Ok(false)`: the host was freed
    /// (or freed and back) since `epoch`, so the lock must be given back.
    pub fn hold(
        &mut self,
        owner: u64,
        gfid: Gfid,
        (start, end): (u64, u64),
        epoch: u64,
    ) -> Result<bool, Full> {
        let Some(info) = self.owner_info.get(&owner) else {
            return Ok(false);
        };
        let host_key = info.key.host.clone();
        if self.hosts.get(&host_key).map(|h| h.epoch) != Some(epoch) {
            return Ok(false);
        }
        self.may_hold(owner, gfid)?;
        if !self.held.contains_key(&(owner, gfid)) {
            if let Some(o) = self.owner_info.get_mut(&owner) {
                o.files += 1;
            }
            if let Some(h) = self.hosts.get_mut(&host_key) {
                h.held += 1;
            }
        }
        // `may_hold` left room for one more range; merging only shrinks.
        self.held.entry((owner, gfid)).or_default().add(start, end);
        Ok(true)
    }

    /// Forgets `start..=end` of what `owner` holds in `gfid`.
    pub fn release(&mut self, owner: u64, gfid: Gfid, (start, end): (u64, u64)) {
        let Some(ranges) = self.held.get_mut(&(owner, gfid)) else {
            return;
        };
        ranges.remove(start, end);
        if !ranges.is_empty() {
            return;
        }
        self.held.remove(&(owner, gfid));
        if let Some(o) = self.owner_info.get_mut(&owner) {
            o.files = o.files.saturating_sub(1);
            let host = o.key.host.clone();
            if let Some(h) = self.hosts.get_mut(&host) {
                h.held = h.held.saturating_sub(1);
            }
        }
        self.forget_if_unused(owner);
    }

    pub fn blocked(&self, key: &BlockedKey) -> Option<&Blocked> {
        self.blocked.get(key)
    }

    /// Registers a blocked request; its id and what cancels its wait. The
    /// id is the GRANTED callback's cookie (the client matches a grant by
    /// its lock, not by cookie; the cookie only has to be ours).
    pub fn block(
        &mut self,
        key: BlockedKey,
        host: &HostKey,
        mut grant: TestArgs,
    ) -> Result<(u64, Arc<Notify>), Full> {
        if self.blocked.len() >= self.limits.blocked {
            return Err(Full::Blocked);
        }
        let Some(h) = self.hosts.get(host) else {
            return Err(Full::Hosts);
        };
        if h.blocked >= self.limits.blocked_per_host {
            return Err(Full::Blocked);
        }
        let id = self.next_id();
        grant.cookie = id.to_be_bytes().to_vec();
        let cancel = Arc::new(Notify::new());
        self.blocked.insert(
            key,
            Blocked {
                id,
                host: host.clone(),
                grant,
                granted: false,
                cancel: cancel.clone(),
            },
        );
        if let Some(h) = self.hosts.get_mut(host) {
            h.blocked += 1;
        }
        if let Some(o) = self.owner_info.get_mut(&key.owner) {
            o.blocked += 1;
        }
        Ok((id, cancel))
    }

    /// The waiting task got the lock from the bricks: records it and marks
    /// the request granted, if the request is still this one (`id`) and its
    /// host was not freed meanwhile; otherwise `false` (give it back).
    pub fn grant(&mut self, key: &BlockedKey, id: u64) -> Result<bool, Full> {
        let Some(b) = self.blocked.get(key).filter(|b| b.id == id) else {
            return Ok(false);
        };
        let Some(epoch) = self.hosts.get(&b.host).map(|h| h.epoch) else {
            return Ok(false);
        };
        if !self.hold(key.owner, key.gfid, key.range(), epoch)? {
            return Ok(false);
        }
        if let Some(b) = self.blocked.get_mut(key) {
            b.granted = true;
        }
        Ok(true)
    }

    /// Removes a blocked request (any, or only the one with `id`).
    pub fn unblock(&mut self, key: &BlockedKey, id: Option<u64>) -> Option<Blocked> {
        if id.is_some_and(|id| self.blocked.get(key).map(|b| b.id) != Some(id)) {
            return None;
        }
        let b = self.blocked.remove(key)?;
        if let Some(h) = self.hosts.get_mut(&b.host) {
            h.blocked = h.blocked.saturating_sub(1);
        }
        if let Some(o) = self.owner_info.get_mut(&key.owner) {
            o.blocked = o.blocked.saturating_sub(1);
        }
        self.forget_if_unused(key.owner);
        Some(b)
    }

    /// Removes the host with all it holds and waits for.
    pub fn free_host(&mut self, key: &HostKey) -> Option<Freed> {
        let host = self.hosts.remove(key)?;
        let ids: Vec<u64> = self
            .owner_info
            .iter()
            .filter(|(_, o)| &o.key.host == key)
            .map(|(id, _)| *id)
            .collect();
        let mut held = Vec::new();
        let mut blocked = Vec::new();
        let keys: Vec<BlockedKey> = self
            .blocked
            .keys()
            .filter(|k| ids.contains(&k.owner))
            .copied()
            .collect();
        for k in keys {
            if let Some(b) = self.blocked.remove(&k) {
                blocked.push(b);
            }
        }
        self.held.retain(|(owner, gfid), ranges| {
            if ids.contains(owner) {
                held.push((*owner, *gfid, std::mem::take(ranges)));
                false
            } else {
                true
            }
        });
        for id in ids {
            if let Some(o) = self.owner_info.remove(&id) {
                self.owners.remove(&o.key);
            }
        }
        Some(Freed {
            host,
            held,
            blocked,
        })
    }

    /// Counts for the log and the tests: hosts, owners, held pairs, blocked.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.hosts.len(),
            self.owners.len(),
            self.held.len(),
            self.blocked.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nlm::xdr::tests::lock;

    fn host(name: &str) -> HostKey {
        HostKey::new("10.0.0.1".parse().expect("ip"), name.as_bytes())
    }

    fn owner(h: &HostKey, svid: i32) -> OwnerKey {
        OwnerKey {
            host: h.clone(),
            oh: format!("{svid}@x").into_bytes(),
            svid,
        }
    }

    fn server() -> IpAddr {
        "10.0.0.254".parse().expect("ip")
    }

    fn grant() -> TestArgs {
        TestArgs {
            cookie: vec![],
            exclusive: true,
            lock: lock(),
        }
    }

    #[test]
    fn owners_are_unique_and_pruned() {
        let mut t = Tables::new(LIMITS);
        let now = Instant::now();
        let (a, b) = (host("a"), host("b"));
        let ea = t.touch(&a, server(), now).expect("host");
        t.touch(&b, server(), now).expect("host");
        let o1 = t.owner(&owner(&a, 1)).expect("owner");
        let o2 = t.owner(&owner(&a, 2)).expect("owner");
        let o3 = t.owner(&owner(&b, 1)).expect("owner");
        assert!(o1 != o2 && o2 != o3 && o1 != o3 && o1 != 0);
        assert_eq!(t.owner(&owner(&a, 1)), Ok(o1), "stable while in use");
        // Same svid, other oh: another owner.
        let other = OwnerKey {
            oh: b"other".to_vec(),
            ..owner(&a, 1)
        };
        assert_ne!(t.owner(&other), Ok(o1));

        let g = Gfid::random();
        assert_eq!(t.hold(o1, g, (0, 9), ea), Ok(true));
        assert_eq!(t.hold(o1, g, (20, 29), ea), Ok(true));
        assert_eq!(t.host(&a).map(|h| h.held), Some(1));
        t.release(o1, g, (0, 9));
        assert_eq!(t.find_owner(&owner(&a, 1)), Some(o1));
        t.release(o1, g, (0, u64::MAX));
        assert_eq!(t.find_owner(&owner(&a, 1)), None, "nothing held: gone");
        assert_eq!(t.host(&a).map(|h| h.held), Some(0));
        assert!(t.host(&a).is_some(), "hosts stay until forgotten");
    }

    #[test]
    fn a_lock_granted_while_its_host_was_freed_is_not_recorded() {
        let mut t = Tables::new(LIMITS);
        let a = host("a");
        let epoch = t.touch(&a, server(), Instant::now()).expect("host");
        let o = t.owner(&owner(&a, 1)).expect("owner");
        let g = Gfid::random();
        assert_eq!(t.hold(o, g, (0, 0), epoch), Ok(true));
        let freed = t.free_host(&a).expect("freed");
        assert_eq!(freed.held.len(), 1);
        assert_eq!(t.counts(), (0, 0, 0, 0));
        // The host comes back; a grant from before the free is stale.
        let again = t.touch(&a, server(), Instant::now()).expect("host");
        assert_ne!(again, epoch);
        let o = t.owner(&owner(&a, 1)).expect("owner");
        assert_eq!(t.hold(o, g, (0, 0), epoch), Ok(false));
        assert_eq!(t.hold(o, g, (0, 0), again), Ok(true));
    }

    #[test]
    fn blocked_requests() {
        let mut t = Tables::new(LIMITS);
        let a = host("a");
        t.touch(&a, server(), Instant::now()).expect("host");
        let o = t.owner(&owner(&a, 1)).expect("owner");
        let key = BlockedKey {
            owner: o,
            gfid: Gfid::random(),
            start: 0,
            end: u64::MAX,
            exclusive: true,
        };
        let (id, _cancel) = t.block(key, &a, grant()).expect("blocked");
        assert_eq!(t.host(&a).map(|h| h.blocked), Some(1));
        // A later request with the same key does not match an old id.
        assert_eq!(t.grant(&key, id + 100), Ok(false));
        assert_eq!(t.grant(&key, id), Ok(true));
        assert!(t.blocked(&key).is_some_and(|b| b.granted));
        assert_eq!(t.host(&a).map(|h| h.held), Some(1));
        assert!(t.unblock(&key, Some(id + 1)).is_none());
        assert!(t.unblock(&key, Some(id)).is_some());
        assert_eq!(t.host(&a).map(|h| (h.held, h.blocked)), Some((1, 0)));
        let freed = t.free_host(&a).expect("freed");
        assert_eq!(freed.held.len(), 1);
    }

    #[test]
    fn bounds() {
        let limits = Limits {
            hosts: 2,
            owners: 2,
            held: 2,
            ranges: 2,
            blocked: 2,
            blocked_per_host: 1,
        };
        let mut t = Tables::new(limits);
        let now = Instant::now();
        let (a, b, c) = (host("a"), host("b"), host("c"));
        let ea = t.touch(&a, server(), now).expect("host");
        t.touch(&b, server(), now).expect("host");
        assert_eq!(t.touch(&c, server(), now), Err(Full::Hosts));
        let o1 = t.owner(&owner(&a, 1)).expect("owner");
        let o2 = t.owner(&owner(&b, 1)).expect("owner");
        assert_eq!(t.owner(&owner(&a, 3)), Err(Full::Owners));
        let (g1, g2, g3) = (Gfid::random(), Gfid::random(), Gfid::random());
        assert_eq!(t.hold(o1, g1, (0, 0), ea), Ok(true));
        assert_eq!(t.hold(o1, g2, (0, 0), ea), Ok(true));
        assert_eq!(t.may_hold(o1, g3), Err(Full::Held));
        assert_eq!(t.hold(o1, g1, (10, 10), ea), Ok(true));
        assert_eq!(t.may_hold(o1, g1), Err(Full::Ranges));
        assert_eq!(t.hold(o1, g1, (20, 20), ea), Err(Full::Ranges));
        let key = |owner, gfid| BlockedKey {
            owner,
            gfid,
            start: 0,
            end: 0,
            exclusive: false,
        };
        t.block(key(o1, g1), &a, grant()).expect("first");
        assert!(matches!(
            t.block(key(o1, g2), &a, grant()),
            Err(Full::Blocked)
        ));
        t.block(key(o2, g1), &b, grant()).expect("other host");
        assert!(matches!(
            t.block(key(o2, g3), &b, grant()),
            Err(Full::Blocked)
        ));
    }
}
