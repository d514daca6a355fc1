//! `brickfs volume rebalance NAME start|status|stop`: after `add-brick`,
//! spreads a volume's files over all its replica sets
//! (`client::rebalance::run` does the work).
//!
//! `start` claims the run in the store (`doc`: state `running`, with a
//! compare-and-swap, so two admins cannot start two runs) and spawns a
//! runner: this executable's hidden `rebalance-run` subcommand in a session
//! of its own, logging to a file, so it outlives the command and the
//! terminal (`runner`). Or, with `--foreground`, runs it in this process.
//! `status` and `stop` only read and write the document; the runner reads
//! `stopping` at its next write and ends after the file it is moving.

mod doc;
mod runner;
mod show;
#[cfg(test)]
mod tests;

pub use doc::{load as load_doc, now, RebalanceDoc};
pub use show::task_line;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use store::{Store, StoreError};
use volgen::spec::VolumeState;

use crate::error::{Error, IoContext, Result};
use doc::RunState;

#[derive(clap::Args, Debug)]
pub struct RebalanceArgs {
    /// Volume name.
    pub name: String,
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Subcommand, Debug)]
pub enum Action {
    /// Start spreading the files over all replica sets (in the background,
    /// unless --foreground).
    #[command(
        long_about = "Start spreading the volume's files over all its replica sets.\n\n\
        Every directory gets a layout over all sets, and every file whose name now hashes \
        to another set is moved there, while clients keep reading and writing. The run \
        continues in the background (a `brickfs rebalance-run` process in a session of its \
        own, logging to --log); `status` follows it and `stop` ends it after the file it is \
        moving. Only a started volume of several replica sets is rebalanced, one run at a \
        time."
    )]
    Start(StartArgs),
    /// Show the progress of the current (or last) run.
    Status,
    /// Ask the running rebalance to stop (it ends after the file it is moving).
    Stop,
}

#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// Run in this process and print the progress, instead of in the
    /// background (Ctrl-C stops the run cleanly).
    #[arg(long)]
    pub foreground: bool,
    /// The runner's log file (default: DIR/rebalance-NAME.log for a
    /// file:///DIR store, /tmp/brickfs-rebalance-NAME.log otherwise).
    #[arg(long, value_name = "FILE", conflicts_with = "foreground")]
    pub log: Option<PathBuf>,
}

/// `brickfs rebalance-run NAME --run-id ID --log FILE`: the runner `start`
/// spawns (hidden: not for people).
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Volume name.
    pub name: String,
    /// The run `start` claimed in the store.
    #[arg(long)]
    pub run_id: String,
    /// Where this process's output goes (recorded in the status).
    #[arg(long, value_name = "FILE")]
    pub log: PathBuf,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .ctx(|| "starting the tokio runtime".into())
}

fn store_url(url: Option<&str>) -> Result<&str> {
    url.ok_or_else(|| {
        Error::Msg(
            "no volume store: pass --store URL or set BRICKFS_STORE \
             (file:///DIR or etcd://HOST:PORT[,HOST:PORT])"
                .into(),
        )
    })
}

