//! Creates held back until the new file's first data: a small file created,
//! written and closed reaches the bricks as one create that carries its
//! bytes, one round trip instead of a create and then a write.
//!
//! Why it is safe to answer a create before any brick made it: a create is
//! held only in a directory whose replication lock this client holds on
//! every brick and whose every name it knows (`LockState::listing`). Nobody
//! else can add a name there until the lock is let go, so whether the name
//! is free (O_EXCL) is decided here exactly as the bricks would decide it,
//! and the lock is not let go while a create in the directory is held (the
//! idle release and a contended release skip such directories; a contended
//! one sends its held creates at the next tick).
//!
//! What the held create takes in rather than sending it: the file's first
//! bytes (writes from offset 0 on, up to [`proto::MAX_CREATE_DATA`]), and
//! changes of its owner, mode and times (tar's `futimens`, `fchown` and
//! `fchmod` after the data): nobody can see the file yet, so the create
//! can just as well make it that way, and a file untarred costs one round
//! trip, not four. The bytes kept are bounded ([`MAX_KEPT_BYTES`]).
//!
//! What sends a held create out: a write it cannot take, any other
//! operation on the file (flush at close, fsync, a truncate, ...),
//! any operation naming it (lookup, link, a create of the same name), a
//! listing or an fsync of its directory, any removal or rename (a directory must not
//! look empty to rmdir while it holds files), the graph's replacement or
//! close, and age (the background sends those older than a tick). A held
//! create that then fails keeps its error for the file's next operation
//! and its close, as a write sent behind does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use proto::data::WriteAt;
use proto::{Attr, FileKind, FsError, FsResult, Gfid, Name, NewObject, SetAttr, TimeSet, Timespec};
use tracing::{debug, warn};

use super::inodes::MAX_LISTING;
use super::Replicate;
use crate::layer::NewEntry;
use crate::quorum::indices;

/// Most creates held at once by one replica set of one client: each holds
/// its name and (briefly) its first bytes.
pub const MAX_HELD: usize = 1024;

/// Most bytes all held creates of one replica set keep for their files,
/// beside the write-behind window: past it a create goes out with its
/// first bytes at once.
pub const MAX_KEPT_BYTES: usize = 8 << 20;

/// How long a failed create's error waits for its file's close to report
/// it: a writer that never closes must not keep it forever.
const FAILED_KEPT: Duration = Duration::from_secs(60);

pub enum State {
    /// Not sent yet: the create, the parent it goes to, and the
    /// attributes this client answered for the file.
    Held(Box<Held>),
    /// Sent and refused: what the file's next operation and close report.
    Failed(FsError),
}

pub struct Held {
    parent: Gfid,
    obj: NewObject,
    attr: Attr,
    /// The parent is setgid: the bricks give the file the parent's group,
    /// so a chgrp cannot be folded into the create.
    parent_sgid: bool,
    /// Bytes of `obj.data` counted in [`MAX_KEPT_BYTES`].
    kept: usize,
}

/// One file's held create; `None` once the bricks made it. Locked for the
/// whole send, so an operation that finds it being sent waits for the
/// file to exist.
pub type Slot = Arc<tokio::sync::Mutex<Option<State>>>;

struct Entry {
    parent: Gfid,
    name: Name,
    since: Instant,
    slot: Slot,
    /// Sent and refused: kept only for the file's own operations to report.
    failed: bool,
}

#[derive(Default)]
struct Table {
    files: HashMap<Gfid, Entry>,
    /// How many creates not failed each directory holds: the idle release
    /// asks for every lock it would let go.
    dirs: HashMap<Gfid, usize>,
    /// Nothing more is held (the graph is being replaced or closed): set
    /// under the same lock as `hold` inserts, so no create slips in after
    /// the last ones were taken out to be sent.
    stopped: bool,
}

impl Table {
    fn unhold_dir(&mut self, dir: Gfid) {
        if let Some(n) = self.dirs.get_mut(&dir) {
            *n -= 1;
            if *n == 0 {
                self.dirs.remove(&dir);
            }
        }
    }
}

