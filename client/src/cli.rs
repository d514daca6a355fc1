//! Argument parsers every binary on top of the client stack shares
//! (brickfs-mount, brickfs-nfs, brickfs), so a brick address or a number of
//! seconds means the same and fails the same way everywhere.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// A brick address, `host:port` (a name is resolved; the first address wins).
pub fn parse_brick(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    s.to_socket_addrs()
        .map_err(|e| format!("brick address {s:?}: {e} (expected host:port)"))?
        .next()
        .ok_or_else(|| format!("brick address {s:?} resolves to nothing"))
}

/// A non-negative number of seconds, fractions allowed.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s:?} is not a valid non-negative number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bricks_and_seconds() {
        assert_eq!(
            parse_brick(" 127.0.0.1:4000 "),
            Ok("127.0.0.1:4000".parse().expect("addr"))
        );
        assert!(parse_brick("127.0.0.1").is_err());
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }
}
