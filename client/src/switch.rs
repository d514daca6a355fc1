//! The graph switch: the top of a client stack that follows its volume
//! (`volgen::follow`). It forwards every operation to the current graph
//! and can put a new graph in its place without unmounting.
//!
//! Why this shape: an operation clones the current graph's `Arc` when it
//! starts and keeps it to its end, so an operation started before a
//! replacement finishes on the graph it started on, and everything started
//! after goes to the new one. The switch itself holds the only other
//! reference to a graph, so once a replaced graph's strong count is down to
//! that one, nothing runs on it any more and it can be closed (its locks
//! given back, its connections closed). Two graphs may serve at once for
//! that short while; they are two clients of the bricks as far as the
//! bricks are concerned, ordered by the bricks' replication locks like any
//! two clients.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use proto::{
    Attr, CopyRange, DirPage, FsResult, Gfid, Name, RecordLock, RenameReq, SetAttr, StatFs,
};
use tracing::{info, warn};

use proto::backoff::Backoff;

use crate::layer::{Layer, NewEntry};

/// Longest a replaced graph is waited for before it is closed under the
/// operations still running on it (a blocking record lock can wait forever).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// One graph and its number (1 for the first).
struct Graph {
    layer: Arc<dyn Layer>,
    number: u64,
}

pub struct Switch {
    current: RwLock<Arc<Graph>>,
    /// Numbers the graphs.
    installed: AtomicU64,
    /// One replacement at a time: each waits for its old graph to drain.
    replacing: tokio::sync::Mutex<()>,
    drain_limit: Duration,
}

impl Switch {
    /// A switch serving `first` as graph 1.
    pub fn new(first: Arc<dyn Layer>) -> Arc<Switch> {
        Switch::with_drain_limit(first, DRAIN_LIMIT)
    }

    /// As [`Switch::new`], waiting at most `limit` for a replaced graph's
    /// operations before closing it.
    pub fn with_drain_limit(first: Arc<dyn Layer>, limit: Duration) -> Arc<Switch> {
        Arc::new(Switch {
            current: RwLock::new(Arc::new(Graph {
                layer: first,
                number: 1,
            })),
            installed: AtomicU64::new(1),
            replacing: tokio::sync::Mutex::new(()),
            drain_limit: limit,
        })
    }

    /// The current graph, kept alive by the caller for one operation.
    fn graph(&self) -> Arc<Graph> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The number of the graph serving new operations.
    pub fn graph_number(&self) -> u64 {
        self.graph().number
    }

    /// Serves new operations from `new` from now on; waits until the
    /// operations still running on the old graph are done (at most the
    /// drain limit), then closes it. Returns the new graph's number.
    pub async fn replace(&self, new: Arc<dyn Layer>) -> u64 {
        let _one = self.replacing.lock().await;
        // Files the old graph answered for but has not made yet would be
        // unknown to the new one.
        self.graph().layer.send_held().await;
        let number = self.installed.fetch_add(1, Ordering::AcqRel) + 1;
        let old = {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *current, Arc::new(Graph { layer: new, number }))
        };
        let started = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(50));
        // The switch's own reference is gone; `old` is the one left.
        while Arc::strong_count(&old) > 1 {
            if started.elapsed() >= self.drain_limit {
                warn!(
                    graph = old.number,
                    running = Arc::strong_count(&old) - 1,
                    "operations still running on the replaced graph after {:?}; closing it under them",
                    self.drain_limit
                );
                break;
            }
            tokio::time::sleep(backoff.next_pause()).await;
        }
        info!(
            graph = old.number,
            drained_in = ?started.elapsed(),
            "closing the replaced graph"
        );
        old.layer.close().await;
        number
    }
}

#[async_trait]
impl Layer for Switch {
    fn set_op_timeout(&self, timeout: Duration) {
        self.graph().layer.set_op_timeout(timeout);
    }

    async fn close(&self) {
        let g = self.graph();
        g.layer.close().await;
    }

    async fn lookup(&self, parent: Gfid, name: &Name) -> FsResult<Attr> {
        let g = self.graph();
        g.layer.lookup(parent, name).await
    }

