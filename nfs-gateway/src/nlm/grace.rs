//! The grace period after a start: for a while only reclaims (LOCK with
//! `reclaim` set, sent by clients our SM_NOTIFY told of the restart) are
//! granted, so a client that held a lock before the restart gets it back
//! before another client of this gateway can take it.
//!
//! Not covered: FUSE clients and other gateways of the volume do not know
//! of our grace; the bricks dropped our locks when the old process's
//! connections closed, and such a client may take one in between.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct Grace {
    until: Option<Instant>,
}

impl Grace {
    /// No grace period: nothing to reclaim.
    pub fn none() -> Grace {
        Grace { until: None }
    }

    pub fn starting(now: Instant, length: Duration) -> Grace {
        Grace {
            until: (!length.is_zero()).then(|| now + length),
        }
    }

    pub fn active(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// When it ends, if it has not ended yet.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.until
            .filter(|u| now < *u)
            .map(|u| u.duration_since(now))
    }

    /// Whether a lock request may be granted now: during the grace period
    /// only reclaims; after it, no reclaims (what was held before the
    /// restart may have been taken and released by another since), as
    /// Linux's lockd decides.
    pub fn admits(&self, reclaim: bool, now: Instant) -> bool {
        self.active(now) == reclaim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reclaims_during_grace() {
        let t0 = Instant::now();
        let g = Grace::starting(t0, Duration::from_secs(60));
        assert!(g.active(t0));
        assert!(g.admits(true, t0));
        assert!(!g.admits(false, t0));
        let later = t0 + Duration::from_secs(61);
        assert!(!g.active(later));
        assert!(g.admits(false, later));
        assert!(!g.admits(true, later), "a reclaim after the grace period");
        assert_eq!(g.remaining(t0), Some(Duration::from_secs(60)));
        assert_eq!(g.remaining(later), None);
        assert!(!Grace::none().active(t0));
        assert!(!Grace::starting(t0, Duration::ZERO).active(t0));
    }
}
