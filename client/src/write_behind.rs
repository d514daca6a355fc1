//! Write-behind: a `write` at an offset returns once its data is queued in
//! this client; one sender per file sends the queue to the layer below in
//! order, one call at a time, joining writes that follow each other into
//! one call of up to [`proto::MAX_IO`] bytes.
//!
//! What still holds (TARGET.md invariant 1, amended): `flush` (close),
//! `fsync` and unlocking return only once the layer below answered every
//! write accepted before them, and return the first error of those writes
//! (every close and unlock of the file, in whatever process, until an fsync
//! or the file's last close in this client reported it: a program the
//! writer started, closing its copy of the descriptor, does not take the
//! writer's error; read-only closes are not sent here, see client-fuse);
//! a read, a truncate, a change of times or modes, an fallocate and taking
//! a lock wait for the file's queue first, so they see or order after every
//! earlier write. Attributes leaving this layer while writes are queued show
//! the size and mtime the file has once they are applied, so `stat` during
//! a stream of writes agrees with what the writer wrote.
//!
//! Why one call at a time per file: the replicate layer orders a file's
//! writes under its replication lock one after the other anyway, and a
//! sender that never overtakes itself keeps the order in which the writer
//! issued them on every brick without more bookkeeping.
//!
//! Appends (O_APPEND) are not written behind: where the data lands is only
//! known from the bricks' answer.
//!
//! Memory: queued data is bounded by a window for the whole client (a
//! writer waits for room) and a smaller one per file, so one big writer
//! cannot take all of it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use proto::{
    Attr, CopyRange, DirPage, FsError, FsResult, Gfid, Name, QuotaLimit, QuotaUse, RecordLock,
    RecordLockType, RenameReq, SetAttr, StatFs, Timespec,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::layer::{Layer, NewEntry};

mod forgotten;
use forgotten::{apply_newer, Certainty, Forgotten};

/// How much a client may hold unsent.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Bytes queued over all files.
    pub total: usize,
    /// Bytes queued for one file.
    pub per_file: usize,
}

impl Window {
    /// A window of `total` bytes; a file may use a quarter of it, and at
    /// least one largest write.
    pub fn of(total: usize) -> Window {
        Window {
            total,
            per_file: (total / 4).max(proto::MAX_IO as usize).min(total),
        }
    }
}

/// How long [`Layer::close`] waits for queued writes before giving up on them.
const CLOSE_LIMIT: Duration = Duration::from_secs(30);

pub struct WriteBehind {
    below: Arc<dyn Layer>,
    files: Mutex<HashMap<Gfid, File>>,
    /// The last answers of records gone lately; locked only with `files`
    /// held, so a record and its remains are never both missing.
    forgotten: Mutex<Forgotten>,
    /// Woken whenever a sender finished a call: drains and writers waiting
    /// for room look again.
    progressed: Notify,
    budget: Arc<Semaphore>,
    window: Window,
    /// The bricks refused a vectored write once (an older version).
    one_by_one: AtomicBool,
    /// Counts answers kept in `File::attr`, so that attributes fetched
    /// meanwhile can be told apart from older ones.
    ticks: AtomicU64,
    me: Weak<WriteBehind>,
}

/// A file this client writes to, from its first write (or its create)
/// until it is flushed with nothing queued.
struct File {
    /// Tells this record of the file from a later one (the file forgotten
    /// at a close and written again): a sender serves only its own.
    incarnation: u64,
    queue: VecDeque<Queued>,
    /// Bytes queued or being sent.
    bytes: usize,
    sending: bool,
    /// Numbers the writes accepted; `done` is the last one answered (they
    /// are answered in order).
    accepted: u64,
    done: u64,
    /// The largest end of the writes not yet answered.
    pending_end: u64,
    /// When the last write not yet answered was accepted.
    pending_mtime: Timespec,
    /// The file's attributes as the layer below last gave them.
    attr: Attr,
    /// When (`WriteBehind::ticks`) `attr` was last set from an answer.
    answered: u64,
    /// The first failure of a write sent behind: every flush (close) and
    /// unlock reports it until an fsync or the file's last close did.
    error: Option<FsError>,
    /// When it was last written or created: a front-end without closes
    /// forgets it after a while idle ([`WriteBehind::forget_idle`]).
    used: Instant,
}

