use serde::{Deserialize, Serialize};
use std::fmt;

use crate::FsError;

/// Largest name a brick accepts for one path component (as Linux NAME_MAX).
pub const NAME_MAX: usize = 255;
/// Largest data payload of one read or write; frames carry a little more.
pub const MAX_IO: u32 = 4 << 20;
/// Largest RPC frame a brick or client accepts.
pub const MAX_FRAME: usize = (MAX_IO as usize) + (1 << 20);
/// Directory holding a brick's private metadata, hidden from clients.
pub const PRIVATE_DIR: &str = ".brickfs";

/// 128-bit identity of a file or directory, the same on every replica.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Gfid(pub [u8; 16]);

impl Gfid {
    pub const ROOT: Gfid = Gfid([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

    pub fn random() -> Gfid {
        Gfid(*uuid::Uuid::new_v4().as_bytes())
    }

    pub fn is_root(&self) -> bool {
        *self == Gfid::ROOT
    }

    /// The inode number a front-end shows for this gfid: stable across
    /// restarts and identical on every client. The root is always 1.
    pub fn ino(&self) -> u64 {
        if self.is_root() {
            return 1;
        }
        let hi = u64::from_be_bytes(self.0[..8].try_into().unwrap_or([0; 8]));
        let lo = u64::from_be_bytes(self.0[8..].try_into().unwrap_or([0; 8]));
        let ino = hi ^ lo.rotate_left(17);
        // 0 and 1 are reserved (invalid, root).
        if ino < 2 {
            ino + 2
        } else {
            ino
        }
    }

    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    pub fn from_hex(s: &str) -> Option<Gfid> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Gfid(out))
    }
}

impl fmt::Debug for Gfid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&uuid::Uuid::from_bytes(self.0).to_string())
    }
}

impl fmt::Display for Gfid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Identity of a client connection's owner (a mount or a gateway process).
pub type ClientId = u128;

/// Position of a brick in its replica set (0, 1, 2). Changelog blame is kept
/// by position, as in AFR's `trusted.afr.<vol>-client-<i>`, so a client can
/// blame a brick it has never reached and a replaced brick inherits the blame.
pub type ReplicaIndex = u8;

/// A brick's UUID, created on its first start and kept in its directory.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BrickId(pub [u8; 16]);

impl BrickId {
    pub fn to_hex(&self) -> String {
        Gfid(self.0).to_hex()
    }
    pub fn from_hex(s: &str) -> Option<BrickId> {
        Gfid::from_hex(s).map(|g| BrickId(g.0))
    }
}

impl fmt::Debug for BrickId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&uuid::Uuid::from_bytes(self.0).to_string())
    }
}

impl fmt::Display for BrickId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BrickInfo {
    pub id: BrickId,
    /// Names this connection on the brick's data port (see [`crate::data`]),
    /// so reads and writes there share its locks.
    pub session: u64,
    pub dir: String,
    pub version: String,
}

/// Raw bytes on the wire, serialized as one blob rather than element by element.
pub type Bytes = serde_bytes::ByteBuf;

