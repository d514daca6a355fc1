//! The rebalance runner: one run of `client::rebalance::run` over the
//! volume's current spec, reporting to the status document.
//!
//! The engine calls the report closure after every directory and every
//! file it moves; the closure only copies the counters and answers whether
//! to go on. A task of its own writes the document at most once a second
//! (also when nothing moved: `updated` is the runner's heartbeat) and reads
//! back `stopping` from `rebalance stop`; SIGINT or SIGTERM stop the run the
//! same way (a second one exits at once). The last write names how the run
//! ended. The document is written only while it still names this run: a
//! runner replaced by a newer `start` (it had gone silent) stops.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::rebalance::{RebalanceProgress, Report};
use store::Store;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::doc::{self, RebalanceDoc, RunState};
use crate::error::{Error, IoContext, Result};

/// How often the status document is written.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How often the log gets a progress line.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Starts `brickfs [--log-level L] --store URL rebalance-run --run-id ID
/// --log LOG -- NAME` in a session of its own (no terminal: it outlives the
/// command and the terminal's hangup), stdin from /dev/null, stdout and
/// stderr appended to `log`. Returns its pid. The child is not waited for:
/// it runs on after this process exits, and init reaps it.
pub fn spawn(
    url: &str,
    name: &str,
    run_id: &str,
    log: &Path,
    log_level: Option<&str>,
) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().ctx(|| "finding the brickfs executable".into())?;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .ctx(|| format!("opening log {}", log.display()))?;
    let err = out
        .try_clone()
        .ctx(|| format!("cloning {}", log.display()))?;
    let mut cmd = Command::new(&exe);
    if let Some(level) = log_level {
        cmd.arg("--log-level").arg(level);
    }
    cmd.arg("--store")
        .arg(url)
        .arg("rebalance-run")
        .arg("--run-id")
        .arg(run_id)
        .arg("--log")
        .arg(log)
        .arg("--")
        .arg(name)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: setsid is async-signal-safe and nothing is allocated between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .ctx(|| format!("starting {} rebalance-run", exe.display()))?;
    Ok(child.id())
}

