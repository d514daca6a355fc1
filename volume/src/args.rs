//! The command-line flags every binary that opens a volume takes, so a
//! volume is named the same way everywhere: the volume name as the first
//! argument, and where it lives with `--store URL` (or `BRICKFS_STORE`), or
//! without a store, `--bricks A,B,C` ([`StoreArg`], [`BricksArgs`]).
//! `--volume NAME` is the old spelling, still accepted ([`VolumeFlag`]).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::{OpenError, Source};

/// `--store URL` / `BRICKFS_STORE` (flatten into a binary's arguments).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct StoreArg {
    /// Cluster store holding the volumes: file:///DIR (one host) or
    /// etcd://HOST:PORT[,HOST:PORT] (several). A volume's bricks, their
    /// identities and its options come from its spec there, and changes
    /// (volume set, replace-brick, add-brick) are followed live.
    #[arg(long, global = true, env = "BRICKFS_STORE", value_name = "URL")]
    pub store: Option<String>,
}

/// `--bricks` and `--op-timeout`: a volume without a store.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct BricksArgs {
    /// Instead of a store: the bricks of one replica set in volume order,
    /// host:port, comma-separated. Nothing is followed. Takes precedence
    /// over --store and BRICKFS_STORE.
    #[arg(long, global = true, env = "BRICKFS_BRICKS", value_name = "A,B,C",
          value_delimiter = ',', value_parser = parse_brick)]
    pub bricks: Vec<SocketAddr>,

    /// With --bricks: seconds one brick may take for one operation before
    /// it counts as down [default: 5]. From a store the volume's
    /// network.op-timeout applies (`brickfs volume set NAME
    /// network.op-timeout SECS`).
    #[arg(long, global = true, value_name = "SECS", value_parser = volgen::secs::parse_timeout)]
    pub op_timeout: Option<Duration>,
}

/// The old `--volume NAME` spelling of the volume argument.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct VolumeFlag {
    /// Deprecated: give the volume name as the first argument instead.
    #[arg(long = "volume", env = "BRICKFS_VOLUME", value_name = "NAME")]
    pub volume_flag: Option<String>,
}

impl VolumeFlag {
    /// The volume name from the argument or, failing that, the old flag.
    pub fn pick(&self, argument: Option<&str>) -> Result<String, OpenError> {
        match (argument, self.volume_flag.as_deref()) {
            (Some(a), Some(b)) if a != b => Err(OpenError::Usage(format!(
                "the volume is {a} or {b}? give it once, as the first argument"
            ))),
            (Some(n), _) | (None, Some(n)) => Ok(n.to_string()),
            (None, None) => Err(OpenError::Usage(
                "which volume? give its name as the first argument".into(),
            )),
        }
    }
}

impl BricksArgs {
    /// Where volume `name` is: the bricks when given, else the store.
    pub fn source(&self, store: Option<&str>, name: &str) -> Result<Source, OpenError> {
        let name = name.to_string();
        if !self.bricks.is_empty() {
            return Ok(Source::Bricks {
                name,
                bricks: self.bricks.clone(),
                op_timeout: self.op_timeout.unwrap_or_else(|| {
                    volgen::spec::VolumeSpec::default_duration("network.op-timeout")
                }),
            });
        }
        let Some(url) = store else {
            return Err(OpenError::Usage(format!(
                "where is volume {name}? give --store URL (or set BRICKFS_STORE), \
                 or the bricks with --bricks A,B,C"
            )));
        };
        if self.op_timeout.is_some() {
            return Err(OpenError::Usage(format!(
                "--op-timeout is for --bricks; from the store volume {name}'s \
                 network.op-timeout applies (brickfs volume set {name} network.op-timeout SECS)"
            )));
        }
        Ok(Source::Store {
            url: url.to_string(),
            name,
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn bricks(addrs: &[&str]) -> BricksArgs {
        BricksArgs {
            bricks: addrs.iter().map(|b| parse_brick(b).unwrap()).collect(),
            op_timeout: None,
        }
    }

    #[test]
    fn bricks_win_over_the_store() {
        let a = bricks(&["127.0.0.1:4001"]);
        assert!(matches!(
            a.source(Some("file:///s"), "gv0"),
            Ok(Source::Bricks { .. })
        ));
        assert_eq!(
            bricks(&[]).source(Some("file:///s"), "gv0").unwrap(),
            Source::Store {
                url: "file:///s".into(),
                name: "gv0".into()
            }
        );
        let e = bricks(&[]).source(None, "gv0").unwrap_err().to_string();
        assert!(e.contains("--store") && e.contains("BRICKFS_STORE"), "{e}");
    }

    #[test]
    fn the_volume_once() {
        let mut f = VolumeFlag::default();
        assert!(f
            .pick(None)
            .unwrap_err()
            .to_string()
            .contains("which volume"));
        assert_eq!(f.pick(Some("gv0")).unwrap(), "gv0");
        f.volume_flag = Some("gv0".into());
        assert_eq!(f.pick(None).unwrap(), "gv0");
        assert_eq!(f.pick(Some("gv0")).unwrap(), "gv0");
        assert!(f.pick(Some("gv1")).is_err());
    }

    #[test]
    fn op_timeout_is_for_bricks_only() {
        let mut a = bricks(&[]);
        a.op_timeout = Some(Duration::from_secs(3));
        assert!(a.source(Some("file:///s"), "gv0").is_err());
        let mut b = bricks(&["127.0.0.1:4001"]);
        b.op_timeout = Some(Duration::from_secs(3));
        assert!(matches!(
            b.source(None, "gv0"),
            Ok(Source::Bricks { op_timeout, .. }) if op_timeout == Duration::from_secs(3)
        ));
    }

    #[test]
    fn brick_addresses() {
        assert_eq!(
            parse_brick(" 127.0.0.1:4000 "),
            Ok("127.0.0.1:4000".parse().unwrap())
        );
        assert!(parse_brick("127.0.0.1").is_err());
        assert!(parse_brick("127.0.0.1:notaport").is_err());
    }
}