    async fn getattr(&self, gfid: Gfid) -> FsResult<Attr> {
        let g = self.graph();
        g.layer.getattr(gfid).await
    }

    async fn getattr_to_open(&self, gfid: Gfid) -> FsResult<Attr> {
        let g = self.graph();
        g.layer.getattr_to_open(gfid).await
    }

    async fn setattr(&self, gfid: Gfid, set: SetAttr) -> FsResult<Attr> {
        let g = self.graph();
        g.layer.setattr(gfid, set).await
    }

    async fn create(&self, parent: Gfid, new: NewEntry) -> FsResult<Attr> {
        let g = self.graph();
        g.layer.create(parent, new).await
    }

    async fn unlink(&self, parent: Gfid, name: &Name, keep_open: bool) -> FsResult<Option<Gfid>> {
        let g = self.graph();
        g.layer.unlink(parent, name, keep_open).await
    }

    async fn purge(&self, gfid: Gfid) -> FsResult<()> {
        let g = self.graph();
        g.layer.purge(gfid).await
    }

    async fn rmdir(&self, parent: Gfid, name: &Name) -> FsResult<()> {
        let g = self.graph();
        g.layer.rmdir(parent, name).await
    }

    async fn rename(&self, req: RenameReq) -> FsResult<()> {
        let g = self.graph();
        g.layer.rename(req).await
    }

    async fn link(&self, gfid: Gfid, parent: Gfid, name: &Name) -> FsResult<Attr> {
        let g = self.graph();
        g.layer.link(gfid, parent, name).await
    }

    async fn readlink(&self, gfid: Gfid) -> FsResult<Vec<u8>> {
        let g = self.graph();
        g.layer.readlink(gfid).await
    }

    async fn read(&self, gfid: Gfid, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let g = self.graph();
        g.layer.read(gfid, offset, size).await
    }

    async fn write(&self, gfid: Gfid, offset: u64, data: Vec<u8>) -> FsResult<Attr> {
        let g = self.graph();
        g.layer.write(gfid, offset, data).await
    }

    async fn write_extents(&self, gfid: Gfid, extents: Vec<(u64, Vec<u8>)>) -> FsResult<Attr> {
        let g = self.graph();
        g.layer.write_extents(gfid, extents).await
    }

    async fn append(&self, gfid: Gfid, data: Vec<u8>) -> FsResult<Attr> {
        let g = self.graph();
        g.layer.append(gfid, data).await
    }

    async fn flush(&self, gfid: Gfid) -> FsResult<()> {
        let g = self.graph();
        g.layer.flush(gfid).await
    }

    async fn fsync(&self, gfid: Gfid, datasync: bool) -> FsResult<()> {
        let g = self.graph();
        g.layer.fsync(gfid, datasync).await
    }

    async fn fallocate(&self, gfid: Gfid, mode: i32, offset: u64, len: u64) -> FsResult<Attr> {
        let g = self.graph();
        g.layer.fallocate(gfid, mode, offset, len).await
    }

    async fn copy_range(&self, copy: CopyRange) -> FsResult<(u64, Attr)> {
        let g = self.graph();
        g.layer.copy_range(copy).await
    }

    async fn readdir(&self, gfid: Gfid, after: Option<Name>, max: u32) -> FsResult<DirPage> {
        let g = self.graph();
        g.layer.readdir(gfid, after, max).await
    }

    async fn statfs(&self, at: Gfid) -> FsResult<StatFs> {
        let g = self.graph();
        g.layer.statfs(at).await
    }

    async fn set_quota(&self, gfid: Gfid, limit: Option<proto::QuotaLimit>) -> FsResult<()> {
        let g = self.graph();
        g.layer.set_quota(gfid, limit).await
    }

    async fn quota_usage(&self) -> FsResult<Vec<proto::QuotaUse>> {
        let g = self.graph();
        g.layer.quota_usage().await
    }

    async fn getxattr(&self, gfid: Gfid, name: &Name) -> FsResult<Vec<u8>> {
        let g = self.graph();
        g.layer.getxattr(gfid, name).await
    }

