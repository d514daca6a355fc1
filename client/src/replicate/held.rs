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
//! What sends a held create out: the file's first write (which it carries
//! when that starts at offset 0 and fits in [`proto::MAX_CREATE_DATA`]),
//! any other operation on the file (flush at close, fsync, setattr, ...),
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

use proto::{Attr, FileKind, FsError, FsResult, Gfid, Name, NewObject, Timespec};
use tracing::{debug, warn};

use super::inodes::MAX_LISTING;
use super::Replicate;
use crate::layer::NewEntry;
use crate::quorum::indices;

/// Most creates held at once by one replica set of one client: each holds
/// its name and (briefly) its first bytes.
pub const MAX_HELD: usize = 1024;

/// How long a failed create's error waits for its file's close to report
/// it: a writer that never closes must not keep it forever.
const FAILED_KEPT: Duration = Duration::from_secs(60);

pub enum State {
    /// Not sent yet: the create, and the parent it goes to.
    Held { parent: Gfid, obj: NewObject },
    /// Sent and refused: what the file's next operation and close report.
    Failed(FsError),
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
}

impl HeldCreates {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// Holds `obj`'s create in `parent`; false when too many are held.
    pub fn hold(&self, parent: Gfid, obj: NewObject) -> bool {
        let mut table = self.table();
        if table.files.len() >= MAX_HELD {
            return false;
        }
        // A fresh random gfid: never one already here.
        let (gfid, name) = (obj.gfid, obj.name.clone());
        let entry = Entry {
            parent,
            name,
            since: Instant::now(),
            slot: Arc::new(tokio::sync::Mutex::new(Some(State::Held { parent, obj }))),
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
            && !self.stop_holding.load(Ordering::Acquire)
            && !self.is_closed()
            // Root squash (tenants) gives a root-owned file another owner
            // on the bricks than the one this client would answer with.
            && (!tls::has_scope_token() || (new.uid != 0 && new.gid != 0))
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
        };
        if !self.held.hold(parent, obj) {
            return None;
        }
        state.listing_add(&new.name);
        state.last_used = Some(Instant::now());
        drop(state);
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
        // The directory as the create will leave it: the kernel asks for
        // its attributes right after the create and keeps them a while.
        dir.mtime = now;
        dir.ctime = now;
        self.attrs.put(self.attrs.epoch(), [attr.clone(), dir]);
        debug!(%parent, name = %new.name, %gfid, "create held for its first data");
        Some(attr)
    }

    /// Sends the create held in `slot`, carrying `first` (the file's bytes
    /// from offset 0) when given: `Some` with the file's attributes when
    /// this call made it, `None` when it was made before.
    pub(super) async fn send_held(
        &self,
        gfid: Gfid,
        slot: &Slot,
        first: Option<&[u8]>,
    ) -> FsResult<Option<Attr>> {
        let mut state = slot.lock().await;
        match state.take() {
            None => Ok(None),
            Some(State::Failed(e)) => {
                *state = Some(State::Failed(e.clone()));
                Err(e)
            }
            Some(State::Held { parent, mut obj }) => {
                if let Some(data) = first {
                    obj.data = proto::Bytes::from(data.to_vec());
                }
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

    /// Makes sure `gfid` is on the bricks if its create was held; the
    /// failure of that create if it failed.
    pub(super) async fn unhold(&self, gfid: Gfid) -> FsResult<()> {
        match self.held.slot(gfid) {
            Some(slot) => self.send_held(gfid, &slot, None).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// Sends the held creates in `slots`; a failure stays with its file.
    pub(super) async fn send_slots(&self, slots: Vec<(Gfid, Slot)>) {
        let sends = slots.iter().map(|(g, s)| self.send_held(*g, s, None));
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
        self.stop_holding.store(true, Ordering::Release);
        self.send_slots(self.held.all()).await;
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
        }
    }

    #[test]
    fn found_by_file_by_name_and_by_directory_until_forgotten() {
        let held = HeldCreates::default();
        let (dir, other) = (Gfid::random(), Gfid::random());
        let a = obj("a");
        let ga = a.gfid;
        assert!(held.is_empty());
        assert!(held.hold(dir, a));
        assert!(held.hold(other, obj("b")));
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
            assert!(held.hold(dir, obj(&format!("f{i}"))));
        }
        assert!(!held.hold(dir, obj("one more")));
    }
}
