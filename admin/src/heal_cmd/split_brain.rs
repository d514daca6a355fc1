//! `volume heal NAME split-brain POLICY ...`: the operator picks the good
//! copy of an object whose replicas blame each other; the others are healed
//! from it. Bricks are numbered in volume order across replica sets.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

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

/// `healers`: one per replica set, in volume order. `source-brick` acts on
/// the set of that brick; the other policies on every set where the path
/// exists (a file is on one set, a directory on all of them).
pub async fn run(healers: &[Arc<Healer>], cmd: SplitBrainCmd) -> Result<ExitCode> {
    let sets: Vec<Vec<SocketAddr>> = healers
        .iter()
        .map(|h| h.bricks().iter().map(|b| b.addr).collect())
        .collect();
    let addrs: Vec<SocketAddr> = sets.iter().flatten().copied().collect();
    // (set, policy) pairs to apply.
    let (path, name, targets) = match cmd {
        SplitBrainCmd::SourceBrick { brick, path } => {
            let (set, i) = locate(brick_index(&brick, &addrs)?, &sets);
            (path, "source-brick", vec![(set, Policy::SourceBrick(i))])
        }
        SplitBrainCmd::LatestMtime { path } => {
            let on = sets_with(healers, &path).await?;
            (
                path,
                "latest-mtime",
                on.into_iter().map(|s| (s, Policy::LatestMtime)).collect(),
            )
        }
        SplitBrainCmd::BiggerFile { path } => {
            let on = sets_with(healers, &path).await?;
            (
                path,
                "bigger-file",
                on.into_iter().map(|s| (s, Policy::BiggerFile)).collect(),
            )
        }
    };
    let mut all_ok = true;
    for (set, policy) in targets {
        let which = if healers.len() > 1 {
            format!(" (replica set {})", set + 1)
        } else {
            String::new()
        };
        let (source, outcome) = healers[set]
            .resolve_split_brain(&path, policy)
            .await
            .fs_ctx(|| format!("resolving the split-brain of {path}{which}"))?;
        let offset: usize = sets[..set].iter().map(Vec::len).sum();
        let source_text = match sets[set].get(source) {
            Some(addr) => format!("brick {} ({addr})", offset + source + 1),
            None => format!("brick {}", offset + source + 1),
        };
        println!("split-brain of {path}{which}: {name} chose {source_text} as the source");
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
        all_ok &= ok;
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The sets (indices) on which `path` exists; with one set, that set
/// whatever (its own error says what is wrong).
async fn sets_with(healers: &[Arc<Healer>], path: &str) -> Result<Vec<usize>> {
    if healers.len() == 1 {
        return Ok(vec![0]);
    }
    let mut on = Vec::new();
    let mut last = None;
    for (i, h) in healers.iter().enumerate() {
        match h.resolve_path(path).await {
            Ok(_) => on.push(i),
            Err(e) => last = Some(e),
        }
    }
    match (on.is_empty(), last) {
        (true, Some(e)) => Err(e).fs_ctx(|| format!("{path} is on no replica set of the volume")),
        _ => Ok(on),
    }
}

/// The set of volume position `i` and the position within it.
fn locate(i: usize, sets: &[Vec<SocketAddr>]) -> (usize, usize) {
    let mut i = i;
    for (s, set) in sets.iter().enumerate() {
        if i < set.len() {
            return (s, i);
        }
        i -= set.len();
    }
    unreachable!("brick_index returns a position of the volume")
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
    fn volume_positions_map_to_sets() {
        let b = bricks();
        let sets = vec![b.clone(), b.clone()];
        assert_eq!(locate(0, &sets), (0, 0));
        assert_eq!(locate(2, &sets), (0, 2));
        assert_eq!(locate(3, &sets), (1, 0));
        assert_eq!(locate(5, &sets), (1, 2));
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
