//! `brickfs`: the admin CLI. Noun-verb subcommands; for now only `dev`, which
//! runs a throwaway replica-3 volume on this host (3 `brickd` + 1 FUSE mount).

mod dev;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "brickfs",
    version,
    about = "brickfs admin CLI: a replicated POSIX file service in the spirit of GlusterFS",
    long_about = "brickfs admin CLI.\n\n\
        brickfs stores a volume on bricks (one `brickd` per directory), replicated 3 ways, \
        and serves it to hosts through a FUSE mount (`brickfs-mount`).\n\n\
        Start here:  brickfs dev    (3 local bricks + a FUSE mount, in the foreground)"
)]
struct Cli {
    /// Log filter for brickfs itself (error, warn, info, debug, trace or a
    /// tracing directive like `volgen=debug`). RUST_LOG, when set, overrides it.
    #[arg(long, global = true, env = "BRICKFS_LOG_LEVEL", default_value = "info")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a development volume "dev": 3 local bricks (replica 3) and a FUSE
    /// mount, in the foreground. Ctrl-C unmounts and stops the bricks; the data
    /// stays in the state directory and is served again by the next run.
    Dev(dev::DevArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cli.log_level))
        .unwrap_or_else(|e| {
            eprintln!(
                "brickfs: invalid --log-level {:?} ({e}); using \"info\"",
                cli.log_level
            );
            EnvFilter::new("info")
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let result = match cli.command {
        Command::Dev(args) => dev::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("brickfs: error: {e}");
            ExitCode::FAILURE
        }
    }
}