/// Runs `brickfs volume rebalance ...`; `log_level` is the global
/// `--log-level`, passed on to the runner.
pub fn run(args: RebalanceArgs, url: Option<&str>, log_level: Option<&str>) -> Result<ExitCode> {
    let url = store_url(url)?;
    let log = match &args.action {
        Action::Start(s) if !s.foreground => Some(match &s.log {
            Some(l) => std::path::absolute(l).ctx(|| format!("resolving {}", l.display()))?,
            None => default_log(url, &args.name),
        }),
        _ => None,
    };
    runtime()?.block_on(async {
        let store = store::open(url).await?;
        let name = args.name.as_str();
        match args.action {
            Action::Start(_) => {
                let log_text = log
                    .as_ref()
                    .map_or(String::new(), |l| l.display().to_string());
                let claimed = claim(store.as_ref(), name, now(), log_text).await?;
                match log {
                    Some(log) => {
                        let pid =
                            spawn_runner(store.as_ref(), url, name, &claimed, &log, log_level)
                                .await?;
                        println!(
                            "volume rebalance: {name}: started over {} replica sets: runner \
                             pid {pid}, log {}\nFollow it with `brickfs volume rebalance {name} \
                             status`.",
                            claimed.sets,
                            log.display()
                        );
                        Ok(ExitCode::SUCCESS)
                    }
                    None => {
                        let end =
                            runner::run(store.clone(), url, name, &claimed.run_id, true).await?;
                        print!("{}", show::status(name, Some(&end), now()));
                        Ok(if end.state == RunState::Failed {
                            ExitCode::FAILURE
                        } else {
                            ExitCode::SUCCESS
                        })
                    }
                }
            }
            Action::Status => {
                super::load::load(store.as_ref(), name).await?;
                let current = doc::load(store.as_ref(), name).await?.map(|(d, _)| d);
                print!("{}", show::status(name, current.as_ref(), now()));
                Ok(ExitCode::SUCCESS)
            }
            Action::Stop => {
                println!("{}", stop(store.as_ref(), name, now()).await?);
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// Spawns the runner of run `claimed` and records its pid; a runner that
/// cannot be started marks the run failed.
async fn spawn_runner(
    store: &dyn Store,
    url: &str,
    name: &str,
    claimed: &RebalanceDoc,
    log: &Path,
    log_level: Option<&str>,
) -> Result<u32> {
    let id = claimed.run_id.as_str();
    match runner::spawn(url, name, id, log, log_level) {
        Ok(pid) => {
            // The runner writes its pid itself too; whoever comes first.
            doc::update(store, name, id, |d| {
                if d.pid == 0 {
                    d.pid = pid;
                }
            })
            .await?;
            Ok(pid)
        }
        Err(e) => {
            let why = e.to_string();
            let failed = doc::update(store, name, id, |d| {
                d.state = RunState::Failed;
                d.error = Some(why.clone());
                d.finished = Some(now());
            })
            .await;
            if let Err(f) = failed {
                tracing::warn!("cannot mark the run failed: {f}");
            }
            Err(e)
        }
    }
}

/// Runs `brickfs rebalance-run` (the background runner).
pub fn run_detached(args: RunArgs, url: Option<&str>) -> Result<ExitCode> {
    let url = store_url(url)?;
    runtime()?.block_on(async {
        let store = store::open(url).await?;
        let end = runner::run(store, url, &args.name, &args.run_id, false).await?;
        tracing::info!(log = %args.log.display(), "rebalance runner exits");
        Ok(if end.state == RunState::Failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// Where a background runner logs by default: next to a file store's
/// data, else in /tmp.
pub fn default_log(url: &str, name: &str) -> PathBuf {
    let file = format!("rebalance-{name}.log");
    if let Some(dir) = store::dir_of_url(url) {
        return dir.join(file);
    }
    Path::new("/tmp").join(format!("brickfs-{file}"))
}

/// `start`'s checks and claim: volume `name` is started and has several
/// replica sets, no run of it is active; writes a new `running` document
/// (compare-and-swap on what was read) and returns it.
pub async fn claim(store: &dyn Store, name: &str, now: u64, log: String) -> Result<RebalanceDoc> {
    let spec = super::load::load(store, name).await?.spec;
    if spec.state != VolumeState::Started {
        return Err(Error::Msg(format!(
            "volume {name} is {}: start it first (brickfs volume start {name})",
            spec.state
        )));
    }
    let sets = spec.replica_sets();
    if sets < 2 {
        return Err(Error::Msg(format!(
            "volume {name} has one replica set: nothing to rebalance (add a set first: \
             brickfs volume add-brick {name} HOST:PORT HOST:PORT HOST:PORT)"
        )));
    }
    let previous = doc::load(store, name).await?;
    if let Some((d, _)) = &previous {
        if d.is_active(now) {
            return Err(Error::Msg(format!(
                "a rebalance of volume {name} is already {} (pid {} on {}, last report {} s \
                 ago); follow it with `brickfs volume rebalance {name} status`",
                d.state.text(),
                d.pid,
                d.host,
                d.silent_for(now)
            )));
        }
        if d.state.is_live() {
            tracing::warn!(
                pid = d.pid,
                host = %d.host,
                "the previous rebalance of {name} stopped reporting {} s ago; replacing it",
                d.silent_for(now)
            );
        }
    }
    let claimed = RebalanceDoc::new_run(name, sets, now, log);
    let expected = previous.map(|(_, rev)| rev);
    match store
        .put(
            &RebalanceDoc::key(name),
            claimed.to_json().as_bytes(),
            expected,
        )
        .await
    {
        Ok(_) => Ok(claimed),
        Err(StoreError::Conflict { .. }) => Err(Error::Msg(format!(
            "the rebalance status of volume {name} changed meanwhile (another `rebalance \
             start`?); nothing was started: see `brickfs volume rebalance {name} status`"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// `stop`: asks the live run to stop (`stopping`); a run silent for
/// [`doc::STALE_SECS`] is marked `stopped` at once (its runner is gone).
/// Returns what to print.
pub async fn stop(store: &dyn Store, name: &str, now: u64) -> Result<String> {
    super::load::load(store, name).await?;
    let Some((d, _)) = doc::load(store, name).await? else {
        return Err(Error::Msg(format!(
            "no rebalance of volume {name} has been started"
        )));
    };
    if !d.state.is_live() {
        return Err(Error::Msg(format!(
            "no rebalance of volume {name} is running (the last one {})",
            d.state.text()
        )));
    }
    let dead = !d.is_active(now);
    let written = doc::update(store, name, &d.run_id, |d| {
        if dead {
            d.state = RunState::Stopped;
            d.finished = Some(now);
            d.error = Some(format!(
                "the runner (pid {} on {}) stopped reporting; marked stopped by `rebalance stop`",
                d.pid, d.host
            ));
        } else {
            d.state = RunState::Stopping;
        }
    })
    .await?;
    let Some(d) = written else {
        return Err(Error::Msg(format!(
            "the rebalance of volume {name} was replaced meanwhile; see `brickfs volume \
             rebalance {name} status`"
        )));
    };
    Ok(if dead {
        format!(
            "volume rebalance: {name}: marked stopped: its runner (pid {} on {}) had not \
             reported for {} s",
            d.pid,
            d.host,
            d.silent_for(now)
        )
    } else {
        format!(
            "volume rebalance: {name}: stop requested; the runner (pid {} on {}) stops after \
             the file it is moving",
            d.pid, d.host
        )
    })
}
