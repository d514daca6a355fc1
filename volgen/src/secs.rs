//! Durations as brickfs users write them: a number of seconds, fractions
//! allowed (`5`, `0.5`), within the bounds of what the duration is for.
//! Every command-line flag and every volume option in seconds is parsed
//! here, so `--op-timeout 0` and `volume set … network.op-timeout 0` are
//! refused alike.

use std::time::Duration;

/// What a duration may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// 0 has a meaning (a cache time of 0: do not cache).
    pub zero_ok: bool,
    /// The longest value that makes sense, in whole seconds.
    pub max_secs: u64,
}

/// A timeout: more than 0 (0 would fail every operation), at most an hour
/// (longer is a hung mount, not a timeout).
pub const TIMEOUT: Rule = Rule {
    zero_ok: false,
    max_secs: 3_600,
};

/// How long a kernel cache keeps an answer: 0 (ask every time) to an hour.
pub const CACHE_TIME: Rule = Rule {
    zero_ok: true,
    max_secs: 3_600,
};

/// The pause between retries of background work: more than 0, at most a day.
pub const RETRY: Rule = Rule {
    zero_ok: false,
    max_secs: 86_400,
};

impl Rule {
    /// Parses `s` as a number of seconds under this rule.
    pub fn parse(&self, s: &str) -> Result<Duration, String> {
        let what = if self.zero_ok {
            "a number of seconds, 0 or more"
        } else {
            "a number of seconds, more than 0"
        };
        let secs: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not {what}"))?;
        if !secs.is_finite() || secs < 0.0 || (secs == 0.0 && !self.zero_ok) {
            return Err(format!("{s:?} is not {what}"));
        }
        if secs > self.max_secs as f64 {
            return Err(format!(
                "{s:?} is too long: at most {} seconds",
                self.max_secs
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }
}

/// [`TIMEOUT`] as a clap value parser (`--op-timeout`).
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    TIMEOUT.parse(s)
}

/// [`CACHE_TIME`] as a clap value parser (`--attr-timeout`).
pub fn parse_cache_time(s: &str) -> Result<Duration, String> {
    CACHE_TIME.parse(s)
}

/// [`RETRY`] as a clap value parser (`--retry`, intervals).
pub fn parse_retry(s: &str) -> Result<Duration, String> {
    RETRY.parse(s)
}

/// The shortest decimal for `d` in seconds (`3`, `0.25`), as the store
/// keeps option values and as child processes are given them.
pub fn canonical(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_positive() {
        assert_eq!(TIMEOUT.parse(" 2.5 "), Ok(Duration::from_millis(2500)));
        for bad in ["0", "0.0", "-1", "nan", "inf", "soon", "", "3601"] {
            assert!(TIMEOUT.parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_times_may_be_zero() {
        assert_eq!(CACHE_TIME.parse("0"), Ok(Duration::ZERO));
        assert!(CACHE_TIME.parse("-0.5").is_err());
        assert_eq!(RETRY.parse("86400"), Ok(Duration::from_secs(86_400)));
        assert!(RETRY.parse("86401").is_err());
    }

    #[test]
    fn canonical_is_shortest() {
        assert_eq!(canonical(Duration::from_secs(3)), "3");
        assert_eq!(canonical(Duration::from_millis(250)), "0.25");
        assert_eq!(canonical(TIMEOUT.parse("3.0").unwrap()), "3");
    }
}