struct Queued {
    seq: u64,
    offset: u64,
    data: Vec<u8>,
    permit: OwnedSemaphorePermit,
}

impl File {
    fn new(attr: Attr) -> File {
        static INCARNATIONS: AtomicU64 = AtomicU64::new(0);
        File {
            incarnation: INCARNATIONS.fetch_add(1, Ordering::Relaxed),
            queue: VecDeque::new(),
            bytes: 0,
            sending: false,
            accepted: 0,
            done: 0,
            pending_end: 0,
            pending_mtime: Timespec::default(),
            attr,
            answered: 0,
            error: None,
            used: Instant::now(),
        }
    }

    fn idle(&self) -> bool {
        self.done == self.accepted
    }

    /// `a`, asked of the layer below at tick `asked`, as it will be once
    /// every queued write is applied.
    fn patch(&self, a: &mut Attr, asked: u64) {
        // A write answered while `a` was on its way may be missing from it
        // (the brick answered first), though it was acknowledged earlier.
        if self.answered > asked {
            apply_newer(a, &self.attr);
        }
        if self.idle() {
            return;
        }
        a.size = a.size.max(self.pending_end);
        if self.pending_mtime > a.mtime {
            a.mtime = self.pending_mtime;
            a.ctime = self.pending_mtime;
        }
    }

    /// Takes the queue's front and what follows it, up to one call's
    /// worth: writes that continue the one before are joined, the others
    /// go as further extents of the same call (applied in order).
    fn next_call(&mut self) -> Option<Call> {
        let first = self.queue.pop_front()?;
        let mut call = Call {
            last_seq: first.seq,
            bytes: first.data.len(),
            extents: vec![(first.offset, first.data)],
            permits: vec![first.permit],
        };
        while let Some(next) = self.queue.front() {
            let joins = matches!(call.extents.last(),
                Some((offset, data)) if *offset + data.len() as u64 == next.offset);
            if call.bytes + next.data.len() > proto::MAX_IO as usize
                || (!joins && call.extents.len() >= proto::data::MAX_EXTENTS)
            {
                break;
            }
            let Some(next) = self.queue.pop_front() else {
                break;
            };
            call.bytes += next.data.len();
            call.last_seq = next.seq;
            call.permits.push(next.permit);
            match call.extents.last_mut() {
                Some((_, data)) if joins => data.extend_from_slice(&next.data),
                _ => call.extents.push((next.offset, next.data)),
            }
        }
        Some(call)
    }
}

struct Call {
    last_seq: u64,
    bytes: usize,
    extents: Vec<(u64, Vec<u8>)>,
    /// Given back when the call is answered: until then the data is ours.
    permits: Vec<OwnedSemaphorePermit>,
}

/// `a`, asked at tick `asked`, brought up to what a forgotten record's
/// last answer and the file's live record (queued writes included) show;
/// the guards are `files` then `forgotten`, the one order both are taken in.
fn patch_with(
    files: &HashMap<Gfid, File>,
    forgotten: &Forgotten,
    a: &mut Attr,
    asked: u64,
) -> Certainty {
    let certainty = forgotten.patch(a, asked);
    match files.get(&a.gfid) {
        Some(f) => {
            f.patch(a, asked);
            Certainty::Known
        }
        None => certainty,
    }
}

fn now() -> Timespec {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timespec {
        secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nsecs: d.subsec_nanos(),
    }
}

/// What a drain does with the file's write error: hands it over and
/// clears it (fsync), hands it over and keeps it for the file's other
/// closes (flush, unlock), or only waits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Report {
    Take,
    Show,
    Wait,
}

impl WriteBehind {
    pub fn new(below: Arc<dyn Layer>, window: Window) -> Arc<WriteBehind> {
        Arc::new_cyclic(|me| WriteBehind {
            below,
            files: Mutex::new(HashMap::new()),
            forgotten: Mutex::new(Forgotten::default()),
            progressed: Notify::new(),
            budget: Arc::new(Semaphore::new(window.total)),
            window,
            one_by_one: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            me: me.clone(),
        })
    }

    fn files(&self) -> std::sync::MutexGuard<'_, HashMap<Gfid, File>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes queued and not yet answered, over all files.
    pub fn queued_bytes(&self) -> usize {
        self.window.total - self.budget.available_permits()
    }

