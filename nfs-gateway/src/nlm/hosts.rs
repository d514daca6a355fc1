//! Client hosts as the lock manager knows them.
//!
//! A host is the address its calls come from together with the name it
//! gives (`caller_name`): two clients behind one address (NAT, several
//! test clients on loopback) stay apart, and a name alone (containers
//! often all call themselves `localhost`) never merges two machines.
//! Callbacks and probes go to the address; SM_NOTIFY is matched by address.

use std::fmt;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostKey {
    pub addr: IpAddr,
    /// `caller_name`, at most `LM_MAXSTRLEN` bytes.
    pub name: Vec<u8>,
}

impl HostKey {
    /// IPv4 clients of an IPv6 listener arrive as `::ffff:a.b.c.d`; they
    /// are the same host as over IPv4, and are called back over IPv4.
    pub fn new(addr: IpAddr, name: &[u8]) -> HostKey {
        HostKey {
            addr: addr.to_canonical(),
            name: name.to_vec(),
        }
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.addr, String::from_utf8_lossy(&self.name))
    }
}

/// What the gateway keeps about one host.
#[derive(Clone, Debug)]
pub struct Host {
    /// Our address as this host knows it (where its calls arrived): the
    /// name its statd monitors us by, and the source of our callbacks,
    /// which the Linux client checks against the server it locked with.
    pub server: IpAddr,
    /// Unique per appearance of the host: a lock granted by the bricks
    /// while the host was being freed is noticed (the epoch changed) and
    /// given back instead of recorded.
    pub epoch: u64,
    /// The last call from the host or answer to one of our probes.
    pub last_heard: Instant,
    /// (owner, file) pairs with locks held.
    pub held: usize,
    /// Blocked lock requests waiting for a grant.
    pub blocked: usize,
    /// Persisted in the state directory (it is told of our restarts).
    pub recorded: bool,
    /// The host's NSM state number from its last lock request: an
    /// SM_NOTIFY with the same number is old news (those locks were taken
    /// after that reboot).
    pub client_state: Option<i32>,
}

impl Host {
    pub fn new(server: IpAddr, epoch: u64, now: Instant) -> Host {
        Host {
            server: server.to_canonical(),
            epoch,
            last_heard: now,
            held: 0,
            blocked: 0,
            recorded: false,
            client_state: None,
        }
    }

    /// Holds locks or waits for one: worth probing, not worth forgetting.
    pub fn active(&self) -> bool {
        self.held > 0 || self.blocked > 0
    }
}
