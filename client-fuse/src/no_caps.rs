//! Which files are known to carry no `security.capability` xattr. The kernel
//! asks for it before the first write to a file and before every chown (to
//! drop file capabilities), which for a small file extracted by tar was two
//! of its twelve round trips. A new file has none; an answer of "none" from
//! the bricks is remembered briefly, as attributes are.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use proto::Gfid;

pub const NAME: &[u8] = b"security.capability";
const TTL: Duration = Duration::from_secs(1);
const MAX_ENTRIES: usize = 16_384;

#[derive(Default)]
pub struct NoCaps {
    until: DashMap<Gfid, Instant>,
}

impl NoCaps {
    pub fn remember(&self, gfid: Gfid) {
        if self.until.len() >= MAX_ENTRIES {
            let now = Instant::now();
            self.until.retain(|_, t| *t > now);
            if self.until.len() >= MAX_ENTRIES {
                self.until.clear();
            }
        }
        self.until.insert(gfid, Instant::now() + TTL);
    }

    pub fn known(&self, gfid: Gfid) -> bool {
        self.until.get(&gfid).is_some_and(|t| *t > Instant::now())
    }

    /// Any change of the file's xattrs through this mount.
    pub fn forget(&self, gfid: Gfid) {
        self.until.remove(&gfid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_until_forgotten() {
        let n = NoCaps::default();
        let g = Gfid::random();
        assert!(!n.known(g));
        n.remember(g);
        assert!(n.known(g));
        n.forget(g);
        assert!(!n.known(g));
    }
}
