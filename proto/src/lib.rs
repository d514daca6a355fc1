//! Wire types shared by bricks and clients: gfids, attributes, names, the brick
//! RPC service and the one error type whose errno survives the wire.
//!
//! Architecture invariant: this is the only crate whose types derive
//! `Serialize`; everything that crosses a socket is defined here.

pub mod backoff;
pub mod data;
pub mod error;
pub mod types;
pub mod wire;

pub use error::{FsError, FsResult};
pub use types::*;

/// The brick RPC service. Every mutating call carries a [`Txn`] saying which
/// bricks of the replica set will miss it, so the brick can blame them in its
/// changelog as part of the same round trip (the AFR pre-op/post-op folded in).
///
/// Objects are addressed by gfid; names only ever appear as one path
/// component relative to a parent gfid and are validated by the brick.
#[tarpc::service]
pub trait Brick {
    /// First call on every connection: the client names itself (its id scopes
    /// locks, which end with the connection) and learns the brick's identity.
    async fn hello(client: ClientId, volume: String, purpose: Purpose) -> FsResult<BrickInfo>;
    /// Liveness check; answers with the state of the brick's heal index.
    async fn ping() -> Pong;
    /// After `hello`: limits the connection to the sub-volumes a scope
    /// token of the management API names (required of a tenant's host;
    /// sent again to renew it before it expires).
    async fn scope(token: String) -> FsResult<()>;

    async fn lookup(parent: Gfid, name: Name) -> FsResult<Looked>;
    async fn getattr(gfid: Gfid) -> FsResult<Looked>;
    async fn setattr(txn: Txn, gfid: Gfid, set: SetAttr) -> FsResult<Done<Attr>>;
    async fn create(txn: Txn, parent: Gfid, new: NewObject) -> FsResult<Done<Attr>>;
    /// Removes a name. `keep_open`: the caller has the file open, so a file
    /// losing its last name stays readable by gfid until the caller purges
    /// it (POSIX open-unlinked files); its gfid is returned then.
    async fn unlink(
        txn: Txn,
        parent: Gfid,
        name: Name,
        is_dir: bool,
        keep_open: bool,
    ) -> FsResult<Done<Option<Gfid>>>;
    /// The caller closed these open-unlinked files: their data goes.
    async fn purge(gfids: Vec<Gfid>) -> FsResult<()>;
    async fn rename(txn: Txn, req: RenameReq) -> FsResult<Done<()>>;
    async fn link(txn: Txn, gfid: Gfid, parent: Gfid, name: Name) -> FsResult<Done<Attr>>;
    async fn readlink(gfid: Gfid) -> FsResult<Bytes>;

    async fn read(gfid: Gfid, offset: u64, size: u32) -> FsResult<Bytes>;
    async fn write(txn: Txn, gfid: Gfid, offset: u64, data: Bytes) -> FsResult<Done<Attr>>;
    async fn fsync(gfid: Gfid, datasync: bool) -> FsResult<()>;
    async fn fallocate(
        txn: Txn,
        gfid: Gfid,
        mode: i32,
        offset: u64,
        len: u64,
    ) -> FsResult<Done<Attr>>;
    /// Copies a range of one file into another without the bytes leaving
    /// the brick (copy_file_range); fewer past the source's end. Answers
    /// the bytes copied and the destination's attributes.
    async fn copy_range(txn: Txn, copy: CopyRange) -> FsResult<Done<(u64, Attr)>>;

    /// Entries of a directory in name order, starting after `after`.
    async fn readdir(gfid: Gfid, after: Option<Name>, max: u32) -> FsResult<DirPage>;
    /// The file system of the brick; with the usage of the sub-volume `at`
    /// is in, when it is in one.
    async fn statfs(at: Gfid) -> FsResult<StatFs>;
    /// Local usage of every sub-volume this brick holds.
    async fn quota_usage() -> FsResult<Vec<QuotaUse>>;
    /// What the volume's other replica sets hold of each sub-volume (the
    /// distribute layer's periodic sum), added to local usage when checking.
    async fn quota_elsewhere(others: Vec<QuotaUse>) -> FsResult<()>;