    /// Waits (up to a limit) for the writes of every file, logging the
    /// failures nobody is left to hear of: before the connections close.
    pub async fn close_queue(&self) {
        let gfids: Vec<Gfid> = self.files().keys().copied().collect();
        let drained = async {
            for g in gfids {
                if let Err(e) = self.drain(g, Report::Take).await {
                    warn!(gfid = %g, %e, "a write sent behind failed and no close was left to report it");
                }
            }
        };
        if tokio::time::timeout(CLOSE_LIMIT, drained).await.is_err() {
            warn!(
                bytes = self.queued_bytes(),
                "gave up waiting for writes sent behind"
            );
        }
    }

    /// Files this layer keeps a record of (written or created here and
    /// not yet forgotten).
    pub fn files_known(&self) -> usize {
        self.files().len()
    }

    /// For a front-end that sees no closes (the NFS gateway: its clients
    /// only WRITE and COMMIT): forgets the files whose writes were all
    /// answered and that were not written for `idle_for`, which bounds the
    /// records to the files written lately. A file whose write failed
    /// behind is kept for `failed_for` instead, so that the COMMIT or the
    /// next WRITE reports it; after that only the log says it. A file
    /// forgotten and written again writes its first write through.
    /// Returns how many records are left.
    pub fn forget_idle(&self, idle_for: Duration, failed_for: Duration) -> usize {
        let mut files = self.files();
        let mut forgotten = self.forgotten();
        files.retain(|gfid, f| {
            if !f.idle() || f.sending || !f.queue.is_empty() {
                return true;
            }
            let unused = f.used.elapsed();
            let keep = match &f.error {
                None => unused < idle_for,
                Some(e) if unused >= failed_for => {
                    warn!(%gfid, %e, "a write sent behind failed and no COMMIT or write reported it; forgetting the file");
                    false
                }
                Some(_) => true,
            };
            if !keep {
                forgotten.keep(*gfid, &f.attr, f.answered);
            }
            keep
        });
        drop(forgotten);
        files.len()
    }

    /// Waits until every write to `gfid` accepted before this call is
    /// answered by the layer below.
    async fn drain(&self, gfid: Gfid, report: Report) -> FsResult<()> {
        let mut target = None;
        loop {
            let progressed = self.progressed.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            {
                let mut files = self.files();
                let Some(f) = files.get_mut(&gfid) else {
                    return Ok(());
                };
                let target = *target.get_or_insert(f.accepted);
                if f.done >= target {
                    return match report {
                        Report::Take => f.error.take().map_or(Ok(()), Err),
                        Report::Show => f.error.clone().map_or(Ok(()), Err),
                        Report::Wait => Ok(()),
                    };
                }
            }
            progressed.await;
        }
    }

    /// Drains `gfid` for a close, reporting its error, and forgets it if
    /// nothing else was queued meanwhile and no error waits for another
    /// close.
    async fn drain_and_forget(&self, gfid: Gfid) -> FsResult<()> {
        let res = self.drain(gfid, Report::Show).await;
        let mut files = self.files();
        if files
            .get(&gfid)
            .is_some_and(|f| f.idle() && f.error.is_none())
        {
            self.forget_record(&mut files, gfid);
        }
        res
    }

    /// Now, for attributes about to be asked of the layer below.
    fn asking(&self) -> u64 {
        self.ticks.load(Ordering::Acquire)
    }

