//! `brickfs volume create|start|stop|delete|info|list|status|set|graph`:
//! volumes by name, kept in the cluster store (`--store URL` or
//! `BRICKFS_STORE`) at `volumes/<name>` (format: `volgen::spec`).
//! `volume heal` (`crate::heal_cmd`) is a sibling subcommand.
//!
//! `ops` reads, checks and writes the store (every write a compare-and-swap
//! on what was read, and nothing written when a check fails); `show` turns
//! specs and brick answers into text; `probe` asks a brick who it is.

mod ops;
mod probe;
mod show;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
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
        working. Mounts started before keep using the bricks they had (2 of 3 of the set \
        here) until they are mounted again; heald is restarted by whoever runs it."
    )]
    ReplaceBrick(ReplaceArgs),
    #[command(flatten)]
    Heal(heal_cmd::VolumeCmd),
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

/// Runs `brickfs volume ...`; `store` is the global `--store`.
pub fn run(args: VolumeArgs, store_url: Option<&str>) -> Result<ExitCode> {
    let cmd = match args.cmd {
        VolumeCmd::Heal(cmd) => return heal_cmd::run(cmd, store_url),
        cmd => cmd,
    };
    // Argument checks that need no store come first.
    let create = match &cmd {
        VolumeCmd::Create(a) => Some(parse_create_words(&a.words)?),
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
                let default_timeout = VolumeSpec::default_option_secs("network.op-timeout");
                let prober = TarpcProber {
                    timeout: Duration::from_secs_f64(default_timeout),
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
                    Some(name) => vec![ops::load(store, &name).await?.spec],
                    None => ops::list_volumes(store).await?,
                };
                show::info_all(&specs)
            }
            VolumeCmd::List => show::list(&ops::list_volumes(store).await?),
            VolumeCmd::Status(a) => {
                let timeout = spec_timeout(store, &a.name).await?;
                let (spec, bricks) = ops::status(store, &TarpcProber { timeout }, &a.name).await?;
                show::status(&spec, &bricks)
            }
            VolumeCmd::Set(a) => {
                let v = ops::set(store, &a.name, &a.key, &a.value).await?;
                format!("volume set: {}: success: {} = {v}\n", a.name, a.key)
            }
            VolumeCmd::Graph(a) => client_graph(&ops::load(store, &a.name).await?.spec).render(),
            VolumeCmd::ReplaceBrick(a) => {
                let timeout = spec_timeout(store, &a.name).await?;
                let (spec, i) =
                    ops::replace_brick(store, &TarpcProber { timeout }, &a.name, &a.old, &a.new)
                        .await?;
                println!(
                    "volume replace-brick: {}: success: brick {} is {} now; refilling it by heal",
                    spec.name,
                    i + 1,
                    a.new
                );
                refill(&spec, i, timeout).await?
            }
            VolumeCmd::Heal(_) => unreachable!("handled above"),
        };
        print!("{out}");
        Ok(ExitCode::SUCCESS)
    })
}

/// Makes the other bricks blame replaced brick `i` for the whole namespace
/// and runs a full heal that copies everything to it.
async fn refill(spec: &VolumeSpec, i: usize, timeout: Duration) -> Result<String> {
    let bricks = resolve_bricks(spec)?;
    let config = client::StackConfig {
        volume: spec.name.clone(),
        bricks,
        op_timeout: timeout,
        ping_interval: Duration::from_secs(1),
        brick_ids: Some(brick_ids(spec)?),
        replica: 0,
    };
    let healer = client::heal::Healer::connect(config)
        .await
        .map_err(|e| Error::Msg(format!("connecting to the bricks of {}: {e}", spec.name)))?;
    let bit = 1u8.checked_shl(i as u32).unwrap_or(0);
    healer.blame_root(bit).await;
    let report = healer
        .heal_full()
        .await
        .map_err(|e| Error::Msg(format!("full heal of {}: {e}", spec.name)))?;
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
    let spec = ops::load(store, name).await?.spec;
    Ok(Duration::from_secs_f64(
        spec.option_secs("network.op-timeout"),
    ))
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

/// Volume `name` from the store at `url`: for `volume heal` and others that
/// need a volume's bricks (`resolve_bricks`, `brick_ids`).
pub async fn stored_volume(url: &str, name: &str) -> Result<VolumeSpec> {
    let store = store::open(url).await?;
    Ok(ops::load(store.as_ref(), name).await?.spec)
}

/// The spec's brick addresses, resolved, in volume order.
pub fn resolve_bricks(spec: &VolumeSpec) -> Result<Vec<SocketAddr>> {
    spec.bricks
        .iter()
        .map(|b| crate::args::parse_brick_addr(&b.addr).map_err(Error::Msg))
        .collect()
}

/// The spec's brick UUIDs, in volume order (`client::StackConfig::brick_ids`).
pub fn brick_ids(spec: &VolumeSpec) -> Result<Vec<proto::BrickId>> {
    spec.bricks
        .iter()
        .map(|b| {
            uuid::Uuid::parse_str(&b.id)
                .map(|u| proto::BrickId(*u.as_bytes()))
                .map_err(|e| Error::Msg(format!("brick {} has a bad id {:?}: {e}", b.addr, b.id)))
        })
        .collect()
}
