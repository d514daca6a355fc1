//! `brickfs`: the admin CLI. Noun-verb subcommands: `dev` runs a throwaway
//! volume on this host (3 `brickd` per replica set, a self-heal daemon and
//! 1 FUSE mount), `heald` is the self-heal daemon, `volume
//! create|start|stop|add-brick|rebalance|…` manage volumes in the cluster
//! store, `volume heal` heals on demand and shows heal status. The hidden
//! `rebalance-run` is the background runner of `volume rebalance start`.

mod ca_cmd;
mod dev;
mod error;
mod heal_cmd;
mod heald;
mod heald_metrics;
mod subvolume_cmd;
mod tenant_cmd;
mod volume_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "brickfs",
    version,
    about = "brickfs admin CLI: a replicated POSIX file service in the spirit of GlusterFS",
    long_about = "brickfs admin CLI.\n\n\
        brickfs stores a volume on bricks (one `brickd` per directory), replicated 3 ways, \
        and serves it to hosts through a FUSE mount (`brickfs-mount`).\n\n\
        Start here:  brickfs dev    (3 local bricks + a FUSE mount, in the foreground)\n\n\
        Volumes:     brickfs --store file:///var/lib/brickfs volume create gv0 replica 3 \
        h1:24101 h2:24101 h3:24101    (then volume start|info|status|set|graph|stop|delete)\n\n\
        Grow:        brickfs --store URL volume add-brick gv0 h4:24101 h5:24101 h6:24101, \
        then volume rebalance gv0 start|status|stop\n\n\
        Self-heal:   brickfs --store URL volume heal NAME info    (URL as printed by brickfs dev)\n\n\
        Tenants:     brickfs --store URL tenant create team-a --network 10.1.0.0/16    (prints \
        its token for the management API, brickfs-api)\n\n\
        Sub-volumes: brickfs --store URL subvolume create gv0 data --size 10Gi --tenant team-a"
)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace or a tracing directive
    /// like `brickfs=debug,client=info`); default: info, but warn for
    /// `volume` commands, which print their results on stdout. RUST_LOG,
    /// when set, overrides it.
    #[arg(long, global = true, env = "BRICKFS_LOG_LEVEL", value_name = "LEVEL")]
    log_level: Option<String>,

    #[command(flatten)]
    store: volume::args::StoreArg,

    #[command(flatten)]
    tls: tls::TlsArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a development volume "dev": 3 local bricks (replica 3; 3N with
    /// --replica-sets N), a self-heal daemon, an NFS gateway and a FUSE
    /// mount, in the foreground. Ctrl-C unmounts and stops
    /// heald and the bricks; the data stays in the state directory and is
    /// served again by the next run.
    Dev(dev::DevArgs),
    /// Run the self-heal daemon of a volume (every replica set) in the
    /// foreground: heals when a brick comes back or anything is blamed,
    /// retries the rest periodically.
    #[command(long_about = heald::LONG_ABOUT)]
    Heald(heald::HealdArgs),
    /// Volume administration: create, start, stop, delete, info, list,
    /// status, set, graph, replace-brick, add-brick, rebalance, heal.
    Volume(volume_cmd::VolumeArgs),
    /// Sub-volumes: directories of a volume with limits the bricks
    /// enforce (create, list, info, resize, delete, archive, purge).
    Subvolume(subvolume_cmd::SubvolumeArgs),
    Tenant(tenant_cmd::TenantArgs),
    /// The cluster CA and the certificates of every process (mutual TLS
    /// between all of them): `ca init DIR`, `ca issue --ca DIR --role ROLE
    /// NAME`.
    Ca(ca_cmd::CaArgs),
    /// The background runner `volume rebalance NAME start` spawns.
    #[command(hide = true)]
    RebalanceRun(volume_cmd::rebalance::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Volume(_) | Command::Subvolume(_) | Command::Tenant(_) | Command::Ca(_) => "warn",
        Command::Dev(_) | Command::Heald(_) | Command::RebalanceRun(_) => "info",
    };
    if let Err(e) = supervise::logging::init(cli.log_level.as_deref(), default_level) {
        eprintln!("brickfs: {e}");
        return ExitCode::FAILURE;
    }
    // Each command talks to the bricks as what it is; `dev` makes its own
    // credentials, `ca` makes credentials, `tenant` only reaches the store.
    let role = match cli.command {
        Command::Heald(_) => Some(tls::Role::Heal),
        Command::Volume(_) | Command::Subvolume(_) | Command::RebalanceRun(_) => {
            Some(tls::Role::Admin)
        }
        Command::Dev(_) | Command::Tenant(_) | Command::Ca(_) => None,
    };
    if let Some(role) = role {
        if let Err(e) = cli.tls.install(role) {
            eprintln!("brickfs: error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let store = cli.store.store.as_deref();
    let result = match cli.command {
        Command::Dev(args) => dev::run(args, cli.log_level.as_deref()),
        Command::Heald(args) => heald::run(args, store),
        Command::Volume(args) => volume_cmd::run(args, store, cli.log_level.as_deref()),
        Command::Subvolume(args) => subvolume_cmd::run(args, store),
        Command::Tenant(args) => tenant_cmd::run(args, store),
        Command::Ca(args) => ca_cmd::run(args).map_err(error::Error::from),
        Command::RebalanceRun(args) => volume_cmd::rebalance::run_detached(args, store),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("brickfs: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
