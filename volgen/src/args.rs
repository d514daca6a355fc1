//! Value parsers shared by the subcommands' arguments.

use std::net::SocketAddr;

/// A positive, finite number of seconds.
pub fn parse_secs(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// A brick address, `host:port`.
pub fn parse_brick_addr(s: &str) -> std::result::Result<SocketAddr, String> {
    client::cli::parse_brick(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secs() {
        assert_eq!(parse_secs("2.5"), Ok(2.5));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("nan").is_err());
        assert!(parse_secs("inf").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn brick_addr() {
        assert_eq!(
            parse_brick_addr(" 127.0.0.1:4000 "),
            Ok("127.0.0.1:4000".parse().unwrap())
        );
        assert!(parse_brick_addr("127.0.0.1").is_err());
        assert!(parse_brick_addr("127.0.0.1:notaport").is_err());
    }
}
