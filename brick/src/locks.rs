//! Locks that live in the brick's memory and end with the connection that
//! took them: replication inodelks (one holder per gfid, FIFO-less waiting
//! with a deadline) and POSIX record locks / flock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use proto::{FsError, FsResult, Gfid, RecordLock, RecordLockType};
use tokio::sync::Notify;

/// Identifies one accepted connection for the lifetime of the brick process.
pub type ConnId = u64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct InodeLock {
    holder: Option<ConnId>,
    waiters: usize,
    released: Arc<Notify>,
}

enum Take {
    Granted,
    Busy,
    Wait(Arc<Notify>),
}

#[derive(Default)]
pub struct InodeLocks {
    table: Mutex<HashMap<Gfid, InodeLock>>,
    /// Waiters over all locks: lets `contended` answer "no" without a scan
    /// in the common, uncontended case.
    waiting: std::sync::atomic::AtomicUsize,
}

/// Keeps the waiter count right even when the waiting request is cancelled.
struct Waiting<'a> {
    locks: &'a InodeLocks,
    gfid: Gfid,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut table = lock(&self.locks.table);
        self.locks
            .waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(l) = table.get_mut(&self.gfid) {
            l.waiters = l.waiters.saturating_sub(1);
            if l.holder.is_none() && l.waiters == 0 {
                table.remove(&self.gfid);
            }
        }
    }
}

impl InodeLocks {
    /// Takes the lock if free (or already ours) without waiting.
    pub fn try_acquire(&self, gfid: Gfid, conn: ConnId) -> bool {
        matches!(self.take(gfid, conn, false), Take::Granted)
    }

    /// Takes the lock if free or already ours. Otherwise, with `wait`,
    /// counts the caller as a waiter and returns what wakes it.
    fn take(&self, gfid: Gfid, conn: ConnId, wait: bool) -> Take {
        let mut table = lock(&self.table);
        let l = table.entry(gfid).or_insert_with(|| InodeLock {
            holder: None,
            waiters: 0,
            released: Arc::new(Notify::new()),
        });
        match l.holder {
            None => {
                l.holder = Some(conn);
                return Take::Granted;
            }
            Some(h) if h == conn => return Take::Granted,
            Some(_) => {}
        }
        if !wait {
            return Take::Busy;
        }
        l.waiters += 1;
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Take::Wait(l.released.clone())
    }

    /// Takes the lock, waiting up to `wait` for the holder to release it.
    pub async fn acquire(&self, gfid: Gfid, conn: ConnId, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let released = match self.take(gfid, conn, true) {
                Take::Granted => return true,
                Take::Wait(released) => released,
                Take::Busy => return false,
            };
            let _waiting = Waiting { locks: self, gfid };
            let notified = released.notified();
            tokio::pin!(notified);
            // Register before re-checking, so a release between the table
            // check above and the wait below is not missed.
            notified.as_mut().enable();
            if self.is_free(gfid) {
                continue;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                drop(_waiting);
                return self.try_acquire(gfid, conn);
            }
        }
    }

    fn is_free(&self, gfid: Gfid) -> bool {
        lock(&self.table)
            .get(&gfid)
            .is_none_or(|l| l.holder.is_none())
    }

    pub fn release(&self, gfid: Gfid, conn: ConnId) {
        let mut table = lock(&self.table);
        if let Some(l) = table.get_mut(&gfid) {
            if l.holder == Some(conn) {
                l.holder = None;
                l.released.notify_waiters();
                if l.waiters == 0 {
                    table.remove(&gfid);
                }
            }
        }
    }

    pub fn release_all(&self, conn: ConnId) {
        let mut table = lock(&self.table);
        table.retain(|_, l| {
            if l.holder == Some(conn) {
                l.holder = None;
                l.released.notify_waiters();
            }
            l.holder.is_some() || l.waiters > 0
        });
    }

    /// True when another connection waits for any lock `conn` holds: the
    /// eager-lock holder should let go of what it is not using. Any lock, not
    /// only the ones the current op touched, because a holder that moved on
    /// to other inodes would otherwise keep the contended one until idle.
    pub fn contended(&self, conn: ConnId) -> bool {
        if self.waiting.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return false;
        }
        lock(&self.table)
            .values()
            .any(|l| l.holder == Some(conn) && l.waiters > 0)
    }

    pub fn holder(&self, gfid: Gfid) -> Option<ConnId> {
        lock(&self.table).get(&gfid).and_then(|l| l.holder)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    conn: ConnId,
    lock: RecordLock,
}