    fn tick(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn forgotten(&self) -> std::sync::MutexGuard<'_, Forgotten> {
        self.forgotten
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `a`, asked of the layer below at tick `asked`, as it is once every
    /// write accepted so far is applied; `Unknown` when that cannot be
    /// told (a record forgotten meanwhile whose remains are gone too).
    fn patch(&self, a: &mut Attr, asked: u64) -> Certainty {
        patch_with(&self.files(), &self.forgotten(), a, asked)
    }

    /// Asks `ask` of the layer below and patches its answer; again when
    /// the patch could not tell (at most twice more: each ask begins
    /// after the remains it missed were dropped).
    async fn patched<F, Fut>(&self, ask: F) -> FsResult<Attr>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = FsResult<Attr>>,
    {
        let mut tries = 0;
        loop {
            let asked = self.asking();
            let mut a = ask().await?;
            tries += 1;
            if self.patch(&mut a, asked) == Certainty::Known || tries == 3 {
                return Ok(a);
            }
        }
    }

    /// Forgets the record of `gfid`, keeping its last answer for the
    /// attributes asked before.
    fn forget_record(&self, files: &mut HashMap<Gfid, File>, gfid: Gfid) {
        if let Some(f) = files.remove(&gfid) {
            self.forgotten().keep(gfid, &f.attr, f.answered);
        }
    }

    /// Remembers the attributes the layer below gave for a file we write.
    fn note(&self, a: &Attr) {
        let tick = self.tick();
        if let Some(f) = self.files().get_mut(&a.gfid) {
            f.attr = a.clone();
            f.answered = tick;
        }
    }

    /// A write the layer below does before it returns, after every queued
    /// one; from then on the file's writes go behind.
    async fn write_through(&self, gfid: Gfid, offset: u64, data: Vec<u8>) -> FsResult<Attr> {
        self.drain(gfid, Report::Wait).await?;
        let attr = self.below.write(gfid, offset, data).await?;
        let tick = self.tick();
        let mut files = self.files();
        let f = files.entry(gfid).or_insert_with(|| File::new(attr.clone()));
        f.attr = attr.clone();
        f.answered = tick;
        f.used = Instant::now();
        Ok(attr)
    }

    /// Waits until the file has room for `len` more bytes.
    async fn room_in_file(&self, gfid: Gfid, len: usize) {
        loop {
            let progressed = self.progressed.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            match self.files().get(&gfid) {
                Some(f) if f.bytes > 0 && f.bytes + len > self.window.per_file => {}
                _ => return,
            }
            progressed.await;
        }
    }

    /// Queues a write of a file we know, starting its sender if idle; the
    /// data back if the file was forgotten meanwhile.
    fn enqueue(
        &self,
        gfid: Gfid,
        offset: u64,
        data: Vec<u8>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Attr, Vec<u8>> {
        let mut files = self.files();
        let Some(f) = files.get_mut(&gfid) else {
            return Err(data);
        };
        let len = data.len();
        f.used = Instant::now();
        f.accepted += 1;
        f.bytes += len;
        f.pending_end = f.pending_end.max(offset + len as u64);
        f.pending_mtime = now();
        f.queue.push_back(Queued {
            seq: f.accepted,
            offset,
            data,
            permit,
        });
        let mut a = f.attr.clone();
        f.patch(&mut a, u64::MAX);
        if !f.sending {
            f.sending = true;
            if let Some(me) = self.me.upgrade() {
                tokio::spawn(me.send_queue(gfid, f.incarnation));
            }
        }
        Ok(a)
    }

    /// One call down: a plain write, or several in one frame. Bricks of
    /// an older version refuse the frame; their writes go one by one.
    async fn send(&self, gfid: Gfid, mut extents: Vec<(u64, Vec<u8>)>) -> FsResult<Attr> {
        if extents.len() == 1 {
            let (offset, data) = extents.remove(0);
            return self.below.write(gfid, offset, data).await;
        }
        if !self.one_by_one.load(Ordering::Relaxed) {
            match self.below.write_extents(gfid, extents.clone()).await {
                Err(FsError::NotSupported(why)) => {
                    warn!(%why, "the bricks take no vectored writes; sending them one by one");
                    self.one_by_one.store(true, Ordering::Relaxed);
                }
                res => return res,
            }
        }
        let mut last = None;
        for (offset, data) in extents {
            last = Some(self.below.write(gfid, offset, data).await?);
        }
        last.ok_or_else(|| FsError::Invalid("a call of no writes".into()))
    }

    async fn send_queue(self: Arc<Self>, gfid: Gfid, incarnation: u64) {
        loop {
            let call = {
                let mut files = self.files();
                let Some(f) = files
                    .get_mut(&gfid)
                    .filter(|f| f.incarnation == incarnation)
                else {
                    return;
                };
                match f.next_call() {
                    Some(call) => call,
                    None => {
                        f.sending = false;
                        drop(files);
                        self.progressed.notify_waiters();
                        return;
                    }
                }
            };
            let (len, pieces, offset) = (call.bytes, call.extents.len(), call.extents[0].0);
            let started = Instant::now();
            let res = self.send(gfid, call.extents).await;
            let tick = self.tick();
            {
                let mut files = self.files();
                if let Some(f) = files
                    .get_mut(&gfid)
                    .filter(|f| f.incarnation == incarnation)
                {
                    f.done = call.last_seq;
                    f.bytes = f.bytes.saturating_sub(len);
                    match res {
                        Ok(attr) => {
                            f.attr = attr;
                            f.answered = tick;
                        }
                        Err(e) => {
                            warn!(%gfid, offset, len, pieces, %e, "write sent behind failed; the file's closes and fsync report it");
                            f.error.get_or_insert(e);
                        }
                    }
                    if f.idle() {
                        f.pending_end = 0;
                    }
                }
            }
            debug!(%gfid, len, pieces, elapsed = ?started.elapsed(), "wrote behind");
            drop(call.permits);
            self.progressed.notify_waiters();
        }
    }
}

#[async_trait]
impl Layer for WriteBehind {
    fn set_op_timeout(&self, timeout: Duration) {
        self.below.set_op_timeout(timeout);
    }

    async fn close(&self) {
        self.close_queue().await;
        self.below.close().await;
    }

    async fn lookup(&self, parent: Gfid, name: &Name) -> FsResult<Attr> {
        self.patched(|| self.below.lookup(parent, name)).await
    }

    async fn getattr(&self, gfid: Gfid) -> FsResult<Attr> {
        self.patched(|| self.below.getattr(gfid)).await
    }

    async fn getattr_to_open(&self, gfid: Gfid) -> FsResult<Attr> {
        self.patched(|| self.below.getattr_to_open(gfid)).await
    }

    async fn setattr(&self, gfid: Gfid, set: SetAttr) -> FsResult<Attr> {
        // A truncate or utimes must land after the writes before it (tar
        // sets a file's mtime once it wrote it).
        self.drain(gfid, Report::Wait).await?;
        let mut a = self.below.setattr(gfid, set).await?;
        self.note(&a);
        self.patch(&mut a, u64::MAX);
        Ok(a)
    }

    async fn create(&self, parent: Gfid, new: NewEntry) -> FsResult<Attr> {
        let a = self.below.create(parent, new).await?;
        if a.kind == proto::FileKind::File {
            // A file just created is about to be written (tar, cp): its
            // first write can go behind too.
            self.files()
                .entry(a.gfid)
                .or_insert_with(|| File::new(a.clone()));
        }
        Ok(a)
    }

    async fn unlink(&self, parent: Gfid, name: &Name, keep_open: bool) -> FsResult<Option<Gfid>> {
        self.below.unlink(parent, name, keep_open).await
    }

    async fn purge(&self, gfid: Gfid) -> FsResult<()> {
        let _ = self.drain(gfid, Report::Wait).await;
        self.forget_record(&mut self.files(), gfid);
        self.below.purge(gfid).await
    }

    async fn rmdir(&self, parent: Gfid, name: &Name) -> FsResult<()> {
        self.below.rmdir(parent, name).await
    }

    async fn rename(&self, req: RenameReq) -> FsResult<()> {
        self.below.rename(req).await
    }

    async fn link(&self, gfid: Gfid, parent: Gfid, name: &Name) -> FsResult<Attr> {
        // Not asked again: a second link would fail.
        let asked = self.asking();
        let mut a = self.below.link(gfid, parent, name).await?;
        self.patch(&mut a, asked);
        Ok(a)
    }

    async fn readlink(&self, gfid: Gfid) -> FsResult<Vec<u8>> {
        self.below.readlink(gfid).await
    }

    async fn read(&self, gfid: Gfid, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        self.drain(gfid, Report::Wait).await?;
        self.below.read(gfid, offset, size).await
    }

    async fn write(&self, gfid: Gfid, offset: u64, data: Vec<u8>) -> FsResult<Attr> {
        let len = data.len();
        let seeded = {
            let files = self.files();
            match files.get(&gfid) {
                Some(f) => match &f.error {
                    // Later writes fail as the first did, until an fsync
                    // or the file's last close reported it.
                    Some(e) => return Err(e.clone()),
                    None => true,
                },
                None => false,
            }
        };
        if !seeded || len > self.window.per_file || len > proto::MAX_IO as usize {
            return self.write_through(gfid, offset, data).await;
        }
        self.room_in_file(gfid, len).await;
        let permits = u32::try_from(len).map_err(|_| FsError::Invalid("write too large".into()))?;
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| FsError::Busy("write-behind is closed".into()))?;
        match self.enqueue(gfid, offset, data, permit) {
            Ok(a) => Ok(a),
            // Forgotten meanwhile (a purge): nobody would wait for a queue.
            Err(data) => self.write_through(gfid, offset, data).await,
        }
    }

    async fn append(&self, gfid: Gfid, data: Vec<u8>) -> FsResult<Attr> {
        self.drain(gfid, Report::Wait).await?;
        let a = self.below.append(gfid, data).await?;
        self.note(&a);
        Ok(a)
    }

    async fn flush(&self, gfid: Gfid) -> FsResult<()> {
        self.drain_and_forget(gfid).await?;
        self.below.flush(gfid).await
    }

    async fn released(&self, gfid: Gfid) {
        let mut files = self.files();
        // Still sending: the writes of a close that gave up waiting.
        if files.get(&gfid).is_some_and(|f| f.idle()) {
            self.forget_record(&mut files, gfid);
        }
    }

    async fn fsync(&self, gfid: Gfid, datasync: bool) -> FsResult<()> {
        self.drain(gfid, Report::Take).await?;
        self.below.fsync(gfid, datasync).await
    }

    async fn copy_range(&self, copy: CopyRange) -> FsResult<(u64, Attr)> {
        // The bricks copy what they have: every queued write of either
        // file goes first.
        self.drain(copy.src, Report::Wait).await?;
        self.drain(copy.dst, Report::Wait).await?;
        let (n, mut a) = self.below.copy_range(copy).await?;
        self.note(&a);
        self.patch(&mut a, u64::MAX);
        Ok((n, a))
    }

    async fn fallocate(&self, gfid: Gfid, mode: i32, offset: u64, len: u64) -> FsResult<Attr> {
        self.drain(gfid, Report::Wait).await?;
        let a = self.below.fallocate(gfid, mode, offset, len).await?;
        self.note(&a);
        Ok(a)
    }

    async fn readdir(&self, gfid: Gfid, after: Option<Name>, max: u32) -> FsResult<DirPage> {
        let asked = self.asking();
        let mut page = self.below.readdir(gfid, after, max).await?;
        let mut unsure = Vec::new();
        {
            let (files, forgotten) = (self.files(), self.forgotten());
            for (k, e) in page.entries.iter_mut().enumerate() {
                if patch_with(&files, &forgotten, &mut e.attr, asked) == Certainty::Unknown {
                    unsure.push(k);
                }
            }
        }
        // Rare (more closes than the remains kept, during one listing):
        // those entries' attributes are asked again, one by one.
        for k in unsure {
            let entry = &mut page.entries[k];
            if let Ok(a) = self.getattr(entry.attr.gfid).await {
                entry.attr = a;
            }
        }
        Ok(page)
    }

    async fn statfs(&self, at: Gfid) -> FsResult<StatFs> {
        self.below.statfs(at).await
    }

    async fn set_quota(&self, gfid: Gfid, limit: Option<QuotaLimit>) -> FsResult<()> {
        self.below.set_quota(gfid, limit).await
    }

    async fn quota_usage(&self) -> FsResult<Vec<QuotaUse>> {
        self.below.quota_usage().await
    }

    async fn getxattr(&self, gfid: Gfid, name: &Name) -> FsResult<Vec<u8>> {
        self.below.getxattr(gfid, name).await
    }

    async fn listxattr(&self, gfid: Gfid) -> FsResult<Vec<Name>> {
        self.below.listxattr(gfid).await
    }

    async fn setxattr(&self, gfid: Gfid, name: &Name, value: Vec<u8>, flags: i32) -> FsResult<()> {
        self.below.setxattr(gfid, name, value, flags).await
    }

    async fn removexattr(&self, gfid: Gfid, name: &Name) -> FsResult<()> {
        self.below.removexattr(gfid, name).await
    }

    async fn getlk(&self, gfid: Gfid, lock: RecordLock) -> FsResult<Option<RecordLock>> {
        self.below.getlk(gfid, lock).await
    }

    async fn setlk(&self, gfid: Gfid, lock: RecordLock, wait: bool) -> FsResult<()> {
        // The next holder of the lock must find every write made under it.
        let report = if lock.typ == RecordLockType::Unlock {
            Report::Show
        } else {
            Report::Wait
        };
        self.drain(gfid, report).await?;
        self.below.setlk(gfid, lock, wait).await
    }
}

#[cfg(test)]
mod tests;
