//! `brickfs volume create|start|stop|delete|info|list|status|set|graph|
//! replace-brick|add-brick|rebalance`: volumes by name, kept in the cluster
//! store (`--store URL` or `BRICKFS_STORE`) at `volumes/<name>` (format:
//! `volgen::spec`). `volume heal` (`crate::heal_cmd`) is a sibling
//! subcommand.
//!
//! `ops` reads, checks and writes the store (every write a compare-and-swap
//! on what was read, and nothing written when a check fails), with
//! `admit` (the checks of new bricks, shared by create and add-brick) and
//! `add_brick`; `show` turns specs and brick answers into text; `probe`
//! asks a brick who it is; `rebalance` starts, follows and stops the
//! rebalance runner (status document `rebalance/<name>`).

mod add_brick;
mod admit;
mod load;
mod ops;
mod probe;
mod profile;
pub mod rebalance;
mod show;
#[cfg(test)]
mod tests;
mod top;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use store::Store;
use volgen::graph::client_graph;
use volgen::spec::{VolumeSpec, OPTIONS, REPLICA};

use crate::error::{Error, IoContext, Result};
use crate::heal_cmd;
use probe::TarpcProber;

#[derive(clap::Args, Debug)]
pub struct VolumeArgs {
    #[command(subcommand)]
    cmd: VolumeCmd,
}

#[derive(Subcommand, Debug)]
enum VolumeCmd {
    /// Create a volume from bricks (running `brickd`s); it starts as Created.
    #[command(
        override_usage = "brickfs volume create NAME replica 3 HOST:PORT HOST:PORT HOST:PORT [HOST:PORT ...]",
        long_about = "Create a volume from bricks (running `brickd`s); it starts as Created.\n\n\
            The bricks form replica sets in the order given, 3 at a time (as in Gluster): \
            6 bricks make a 2 x 3 Distributed-Replicate volume whose first set is the first \
            3 bricks. Only replica 3 exists for now.\n\n\
            Every brick is asked for its UUID first; the volume is refused, and nothing \
            written to the store, if a brick is unreachable, given twice (also under two \
            addresses), part of another volume, or bound to another volume. The bricks \
            then bind themselves to the new volume: a brick stays with the volume it was \
            first used for.\n\n\
            Example: brickfs --store file:///var/lib/brickfs volume create gv0 replica 3 \
            h1:24101 h2:24101 h3:24101"
    )]
    Create(CreateArgs),
    /// Mark a volume Started, after checking its bricks.
    #[command(long_about = "Mark a volume Started, after checking its bricks.\n\n\
        Every brick that answers must be the one the volume was created with: a brick \
        answering with another UUID (a wiped or replaced disk) is named and the volume \
        is not started. Each replica set needs 2 of its 3 bricks reachable; bricks that \
        do not answer are listed as warnings.")]
    Start(NameArg),
    /// Mark a started volume Stopped.
    Stop(NameArg),
    /// Remove a volume that is not started from the store (the bricks' data stays).
    Delete(NameArg),
    /// Show a volume (or every volume): type, status, bricks with their UUIDs,
    /// options set.
    Info(InfoArgs),
    /// List the volumes, one name a line.
    List,
    /// Ask every brick of a volume: online, the expected UUID, heal index size.
    Status(NameArg),
    /// Set an option of a volume.
    #[command(after_long_help = options_help())]
    Set(SetArgs),
    /// Print the client graph of a volume (the layers a mount runs), volfile style.
    Graph(NameArg),
    /// Put a new (empty) brick in place of one of a volume's bricks and
    /// refill it by heal.
    #[command(
        long_about = "Put a new brick in place of one of a volume's bricks (a dead \
        disk, a machine that is gone) and refill it by heal.\n\n\
        NEW must be a running brickd in no volume of the store. The spec names NEW (and its \
        UUID) instead of OLD; the other bricks of its replica set are told to blame it for \
        the whole namespace, and a full heal copies everything to it, while clients keep \
        working. Mounts and gateways started from the store switch to the new brick \
        within moments.\n\n\
        OLD must be down: a brick that still serves could take writes from a client that \
        has not switched yet, which the new brick would never learn of. --force replaces \
        a brick that answers anyway (stop its clients first)."
    )]
    ReplaceBrick(ReplaceArgs),
    /// Add replica sets to a volume (then `rebalance NAME start`).
    #[command(
        override_usage = "brickfs volume add-brick NAME [replica 3] HOST:PORT HOST:PORT HOST:PORT [HOST:PORT ...]",
        long_about = "Add replica sets to a volume: the bricks form new sets in the order \
            given, 3 at a time, after the volume's sets (6 bricks on a 2 x 3 volume make it \
            4 x 3).\n\n\
            The bricks are checked as for `volume create`: each must answer, be given once \
            (also under two addresses), be in no volume of the store (this one included) and \
            not be bound to another volume; they are then bound to this one. Nothing is \
            written to the store if any check fails. Works on created, started and stopped \
            volumes, not while a rebalance runs.\n\n\
            The new sets hold nothing yet: `brickfs volume rebalance NAME start` spreads the \
            files over all sets.\n\n\
            Example: brickfs volume add-brick gv0 h4:24101 h5:24101 h6:24101"
    )]
    AddBrick(AddBrickArgs),
    /// Spread a volume's files over all its replica sets (after add-brick):
    /// start, status, stop.
    #[command(
        override_usage = "brickfs volume rebalance NAME start [--foreground] [--log FILE]\n       \
        brickfs volume rebalance NAME status\n       brickfs volume rebalance NAME stop"
    )]
    Rebalance(rebalance::RebalanceArgs),
    /// Per brick and fop: calls, errors and latencies (start, info, stop).
    #[command(long_about = "Per brick and fop: calls, errors and latencies.\n\n\
        `start` takes a baseline on every brick, `info` shows, per brick, the fops since \
        then and since the brick started (the costliest first: calls, errors, calls per \
        second, mean, p50, p90 and p99 latency, the percentiles as bucket bounds), `stop` \
        drops the baselines. The counting itself is always on and costs a few atomic adds \
        per fop; the same figures are on each brick's /metrics (--metrics-listen). A \
        brick that restarts forgets its baseline.\n\n\
        Example: brickfs volume profile gv0 start; (run the workload); brickfs volume \
        profile gv0 info")]
    Profile(ProfileArgs),
    /// Per brick, the files served most reads and writes.
    #[command(
        long_about = "Per brick, the files it served most reads and writes for, \
        since the brick started or the last `clear`: calls and MiB each way, and the \
        file's path (its last name the brick saw; a file renamed or unlinked since shows \
        its gfid). Every replica counts a file's writes; a read goes to one replica. \
        Heal and rebalance traffic is not counted. Each brick counts at most 4096 files \
        at once: when full it keeps the busier half, so the counts of a file that was \
        dropped and came back are lower bounds.\n\n\
        Example: brickfs volume top gv0 write --list-cnt 5"
    )]
    Top(TopArgs),
    #[command(flatten)]
    Heal(heal_cmd::VolumeCmd),
}