#[derive(Default)]
pub struct HeldCreates {
    table: Mutex<Table>,
    /// `files.len()`, read without the lock by every operation's fast path.
    len: AtomicUsize,
    /// Bytes the held creates keep (at most [`MAX_KEPT_BYTES`]).
    kept: AtomicUsize,
}

impl HeldCreates {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// A table that holds creates only if `holding` (a FUSE mount that
    /// writes behind, `client::set_hold_creates`).
    pub fn new(holding: bool) -> HeldCreates {
        let held = HeldCreates::default();
        held.table().stopped = !holding;
        held
    }

    /// Whether creates may be held at all.
    fn holding(&self) -> bool {
        !self.table().stopped
    }

    /// Room for `more` bytes kept in a held create.
    fn keep_bytes(&self, more: usize) -> bool {
        self.kept
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |k| {
                (k + more <= MAX_KEPT_BYTES).then_some(k + more)
            })
            .is_ok()
    }

    fn release_bytes(&self, n: usize) {
        self.kept.fetch_sub(n, Ordering::AcqRel);
    }

    /// Holds `held`'s create; false when too many are held.
    fn hold(&self, held: Held) -> bool {
        let mut table = self.table();
        if table.stopped || table.files.len() >= MAX_HELD {
            return false;
        }
        // A fresh random gfid: never one already here.
        let (parent, gfid, name) = (held.parent, held.obj.gfid, held.obj.name.clone());
        let entry = Entry {
            parent,
            name,
            since: Instant::now(),
            slot: Arc::new(tokio::sync::Mutex::new(Some(State::Held(Box::new(held))))),
            failed: false,
        };
        table.files.insert(gfid, entry);
        *table.dirs.entry(parent).or_default() += 1;
        self.len.store(table.files.len(), Ordering::Release);
        true
    }

    /// The file was made or its failure reported: nothing to hold any more.
    pub fn forget(&self, gfid: Gfid) {
        let mut table = self.table();
        if let Some(old) = table.files.remove(&gfid) {
            if !old.failed {
                table.unhold_dir(old.parent);
            }
        }
        self.len.store(table.files.len(), Ordering::Release);
    }

    /// Sent and refused: no longer holds its directory's lock.
    pub fn failed(&self, gfid: Gfid) {
        let mut table = self.table();
        let Some(e) = table.files.get_mut(&gfid) else {
            return;
        };
        if !std::mem::replace(&mut e.failed, true) {
            let dir = e.parent;
            table.unhold_dir(dir);
        }
    }

    pub fn slot(&self, gfid: Gfid) -> Option<Slot> {
        if self.is_empty() {
            return None;
        }
        self.table().files.get(&gfid).map(|e| e.slot.clone())
    }

    fn slots_where(&self, pick: impl Fn(&Entry) -> bool) -> Vec<(Gfid, Slot)> {
        if self.is_empty() {
            return Vec::new();
        }
        self.table()
            .files
            .iter()
            .filter(|(_, e)| !e.failed && pick(e))
            .map(|(g, e)| (*g, e.slot.clone()))
            .collect()
    }

    pub fn named(&self, parent: Gfid, name: &Name) -> Vec<(Gfid, Slot)> {
        self.slots_where(|e| e.parent == parent && e.name == *name)
    }

    pub fn in_dir(&self, parent: Gfid) -> Vec<(Gfid, Slot)> {
        self.slots_where(|e| e.parent == parent)
    }

    pub fn all(&self) -> Vec<(Gfid, Slot)> {
        self.slots_where(|_| true)
    }

    /// Holds nothing more; the creates held until now, to be sent.
    fn stop(&self) -> Vec<(Gfid, Slot)> {
        let mut table = self.table();
        table.stopped = true;
        table
            .files
            .iter()
            .filter(|(_, e)| !e.failed)
            .map(|(g, e)| (*g, e.slot.clone()))
            .collect()
    }

    pub fn older_than(&self, age: Duration) -> Vec<(Gfid, Slot)> {
        let now = Instant::now();
        self.slots_where(|e| now.duration_since(e.since) >= age)
    }

    /// Drops failed creates nobody reported within [`FAILED_KEPT`].
    pub fn expire_failed(&self) {
        if self.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut table = self.table();
        table
            .files
            .retain(|_, e| !e.failed || now.duration_since(e.since) < FAILED_KEPT);
        self.len.store(table.files.len(), Ordering::Release);
    }

    /// Whether `dir` has creates held in it: its lock must stay.
    pub fn holds_in(&self, dir: Gfid) -> bool {
        !self.is_empty() && self.table().dirs.contains_key(&dir)
    }
}