impl Held {
    fn same_owner(&self, conn: ConnId, l: &RecordLock) -> bool {
        self.conn == conn && self.lock.owner == l.owner && self.lock.flock == l.flock
    }

    fn conflicts(&self, conn: ConnId, l: &RecordLock) -> bool {
        self.lock.flock == l.flock
            && !self.same_owner(conn, l)
            && self.lock.start <= l.end
            && l.start <= self.lock.end
            && (self.lock.typ == RecordLockType::Write || l.typ == RecordLockType::Write)
    }
}

/// POSIX record locks (fcntl) and flock, per gfid. Owners are scoped by
/// connection, since kernel lock owners are only unique per client.
#[derive(Default)]
pub struct RecordLocks {
    table: Mutex<HashMap<Gfid, Vec<Held>>>,
}

fn normalise(l: &RecordLock) -> FsResult<RecordLock> {
    let mut l = *l;
    if l.flock {
        l.start = 0;
        l.end = u64::MAX;
    }
    if l.start > l.end {
        return Err(FsError::Invalid(format!(
            "lock range {}..={} is empty",
            l.start, l.end
        )));
    }
    Ok(l)
}

impl RecordLocks {
    /// The first lock of another owner that would block `l`.
    pub fn getlk(&self, gfid: Gfid, conn: ConnId, l: &RecordLock) -> FsResult<Option<RecordLock>> {
        let l = normalise(l)?;
        if l.typ == RecordLockType::Unlock {
            return Ok(None);
        }
        let table = lock(&self.table);
        Ok(table
            .get(&gfid)
            .and_then(|held| held.iter().find(|h| h.conflicts(conn, &l)))
            .map(|h| h.lock))
    }

    /// Sets, converts or removes a lock; never waits.
    pub fn setlk(&self, gfid: Gfid, conn: ConnId, l: &RecordLock) -> FsResult<()> {
        let l = normalise(l)?;
        let mut table = lock(&self.table);
        let held = table.entry(gfid).or_default();
        if l.typ != RecordLockType::Unlock && held.iter().any(|h| h.conflicts(conn, &l)) {
            return Err(FsError::WouldBlock);
        }
        // Carve the range out of this owner's locks, then add the new one and
        // merge with touching locks of the same type (POSIX semantics).
        let mut mine = Vec::new();
        held.retain(|h| {
            if h.same_owner(conn, &l) {
                mine.push(h.lock);
                false
            } else {
                true
            }
        });
        let mut next: Vec<RecordLock> = Vec::new();
        for m in mine {
            if m.end < l.start || m.start > l.end {
                next.push(m);
                continue;
            }
            if m.start < l.start {
                next.push(RecordLock {
                    end: l.start - 1,
                    ..m
                });
            }
            if m.end > l.end {
                next.push(RecordLock {
                    start: l.end + 1,
                    ..m
                });
            }
        }
        if l.typ != RecordLockType::Unlock {
            next.push(l);
        }
        next.sort_by_key(|m| m.start);
        let mut merged: Vec<RecordLock> = Vec::new();
        for m in next {
            match merged.last_mut() {
                Some(prev)
                    if prev.typ == m.typ
                        && prev.end.checked_add(1).is_none_or(|e| e >= m.start) =>
                {
                    prev.end = prev.end.max(m.end);
                    prev.pid = m.pid;
                }
                _ => merged.push(m),
            }
        }
        held.extend(merged.into_iter().map(|lock| Held { conn, lock }));
        if held.is_empty() {
            table.remove(&gfid);
        }
        Ok(())
    }

    pub fn release_all(&self, conn: ConnId) {
        let mut table = lock(&self.table);
        table.retain(|_, held| {
            held.retain(|h| h.conn != conn);
            !held.is_empty()
        });
    }

    #[cfg(test)]
    pub fn held(&self, gfid: Gfid) -> Vec<RecordLock> {
        let mut v: Vec<RecordLock> = lock(&self.table)
            .get(&gfid)
            .map(|h| h.iter().map(|h| h.lock).collect())
            .unwrap_or_default();
        v.sort_by_key(|l| (l.owner, l.start));
        v
    }
}
