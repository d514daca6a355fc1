//! Permission checks for AUTH_UNIX callers, as a kernel NFS server makes
//! them: mode bits against the caller's uid and groups, root allowed
//! everything (unless squashed by the export), the owner allowed to read
//! and write file data whatever the mode (the open that allowed it happened
//! on the client), sticky directories honoured for removal.
//!
//! Attributes for checks come from a small cache (1 s, bounded), cleared
//! for an object whenever this gateway changes it; a mode change by another
//! client is seen within that second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto::{Attr, FileKind, FsResult, Gfid};

use crate::Caller;

pub const READ: u32 = 4;
pub const WRITE: u32 = 2;
pub const EXEC: u32 = 1;

const TTL: Duration = Duration::from_secs(1);
const MAX_ENTRIES: usize = 16_384;

/// Whether `caller` has every bit of `want` (rwx) on `attr`.
pub fn may(attr: &Attr, caller: &Caller, want: u32) -> bool {
    if caller.uid == 0 {
        // Root may execute only what someone may execute.
        return want & EXEC == 0 || attr.kind == FileKind::Dir || attr.perm & 0o111 != 0;
    }
    let bits = if caller.uid == attr.uid {
        attr.perm >> 6
    } else if caller.in_group(attr.gid) {
        attr.perm >> 3
    } else {
        attr.perm
    } & 7;
    bits & want == want
}

/// Reading or writing file data: the owner may, whatever the mode.
pub fn may_data(attr: &Attr, caller: &Caller, want: u32) -> bool {
    caller.uid == attr.uid || may(attr, caller, want)
}

/// Whether removing a name from `dir` depends on who owns the object
/// behind it (a sticky directory, a caller who is neither root nor its
/// owner); only then is the object worth looking up first.
pub fn sticky_applies(dir: &Attr, caller: &Caller) -> bool {
    dir.perm & 0o1000 != 0 && caller.uid != 0 && caller.uid != dir.uid
}

/// Removing or renaming `victim` out of `dir`: write and search on the
/// directory, and for a sticky directory ownership of one of the two.
pub fn may_unlink(dir: &Attr, victim: Option<&Attr>, caller: &Caller) -> bool {
    if !may(dir, caller, WRITE | EXEC) {
        return false;
    }
    if dir.perm & 0o1000 == 0 || caller.uid == 0 {
        return true;
    }
    caller.uid == dir.uid || victim.is_some_and(|v| v.uid == caller.uid)
}

#[derive(Default)]
pub struct AccessCache {
    map: Mutex<HashMap<Gfid, (Attr, Instant)>>,
}

impl AccessCache {
    pub async fn attr(&self, layer: &dyn client::Layer, gfid: Gfid) -> FsResult<Attr> {
        if let Some(a) = self.fresh(gfid) {
            return Ok(a);
        }
        let a = layer.getattr(gfid).await?;
        self.put(&a);
        Ok(a)
    }

    fn fresh(&self, gfid: Gfid) -> Option<Attr> {
        let map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&gfid)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(a, _)| a.clone())
    }

    pub fn put(&self, a: &Attr) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (_, at)| at.elapsed() < TTL);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(a.gfid, (a.clone(), Instant::now()));
    }

    pub fn forget(&self, gfid: Gfid) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&gfid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(perm: u32, uid: u32, gid: u32, kind: FileKind) -> Attr {
        Attr {
            uid,
            gid,
            ..Attr::bare(Gfid::random(), kind, perm)
        }
    }

    fn caller(uid: u32, gid: u32, gids: Vec<u32>) -> Caller {
        Caller {
            uid,
            gid,
            gids,
            peer: "127.0.0.1:1".parse().expect("addr"),
            local: "127.0.0.1:2049".parse().expect("addr"),
        }
    }

    #[test]
    fn mode_bits_by_owner_group_other() {
        let f = attr(0o640, 1000, 100, FileKind::File);
        assert!(may(&f, &caller(1000, 1, vec![]), READ | WRITE));
        assert!(may(&f, &caller(2000, 100, vec![]), READ));
        assert!(!may(&f, &caller(2000, 100, vec![]), WRITE));
        assert!(may(&f, &caller(2000, 5, vec![100]), READ));
        assert!(!may(&f, &caller(2000, 5, vec![]), READ));
        assert!(may(&f, &caller(0, 0, vec![]), READ | WRITE));
        assert!(!may(&f, &caller(0, 0, vec![]), EXEC));
        let ro = attr(0o400, 1000, 100, FileKind::File);
        assert!(may_data(&ro, &caller(1000, 1, vec![]), WRITE));
    }

    #[test]
    fn sticky_directories() {
        let tmp = attr(0o1777, 0, 0, FileKind::Dir);
        let mine = attr(0o644, 1000, 1000, FileKind::File);
        assert!(may_unlink(&tmp, Some(&mine), &caller(1000, 1000, vec![])));
        assert!(!may_unlink(&tmp, Some(&mine), &caller(2000, 2000, vec![])));
        let open = attr(0o777, 0, 0, FileKind::Dir);
        assert!(may_unlink(&open, Some(&mine), &caller(2000, 2000, vec![])));
        // Only a sticky directory, for someone who is neither root nor its
        // owner, needs the victim's owner at all.
        assert!(sticky_applies(&tmp, &caller(1000, 1000, vec![])));
        assert!(!sticky_applies(&tmp, &caller(0, 0, vec![])));
        assert!(!sticky_applies(&open, &caller(1000, 1000, vec![])));
        assert!(may_unlink(&open, None, &caller(2000, 2000, vec![])));
        assert!(!may_unlink(&tmp, None, &caller(2000, 2000, vec![])));
    }
}
