//! The replicate layer: one replica set of bricks presented as one volume.
//!
//! Writes go through [`txn`] (quorum, eager locks, changelog). Reads go to one
//! healthy replica, chosen by gfid so load spreads over the set; a replica is
//! healthy for an inode when no brick blames it. What the bricks blame is
//! learned by asking all of them (lookup, or a validation fan-out the first
//! time an inode is read after any brick (re)connected).

mod attr_cache;
mod held;
mod inodes;
mod reads;
mod txn;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use proto::data::WriteAt;
use proto::{
    Attr, CopyRange, DirPage, FileKind, FsError, FsResult, Gfid, Name, NewObject, PendingKind,
    RecordLock, RecordLockType, RenameReq, SetAttr, StatFs,
};
use tracing::{debug, warn};

use crate::layer::{Layer, NewEntry};
use crate::protocol::BrickConn;
use crate::quorum::{count, fan_out, Mask, Tally};
use inodes::Inodes;
use txn::ListingChange;

pub struct Replicate {
    bricks: Vec<Arc<BrickConn>>,
    quorum: usize,
    op_timeout: Duration,
    post_op_delay: Duration,
    inodes: Inodes,
    attrs: attr_cache::AttrCache,
    /// Where stale replicas found while serving go to be healed first.
    heal: Option<crate::heal::HealOnAccess>,
    /// Closed ([`Layer::close`]): its graph was replaced.
    closed: std::sync::atomic::AtomicBool,
    /// Wakes `run_background` to end.
    stop: tokio::sync::Notify,
    /// Held by `run_background` while it runs, so `close` can wait for it.
    background: tokio::sync::Mutex<()>,
    /// Creates answered before the bricks made them (`held.rs`).
    held: held::HeldCreates,
    /// Another client waits for a directory lock kept for held creates:
    /// the next tick sends them all.
    hurry: std::sync::atomic::AtomicBool,
}

impl Replicate {
    /// Tells every brick of the set what the other sets hold.
    pub async fn quota_elsewhere(&self, others: Vec<proto::QuotaUse>) {
        let sends = self.bricks.iter().filter(|b| b.is_up()).map(|b| {
            let others = others.clone();
            async move {
                b.call(|c, ctx| async move { c.quota_elsewhere(ctx, others).await })
                    .await
            }
        });
        for r in futures::future::join_all(sends).await {
            if let Err(e) = r {
                tracing::debug!(error = %e, "cannot tell a brick the other sets' usage");
            }
        }
    }