/// Runs run `run_id` of volume `name` (claimed by `start`) to its end and
/// returns the last document written. `print`: progress lines on stdout
/// (`start --foreground`).
pub async fn run(
    store: Arc<dyn Store>,
    url: &str,
    name: &str,
    run_id: &str,
    print: bool,
) -> Result<RebalanceDoc> {
    let (pid, host) = (std::process::id(), doc::hostname());
    let first = doc::update(store.as_ref(), name, run_id, |d| {
        d.pid = pid;
        d.host = host.clone();
        d.updated = doc::now();
    })
    .await?
    .ok_or_else(|| replaced(name))?;
    info!(
        volume = name,
        run_id,
        sets = first.sets,
        "rebalance started"
    );

    let source = volume::Source::Store {
        url: url.to_string(),
        name: name.to_string(),
    };
    let config = match source.resolve().await {
        Ok(resolved) => resolved.config,
        Err(e) => {
            let why = e.to_string();
            warn!("cannot read the volume: {why}");
            let p = RebalanceProgress::default();
            return finish(
                store.as_ref(),
                name,
                run_id,
                RunState::Failed,
                &p,
                Some(why),
            )
            .await;
        }
    };
    let sets = config.sets().len();
    if sets != first.sets {
        warn!(
            was = first.sets,
            now = sets,
            "the volume's replica sets changed since start"
        );
        doc::update(store.as_ref(), name, run_id, |d| d.sets = sets).await?;
    }

    let progress = Arc::new(Mutex::new(RebalanceProgress::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let report: Report = {
        let (progress, stop) = (progress.clone(), stop.clone());
        Arc::new(move |p: &RebalanceProgress| {
            *progress.lock().unwrap_or_else(|e| e.into_inner()) = p.clone();
            !stop.load(Ordering::SeqCst)
        })
    };
    let (done_tx, done_rx) = oneshot::channel();
    let reporter = tokio::spawn(report_loop(
        store.clone(),
        name.to_string(),
        run_id.to_string(),
        progress.clone(),
        stop.clone(),
        print,
        done_rx,
    ));
    let signals = tokio::spawn(stop_on_signals(stop.clone()));

    let result = client::rebalance::run(config, report).await;

    let _ = done_tx.send(());
    let _ = reporter.await;
    signals.abort();
    let last = progress.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match result {
        Ok(p) => {
            let state = if p.stopped {
                RunState::Stopped
            } else {
                RunState::Completed
            };
            info!(?p, "rebalance {}", state.text());
            finish(store.as_ref(), name, run_id, state, &p, None).await
        }
        Err(e) => {
            warn!("rebalance failed: {e}");
            let why = e.to_string();
            finish(
                store.as_ref(),
                name,
                run_id,
                RunState::Failed,
                &last,
                Some(why),
            )
            .await
        }
    }
}

fn replaced(name: &str) -> Error {
    Error::Msg(format!(
        "this rebalance run of volume {name} is not the one in the store any more \
         (replaced by another `rebalance start`)"
    ))
}

/// The last write: how the run ended.
async fn finish(
    store: &dyn Store,
    name: &str,
    run_id: &str,
    state: RunState,
    p: &RebalanceProgress,
    error: Option<String>,
) -> Result<RebalanceDoc> {
    let now = doc::now();
    doc::update(store, name, run_id, |d| {
        d.state = state;
        d.set_progress(p);
        d.error = error.clone();
        d.updated = now;
        d.finished = Some(now);
    })
    .await?
    .ok_or_else(|| replaced(name))
}

/// Writes the counters every [`REPORT_EVERY`] until `done`; sets `stop`
/// when the document says `stopping` or names another run.
async fn report_loop(
    store: Arc<dyn Store>,
    name: String,
    run_id: String,
    progress: Arc<Mutex<RebalanceProgress>>,
    stop: Arc<AtomicBool>,
    print: bool,
    mut done: oneshot::Receiver<()>,
) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut printed: Option<RebalanceProgress> = None;
    let mut logged = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut done => return,
        }
        let p = progress.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let now = doc::now();
        let written = doc::update(store.as_ref(), &name, &run_id, |d| {
            d.set_progress(&p);
            d.updated = now;
        })
        .await;
        match written {
            Ok(Some(d)) if d.state == RunState::Stopping => {
                if !stop.swap(true, Ordering::SeqCst) {
                    info!("`rebalance stop` asked: ending after the file being moved");
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                if !stop.swap(true, Ordering::SeqCst) {
                    warn!("{}; stopping", replaced(&name));
                }
            }
            Err(e) => warn!("cannot write the rebalance status: {e}"),
        }
        if print && printed.as_ref() != Some(&p) {
            println!("{}", progress_line(started.elapsed(), &p));
            printed = Some(p.clone());
        }
        if logged.elapsed() >= LOG_EVERY {
            info!("{}", progress_line(started.elapsed(), &p));
            logged = Instant::now();
        }
    }
}

/// `   12 s  dirs 12  scanned 1200  migrated 400 (12.5 MiB)  skipped 3  failures 0`
pub fn progress_line(elapsed: Duration, p: &RebalanceProgress) -> String {
    format!(
        "{:>5} s  dirs {}  scanned {}  migrated {} ({})  skipped {}  failures {}",
        elapsed.as_secs(),
        p.dirs_fixed,
        p.files_scanned,
        p.files_migrated,
        super::show::mib(p.bytes_migrated),
        p.files_skipped,
        p.failures
    )
}

/// SIGINT or SIGTERM: stop after the file being moved; a second one: exit.
async fn stop_on_signals(stop: Arc<AtomicBool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot watch SIGINT/SIGTERM; `rebalance stop` still works");
        return;
    };
    let mut seen = false;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if seen {
            warn!("second signal: exiting now (the status shows the run as silent)");
            std::process::exit(130);
        }
        seen = true;
        stop.store(true, Ordering::SeqCst);
        warn!("signal: stopping after the file being moved (again to exit at once)");
    }
}
