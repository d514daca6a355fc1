//! READDIR cookies. The client stack lists a directory in name order from a
//! name on; NFS continues from a 64-bit cookie. A cookie here is the
//! position of an entry in the listing, and the gateway remembers which name
//! each recent cookie stands for (bounded); a cookie it no longer remembers
//! (evicted, or the gateway restarted) is found again by counting from the
//! start, so every cookie it ever handed out stays usable.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use nfs3_types::nfs3::nfsstat3;
use proto::{Gfid, Name};

use crate::error::nfsstat;

const MAX_REMEMBERED: usize = 65_536;

#[derive(Default)]
pub struct Cookies {
    inner: Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    names: HashMap<(Gfid, u64), Name>,
    order: VecDeque<(Gfid, u64)>,
}

impl Cookies {
    pub fn remember(&self, dir: Gfid, cookie: u64, name: &Name) {
        let mut r = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if r.names.insert((dir, cookie), name.clone()).is_none() {
            r.order.push_back((dir, cookie));
        }
        while r.order.len() > MAX_REMEMBERED {
            if let Some(old) = r.order.pop_front() {
                r.names.remove(&old);
            }
        }
    }

    /// The name the listing of `dir` continues after for `cookie`.
    pub async fn name_after(
        &self,
        dir: Gfid,
        cookie: u64,
        layer: &dyn client::Layer,
    ) -> Result<Name, nfsstat3> {
        let known = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .names
            .get(&(dir, cookie))
            .cloned();
        if let Some(n) = known {
            return Ok(n);
        }
        let mut seen = 0u64;
        let mut after: Option<Name> = None;
        loop {
            let page = layer
                .readdir(dir, after.clone(), 4096)
                .await
                .map_err(|e| nfsstat(&e))?;
            for e in page.entries {
                seen += 1;
                if seen == cookie {
                    self.remember(dir, cookie, &e.name);
                    return Ok(e.name);
                }
                after = Some(e.name);
            }
            if page.eof || after.is_none() {
                return Err(nfsstat3::NFS3ERR_BAD_COOKIE);
            }
        }
    }
}