impl Replicate {
    fn may_hold(&self, new: &NewEntry) -> bool {
        new.kind == FileKind::File
            && self.held.holding()
            && !self.is_closed()
            && unsquashed(new.uid, new.gid)
            && new.name.validate().is_ok()
    }

    /// The new file's attributes at once, when its create may be held (see
    /// the module's doc); `None` to create it now.
    pub(super) async fn try_hold(&self, parent: Gfid, new: &NewEntry, gfid: Gfid) -> Option<Attr> {
        if !self.may_hold(new) {
            return None;
        }
        let all = self.all_mask();
        if self.up_mask() != all {
            return None;
        }
        // Where the new file's group and block size come from.
        let mut dir = self.attrs.get(parent)?;
        let ctx = self.inodes.get(parent);
        let mut state = ctx.lock.lock().await;
        let current = indices(all)
            .all(|i| state.generations.get(i).copied() == Some(self.bricks[i].generation()));
        let free = state
            .listing
            .as_ref()
            .is_some_and(|l| !l.contains(&new.name) && l.len() < MAX_LISTING);
        if state.held != all || !current || !free {
            return None;
        }
        let gid = if dir.perm & libc::S_ISGID != 0 {
            dir.gid
        } else {
            new.gid
        };
        let obj = NewObject {
            name: new.name.clone(),
            gfid,
            kind: FileKind::File,
            perm: new.perm,
            rdev: 0,
            uid: new.uid,
            gid: new.gid,
            target: None,
            xattrs: Vec::new(),
            lock: true,
            data: Default::default(),
            times: Default::default(),
        };
        let now = now();
        let attr = Attr {
            gfid,
            kind: FileKind::File,
            perm: new.perm,
            nlink: 1,
            uid: new.uid,
            gid,
            size: 0,
            blocks: 0,
            blksize: dir.blksize,
            rdev: 0,
            atime: now,
            mtime: now,
            ctime: now,
        };
        let held = Held {
            parent,
            obj,
            attr: attr.clone(),
            parent_sgid: dir.perm & libc::S_ISGID != 0,
            kept: 0,
        };
        if !self.held.hold(held) {
            return None;
        }
        state.listing_add(&new.name);
        state.last_used = Some(Instant::now());
        drop(state);
        // The directory as the create will leave it: the kernel asks for
        // its attributes right after the create and keeps them a while.
        dir.mtime = now;
        dir.ctime = now;
        self.attrs.put(self.attrs.epoch(), [attr.clone(), dir]);
        debug!(%parent, name = %new.name, %gfid, "create held for its first data");
        Some(attr)
    }

    /// Sends the create held in `slot`: `Some` with the file's attributes
    /// when this call made it, `None` when it was made before.
    pub(super) async fn send_held(&self, gfid: Gfid, slot: &Slot) -> FsResult<Option<Attr>> {
        let mut state = slot.lock().await;
        self.send_locked(gfid, &mut state).await
    }

    /// Sends the create in `state`, whose slot the caller locked.
    async fn send_locked(&self, gfid: Gfid, state: &mut Option<State>) -> FsResult<Option<Attr>> {
        match state.take() {
            None => Ok(None),
            Some(State::Failed(e)) => {
                *state = Some(State::Failed(e.clone()));
                Err(e)
            }
            Some(State::Held(held)) => {
                let Held {
                    parent, obj, kept, ..
                } = *held;
                self.held.release_bytes(kept);
                match self.create_now(parent, obj).await {
                    Ok(attr) => {
                        self.held.forget(gfid);
                        Ok(Some(attr))
                    }
                    Err(e) => {
                        warn!(%gfid, %parent, error = %e, "a create held for its first data failed; the file's next operation and its close report it");
                        self.held.failed(gfid);
                        *state = Some(State::Failed(e.clone()));
                        Err(e)
                    }
                }
            }
        }
    }