    async fn listxattr(&self, gfid: Gfid) -> FsResult<Vec<Name>> {
        let g = self.graph();
        g.layer.listxattr(gfid).await
    }

    async fn setxattr(&self, gfid: Gfid, name: &Name, value: Vec<u8>, flags: i32) -> FsResult<()> {
        let g = self.graph();
        g.layer.setxattr(gfid, name, value, flags).await
    }

    async fn removexattr(&self, gfid: Gfid, name: &Name) -> FsResult<()> {
        let g = self.graph();
        g.layer.removexattr(gfid, name).await
    }

    async fn getlk(&self, gfid: Gfid, lock: RecordLock) -> FsResult<Option<RecordLock>> {
        let g = self.graph();
        g.layer.getlk(gfid, lock).await
    }

    async fn setlk(&self, gfid: Gfid, lock: RecordLock, wait: bool) -> FsResult<()> {
        let g = self.graph();
        g.layer.setlk(gfid, lock, wait).await
    }
}

#[cfg(test)]
mod tests {
    //! A fake graph that answers `readlink` with its own name, optionally
    //! holding each call until the test lets it go, and counts `close`.

    use super::*;
    use proto::FsError;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Semaphore;

    struct Fake {
        name: &'static str,
        /// When set, each readlink waits for a permit.
        gate: Option<Arc<Semaphore>>,
        started: AtomicUsize,
        closed: AtomicUsize,
        timeout: AtomicU64,
    }

    fn fake(name: &'static str, gate: Option<Arc<Semaphore>>) -> Arc<Fake> {
        Arc::new(Fake {
            name,
            gate,
            started: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            timeout: AtomicU64::new(0),
        })
    }

    fn no<T>() -> FsResult<T> {
        Err(FsError::NotSupported("fake".into()))
    }