    pub fn new(
        bricks: Vec<Arc<BrickConn>>,
        op_timeout: Duration,
        heal: Option<crate::heal::HealOnAccess>,
    ) -> Arc<Replicate> {
        let quorum = bricks.len() / 2 + 1;
        Arc::new(Replicate {
            bricks,
            quorum,
            op_timeout,
            post_op_delay: Duration::from_millis(300),
            inodes: Inodes::default(),
            attrs: attr_cache::AttrCache::default(),
            heal,
            closed: std::sync::atomic::AtomicBool::new(false),
            stop: tokio::sync::Notify::new(),
            background: tokio::sync::Mutex::new(()),
            held: held::HeldCreates::new(crate::hold_creates()),
            hurry: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Replicas `stale` of `gfid` missed operations; those that are up can
    /// be repaired now.
    fn found_stale(&self, gfid: Gfid, stale: Mask) {
        if stale & self.up_mask() != 0 {
            if let Some(h) = &self.heal {
                h.queue(gfid);
            }
        }
    }

    /// Background work of the layer: the delayed post-op / unlock, and
    /// blaming bricks that came back empty. Ends when the layer is closed.
    pub async fn run_background(self: Arc<Self>) {
        let _running = self.background.lock().await;
        let mut tick = tokio::time::interval(self.post_op_delay / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.stop.notified() => {}
            }
            if self.is_closed() {
                return;
            }
            self.blame_replaced().await;
            if self.send_aged(self.post_op_delay / 2).await {
                self.release_unused(Duration::ZERO).await;
            }
            self.release_idle().await;
        }
    }

    /// A brick that came back with a new identity lost everything: the
    /// others blame it for the root's entries, so every client fans out
    /// and reads elsewhere, and heal crawls it full from the root.
    async fn blame_replaced(&self) {
        let replaced = crate::quorum::mask_where(&self.bricks, |b| b.is_replaced() && b.is_up());
        if replaced == 0 {
            return;
        }
        let others = self.up_mask() & !replaced;
        if others == 0 {
            return;
        }
        tracing::warn!(
            bricks = replaced,
            "blaming replaced bricks at the root until heal refills them"
        );
        self.blame_after(Gfid::ROOT, others, replaced, PendingKind::Entry)
            .await;
        // The replaced brick stops being left out of reads just below; the
        // blame must count from now on, not from the next ping answer
        // (until then, replicas nobody validated would look clean and an
        // empty, half-healed copy could be read).
        for i in crate::quorum::indices(others) {
            self.bricks[i].note_blame_made();
        }
        for i in crate::quorum::indices(replaced) {
            self.bricks[i].clear_replaced();
        }
    }

    /// The per-operation deadline now (the volume's option may change it).
    fn op_timeout(&self) -> Duration {
        self.bricks
            .first()
            .map_or(self.op_timeout, |b| b.op_timeout())
    }

    fn all_mask(&self) -> Mask {
        crate::quorum::all_of(self.bricks.len())
    }

    fn up_mask(&self) -> Mask {
        crate::quorum::mask_where(&self.bricks, BrickConn::is_up)
    }

    /// Bricks that came back empty and are not blamed yet: never read.
    fn replaced_mask(&self) -> Mask {
        crate::quorum::mask_where(&self.bricks, BrickConn::is_replaced)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    fn require_quorum(&self) -> FsResult<()> {
        if self.is_closed() {
            let bricks: Vec<String> = self.bricks.iter().map(|b| b.addr.to_string()).collect();
            return Err(FsError::BrickDown(format!(
                "{} (closed: this client replaced its graph)",
                bricks.join(",")
            )));
        }
        if count(self.up_mask()) < self.quorum {
            return Err(crate::quorum::read_only(&self.bricks, self.quorum));
        }
        Ok(())
    }

    /// Changes whenever any brick reconnects or starts blaming another,
    /// which is when what we knew about stale replicas may be out of date.
    fn epoch(&self) -> u64 {
        // Any new blame anywhere, and any heal (the index shrinks), makes
        // clients look at the replicas of what they read again.
        self.bricks
            .iter()
            .map(|b| b.generation() + b.index_changes())
            .sum()
    }

    /// No brick that is up blames any replica for anything: every replica
    /// that answers is as good as any other, so one answer is enough.
    fn all_clean(&self) -> bool {
        self.bricks
            .iter()
            .all(|b| !b.is_up() || (b.blames_nobody() && !b.is_replaced()))
    }

    /// Creates `new` with the given gfid (distribute creates a directory
    /// under one gfid on every set) and initial extended attributes.
    pub(crate) async fn create_object(
        &self,
        parent: Gfid,
        new: NewEntry,
        gfid: Gfid,
        xattrs: Vec<(Name, proto::Bytes)>,
    ) -> FsResult<Attr> {
        new.name.validate()?;
        // A held create of the same name is made first, so this one finds
        // the name taken, as it would be.
        self.send_slots(self.held.named(parent, &new.name)).await;
        let obj = NewObject {
            name: new.name,
            gfid,
            kind: new.kind,
            perm: new.perm,
            rdev: new.rdev,
            uid: new.uid,
            gid: new.gid,
            target: new.target.map(proto::Bytes::from),
            xattrs,
            // Only the creator knows the new gfid, so taking its lock in the
            // same round trip cannot conflict with anyone.
            lock: matches!(new.kind, FileKind::File | FileKind::Dir),
            data: Default::default(),
            times: Default::default(),
        };
        self.create_now(parent, obj).await
    }

    /// Sends one create to the set: `obj` under its parent's lock, the new
    /// object's own lock taken in the same round trip.
    async fn create_now(&self, parent: Gfid, obj: NewObject) -> FsResult<Attr> {
        let gfid = obj.gfid;
        let ctx = self.inodes.get(gfid);
        let name = obj.name.clone();
        let added = [ListingChange::Add(parent, &name)];
        // Taken before sending: a lock granted on a connection that is
        // replaced meanwhile is not held on the new one.
        let generations: Vec<u64> = self.bricks.iter().map(|b| b.generation()).collect();
        let applied = match self
            .txn(&[parent], parent, PendingKind::Entry, &added, |b, txn| {
                let obj = obj.clone();
                async move {
                    b.call(|c, ctx| async move { c.create(ctx, txn, parent, obj).await })
                        .await
                }
            })
            .await
        {
            Ok(a) => a,
            Err(e) => {
                // Whatever failed, a brick may have made the entry (the
                // others refused: no quorum, or the parent was removed
                // under it); only entries with our fresh gfid are taken.
                if !matches!(
                    e,
                    FsError::Exists | FsError::BadName(_) | FsError::NameTooLong
                ) {
                    self.undo_create(parent, &obj.name, gfid).await;
                }
                return Err(e);
            }
        };
        let missing = self.all_mask() & !applied.applied;
        ctx.add_stale(missing);
        ctx.validated_epoch
            .store(self.epoch(), std::sync::atomic::Ordering::Release);
        if obj.lock {
            let mut state = ctx.lock.lock().await;
            state.drop_all();
            for i in crate::quorum::indices(applied.applied) {
                if self.bricks[i].generation() == generations[i] {
                    state.grant(i, generations[i]);
                }
            }
            state.last_used = Some(std::time::Instant::now());
            if obj.kind == FileKind::Dir && state.held == applied.applied {
                // Empty, and ours alone for as long as we keep its lock.
                state.listing = Some(Default::default());
            }
        }
        Ok(applied.value)
    }

    /// Takes back a create that reached only a minority of bricks: the
    /// entry is ours (our fresh gfid), so nobody else can have used it.
    async fn undo_create(&self, parent: Gfid, name: &Name, gfid: Gfid) {
        let up = self.up_mask();
        fan_out(&self.bricks, up, |b| {
            let name = name.clone();
            async move {
                let found = b
                    .call(|c, ctx| {
                        let name = name.clone();
                        async move { c.lookup(ctx, parent, name).await }
                    })
                    .await?;
                if found.attr.gfid != gfid {
                    return Ok(());
                }
                let is_dir = found.attr.kind == FileKind::Dir;
                tracing::warn!(brick = %b.addr, %name, "undoing a create that missed quorum");
                b.call(|c, ctx| async move {
                    c.unlink(ctx, proto::Txn::none(), parent, name, is_dir, false)
                        .await
                })
                .await
                .map(|_| ())
            }
        })
        .await;
    }

    async fn remove(
        &self,
        parent: Gfid,
        name: &Name,
        is_dir: bool,
        keep_open: bool,
    ) -> FsResult<Option<Gfid>> {
        name.validate()?;
        // A directory holding held creates must not look empty to rmdir;
        // a name must exist before it is removed.
        self.send_slots(self.held.all()).await;
        self.attrs.clear();
        let name = name.clone();
        let listing = [ListingChange::Remove(parent, &name)];
        let removed = self
            .txn(&[parent], parent, PendingKind::Entry, &listing, |b, txn| {
                let name = name.clone();
                async move {
                    b.call(|c, ctx| async move {
                        c.unlink(ctx, txn, parent, name, is_dir, keep_open).await
                    })
                    .await
                }
            })
            .await;
        self.attrs.clear_files();
        removed.map(|a| a.value)
    }

    /// Takes or releases a record lock on a quorum of bricks; all or nothing.
    async fn try_setlk(&self, gfid: Gfid, lock: RecordLock) -> FsResult<()> {
        let up = self.up_mask();
        let answers = fan_out(&self.bricks, up, |b| async move {
            b.call(|c, ctx| async move { c.setlk(ctx, gfid, lock).await })
                .await
        })
        .await;
        let tally = Tally::new(answers);
        if lock.typ == RecordLockType::Unlock {
            return if tally.ok.is_empty() && !tally.failed.is_empty() {
                Err(tally.common_error(self.quorum))
            } else {
                Ok(())
            };
        }
        if count(tally.ok_mask()) >= self.quorum && tally.failed.is_empty() {
            return Ok(());
        }
        // Partly granted: give back what we got so no brick keeps a lock the
        // others refused.
        let got = tally.ok_mask();
        if got != 0 {
            let unlock = RecordLock {
                typ: RecordLockType::Unlock,
                ..lock
            };
            fan_out(&self.bricks, got, |b| async move {
                b.call(|c, ctx| async move { c.setlk(ctx, gfid, unlock).await })
                    .await
            })
            .await;
        }
        if tally.failed.is_empty() {
            return Err(FsError::Quorum {
                need: self.quorum,
                got: count(got),
                detail: "record lock".into(),
            });
        }
        Err(tally.common_error(self.quorum))
    }
}

impl Replicate {
    /// A write whose one buffer is shared by the sends to every brick (and
    /// by a retry on another set, in the distribute layer).
    pub(crate) async fn write_shared(
        &self,
        gfid: Gfid,
        at: WriteAt,
        data: Arc<Vec<u8>>,
    ) -> FsResult<Attr> {
        if data.len() > proto::MAX_IO as usize {
            return Err(FsError::Invalid(format!(
                "write of {} bytes exceeds {}",
                data.len(),
                proto::MAX_IO
            )));
        }
        if let Some(slot) = self.held.slot(gfid) {
            // A new file's first bytes travel with its create.
            if let Some(attr) = self.write_held(gfid, &slot, at, &data).await? {
                return Ok(attr);
            }
        }
        // Where each brick's append landed: under our lock the replicas
        // have one size, so the ones nobody blames agree; a stale replica
        // appends at its own (wrong) end, and is a heal sink anyway.
        let stale_before = if at == WriteAt::End {
            self.validated(gfid).await?;
            self.inodes.get(gfid).stale()
        } else {
            0
        };
        let sizes = std::sync::Mutex::new(Vec::new());
        let applied = self
            .txn(&[gfid], gfid, PendingKind::Data, &[], |b, txn| {
                let (data, sizes) = (data.clone(), &sizes);
                async move {
                    let done = b.write(txn, gfid, at, &data).await?;
                    if at == WriteAt::End {
                        sizes
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((usize::from(b.index), done.value.size));
                    }
                    Ok(done)
                }
            })
            .await?;
        let mut attr = applied.value;
        if at == WriteAt::End {
            let sizes = sizes
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            attr.size = self
                .blame_divergent(gfid, "append end", &sizes, stale_before)
                .await;
        }
        Ok(attr)
    }

    /// Several writes of one file, as one replicated op: one frame to each
    /// brick, which applies them in order (`encode_extents`'s payload).
    pub(crate) async fn write_extents_shared(
        &self,
        gfid: Gfid,
        payload: Arc<Vec<u8>>,
    ) -> FsResult<Attr> {
        if payload.len() > proto::MAX_IO as usize + 12 * proto::data::MAX_EXTENTS + 4 {
            return Err(FsError::Invalid(format!(
                "vectored write of {} bytes exceeds {}",
                payload.len(),
                proto::MAX_IO
            )));
        }
        self.unhold(gfid).await?;
        let applied = self
            .txn(&[gfid], gfid, PendingKind::Data, &[], |b, txn| {
                let payload = payload.clone();
                async move { b.write_extents(txn, gfid, &payload).await }
            })
            .await?;
        Ok(applied.value)
    }

    /// What the replicas nobody blamed answered after an op whose result
    /// each brick decides itself (where an append landed, how much a copy
    /// copied): the answer most of them gave, the larger on a tie (for an
    /// append, the end that keeps every acknowledged one). A brick that
    /// answered otherwise holds other bytes than the rest and is blamed,
    /// so heal copies the file from them. Fresh replicas cannot disagree
    /// under our lock; a stale one's answer is not the file's.
    async fn blame_divergent(
        &self,
        gfid: Gfid,
        what: &'static str,
        sizes: &[(usize, u64)],
        stale_before: Mask,
    ) -> u64 {
        let fresh: Vec<u64> = sizes
            .iter()
            .filter(|(i, _)| stale_before & crate::quorum::bit(*i) == 0)
            .map(|(_, s)| *s)
            .collect();
        let voters: Vec<u64> = if fresh.is_empty() {
            sizes.iter().map(|(_, s)| *s).collect()
        } else {
            fresh
        };
        let votes = |size: u64| voters.iter().filter(|s| **s == size).count();
        let size = voters
            .iter()
            .copied()
            .max_by_key(|s| (votes(*s), *s))
            .unwrap_or(0);
        let odd = sizes
            .iter()
            .filter(|(_, s)| *s != size)
            .fold(0, |m, (i, _)| m | crate::quorum::bit(*i));
        if odd == 0 {
            return size;
        }
        warn!(%gfid, what, ?sizes, "bricks answered differently; blaming the odd replicas");
        let good = sizes
            .iter()
            .filter(|(_, s)| *s == size)
            .fold(0, |m, (i, _)| m | crate::quorum::bit(*i));
        self.blame_after(gfid, good, odd, PendingKind::Data).await;
        self.inodes.get(gfid).add_stale(odd);
        size
    }
}

#[async_trait]
impl Layer for Replicate {
    fn set_op_timeout(&self, timeout: Duration) {
        for b in &self.bricks {
            b.set_op_timeout(timeout);
        }
    }

    /// Gives back every replication lock at once (with the post-op, so no
    /// dirty mark is left for heal), ends the background loop and the
    /// healer, and closes the connections: the bricks drop whatever else
    /// this client held (record locks) with them.
    async fn close(&self) {
        if self.closed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        self.stop.notify_one();
        // The loop may be releasing locks right now; let it finish.
        drop(self.background.lock().await);
        self.stop_holding().await;
        self.release_unused(Duration::ZERO).await;
        if let Some(h) = &self.heal {
            h.close().await;
        }
        for b in &self.bricks {
            b.close();
        }
    }

    async fn send_held(&self) {
        self.stop_holding().await;
    }

    async fn lookup(&self, parent: Gfid, name: &Name) -> FsResult<Attr> {
        self.send_slots(self.held.named(parent, name)).await;
        self.lookup_all(parent, name).await
    }

    async fn getattr(&self, gfid: Gfid) -> FsResult<Attr> {
        if let Some(attr) = self.attrs.get(gfid) {
            return Ok(attr);
        }
        self.unhold(gfid).await?;
        self.validated(gfid).await?;
        self.read_from(gfid, |b| async move {
            b.call(|c, ctx| async move { c.getattr(ctx, gfid).await })
                .await
        })
        .await
        .map(|l| l.attr)
    }

    async fn getattr_to_open(&self, gfid: Gfid) -> FsResult<Attr> {
        self.unhold(gfid).await?;
        if let Some(attr) = self.validate_now(gfid, self.read_quorum()).await? {
            return Ok(attr);
        }
        self.read_from(gfid, |b| async move {
            b.call(|c, ctx| async move { c.getattr(ctx, gfid).await })
                .await
        })
        .await
        .map(|l| l.attr)
    }

    async fn setattr(&self, gfid: Gfid, set: SetAttr) -> FsResult<Attr> {
        if let Some(slot) = self.held.slot(gfid) {
            if let Some(attr) = self.setattr_held(&slot, &set).await {
                return Ok(attr);
            }
        }
        self.unhold(gfid).await?;
        let kind = if set.touches_data() {
            PendingKind::Data
        } else {
            PendingKind::Metadata
        };
        self.txn(&[gfid], gfid, kind, &[], |b, txn| {
            let set = set.clone();
            async move {
                b.call(|c, ctx| async move { c.setattr(ctx, txn, gfid, set).await })
                    .await
            }
        })
        .await
        .map(|a| a.value)
    }

    async fn create(&self, parent: Gfid, new: NewEntry) -> FsResult<Attr> {
        let gfid = Gfid::random();
        if let Some(attr) = self.try_hold(parent, &new, gfid).await {
            return Ok(attr);
        }
        self.create_object(parent, new, gfid, Vec::new()).await
    }

    async fn unlink(&self, parent: Gfid, name: &Name, keep_open: bool) -> FsResult<Option<Gfid>> {
        self.remove(parent, name, false, keep_open).await
    }

    async fn purge(&self, gfid: Gfid) -> FsResult<()> {
        let answers = fan_out(&self.bricks, self.up_mask(), |b| async move {
            b.call(|c, ctx| async move { c.purge(ctx, vec![gfid]).await })
                .await
        })
        .await;
        for (i, res) in answers {
            if let Err(e) = res {
                debug!(brick = i, %gfid, "purge: {e}");
            }
        }
        Ok(())
    }

    async fn rmdir(&self, parent: Gfid, name: &Name) -> FsResult<()> {
        self.remove(parent, name, true, false).await.map(|_| ())
    }

    async fn rename(&self, req: RenameReq) -> FsResult<()> {
        self.send_slots(self.held.all()).await;
        req.name.validate()?;
        req.new_name.validate()?;
        let parents = [req.parent, req.new_parent];
        self.attrs.clear();
        let exchange = req.flags & libc::RENAME_EXCHANGE != 0;
        let changes = if exchange {
            vec![
                ListingChange::Add(req.parent, &req.name),
                ListingChange::Add(req.new_parent, &req.new_name),
            ]
        } else {
            vec![
                ListingChange::Remove(req.parent, &req.name),
                ListingChange::Add(req.new_parent, &req.new_name),
            ]
        };
        let renamed = self
            .txn(
                &parents,
                req.parent,
                PendingKind::Entry,
                &changes,
                |b, txn| {
                    let req = req.clone();
                    async move {
                        b.call(|c, ctx| async move { c.rename(ctx, txn, req).await })
                            .await
                    }
                },
            )
            .await;
        self.attrs.clear_files();
        renamed.map(|_| ())
    }

    async fn link(&self, gfid: Gfid, parent: Gfid, name: &Name) -> FsResult<Attr> {
        self.unhold(gfid).await?;
        self.send_slots(self.held.named(parent, name)).await;
        name.validate()?;
        let name = name.clone();
        let added = [ListingChange::Add(parent, &name)];
        self.txn(&[parent], parent, PendingKind::Entry, &added, |b, txn| {
            let name = name.clone();
            async move {
                b.call(|c, ctx| async move { c.link(ctx, txn, gfid, parent, name).await })
                    .await
            }
        })
        .await
        .map(|a| a.value)
    }

    async fn readlink(&self, gfid: Gfid) -> FsResult<Vec<u8>> {
        self.unhold(gfid).await?;
        self.validated(gfid).await?;
        self.read_from(gfid, |b| async move {
            b.call(|c, ctx| async move { c.readlink(ctx, gfid).await })
                .await
        })
        .await
        .map(|b| b.into_vec())
    }

    async fn read(&self, gfid: Gfid, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        self.unhold(gfid).await?;
        let size = size.min(proto::MAX_IO);
        self.validated(gfid).await?;
        self.read_data_from(gfid, |b| async move { b.read(gfid, offset, size).await })
            .await
    }

    async fn write(&self, gfid: Gfid, offset: u64, data: Vec<u8>) -> FsResult<Attr> {
        self.write_shared(gfid, WriteAt::Offset(offset), Arc::new(data))
            .await
    }

    async fn append(&self, gfid: Gfid, data: Vec<u8>) -> FsResult<Attr> {
        self.write_shared(gfid, WriteAt::End, Arc::new(data)).await
    }

    async fn write_extents(&self, gfid: Gfid, extents: Vec<(u64, Vec<u8>)>) -> FsResult<Attr> {
        let payload = proto::data::encode_extents(
            &extents
                .iter()
                .map(|(o, d)| (*o, d.as_slice()))
                .collect::<Vec<_>>(),
        );
        self.write_extents_shared(gfid, Arc::new(payload)).await
    }

    async fn flush(&self, gfid: Gfid) -> FsResult<()> {
        self.unhold_for_close(gfid).await
    }

    async fn fsync(&self, gfid: Gfid, datasync: bool) -> FsResult<()> {
        self.unhold(gfid).await?;
        // A directory's fsync makes its new names durable: they must exist.
        self.send_slots(self.held.in_dir(gfid)).await;
        self.require_quorum()?;
        let timeout = self.op_timeout() * 3;
        let answers = fan_out(&self.bricks, self.up_mask(), |b| async move {
            b.call_with_timeout(timeout, |c, ctx| async move {
                c.fsync(ctx, gfid, datasync).await
            })
            .await
        })
        .await;
        let tally = Tally::new(answers);
        if count(tally.ok_mask()) >= self.quorum {
            // A brick that could not persist what it acknowledged (writeback
            // EIO drops the pages) has lost data: it is a sink from now on.
            let lost = tally.failed_mask() | tally.unreachable;
            if lost != 0 {
                self.blame_after(gfid, tally.ok_mask(), lost, PendingKind::Data)
                    .await;
                self.inodes.get(gfid).add_stale(lost);
            }
            return Ok(());
        }
        Err(tally.common_error(self.quorum))
    }

    async fn copy_range(&self, copy: CopyRange) -> FsResult<(u64, Attr)> {
        let copy = CopyRange {
            len: copy.len.min(proto::MAX_COPY),
            ..copy
        };
        let (src, dst) = (copy.src, copy.dst);
        self.unhold(src).await?;
        self.unhold(dst).await?;
        let counts = std::sync::Mutex::new(Vec::new());
        let applied = self
            .txn_reading(
                &[src, dst],
                dst,
                PendingKind::Data,
                &[],
                Some(src),
                |b, txn| {
                    let counts = &counts;
                    async move {
                        let done = b
                            .call(|c, ctx| async move { c.copy_range(ctx, txn, copy).await })
                            .await?;
                        counts
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((usize::from(b.index), done.value.0));
                        Ok(done)
                    }
                },
            )
            .await?;
        let counts = counts
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let copied = // Every source replica was fresh (txn_reading): all of them vote.
        self.blame_divergent(dst, "bytes copied", &counts, 0).await;
        Ok((copied, applied.value.1))
    }

    async fn fallocate(&self, gfid: Gfid, mode: i32, offset: u64, len: u64) -> FsResult<Attr> {
        self.unhold(gfid).await?;
        self.txn(&[gfid], gfid, PendingKind::Data, &[], |b, txn| async move {
            b.call(|c, ctx| async move { c.fallocate(ctx, txn, gfid, mode, offset, len).await })
                .await
        })
        .await
        .map(|a| a.value)
    }

    async fn readdir(&self, gfid: Gfid, after: Option<Name>, max: u32) -> FsResult<DirPage> {
        self.send_slots(self.held.in_dir(gfid)).await;
        self.validated(gfid).await?;
        self.read_from(gfid, |b| {
            let after = after.clone();
            async move {
                b.call(|c, ctx| async move { c.readdir(ctx, gfid, after, max).await })
                    .await
            }
        })
        .await
    }

    /// As the first brick that answers counts it (the replicas of a set
    /// count alike).
    async fn quota_usage(&self) -> FsResult<Vec<proto::QuotaUse>> {
        let mut last = FsError::BrickDown("no brick of the set is up".into());
        for b in self.bricks.iter().filter(|b| b.is_up()) {
            match b
                .call(|c, ctx| async move { c.quota_usage(ctx).await })
                .await
            {
                Ok(u) => return Ok(u),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn set_quota(&self, gfid: Gfid, limit: Option<proto::QuotaLimit>) -> FsResult<()> {
        let name = Name::new(proto::QUOTA_XATTR);
        match limit {
            Some(l) => self.setxattr(gfid, &name, l.encode(), 0).await,
            None => match self.removexattr(gfid, &name).await {
                Err(FsError::NoAttr) => Ok(()),
                other => other,
            },
        }
    }

    async fn statfs(&self, at: Gfid) -> FsResult<StatFs> {
        self.read_from(at, |b| async move {
            b.call(|c, ctx| async move { c.statfs(ctx, at).await })
                .await
        })
        .await
    }

    async fn getxattr(&self, gfid: Gfid, name: &Name) -> FsResult<Vec<u8>> {
        self.unhold(gfid).await?;
        self.validated(gfid).await?;
        let name = name.clone();
        self.read_from(gfid, |b| {
            let name = name.clone();
            async move {
                b.call(|c, ctx| async move { c.getxattr(ctx, gfid, name).await })
                    .await
            }
        })
        .await
        .map(|b| b.into_vec())
    }

    async fn listxattr(&self, gfid: Gfid) -> FsResult<Vec<Name>> {
        self.unhold(gfid).await?;
        self.validated(gfid).await?;
        self.read_from(gfid, |b| async move {
            b.call(|c, ctx| async move { c.listxattr(ctx, gfid).await })
                .await
        })
        .await
    }

    async fn setxattr(&self, gfid: Gfid, name: &Name, value: Vec<u8>, flags: i32) -> FsResult<()> {
        self.unhold(gfid).await?;
        let name = name.clone();
        let value = proto::Bytes::from(value);
        self.txn(&[gfid], gfid, PendingKind::Metadata, &[], |b, txn| {
            let (name, value) = (name.clone(), value.clone());
            async move {
                b.call(|c, ctx| async move { c.setxattr(ctx, txn, gfid, name, value, flags).await })
                    .await
            }
        })
        .await
        .map(|_| ())
    }

    async fn removexattr(&self, gfid: Gfid, name: &Name) -> FsResult<()> {
        self.unhold(gfid).await?;
        let name = name.clone();
        self.txn(&[gfid], gfid, PendingKind::Metadata, &[], |b, txn| {
            let name = name.clone();
            async move {
                b.call(|c, ctx| async move { c.removexattr(ctx, txn, gfid, name).await })
                    .await
            }
        })
        .await
        .map(|_| ())
    }

    async fn getlk(&self, gfid: Gfid, lock: RecordLock) -> FsResult<Option<RecordLock>> {
        self.unhold(gfid).await?;
        self.read_from(gfid, |b| async move {
            b.call(|c, ctx| async move { c.getlk(ctx, gfid, lock).await })
                .await
        })
        .await
    }

    async fn setlk(&self, gfid: Gfid, lock: RecordLock, wait: bool) -> FsResult<()> {
        self.unhold(gfid).await?;
        let mut backoff =
            proto::backoff::Backoff::new(Duration::from_millis(5), Duration::from_millis(200));
        loop {
            let r = self.try_setlk(gfid, lock).await;
            if r.is_ok() && lock.typ != RecordLockType::Unlock {
                // The new holder must see what the last one wrote: not
                // attributes this client cached before the lock was its
                // (the NFS gateway's clients GETATTR right after a grant).
                self.attrs.forget(&[gfid]);
            }
            match r {
                Err(FsError::WouldBlock) if wait => {
                    debug!(?gfid, "record lock busy; waiting");
                    // Jitter: two waiters must not retry in lockstep.
                    let jitter = rand::Rng::random_range(&mut rand::rng(), 0..5);
                    tokio::time::sleep(backoff.next_pause() + Duration::from_millis(jitter)).await;
                }
                other => return other,
            }
        }
    }
}
