//! The queue's rules against a file kept in memory below it, whose writes
//! can be held back and made to fail.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use proto::FileKind;
use tokio::time::timeout;

use super::*;

const FILE: Gfid = Gfid([7; 16]);
const WAIT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Below {
    data: Mutex<Vec<u8>>,
    /// (offset, len) of each write that reached us.
    writes: Mutex<Vec<(u64, usize)>>,
    /// Extents of each vectored write that reached us.
    vectored: Mutex<Vec<usize>>,
    /// Writes wait for a permit when set.
    gate: Mutex<Option<Arc<Semaphore>>>,
    /// Getattrs and readdirs take their answer, then wait for a permit,
    /// when set (an answer on its way while other things happen).
    answer_gate: Mutex<Option<Arc<Semaphore>>>,
    getattrs: AtomicUsize,
    fail: AtomicBool,
}

impl Below {
    fn attr(&self) -> Attr {
        let mut a = Attr::bare(FILE, FileKind::File, 0o644);
        a.size = self.data.lock().unwrap().len() as u64;
        a
    }

    fn hold(&self) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        *self.gate.lock().unwrap() = Some(gate.clone());
        gate
    }

    fn writes(&self) -> Vec<(u64, usize)> {
        self.writes.lock().unwrap().clone()
    }

    async fn answer_later<T>(&self, answer: T) -> T {
        let gate = self.answer_gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.acquire().await.unwrap().forget();
        }
        answer
    }
}

fn unsupported<T>() -> FsResult<T> {
    Err(FsError::NotSupported("not in this test".into()))
}

#[async_trait]
impl Layer for Below {
    async fn lookup(&self, _: Gfid, _: &Name) -> FsResult<Attr> {
        Ok(self.attr())
    }
    async fn getattr(&self, _: Gfid) -> FsResult<Attr> {
        self.getattrs.fetch_add(1, Ordering::SeqCst);
        Ok(self.answer_later(self.attr()).await)
    }
    async fn getattr_to_open(&self, _: Gfid) -> FsResult<Attr> {
        Ok(self.attr())
    }
    async fn setattr(&self, _: Gfid, set: SetAttr) -> FsResult<Attr> {
        if let Some(size) = set.size {
            self.data.lock().unwrap().resize(size as usize, 0);
        }
        Ok(self.attr())
    }
    async fn create(&self, _: Gfid, _: NewEntry) -> FsResult<Attr> {
        Ok(self.attr())
    }
    async fn unlink(&self, _: Gfid, _: &Name, _: bool) -> FsResult<Option<Gfid>> {
        unsupported()
    }
    async fn purge(&self, _: Gfid) -> FsResult<()> {
        Ok(())
    }
    async fn rmdir(&self, _: Gfid, _: &Name) -> FsResult<()> {
        unsupported()
    }
    async fn rename(&self, _: RenameReq) -> FsResult<()> {
        unsupported()
    }
    async fn link(&self, _: Gfid, _: Gfid, _: &Name) -> FsResult<Attr> {
        unsupported()
    }
    async fn readlink(&self, _: Gfid) -> FsResult<Vec<u8>> {
        unsupported()
    }
    async fn read(&self, _: Gfid, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let data = self.data.lock().unwrap();
        let start = (offset as usize).min(data.len());
        let end = (start + size as usize).min(data.len());
        Ok(data[start..end].to_vec())
    }
    async fn write(&self, _: Gfid, offset: u64, data: Vec<u8>) -> FsResult<Attr> {
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.acquire().await.unwrap().forget();
        }
        self.writes.lock().unwrap().push((offset, data.len()));
        if self.fail.load(Ordering::SeqCst) {
            return Err(FsError::Quota("sub-volume full".into()));
        }
        let mut file = self.data.lock().unwrap();
        let end = offset as usize + data.len();
        if file.len() < end {
            file.resize(end, 0);
        }
        file[offset as usize..end].copy_from_slice(&data);
        drop(file);
        Ok(self.attr())
    }
    async fn append(&self, _: Gfid, _: Vec<u8>) -> FsResult<Attr> {
        unsupported()
    }
    async fn write_extents(&self, gfid: Gfid, extents: Vec<(u64, Vec<u8>)>) -> FsResult<Attr> {
        self.vectored.lock().unwrap().push(extents.len());
        let mut last = None;
        for (offset, data) in extents {
            last = Some(self.write(gfid, offset, data).await?);
        }
        last.ok_or_else(|| FsError::Invalid("empty".into()))
    }
    async fn flush(&self, _: Gfid) -> FsResult<()> {
        Ok(())
    }
    async fn fsync(&self, _: Gfid, _: bool) -> FsResult<()> {
        Ok(())
    }
    async fn fallocate(&self, _: Gfid, _: i32, _: u64, _: u64) -> FsResult<Attr> {
        unsupported()
    }
    async fn readdir(&self, _: Gfid, _: Option<Name>, _: u32) -> FsResult<DirPage> {
        let page = DirPage {
            entries: vec![proto::DirEntry {
                name: Name::from("f"),
                attr: self.attr(),
            }],
            eof: true,
        };
        Ok(self.answer_later(page).await)
    }
    async fn statfs(&self, _: Gfid) -> FsResult<StatFs> {
        unsupported()
    }
    async fn getxattr(&self, _: Gfid, _: &Name) -> FsResult<Vec<u8>> {
        unsupported()
    }
    async fn listxattr(&self, _: Gfid) -> FsResult<Vec<Name>> {
        unsupported()
    }
    async fn setxattr(&self, _: Gfid, _: &Name, _: Vec<u8>, _: i32) -> FsResult<()> {
        unsupported()
    }
    async fn removexattr(&self, _: Gfid, _: &Name) -> FsResult<()> {
        unsupported()
    }
    async fn getlk(&self, _: Gfid, _: RecordLock) -> FsResult<Option<RecordLock>> {
        unsupported()
    }
    async fn setlk(&self, _: Gfid, _: RecordLock, _: bool) -> FsResult<()> {
        Ok(())
    }
}