    #[async_trait]
    impl Layer for Fake {
        fn set_op_timeout(&self, timeout: Duration) {
            self.timeout.store(timeout.as_secs(), Ordering::Relaxed);
        }
        async fn close(&self) {
            self.closed.fetch_add(1, Ordering::AcqRel);
        }
        async fn readlink(&self, _: Gfid) -> FsResult<Vec<u8>> {
            self.started.fetch_add(1, Ordering::AcqRel);
            if let Some(gate) = &self.gate {
                gate.acquire().await.expect("gate").forget();
            }
            Ok(self.name.as_bytes().to_vec())
        }
        async fn lookup(&self, _: Gfid, _: &Name) -> FsResult<Attr> {
            no()
        }
        async fn getattr(&self, _: Gfid) -> FsResult<Attr> {
            no()
        }
        async fn getattr_to_open(&self, _: Gfid) -> FsResult<Attr> {
            no()
        }
        async fn setattr(&self, _: Gfid, _: SetAttr) -> FsResult<Attr> {
            no()
        }
        async fn create(&self, _: Gfid, _: NewEntry) -> FsResult<Attr> {
            no()
        }
        async fn unlink(&self, _: Gfid, _: &Name, _: bool) -> FsResult<Option<Gfid>> {
            no()
        }
        async fn purge(&self, _: Gfid) -> FsResult<()> {
            no()
        }
        async fn rmdir(&self, _: Gfid, _: &Name) -> FsResult<()> {
            no()
        }
        async fn rename(&self, _: RenameReq) -> FsResult<()> {
            no()
        }
        async fn link(&self, _: Gfid, _: Gfid, _: &Name) -> FsResult<Attr> {
            no()
        }
        async fn read(&self, _: Gfid, _: u64, _: u32) -> FsResult<Vec<u8>> {
            no()
        }
        async fn write(&self, _: Gfid, _: u64, _: Vec<u8>) -> FsResult<Attr> {
            no()
        }
        async fn append(&self, _: Gfid, _: Vec<u8>) -> FsResult<Attr> {
            no()
        }
        async fn flush(&self, _: Gfid) -> FsResult<()> {
            no()
        }
        async fn fsync(&self, _: Gfid, _: bool) -> FsResult<()> {
            no()
        }
        async fn fallocate(&self, _: Gfid, _: i32, _: u64, _: u64) -> FsResult<Attr> {
            no()
        }
        async fn readdir(&self, _: Gfid, _: Option<Name>, _: u32) -> FsResult<DirPage> {
            no()
        }
        async fn statfs(&self, _: Gfid) -> FsResult<StatFs> {
            no()
        }
        async fn getxattr(&self, _: Gfid, _: &Name) -> FsResult<Vec<u8>> {
            no()
        }
        async fn listxattr(&self, _: Gfid) -> FsResult<Vec<Name>> {
            no()
        }
        async fn setxattr(&self, _: Gfid, _: &Name, _: Vec<u8>, _: i32) -> FsResult<()> {
            no()
        }
        async fn removexattr(&self, _: Gfid, _: &Name) -> FsResult<()> {
            no()
        }
        async fn getlk(&self, _: Gfid, _: RecordLock) -> FsResult<Option<RecordLock>> {
            no()
        }
        async fn setlk(&self, _: Gfid, _: RecordLock, _: bool) -> FsResult<()> {
            no()
        }
    }

    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn an_op_in_flight_finishes_on_the_old_graph_and_the_old_graph_closes_after_it() {
        let gate = Arc::new(Semaphore::new(0));
        let old = fake("old", Some(gate.clone()));
        let new = fake("new", None);
        let switch = Switch::new(old.clone());
        assert_eq!(switch.graph_number(), 1);

        let in_flight = tokio::spawn({
            let s = switch.clone();
            async move { s.readlink(Gfid::ROOT).await }
        });
        until("the op to start on the old graph", || {
            old.started.load(Ordering::Acquire) == 1
        })
        .await;

        let replaced = tokio::spawn({
            let (s, new) = (switch.clone(), new.clone());
            async move { s.replace(new).await }
        });
        until("the switch", || switch.graph_number() == 2).await;
        // New operations go to the new graph while the old one still works.
        assert_eq!(switch.readlink(Gfid::ROOT).await.unwrap(), b"new");
        switch.set_op_timeout(Duration::from_secs(7));
        assert_eq!(new.timeout.load(Ordering::Relaxed), 7);
        assert_eq!(old.timeout.load(Ordering::Relaxed), 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            old.closed.load(Ordering::Acquire),
            0,
            "closed under a running op"
        );
        assert!(!replaced.is_finished());

        gate.add_permits(1);
        assert_eq!(in_flight.await.unwrap().unwrap(), b"old");
        assert_eq!(replaced.await.unwrap(), 2);
        assert_eq!(old.closed.load(Ordering::Acquire), 1);
        assert_eq!(new.closed.load(Ordering::Acquire), 0);
        assert_eq!(old.started.load(Ordering::Acquire), 1);
    }

    #[tokio::test]
    async fn a_graph_that_does_not_drain_is_closed_at_the_limit() {
        let gate = Arc::new(Semaphore::new(0));
        let old = fake("old", Some(gate.clone()));
        let switch = Switch::with_drain_limit(old.clone(), Duration::from_millis(100));
        let stuck = tokio::spawn({
            let s = switch.clone();
            async move { s.readlink(Gfid::ROOT).await }
        });
        until("the op to start", || {
            old.started.load(Ordering::Acquire) == 1
        })
        .await;
        let started = Instant::now();
        assert_eq!(switch.replace(fake("new", None)).await, 2);
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(old.closed.load(Ordering::Acquire), 1);
        gate.add_permits(1);
        stuck.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_idle_graph_is_closed_at_once_and_replacements_number_on() {
        let first = fake("first", None);
        let switch = Switch::new(first.clone());
        let second = fake("second", None);
        assert_eq!(switch.replace(second.clone()).await, 2);
        assert_eq!(first.closed.load(Ordering::Acquire), 1);
        assert_eq!(switch.replace(fake("third", None)).await, 3);
        assert_eq!(second.closed.load(Ordering::Acquire), 1);
        assert_eq!(switch.readlink(Gfid::ROOT).await.unwrap(), b"third");
    }
}
