//! READDIR cookies. The client stack lists a directory in name order from
//! a name on; NFS continues from a 64-bit cookie. A cookie is the first six
//! bytes of the entry's name followed by a 16-bit serial, and the gateway
//! remembers (bounded) the full name each recent cookie stands for, so a
//! listing continues exactly after that name even if entries were removed
//! meanwhile (`rm -rf` removes while it lists).
//!
//! A cookie the gateway no longer remembers (evicted, or issued before a
//! restart: the kernel keeps cookies across a server restart) continues
//! from its name prefix instead: entries sharing those six bytes may be
//! listed again, none is skipped. Cookies are never reused within a
//! listing (the serial moves on), since Linux takes a repeated cookie for a
//! readdir loop.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;

use proto::{Gfid, Name};

const MAX_REMEMBERED: usize = 65_536;
const PREFIX: usize = 6;

#[derive(Default)]
pub struct Cookies {
    serial: AtomicU16,
    inner: Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    names: HashMap<(Gfid, u64), Name>,
    order: VecDeque<(Gfid, u64)>,
}

fn prefix_of(name: &Name) -> [u8; PREFIX] {
    let mut p = [0u8; PREFIX];
    let b = name.as_bytes();
    let n = b.len().min(PREFIX);
    p[..n].copy_from_slice(&b[..n]);
    p
}

impl Cookies {
    /// A cookie for `name` in `dir`, remembered.
    pub fn issue(&self, dir: Gfid, name: &Name) -> u64 {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 8];
        bytes[..PREFIX].copy_from_slice(&prefix_of(name));
        bytes[PREFIX..].copy_from_slice(&serial.to_be_bytes());
        let cookie = u64::from_be_bytes(bytes);
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
        cookie
    }

    /// The name a listing of `dir` continues after for `cookie`: the exact
    /// name if remembered, else the cookie's name prefix.
    pub fn name_after(&self, dir: Gfid, cookie: u64) -> Name {
        if let Some(n) = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .names
            .get(&(dir, cookie))
        {
            return n.clone();
        }
        let bytes = cookie.to_be_bytes();
        let prefix = &bytes[..PREFIX];
        let len = prefix.iter().position(|b| *b == 0).unwrap_or(PREFIX);
        Name::new(prefix[..len].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_exactly_else_by_prefix() {
        let c = Cookies::default();
        let dir = Gfid::random();
        let a = c.issue(dir, &Name::from("alphabet-soup"));
        let b = c.issue(dir, &Name::from("alphabet-soup"));
        assert_ne!(a, b, "a cookie is never reused");
        assert_eq!(c.name_after(dir, a), Name::from("alphabet-soup"));
        let forgotten = Cookies::default();
        assert_eq!(forgotten.name_after(dir, a), Name::from("alphab"));
        let short = c.issue(dir, &Name::from("ab"));
        assert_eq!(Cookies::default().name_after(dir, short), Name::from("ab"));
        assert_ne!(short, 0);
    }
}