fn new_entry() -> NewEntry {
    NewEntry {
        name: Name::from("f"),
        kind: FileKind::File,
        perm: 0o644,
        rdev: 0,
        uid: 0,
        gid: 0,
        target: None,
    }
}

async fn stack(window: Window) -> (Arc<Below>, Arc<WriteBehind>) {
    let below = Arc::new(Below::default());
    let wb = WriteBehind::new(below.clone(), window);
    wb.create(Gfid::ROOT, new_entry()).await.unwrap();
    (below, wb)
}

#[tokio::test]
async fn a_write_returns_before_the_layer_below_has_it_and_close_waits_for_it() {
    let (below, wb) = stack(Window::of(64 << 20)).await;
    let gate = below.hold();
    let a = timeout(WAIT, wb.write(FILE, 0, vec![1; 4096]))
        .await
        .expect("write waited for the layer below")
        .unwrap();
    assert_eq!(a.size, 4096, "the attributes show the write");
    let flush = tokio::spawn({
        let wb = wb.clone();
        async move { wb.flush(FILE).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !flush.is_finished(),
        "flush returned before the data was written"
    );
    gate.add_permits(1);
    timeout(WAIT, flush).await.unwrap().unwrap().unwrap();
    assert_eq!(*below.data.lock().unwrap(), vec![1; 4096]);
    assert_eq!(wb.queued_bytes(), 0);
}

#[tokio::test]
async fn writes_that_follow_each_other_reach_the_layer_below_as_one() {
    let (below, wb) = stack(Window::of(64 << 20)).await;
    let gate = below.hold();
    for i in 0..8u64 {
        wb.write(FILE, i * 4096, vec![i as u8; 4096]).await.unwrap();
    }
    // The test's runtime runs the sender only once the writer waits, so
    // all eight are queued by then and go as one call.
    gate.add_permits(8);
    wb.fsync(FILE, false).await.unwrap();
    assert_eq!(below.writes(), vec![(0, 8 * 4096)]);
    let data = below.data.lock().unwrap().clone();
    for i in 0..8usize {
        assert!(data[i * 4096..(i + 1) * 4096].iter().all(|b| *b == i as u8));
    }
}

#[tokio::test]
async fn a_failed_write_is_reported_by_every_close_until_the_last_one() {
    let (below, wb) = stack(Window::of(64 << 20)).await;
    below.fail.store(true, Ordering::SeqCst);
    wb.write(FILE, 0, vec![1; 10]).await.unwrap();
    // Another descriptor's close (a child closing its copy at exec) does
    // not take the error away from the writer's own close.
    for close in ["a child's", "the writer's"] {
        let err = wb
            .flush(FILE)
            .await
            .expect_err(&format!("{close} close hid the failed write"));
        assert!(matches!(err, FsError::Quota(_)), "{err:?}");
    }
    below.fail.store(false, Ordering::SeqCst);
    wb.released(FILE).await;
    wb.flush(FILE)
        .await
        .expect("the last close forgot the reported error");
}

#[tokio::test]
async fn an_fsync_reports_a_failed_write_once() {
    let (below, wb) = stack(Window::of(64 << 20)).await;
    below.fail.store(true, Ordering::SeqCst);
    wb.write(FILE, 0, vec![1; 10]).await.unwrap();
    assert!(wb.fsync(FILE, false).await.is_err());
    below.fail.store(false, Ordering::SeqCst);
    wb.fsync(FILE, false).await.expect("reported once");
    wb.flush(FILE).await.expect("fsync reported it already");
}

#[tokio::test]
async fn after_a_failed_write_later_writes_fail_until_fsync_reports_it() {
    let (below, wb) = stack(Window::of(64 << 20)).await;
    below.fail.store(true, Ordering::SeqCst);
    wb.write(FILE, 0, vec![1; 10]).await.unwrap();
    // A read waits for the queue but leaves the error to flush or fsync.
    wb.read(FILE, 0, 10).await.unwrap();
    assert!(wb.write(FILE, 10, vec![1; 10]).await.is_err());
    assert!(wb.fsync(FILE, false).await.is_err());
    below.fail.store(false, Ordering::SeqCst);
    wb.write(FILE, 10, vec![2; 10]).await.unwrap();
    wb.fsync(FILE, false).await.unwrap();
}

#[tokio::test]
async fn a_read_sees_the_writes_before_it() {
    let (below, wb) = stack(Window::of(64 << 20)).await;
    let gate = below.hold();
    wb.write(FILE, 0, b"hello".to_vec()).await.unwrap();
    let read = tokio::spawn({
        let wb = wb.clone();
        async move { wb.read(FILE, 0, 5).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!read.is_finished(), "the read overtook a queued write");
    gate.add_permits(1);
    assert_eq!(
        timeout(WAIT, read).await.unwrap().unwrap().unwrap(),
        b"hello"
    );
}

#[tokio::test]
async fn stat_while_writes_are_queued_shows_the_size_they_make() {
    let (below, wb) = stack(Window::of(64 << 20)).await;
    let gate = below.hold();
    wb.write(FILE, 0, vec![0; 100]).await.unwrap();
    wb.write(FILE, 100, vec![0; 100]).await.unwrap();
    assert_eq!(wb.getattr(FILE).await.unwrap().size, 200);
    assert_eq!(
        wb.lookup(Gfid::ROOT, &Name::from("f")).await.unwrap().size,
        200
    );
    gate.add_permits(2);
    wb.flush(FILE).await.unwrap();
    assert_eq!(wb.getattr(FILE).await.unwrap().size, 200);
}

/// Leaves FILE with 100 bytes applied below and 100 more queued, and the
/// layer below holding back its answers: an ask started now takes the
/// 100-byte answer. `forget` then lets the queued write through and
/// closes the file, which forgets its record.
struct AnswerOnItsWay {
    writes: Arc<Semaphore>,
    answers: Arc<Semaphore>,
}

async fn an_answer_on_its_way(below: &Below, wb: &WriteBehind) -> AnswerOnItsWay {
    let writes = below.hold();
    wb.write(FILE, 0, vec![1; 100]).await.unwrap();
    writes.add_permits(1);
    timeout(WAIT, async {
        while wb.queued_bytes() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first write was not answered");
    wb.write(FILE, 100, vec![2; 100]).await.unwrap();
    let answers = Arc::new(Semaphore::new(0));
    *below.answer_gate.lock().unwrap() = Some(answers.clone());
    AnswerOnItsWay { writes, answers }
}

impl AnswerOnItsWay {
    async fn forget(&self, wb: &WriteBehind) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.writes.add_permits(1);
        timeout(WAIT, wb.flush(FILE)).await.unwrap().unwrap();
        assert_eq!(wb.files_known(), 0, "the close forgot the file");
    }
}

/// More closes than the remains kept: FILE's is dropped too.
fn forget_many_others(wb: &WriteBehind) {
    for _ in 0..forgotten::KEPT {
        let g = Gfid::random();
        let tick = wb.tick();
        wb.forgotten()
            .keep(g, &Attr::bare(g, FileKind::File, 0o644), tick);
    }
}

/// Any close forgets the record once the writes are answered, also one a
/// program makes when its exec closes the descriptor it inherited: a stat
/// asked before the last write was applied still shows it.
#[tokio::test]
async fn a_stat_on_its_way_while_a_close_forgets_the_file_shows_every_write() {
    let (below, wb) = stack(Window::of(64 << 20)).await;
    let way = an_answer_on_its_way(&below, &wb).await;
    let stat = tokio::spawn({
        let wb = wb.clone();
        async move { wb.getattr(FILE).await }
    });
    way.forget(&wb).await;
    assert!(!stat.is_finished(), "the stat's answer was not held back");
    way.answers.add_permits(1);
    let size = timeout(WAIT, stat).await.unwrap().unwrap().unwrap().size;
    assert_eq!(size, 200, "the stat lost a write answered after it asked");
}

#[tokio::test]
async fn a_stat_whose_forgotten_answer_was_dropped_is_asked_again() {
    let (below, wb) = stack(Window::of(64 << 20)).await;
    let way = an_answer_on_its_way(&below, &wb).await;
    let stat = tokio::spawn({
        let wb = wb.clone();
        async move { wb.getattr(FILE).await }
    });
    way.forget(&wb).await;
    forget_many_others(&wb);
    way.answers.add_permits(2);
    let size = timeout(WAIT, stat).await.unwrap().unwrap().unwrap().size;
    assert_eq!(size, 200, "the stat lost a write answered after it asked");
    assert_eq!(below.getattrs.load(Ordering::SeqCst), 2, "asked once again");
}

#[tokio::test]
async fn a_listing_whose_forgotten_answer_was_dropped_asks_for_the_file_again() {
    let (below, wb) = stack(Window::of(64 << 20)).await;
    let way = an_answer_on_its_way(&below, &wb).await;
    let listing = tokio::spawn({
        let wb = wb.clone();
        async move { wb.readdir(Gfid::ROOT, None, 100).await }
    });
    way.forget(&wb).await;
    forget_many_others(&wb);
    way.answers.add_permits(2);
    let page = timeout(WAIT, listing).await.unwrap().unwrap().unwrap();
    assert_eq!(page.entries[0].attr.size, 200, "the listing lost a write");
    assert_eq!(
        below.getattrs.load(Ordering::SeqCst),
        1,
        "the entry was asked for"
    );
}

#[tokio::test]
async fn a_truncate_lands_after_the_writes_before_it() {
    let (_below, wb) = stack(Window::of(64 << 20)).await;
    wb.write(FILE, 0, vec![1; 1000]).await.unwrap();
    let set = SetAttr {
        size: Some(10),
        ..SetAttr::default()
    };
    let a = wb.setattr(FILE, set).await.unwrap();
    assert_eq!(a.size, 10);
    wb.flush(FILE).await.unwrap();
    assert_eq!(wb.getattr(FILE).await.unwrap().size, 10);
}

#[tokio::test]
async fn a_full_window_makes_the_writer_wait() {
    let window = Window {
        total: 8192,
        per_file: 8192,
    };
    let (below, wb) = stack(window).await;
    let gate = below.hold();
    wb.write(FILE, 0, vec![0; 4096]).await.unwrap();
    wb.write(FILE, 4096, vec![0; 4096]).await.unwrap();
    let third = tokio::spawn({
        let wb = wb.clone();
        async move { wb.write(FILE, 8192, vec![0; 4096]).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!third.is_finished(), "the window let more in than it holds");
    assert!(wb.queued_bytes() <= 8192);
    gate.add_permits(3);
    timeout(WAIT, third).await.unwrap().unwrap().unwrap();
    wb.flush(FILE).await.unwrap();
    assert_eq!(below.data.lock().unwrap().len(), 12288);
}

#[tokio::test]
async fn a_file_not_created_here_writes_its_first_write_through() {
    let below = Arc::new(Below::default());
    let wb = WriteBehind::new(below.clone(), Window::of(64 << 20));
    wb.write(FILE, 0, vec![1; 10]).await.unwrap();
    assert_eq!(
        below.writes(),
        vec![(0, 10)],
        "the first write went through"
    );
    let gate = below.hold();
    wb.write(FILE, 10, vec![1; 10]).await.unwrap();
    assert_eq!(below.writes().len(), 1, "the second went behind");
    gate.add_permits(1);
    wb.flush(FILE).await.unwrap();
    assert_eq!(below.writes(), vec![(0, 10), (10, 10)]);
}

#[tokio::test]
async fn scattered_writes_go_as_one_vectored_call_applied_in_order() {
    let (below, wb) = stack(Window::of(64 << 20)).await;
    // Backwards, and the last one over the first: order matters.
    for i in (0..16u64).rev() {
        wb.write(FILE, i * 8192, vec![i as u8; 4096]).await.unwrap();
    }
    wb.write(FILE, 15 * 8192, vec![0xee; 100]).await.unwrap();
    wb.fsync(FILE, false).await.unwrap();
    assert_eq!(*below.vectored.lock().unwrap(), vec![17]);
    let data = below.data.lock().unwrap().clone();
    assert!(data[15 * 8192..15 * 8192 + 100].iter().all(|b| *b == 0xee));
    assert!(data[15 * 8192 + 100..15 * 8192 + 4096]
        .iter()
        .all(|b| *b == 15));
    assert!(data[0..4096].iter().all(|b| *b == 0));
    assert!(data[8192..8192 + 4096].iter().all(|b| *b == 1));
}

#[tokio::test]
async fn records_of_idle_files_are_forgotten_and_failed_ones_kept_longer() {
    let (below, wb) = stack(Window::of(64 << 20)).await;
    let long = Duration::from_secs(3600);
    assert_eq!(wb.forget_idle(long, long), 1, "the created file is known");
    // Queued and unanswered: kept however idle.
    let gate = below.hold();
    wb.write(FILE, 0, vec![1; 10]).await.unwrap();
    assert_eq!(wb.forget_idle(Duration::ZERO, Duration::ZERO), 1);
    gate.add_permits(1);
    wb.fsync(FILE, false).await.unwrap();
    *below.gate.lock().unwrap() = None;
    assert_eq!(wb.forget_idle(long, long), 1, "used a moment ago");
    assert_eq!(wb.forget_idle(Duration::ZERO, long), 0, "idle: forgotten");
    // Forgotten, its next write goes through and the file is known again.
    wb.write(FILE, 10, vec![2; 10]).await.unwrap();
    assert_eq!(below.data.lock().unwrap().len(), 20, "written through");
    assert_eq!(wb.files_known(), 1);
    // A failure nobody heard of yet outlives the idle time.
    below.fail.store(true, Ordering::SeqCst);
    wb.write(FILE, 20, vec![3; 10]).await.unwrap();
    timeout(WAIT, async {
        while wb.write(FILE, 30, vec![4; 10]).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the failure of the write sent behind is reported");
    assert_eq!(
        wb.forget_idle(Duration::ZERO, long),
        1,
        "kept for its COMMIT"
    );
    assert!(
        wb.fsync(FILE, false).await.is_err(),
        "the COMMIT reports it"
    );
    assert_eq!(
        wb.forget_idle(Duration::ZERO, long),
        0,
        "reported: forgotten"
    );
    below.fail.store(false, Ordering::SeqCst);
    wb.write(FILE, 40, vec![5; 10]).await.unwrap();
    below.fail.store(true, Ordering::SeqCst);
    wb.write(FILE, 50, vec![6; 10]).await.unwrap();
    wb.read(FILE, 0, 1).await.unwrap();
    assert_eq!(
        wb.forget_idle(Duration::ZERO, Duration::ZERO),
        0,
        "a failure kept past its time goes too"
    );
}
