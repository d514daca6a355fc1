//! `volume heal NAME split-brain POLICY ...`: the operator picks the good
//! copy of an object whose replicas blame each other; the others are healed
//! from it.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Subcommand;
use client::heal::{Healer, Outcome, Policy};

use super::join_addrs;
use crate::error::{Error, FsContext, Result};

#[derive(Subcommand, Debug)]
pub enum SplitBrainCmd {
    /// Use the copy modified last (largest mtime) as the source.
    LatestMtime {
        /// Path inside the volume (`/dir/file`) or `<gfid:UUID>` as `info` shows it.
        path: String,
    },
    /// Use the largest copy as the source (regular files only).
    BiggerFile {
        /// Path inside the volume (`/dir/file`) or `<gfid:UUID>` as `info` shows it.
        path: String,
    },
    /// Use the copy on BRICK as the source.
    SourceBrick {
        /// The brick as `info` lists it (`127.0.0.1:PORT`) or its position in
        /// the volume, 1 for the first.
        brick: String,
        /// Path inside the volume (`/dir/file`) or `<gfid:UUID>` as `info` shows it.
        path: String,
    },
}

pub async fn run(healer: &Healer, cmd: SplitBrainCmd) -> Result<ExitCode> {
    let addrs: Vec<SocketAddr> = healer.bricks().iter().map(|b| b.addr).collect();
    let (path, policy, name) = match cmd {
        SplitBrainCmd::LatestMtime { path } => (path, Policy::LatestMtime, "latest-mtime"),
        SplitBrainCmd::BiggerFile { path } => (path, Policy::BiggerFile, "bigger-file"),
        SplitBrainCmd::SourceBrick { brick, path } => (
            path,
            Policy::SourceBrick(brick_index(&brick, &addrs)?),
            "source-brick",
        ),
    };
    let (source, outcome) = healer
        .resolve_split_brain(&path, policy)
        .await
        .fs_ctx(|| format!("resolving the split-brain of {path}"))?;
    let source_text = match addrs.get(source) {
        Some(addr) => format!("brick {} ({addr})", source + 1),
        None => format!("brick {}", source + 1),
    };
    println!("split-brain of {path}: {name} chose {source_text} as the source");
    let (text, ok) = match outcome {
        Outcome::Healed => ("healed: the other replicas now match it".to_string(), true),
        Outcome::Clean => ("nothing differed; the blame is cleared".to_string(), true),
        Outcome::Gone => (
            "the object is on no brick any more; records cleared".to_string(),
            true,
        ),
        Outcome::Postponed(why) => (format!("not healed now: {why}; try again"), false),
        Outcome::SplitBrain => ("still in split-brain".to_string(), false),
    };
    println!("{text}");
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The 0-based position of BRICK: an address as listed (`127.0.0.1:PORT`)
/// or a 1-based position.
fn brick_index(arg: &str, bricks: &[SocketAddr]) -> Result<usize> {
    let arg = arg.trim();
    if let Ok(n) = arg.parse::<usize>() {
        if (1..=bricks.len()).contains(&n) {
            return Ok(n - 1);
        }
        return Err(Error::Msg(format!(
            "brick position {n} is out of range: the volume has bricks 1 to {} ({})",
            bricks.len(),
            join_addrs(bricks)
        )));
    }
    if let Ok(addr) = arg.parse::<SocketAddr>() {
        if let Some(i) = bricks.iter().position(|b| *b == addr) {
            return Ok(i);
        }
    }
    Err(Error::Msg(format!(
        "{arg:?} is not a brick of this volume; give its address as listed ({}) or its \
         position 1 to {}",
        join_addrs(bricks),
        bricks.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bricks() -> Vec<SocketAddr> {
        ["127.0.0.1:4001", "127.0.0.1:4002", "127.0.0.1:4003"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect()
    }

    #[test]
    fn positions_are_one_based() {
        let b = bricks();
        assert_eq!(brick_index("1", &b).unwrap(), 0);
        assert_eq!(brick_index("3", &b).unwrap(), 2);
        assert_eq!(brick_index(" 2 ", &b).unwrap(), 1);
        for bad in ["0", "4", "99"] {
            let e = brick_index(bad, &b).unwrap_err().to_string();
            assert!(e.contains("out of range") && e.contains("1 to 3"), "{e}");
        }
    }

    #[test]
    fn addresses_as_listed() {
        let b = bricks();
        assert_eq!(brick_index("127.0.0.1:4002", &b).unwrap(), 1);
        assert_eq!(brick_index("127.0.0.1:4003", &b).unwrap(), 2);
        let e = brick_index("127.0.0.1:5000", &b).unwrap_err().to_string();
        assert!(
            e.contains("not a brick") && e.contains("127.0.0.1:4001"),
            "{e}"
        );
        assert!(brick_index("brick2", &b).is_err());
        assert!(brick_index("-1", &b).is_err());
    }
}
