//! `volume heal NAME info [split-brain]`: what waits for heal, per brick,
//! in the layout GlusterFS uses.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use client::heal::Healer;
use proto::PendingKind;

use super::{join_addrs, watch};
use crate::error::{Error, FsContext, Result};

/// Entries listed per brick; the rest are counted.
const LIST_MAX: usize = 1000;

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Follow the heal instead: one line per interval with the entries left
    /// (total and per brick), the heal rate, the bytes left and an ETA,
    /// until nothing is left.
    #[arg(long)]
    watch: bool,

    /// Seconds between two lines of --watch.
    #[arg(long, value_name = "SECS", default_value = "1",
          value_parser = volgen::secs::parse_retry, requires = "watch")]
    interval: std::time::Duration,

    #[command(subcommand)]
    what: Option<InfoSub>,
}

#[derive(Subcommand, Debug)]
enum InfoSub {
    /// List the objects in split-brain (their replicas blame each other).
    SplitBrain,
}

/// `healers`: one per replica set, in volume order.
pub async fn run(healers: &[Arc<Healer>], args: InfoArgs) -> Result<ExitCode> {
    match args.what {
        Some(InfoSub::SplitBrain) if args.watch => Err(Error::Msg(
            "--watch follows the whole heal; it does not go with `info split-brain`".into(),
        )),
        Some(InfoSub::SplitBrain) => {
            let mut total = 0;
            for h in healers {
                total += split_brain_list(h).await?;
            }
            println!("Number of entries in split-brain: {total}");
            Ok(ExitCode::SUCCESS)
        }
        None if args.watch => watch::run(healers, args.interval).await,
        None => {
            for (i, h) in healers.iter().enumerate() {
                if healers.len() > 1 {
                    println!("Replica set {}:", i + 1);
                }
                per_brick(h).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `Brick ADDR` / `Status: ...` / entries / `Number of entries: N`, for
/// the bricks of one set.
async fn per_brick(healer: &Healer) -> Result<()> {
    let bricks = healer
        .info()
        .await
        .fs_ctx(|| "reading the heal indices".into())?;
    for b in bricks {
        println!("Brick {}", b.addr);
        if !b.up {
            println!("Status: Not connected");
            println!("Number of entries: -");
            println!();
            continue;
        }
        println!("Status: Connected");
        for e in b.entries.iter().take(LIST_MAX) {
            if e.dir {
                println!("{}", healer.path_of(e.gfid).await);
            } else {
                println!("<gfid:{}>", e.gfid);
            }
            // Why the last heal of it did not finish: an entry that stays
            // is never just a number.
            if let Some(why) = &e.note {
                println!("    not healed: {why}");
            }
        }
        if b.entries.len() > LIST_MAX {
            println!("... and {} more", b.entries.len() - LIST_MAX);
        }
        println!("Number of entries: {}", b.entries.len());
        println!();
    }
    Ok(())
}

/// Lists the split-brains of one set; returns how many.
async fn split_brain_list(healer: &Healer) -> Result<usize> {
    let entries = healer
        .split_brains()
        .await
        .fs_ctx(|| "looking for split-brains".into())?;
    for e in &entries {
        let kinds: Vec<&str> = e.kinds.iter().map(kind_name).collect();
        let blamed = healer
            .bricks()
            .iter()
            .enumerate()
            .filter(|(i, _)| e.blamed & client::quorum::bit(*i) != 0)
            .map(|(_, b)| &b.addr);
        println!(
            "{}  ({})  blamed bricks: {}",
            e.path,
            kinds.join(", "),
            join_addrs(blamed)
        );
    }
    Ok(entries.len())
}

fn kind_name(kind: &PendingKind) -> &'static str {
    match kind {
        PendingKind::Data => "data",
        PendingKind::Metadata => "metadata",
        PendingKind::Entry => "entry",
    }
}