    /// A write of a file whose create is held: kept in the create when it
    /// continues the bytes kept there and there is room; otherwise the
    /// create goes out, carrying the write when it is the file's first
    /// bytes. `Some` (the file's attributes after the write) when the write
    /// was taken either way, `None` when the caller must still send it.
    pub(super) async fn write_held(
        &self,
        gfid: Gfid,
        slot: &Slot,
        at: WriteAt,
        data: &[u8],
    ) -> FsResult<Option<Attr>> {
        let mut state = slot.lock().await;
        let mut carried = false;
        if let Some(State::Held(held)) = state.as_mut() {
            let kept = held.obj.data.len();
            let fits =
                at == WriteAt::Offset(kept as u64) && kept + data.len() <= proto::MAX_CREATE_DATA;
            // A write after a utimens moves mtime to now again.
            if fits && self.held.keep_bytes(data.len()) {
                held.obj.data.extend_from_slice(data);
                held.kept += data.len();
                held.obj.times.mtime = None;
                let now = now();
                let size = held.obj.data.len() as u64;
                let a = &mut held.attr;
                // Whole 4 KiB blocks in 512-byte units, as ext4 under the bricks.
                (a.size, a.blocks, a.mtime, a.ctime) = (size, size.div_ceil(4096) * 8, now, now);
                let attr = a.clone();
                self.attrs.put(self.attrs.epoch(), [attr.clone()]);
                return Ok(Some(attr));
            }
            if fits && kept == 0 {
                held.obj.data = proto::Bytes::from(data.to_vec());
                held.obj.times.mtime = None;
                carried = true;
            }
        }
        let made = self.send_locked(gfid, &mut state).await?;
        Ok(if carried { made } else { None })
    }

    /// A change of a held file's owner, mode or times, made part of its
    /// create: the file's attributes after it, or `None` when the change
    /// must go to the bricks (the caller sends the create first).
    pub(super) async fn setattr_held(&self, slot: &Slot, set: &SetAttr) -> Option<Attr> {
        let mut state = slot.lock().await;
        let Some(State::Held(held)) = state.as_mut() else {
            return None;
        };
        if !held.takes(set) {
            return None;
        }
        let now = now();
        let (obj, a) = (&mut held.obj, &mut held.attr);
        if let Some(uid) = set.uid {
            (obj.uid, a.uid) = (uid, uid);
        }
        if let Some(gid) = set.gid {
            (obj.gid, a.gid) = (gid, gid);
        }
        if let Some(perm) = set.perm {
            (obj.perm, a.perm) = (perm, perm);
        }
        // `Now` is the create's own time on the bricks.
        let time = |t: TimeSet| match t {
            TimeSet::Now => (None, now),
            TimeSet::At(t) => (Some(t), t),
        };
        if let Some(t) = set.atime {
            (obj.times.atime, a.atime) = time(t);
        }
        if let Some(t) = set.mtime {
            (obj.times.mtime, a.mtime) = time(t);
        }
        a.ctime = now;
        let attr = a.clone();
        self.attrs.put(self.attrs.epoch(), [attr.clone()]);
        debug!(gfid = %attr.gfid, "attributes folded into a held create");
        Some(attr)
    }

