//! Pauses between retries that double from a first pause up to a cap: the
//! one back-off every retry loop uses (reconnecting to a brick, waiting for
//! a record lock or a lock file, draining a replaced graph).

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            next: first,
            max,
        }
    }

    /// The pause to take now; the one after is twice as long, up to the cap.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }

    /// Back to the first pause (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(5), Duration::from_millis(20));
        let pauses: Vec<u64> = (0..4).map(|_| b.next_pause().as_millis() as u64).collect();
        assert_eq!(pauses, [5, 10, 20, 20]);
        b.reset();
        assert_eq!(b.next_pause(), Duration::from_millis(5));
    }
}