#[derive(clap::Args, Debug)]
struct ProfileArgs {
    /// Volume name.
    name: String,
    #[arg(value_enum)]
    action: profile::Action,
}

#[derive(clap::Args, Debug)]
struct TopArgs {
    /// Volume name.
    name: String,
    /// Rank by reads, writes, or both (`all`); `clear` shows, then starts
    /// counting afresh.
    #[arg(value_enum, default_value_t = top::Metric::All)]
    metric: top::Metric,
    /// Files listed per brick.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    list_cnt: u32,
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// Volume name: 1 to 64 of A-Z a-z 0-9 _ -.
    name: String,
    /// `replica 3` and then the bricks, HOST:PORT each.
    #[arg(required = true, num_args = 1.., value_name = "replica 3 BRICK")]
    words: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct ReplaceArgs {
    /// Volume name.
    name: String,
    /// The brick to replace, HOST:PORT as the volume lists it.
    old: String,
    /// The new brick, HOST:PORT.
    new: String,
    /// Replace OLD even though it still answers.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args, Debug)]
struct AddBrickArgs {
    /// Volume name.
    name: String,
    /// Optionally `replica 3` (the volume's count), then the bricks,
    /// HOST:PORT each, a multiple of 3.
    #[arg(required = true, num_args = 1.., value_name = "BRICK")]
    words: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct NameArg {
    /// Volume name.
    name: String,
}

#[derive(clap::Args, Debug)]
struct InfoArgs {
    /// Volume name (all volumes when omitted).
    name: Option<String>,
}

#[derive(clap::Args, Debug)]
struct SetArgs {
    /// Volume name.
    name: String,
    /// Option name (see below).
    key: String,
    /// New value.
    value: String,
}

fn options_help() -> String {
    let mut s = String::from("Volume options (KEY):\n");
    for o in OPTIONS {
        let default = if o.default.is_empty() {
            "none".to_string()
        } else {
            o.default.to_string()
        };
        s.push_str(&format!(
            "  {:<27} {} (default: {default})\n",
            o.key, o.help
        ));
    }
    s
}

/// `replica N BRICK...` of `volume create`: the replica count and the bricks.
fn parse_create_words(words: &[String]) -> Result<(u8, Vec<String>)> {
    let usage = "expected `replica 3` and then the bricks, e.g. \
                 `volume create gv0 replica 3 h1:24101 h2:24101 h3:24101`";
    match words {
        [kw, count, bricks @ ..] if kw.eq_ignore_ascii_case("replica") => {
            let replica: u8 = count
                .parse()
                .map_err(|_| Error::Msg(format!("bad replica count {count:?}: {usage}")))?;
            volgen::spec::validate_replica(replica).map_err(|e| Error::Msg(e.0))?;
            if bricks.is_empty() {
                return Err(Error::Msg(format!("no bricks given: {usage}")));
            }
            Ok((replica, bricks.to_vec()))
        }
        _ => Err(Error::Msg(format!(
            "missing `replica {REPLICA}` (only replica {REPLICA} volumes exist for now): {usage}"
        ))),
    }
}

/// Runs `brickfs volume ...`; `store` is the global `--store`, `log_level`
/// the global `--log-level` (passed on to processes it starts).
pub fn run(args: VolumeArgs, store_url: Option<&str>, log_level: Option<&str>) -> Result<ExitCode> {
    let cmd = match args.cmd {
        VolumeCmd::Heal(cmd) => return heal_cmd::run(cmd, store_url),
        VolumeCmd::Rebalance(a) => return rebalance::run(a, store_url, log_level),
        cmd => cmd,
    };
    // Argument checks that need no store come first.
    let create = match &cmd {
        VolumeCmd::Create(a) => Some(parse_create_words(&a.words)?),
        _ => None,
    };
    let add = match &cmd {
        VolumeCmd::AddBrick(a) => Some(add_brick::parse_words(&a.words)?),
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ctx(|| "starting the tokio runtime".into())?;
    rt.block_on(async {
        let store = open_store(store_url).await?;
        let store = store.as_ref();
        let out = match cmd {
            VolumeCmd::Create(a) => {
                let (replica, addrs) = create.expect("parsed above");
                let prober = TarpcProber {
                    timeout: VolumeSpec::default_duration("network.op-timeout"),
                };
                let spec = ops::create(
                    store,
                    &prober,
                    ops::CreateReq {
                        name: &a.name,
                        replica,
                        addrs: &addrs,
                        id: uuid::Uuid::new_v4().to_string(),
                        created_by: format!("brickfs {}", env!("CARGO_PKG_VERSION")),
                        created_at: SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs()),
                    },
                )
                .await?;
                format!(
                    "volume create: {}: success: {} volume, {}; \
                     start it with `brickfs volume start {}`\n",
                    spec.name,
                    spec.type_name(),
                    show::brick_count(&spec),
                    spec.name
                )
            }
            VolumeCmd::Start(a) => {
                let timeout = spec_timeout(store, &a.name).await?;
                let (spec, offline) = ops::start(store, &TarpcProber { timeout }, &a.name).await?;
                let mut out = String::new();
                for o in offline {
                    out.push_str(&format!("warning: {o}\n"));
                }
                out + &format!("volume start: {}: success\n", spec.name)
            }
            VolumeCmd::Stop(a) => {
                let spec = ops::stop(store, &a.name).await?;
                format!("volume stop: {}: success\n", spec.name)
            }
            VolumeCmd::Delete(a) => {
                let spec = ops::delete(store, &a.name).await?;
                format!(
                    "volume delete: {}: success (the bricks keep their data and stay bound \
                     to volume {})\n",
                    spec.name, spec.name
                )
            }
            VolumeCmd::Info(a) => {
                let specs = match a.name {
                    Some(name) => vec![load::load(store, &name).await?.spec],
                    None => load::list_volumes(store).await?,
                };
                show::info_all(&specs)
            }
            VolumeCmd::List => show::list(&load::list_volumes(store).await?),
            VolumeCmd::Status(a) => {
                let timeout = spec_timeout(store, &a.name).await?;
                let (spec, bricks) = ops::status(store, &TarpcProber { timeout }, &a.name).await?;
                let mut out = show::status(&spec, &bricks);
                if let Some((run, _)) = rebalance::load_doc(store, &a.name).await? {
                    out.push_str(&rebalance::task_line(&run, rebalance::now()));
                }
                out
            }
            VolumeCmd::Set(a) => {
                let v = ops::set(store, &a.name, &a.key, &a.value).await?;
                format!("volume set: {}: success: {} = {v}\n", a.name, a.key)
            }
            VolumeCmd::Graph(a) => client_graph(&load::load(store, &a.name).await?.spec).render(),
            VolumeCmd::Profile(a) => {
                let spec = load::load(store, &a.name).await?.spec;
                let (out, all) = profile::run(&spec, a.action).await;
                if !all {
                    print!("{out}");
                    return Ok(ExitCode::FAILURE);
                }
                out
            }
            VolumeCmd::Top(a) => {
                let spec = load::load(store, &a.name).await?.spec;
                let (out, all) = top::run(&spec, a.metric, a.list_cnt).await;
                if !all {
                    print!("{out}");
                    return Ok(ExitCode::FAILURE);
                }
                out
            }
            VolumeCmd::ReplaceBrick(a) => {
                let timeout = spec_timeout(store, &a.name).await?;
                let (spec, i) = ops::replace_brick(
                    store,
                    &TarpcProber { timeout },
                    &a.name,
                    &a.old,
                    &a.new,
                    a.force,
                )
                .await?;
                println!(
                    "volume replace-brick: {}: success: brick {} is {} now; refilling it by heal",
                    spec.name,
                    i + 1,
                    a.new
                );
                refill(&spec, i).await?
            }
            VolumeCmd::AddBrick(a) => {
                let (replica, addrs) = add.expect("parsed above");
                let timeout = spec_timeout(store, &a.name).await?;
                let added =
                    add_brick::add_brick(store, &TarpcProber { timeout }, &a.name, replica, &addrs)
                        .await?;
                show::added(&added.spec, added.sets_before)
            }
            VolumeCmd::Heal(_) | VolumeCmd::Rebalance(_) => unreachable!("handled above"),
        };
        print!("{out}");
        Ok(ExitCode::SUCCESS)
    })
}

/// Makes the other bricks blame replaced brick `i` for the whole namespace
/// and runs a full heal that copies everything to it.
/// Only brick `i`'s replica set takes part: blame and heal are per set.
async fn refill(spec: &VolumeSpec, i: usize) -> Result<String> {
    let resolved = volume::Resolved::from_spec(spec).await?;
    let r = usize::from(spec.replica.max(1));
    let (set, pos) = (i / r, i % r);
    let config = resolved
        .config
        .sets()
        .into_iter()
        .nth(set)
        .ok_or_else(|| Error::Msg(format!("brick {} is in no replica set", i + 1)))?;
    let healer = client::heal::Healer::connect(config)
        .await
        .map_err(|e| Error::Msg(format!("connecting to the bricks of {}: {e}", spec.name)))?;
    let bit = 1u8.checked_shl(pos as u32).unwrap_or(0);
    healer.blame_root(bit).await;
    let report = healer
        .heal_full()
        .await
        .map_err(|e| Error::Msg(format!("full heal of {}: {e}", spec.name)))?;
    healer.close();
    let c = report.counts;
    Ok(format!(
        "heal of volume {}: {} objects healed, {} entries created, {} bytes copied in {:.2} s; \
         {} entries left\n",
        spec.name,
        c.healed,
        c.entries_created,
        c.bytes_copied,
        report.elapsed.as_secs_f64(),
        report.left
    ))
}

/// How long bricks may take to answer for volume `name` (its
/// `network.op-timeout`).
async fn spec_timeout(store: &dyn Store, name: &str) -> Result<Duration> {
    let spec = load::load(store, name).await?.spec;
    Ok(spec.option_duration("network.op-timeout"))
}

async fn open_store(url: Option<&str>) -> Result<Arc<dyn Store>> {
    let Some(url) = url else {
        return Err(Error::Msg(
            "no volume store: pass --store URL or set BRICKFS_STORE \
             (file:///DIR or etcd://HOST:PORT[,HOST:PORT])"
                .into(),
        ));
    };
    Ok(store::open(url).await?)
}