    /// Makes sure `gfid` is on the bricks if its create was held; the
    /// failure of that create if it failed.
    pub(super) async fn unhold(&self, gfid: Gfid) -> FsResult<()> {
        match self.held.slot(gfid) {
            Some(slot) => self.send_held(gfid, &slot).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// Sends the held creates in `slots`; a failure stays with its file.
    pub(super) async fn send_slots(&self, slots: Vec<(Gfid, Slot)>) {
        let sends = slots.iter().map(|(g, s)| self.send_held(*g, s));
        futures::future::join_all(sends).await;
    }

    /// The file's close: its create goes out if still held, and a failure
    /// of it is reported here, once.
    pub(super) async fn unhold_for_close(&self, gfid: Gfid) -> FsResult<()> {
        let res = self.unhold(gfid).await;
        if res.is_err() {
            self.held.forget(gfid);
        }
        res
    }

    /// Every held create goes out, and none is held from now on.
    pub(super) async fn stop_holding(&self) {
        self.send_slots(self.held.stop()).await;
    }

    /// The background's part: creates held for longer than `age` go out
    /// (a file opened and left empty must not stay invisible to others),
    /// all of them when another client waits for a directory's lock; then
    /// true: the locks they kept should go now.
    pub(super) async fn send_aged(&self, age: Duration) -> bool {
        let hurry = self.hurry.swap(false, Ordering::AcqRel);
        let age = if hurry { Duration::ZERO } else { age };
        self.send_slots(self.held.older_than(age)).await;
        self.held.expire_failed();
        hurry
    }
}

/// Root squash (tenants) gives a root-owned file another owner on the
/// bricks than the one this client would answer with.
fn unsquashed(uid: u32, gid: u32) -> bool {
    !tls::has_scope_token() || (uid != 0 && gid != 0)
}

impl Held {
    /// Whether the bricks, making the file with `set` applied, leave it
    /// exactly as the create and then `set` would.
    fn takes(&self, set: &SetAttr) -> bool {
        const SETID: u32 = libc::S_ISUID | libc::S_ISGID;
        let owner = set.uid.is_some() || set.gid.is_some();
        let bad_time =
            |t: Option<TimeSet>| matches!(t, Some(TimeSet::At(t)) if t.nsecs >= 1_000_000_000);
        let (uid, gid) = (
            set.uid.unwrap_or(self.obj.uid),
            set.gid.unwrap_or(self.obj.gid),
        );
        set.size.is_none()
            // A chown clears setuid/setgid (the bricks do it in that order).
            && !(owner && self.obj.perm & SETID != 0)
            && !(set.gid.is_some() && self.parent_sgid)
            && set.perm.is_none_or(|p| p & !0o7777 == 0)
            && !bad_time(set.atime)
            && !bad_time(set.mtime)
            && unsquashed(uid, gid)
    }
}

fn now() -> Timespec {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timespec {
        secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nsecs: d.subsec_nanos(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str) -> NewObject {
        NewObject {
            name: Name::from(name),
            gfid: Gfid::random(),
            kind: proto::FileKind::File,
            perm: 0o644,
            rdev: 0,
            uid: 0,
            gid: 0,
            target: None,
            xattrs: Vec::new(),
            lock: true,
            data: Default::default(),
            times: Default::default(),
        }
    }

    fn pending(dir: Gfid, obj: NewObject) -> Held {
        Held {
            parent: dir,
            attr: Attr::bare(obj.gfid, FileKind::File, obj.perm),
            obj,
            parent_sgid: false,
            kept: 0,
        }
    }

    #[test]
    fn found_by_file_by_name_and_by_directory_until_forgotten() {
        let held = HeldCreates::default();
        let (dir, other) = (Gfid::random(), Gfid::random());
        let a = obj("a");
        let ga = a.gfid;
        assert!(held.is_empty());
        assert!(held.hold(pending(dir, a)));
        assert!(held.hold(pending(other, obj("b"))));
        assert!(held.slot(ga).is_some());
        assert_eq!(held.named(dir, &Name::from("a")).len(), 1);
        assert!(held.named(other, &Name::from("a")).is_empty());
        assert_eq!(held.in_dir(dir).len(), 1);
        assert!(held.holds_in(dir) && !held.holds_in(Gfid::random()));
        assert_eq!(held.all().len(), 2);
        assert!(held.older_than(Duration::from_secs(60)).is_empty());
        held.failed(ga);
        assert!(held.slot(ga).is_some(), "kept for the file to report");
        assert!(!held.holds_in(dir) && held.in_dir(dir).is_empty());
        held.forget(ga);
        assert!(held.slot(ga).is_none());
        assert!(!held.is_empty());
    }

    #[test]
    fn a_full_table_holds_no_more() {
        let held = HeldCreates::default();
        let dir = Gfid::random();
        for i in 0..MAX_HELD {
            assert!(held.hold(pending(dir, obj(&format!("f{i}")))));
        }
        assert!(!held.hold(pending(dir, obj("one more"))));
    }

    #[test]
    fn once_stopped_nothing_more_is_held() {
        let held = HeldCreates::default();
        let dir = Gfid::random();
        assert!(held.hold(pending(dir, obj("a"))));
        assert_eq!(held.stop().len(), 1);
        assert!(!held.hold(pending(dir, obj("b"))));
    }
}