/// One path component. Linux names are bytes, not UTF-8.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Name(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl Name {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Name {
        Name(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Rejects anything that is not exactly one ordinary path component.
    pub fn validate(&self) -> Result<(), FsError> {
        let b = &self.0;
        if b.is_empty() || b == b"." || b == b".." {
            return Err(FsError::BadName(self.to_string()));
        }
        if b.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        if b.contains(&b'/') || b.contains(&0) {
            return Err(FsError::BadName(self.to_string()));
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name(s.as_bytes().to_vec())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timespec {
    pub secs: i64,
    pub nsecs: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attr {
    pub gfid: Gfid,
    pub kind: FileKind,
    /// Permission bits including setuid/setgid/sticky (mode & 0o7777).
    pub perm: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub blocks: u64,
    pub blksize: u32,
    pub rdev: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
}

impl Attr {
    /// An object of `kind` with mode `perm` and nothing else known: owned by
    /// root, empty, times at the epoch. Tests start from it and change the
    /// fields they are about.
    pub fn bare(gfid: Gfid, kind: FileKind, perm: u32) -> Attr {
        Attr {
            gfid,
            kind,
            perm,
            nlink: if kind == FileKind::Dir { 2 } else { 1 },
            uid: 0,
            gid: 0,
            size: 0,
            blocks: 0,
            blksize: 4096,
            rdev: 0,
            atime: Timespec::default(),
            mtime: Timespec::default(),
            ctime: Timespec::default(),
        }
    }
}

/// Changelog counters one brick holds against another: operations of each
/// kind that the blamed brick missed (AFR's data | metadata | entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCounts {
    pub data: u32,
    pub metadata: u32,
    pub entry: u32,
}

impl PendingCounts {
    pub fn is_zero(&self) -> bool {
        self.data == 0 && self.metadata == 0 && self.entry == 0
    }

    pub fn of(&self, kind: PendingKind) -> u32 {
        match kind {
            PendingKind::Data => self.data,
            PendingKind::Metadata => self.metadata,
            PendingKind::Entry => self.entry,
        }
    }

    pub fn of_mut(&mut self, kind: PendingKind) -> &mut u32 {
        match kind {
            PendingKind::Data => &mut self.data,
            PendingKind::Metadata => &mut self.metadata,
            PendingKind::Entry => &mut self.entry,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingKind {
    Data,
    Metadata,
    Entry,
}

/// What a lookup or getattr returns: the attributes and the changelog state,
/// so the client can tell whether this replica is a good source.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Looked {
    pub attr: Attr,
    /// Blame this brick holds against others for this object, by the blamed
    /// brick's index in the replica set.
    pub pending: Vec<(ReplicaIndex, PendingCounts)>,
    /// A transaction on this object started here and has not been confirmed.
    pub dirty: bool,
}

impl Looked {
    /// The counters this copy holds against `replica` (its own index: an
    /// accusation of itself).
    pub fn against(&self, replica: usize) -> PendingCounts {
        self.pending
            .iter()
            .find(|(i, _)| usize::from(*i) == replica)
            .map(|(_, c)| *c)
            .unwrap_or_default()
    }
}

/// Replication context of a mutating operation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Txn {
    /// Bricks of the replica set (by index) this operation will not reach:
    /// the brick records that it holds blame against them (pending counters
    /// + heal index).
    pub blame: Vec<ReplicaIndex>,
    /// Set by the brick, never read off the wire: the connection is a
    /// maintenance one (`Purpose::Maintenance`), so quotas do not refuse.
    #[serde(skip)]
    pub maintenance: bool,
}

impl Txn {
    pub fn none() -> Txn {
        Txn::blaming(Vec::new())
    }

    pub fn blaming(blame: Vec<ReplicaIndex>) -> Txn {
        Txn {
            blame,
            maintenance: false,
        }
    }
}

/// Result of a mutating operation plus a hint for the eager-lock holder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Done<T> {
    pub value: T,
    /// Another client is waiting for a lock this connection holds on the object.
    pub contended: bool,
    /// Attributes of the directories an entry operation changed, right after
    /// it (as NFS's wcc data): the client answers the kernel's next GETATTR
    /// of the parent from these instead of asking again.
    pub parents: Vec<Attr>,
}

/// Extended attributes of the distribute layer (directory layouts, link
/// files): bricks accept them from clients although they are under the
/// private `trusted.brickfs.` prefix; front-ends never pass them through.
pub const DHT_XATTR_PREFIX: &[u8] = b"trusted.brickfs.dht.";

/// The limits of a sub-volume, on its root directory (see `QuotaLimit`):
/// like the distribute layer's attributes, set through the client stack so
/// that replicate and heal carry it, and never passed through front-ends.
pub const QUOTA_XATTR: &[u8] = b"trusted.brickfs.quota";

/// Xattrs under the private prefix that clients may set and list (the
/// brick keeps every other private name to itself).
pub fn is_shared_private_xattr(name: &[u8]) -> bool {
    name.starts_with(DHT_XATTR_PREFIX) || name == QUOTA_XATTR
}

/// Limits of a sub-volume: bytes (apparent file sizes) and, optionally,
/// objects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaLimit {
    pub bytes: u64,
    pub inodes: Option<u64>,
}

impl QuotaLimit {
    /// 16 bytes, little-endian: bytes, then objects (0: no object limit).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.bytes.to_le_bytes());
        out.extend_from_slice(&self.inodes.unwrap_or(0).to_le_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<QuotaLimit> {
        if b.len() != 16 {
            return None;
        }
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[..8]);
        let bytes = u64::from_le_bytes(x);
        x.copy_from_slice(&b[8..]);
        let inodes = u64::from_le_bytes(x);
        Some(QuotaLimit {
            bytes,
            inodes: (inodes != 0).then_some(inodes),
        })
    }
}

/// A sub-volume's usage as one brick (or, summed, one volume) counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUse {
    /// The gfid of the sub-volume's root directory.
    pub subvol: Gfid,
    pub limit: QuotaLimit,
    pub bytes: u64,
    pub inodes: u64,
}

/// Everything needed to create one object identically on every replica.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewObject {
    pub name: Name,
    /// Chosen by the client so that all replicas agree.
    pub gfid: Gfid,
    pub kind: FileKind,
    /// Permission bits, umask already applied.
    pub perm: u32,
    pub rdev: u64,
    pub uid: u32,
    pub gid: u32,
    /// Symlink target, for `FileKind::Symlink`.
    pub target: Option<Bytes>,
    /// Extended attributes the object is born with (a directory's
    /// distribute layout), set before it gets its gfid.
    #[serde(default)]
    pub xattrs: Vec<(Name, Bytes)>,
    /// The creator takes the replication lock on the new object at once, so
    /// its first writes need no lock round trip.
    pub lock: bool,
    /// A file's first bytes (at offset 0), written before it gets its name:
    /// a small file created, written and closed costs one round trip, and
    /// it never appears at its name without them. At most
    /// [`MAX_CREATE_DATA`]; empty for everything else.
    #[serde(default)]
    pub data: Bytes,
    /// A file's times as its creator set them before anybody could see it
    /// (tar's `futimens` right after the data), applied after `data`; a
    /// time not given is the brick's now, as for any create.
    #[serde(default)]
    pub times: NewTimes,
}

