//! How long the kernel may cache attributes and names: set at mount time
//! and changed live when the volume's options change in the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug)]
pub struct Ttls {
    attr_us: AtomicU64,
    entry_us: AtomicU64,
}

fn us(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

impl Ttls {
    pub fn new(attr: Duration, entry: Duration) -> Ttls {
        Ttls {
            attr_us: AtomicU64::new(us(attr)),
            entry_us: AtomicU64::new(us(entry)),
        }
    }

    pub fn attr(&self) -> Duration {
        Duration::from_micros(self.attr_us.load(Ordering::Relaxed))
    }

    pub fn entry(&self) -> Duration {
        Duration::from_micros(self.entry_us.load(Ordering::Relaxed))
    }

    pub fn set(&self, attr: Duration, entry: Duration) {
        self.attr_us.store(us(attr), Ordering::Relaxed);
        self.entry_us.store(us(entry), Ordering::Relaxed);
    }
}