    async fn getxattr(gfid: Gfid, name: Name) -> FsResult<Bytes>;
    async fn listxattr(gfid: Gfid) -> FsResult<Vec<Name>>;
    async fn setxattr(
        txn: Txn,
        gfid: Gfid,
        name: Name,
        value: Bytes,
        flags: i32,
    ) -> FsResult<Done<()>>;
    async fn removexattr(txn: Txn, gfid: Gfid, name: Name) -> FsResult<Done<()>>;

    /// Replication lock on an inode (data+metadata of a file, entries of a
    /// directory). Held by this connection until released or disconnect.
    async fn inodelk(gfid: Gfid, mode: LockMode) -> FsResult<LockGrant>;
    /// Releases locks held by this connection and clears the dirty marks the
    /// brick set for them (the delayed, batched AFR post-op).
    async fn unlock_batch(gfids: Vec<Gfid>) -> FsResult<()>;
    /// Adds blame for bricks that failed an operation after it was sent
    /// (the post-op for the rare case the pre-op could not know).
    async fn mark_pending(gfid: Gfid, blame: Vec<ReplicaIndex>, kind: PendingKind) -> FsResult<()>;
    /// Takes back the blame an op carried for bricks that were down when
    /// the op then failed (applied only on a minority): they missed nothing
    /// that succeeded. Only the holder of the inode's replication lock may,
    /// within the transaction that added it.
    async fn retract_pending(
        gfid: Gfid,
        blame: Vec<ReplicaIndex>,
        kind: PendingKind,
    ) -> FsResult<()>;

    /// POSIX record locks and flock, shared by all clients of the brick.
    async fn getlk(gfid: Gfid, lock: RecordLock) -> FsResult<Option<RecordLock>>;
    async fn setlk(gfid: Gfid, lock: RecordLock) -> FsResult<()>;

    // Self-heal. The healer holds the replication lock of what it repairs
    // (the directory for entries, the file for data and metadata).

    /// What may need heal here: the heal index and the dirty marks nobody
    /// will confirm any more, in gfid order after `after`.
    async fn heal_index(after: Option<Gfid>, max: u32) -> FsResult<HealPage>;
    /// blake3 of `count` blocks of `block` bytes from `offset` (a block past
    /// the end is absent; the last one may be short), and the file's size.
    async fn checksums(gfid: Gfid, offset: u64, block: u32, count: u32) -> FsResult<Checksums>;
    /// Makes the name `name` in directory `parent` what the heal source has.
    async fn heal_entry(parent: Gfid, name: Name, fix: EntryFix) -> FsResult<()>;
    /// The heal of `gfid` is done: subtracts the counters the healer saw
    /// before repairing from this brick's blame, clears the dirty mark and
    /// drops the heal-index entry once nothing is pending.
    async fn heal_done(gfid: Gfid, seen: Vec<(ReplicaIndex, PendingCounts)>) -> FsResult<()>;
    /// Where a directory is (parent and name); `None` for other objects.
    async fn locate(gfid: Gfid) -> FsResult<Option<(Gfid, Name)>>;
    /// Why a heal of `gfid` did not finish, from the healer: listed with
    /// the entry by `heal_index` (so `volume heal NAME info` says why) until
    /// a heal of it is done. Kept in memory only: after a restart the next
    /// heal attempt says it again.
    async fn heal_note(gfid: Gfid, note: String) -> FsResult<()>;

    /// Per-fop counts and latencies of this brick (`volume profile`):
    /// `Start` takes a baseline, `Info` reports since it and since the
    /// brick started, `Stop` drops it. Heal and admin roles only.
    async fn profile(cmd: ProfileCmd) -> FsResult<ProfileReport>;
    /// The `limit` files this brick served most reads and writes for
    /// (`volume top`), then, if `clear`, counting afresh. Heal and admin
    /// roles only.
    async fn top(limit: u32, clear: bool) -> FsResult<TopReport>;
}