/// The times a create sets on a new file; files only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTimes {
    pub atime: Option<Timespec>,
    pub mtime: Option<Timespec>,
}

impl NewTimes {
    pub fn is_empty(&self) -> bool {
        self.atime.is_none() && self.mtime.is_none()
    }
}

/// Most bytes one `copy_range` call copies: a copy within a brick is
/// quick, but one call must still end well within an operation's deadline.
pub const MAX_COPY: u64 = 64 << 20;

/// Most bytes a create may carry ([`NewObject::data`]): a small file's
/// worth, since the create travels on the RPC connection, not the data one.
pub const MAX_CREATE_DATA: usize = 128 << 10;

/// What `copy_range` copies: up to `len` (at most [`MAX_COPY`]) bytes of
/// `src` from `src_offset` into `dst` at `dst_offset`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct CopyRange {
    pub src: Gfid,
    pub src_offset: u64,
    pub dst: Gfid,
    pub dst_offset: u64,
    pub len: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RenameReq {
    pub parent: Gfid,
    pub name: Name,
    pub new_parent: Gfid,
    pub new_name: Name,
    /// RENAME_NOREPLACE / RENAME_EXCHANGE as in renameat2(2).
    pub flags: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeSet {
    Now,
    At(Timespec),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAttr {
    pub perm: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
}

impl SetAttr {
    pub fn touches_data(&self) -> bool {
        self.size.is_some()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DirEntry {
    pub name: Name,
    pub attr: Attr,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DirPage {
    pub entries: Vec<DirEntry>,
    pub eof: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
    /// The sub-volume the asked object is in, with its usage.
    pub quota: Option<QuotaUse>,
}

impl StatFs {
    /// What `df` should show: for an object in a sub-volume, size = limit,
    /// used = usage, available = the rest but never more than the pool has.
    pub fn as_seen(&self) -> StatFs {
        let Some(q) = self.quota else {
            return self.clone();
        };
        let frsize = u64::from(self.frsize.max(1));
        let blocks = q.limit.bytes / frsize;
        let used = q.bytes.div_ceil(frsize).min(blocks);
        let free = (blocks - used).min(self.bavail);
        let (files, ffree) = match q.limit.inodes {
            Some(max) => (max, max.saturating_sub(q.inodes).min(self.ffree)),
            None => (self.files, self.ffree),
        };
        StatFs {
            blocks,
            bfree: free,
            bavail: free,
            files,
            ffree,
            ..self.clone()
        }
    }
}

/// Why a client connects: maintenance connections (heal, rebalance) are
/// counted against quotas but never refused by them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    #[default]
    Client,
    Maintenance,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockMode {
    /// Take the lock; wait up to this many milliseconds for another holder.
    Acquire {
        wait_ms: u32,
    },
    Release,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockGrant {
    pub granted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordLockType {
    Read,
    Write,
    Unlock,
}

/// A POSIX record lock or flock. `end` is inclusive; `u64::MAX` means to EOF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordLock {
    /// Lock owner as the kernel gives it, made unique per client by the brick.
    pub owner: u64,
    pub pid: u32,
    pub start: u64,
    pub end: u64,
    pub typ: RecordLockType,
    pub flock: bool,
}

/// A brick's answer to a ping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// Objects that may need heal here now: the heal index plus dirty
    /// marks nobody will confirm (0: every replica is as good as this one
    /// as far as this brick knows).
    pub heal_entries: u64,
    /// Additions to and removals from the heal index since the brick
    /// started: moves with every change, even when they cancel out in size.
    pub index_changes: u64,
}

/// One object that may need heal, as one brick sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealEntry {
    pub gfid: Gfid,
    /// Listed in the heal index: this brick blames another for it.
    pub blamed: bool,
    /// A transaction on it started here and nobody will confirm it.
    pub dirty: bool,
    /// The object is a directory (heal its entries before other objects).
    pub dir: bool,
    /// Why the last heal of it did not finish, as the healer told this
    /// brick (`heal_note`); `None` until a heal tried.
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HealPage {
    pub entries: Vec<HealEntry>,
    pub eof: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checksums {
    pub size: u64,
    pub blocks: Vec<[u8; 32]>,
}

/// What heal does to one name of a directory on a sink brick.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum EntryFix {
    /// Create the object the source has, with its gfid, empty; data,
    /// times and xattrs follow by data and metadata heal.
    Create(NewObject),
    /// Give an object this brick already has (by gfid) this name: a new
    /// link for a file, a move for a directory (renamed while away).
    Link(Gfid),
    /// Remove the name, which must still be `gfid`. A file whose gfid
    /// lives on elsewhere on the source keeps its data (`keep`) until its
    /// new name is linked; a directory goes with everything below it.
    Remove { gfid: Gfid, keep: bool },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_are_rejected() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0b"] {
            assert!(Name::new(bad).validate().is_err(), "{bad:?}");
        }
        assert_eq!(
            Name::new(vec![b'x'; 256]).validate(),
            Err(FsError::NameTooLong)
        );
        assert!(Name::new(vec![b'x'; 255]).validate().is_ok());
        assert!(Name::new(&b"\xff\xfe not utf8"[..]).validate().is_ok());
    }

    #[test]
    fn gfid_hex_round_trip_and_ino() {
        let g = Gfid::random();
        assert_eq!(Gfid::from_hex(&g.to_hex()), Some(g));
        assert_eq!(Gfid::ROOT.ino(), 1);
        assert!(g.ino() >= 2);
        assert_eq!(Gfid::from_hex("zz"), None);
    }
}

/// What `volume profile` asks of a brick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProfileCmd {
    Start,
    Info,
    Stop,
}

/// One fop's figures on one brick: calls, failed calls, total time, and
/// calls per latency bucket (the brick's bucket bounds, in µs, come with
/// the report).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FopStat {
    pub op: String,
    pub count: u64,
    pub errors: u64,
    pub sum_us: u64,
    pub slots: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileReport {
    /// Seconds since the brick started.
    pub uptime_secs: u64,
    /// Upper bounds of the latency buckets, in µs (one slot more: slower).
    pub bucket_bounds_us: Vec<u64>,
    /// Since the brick started.
    pub cumulative: Vec<FopStat>,
    /// Since `Start`, and how many seconds ago that was; `None` when not
    /// started (or the brick restarted since).
    pub since_start: Option<(u64, Vec<FopStat>)>,
}

/// One file's traffic on one brick (`volume top`): client reads and
/// writes (heal's not counted), and its path on the brick when the last
/// name the brick saw for it still leads to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotFile {
    pub gfid: Gfid,
    pub path: Option<String>,
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub write_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopReport {
    /// The busiest first.
    pub files: Vec<HotFile>,
    /// Files the brick counts at the moment, and at most.
    pub tracked: u64,
    pub tracked_max: u64,
}
