//! The status document of a volume's rebalance, at store key
//! `rebalance/<volume>` (JSON):
//!
//! ```json
//! {"format":1,"volume":"gv0","run_id":"<uuid>","state":"running","sets":3,
//!  "dirs_fixed":12,"files_scanned":1200,"files_migrated":400,"bytes_migrated":4194304,
//!  "files_skipped":0,"failures":0,"error":null,
//!  "started":1700000000,"updated":1700000072,"finished":null,
//!  "host":"h1","pid":4242,"log":"/var/lib/brickfs/rebalance-gv0.log"}
//! ```
//!
//! `start` writes it (state `running`) before the runner exists; the runner
//! rewrites it at most once a second (counters, `updated`) and finally with
//! `completed`, `stopped` or `failed`; `stop` writes `stopping`, which the
//! runner sees at its next write. Every write is a compare-and-swap of the
//! document just read, and only the run named by `run_id` writes it: a
//! runner whose document was taken over by a newer `start` stops.
//!
//! A runner that dies without a last word leaves `running` behind; its
//! `updated` then grows old, and after [`STALE_SECS`] `start` may begin
//! anew (`status` calls a runner silent for [`ALIVE_SECS`] not alive).

use std::time::{SystemTime, UNIX_EPOCH};

use client::rebalance::RebalanceProgress;
use serde::{Deserialize, Serialize};
use store::{Revision, Store, StoreError};

use crate::error::{Error, Result};

/// The format of the document; bumped on incompatible changes.
pub const FORMAT: u32 = 1;
/// Where the documents live in the store.
pub const PREFIX: &str = "rebalance/";
/// A run silent this long (seconds) is dead: `start` may replace it.
pub const STALE_SECS: u64 = 30;
/// A run heard from within this long (seconds) is alive, says `status`.
pub const ALIVE_SECS: u64 = 10;

/// Where a rebalance run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    /// `stop` asked; the runner has not ended yet.
    Stopping,
    Completed,
    Stopped,
    Failed,
}

impl RunState {
    /// As `status` shows it (Gluster's words).
    pub fn text(self) -> &'static str {
        match self {
            RunState::Running => "in progress",
            RunState::Stopping => "stopping",
            RunState::Completed => "completed",
            RunState::Stopped => "stopped",
            RunState::Failed => "failed",
        }
    }

    /// Running or stopping: a runner is (or should be) at work.
    pub fn is_live(self) -> bool {
        matches!(self, RunState::Running | RunState::Stopping)
    }
}

/// The document (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebalanceDoc {
    pub format: u32,
    pub volume: String,
    /// Made by `start`; only this run writes the document.
    pub run_id: String,
    pub state: RunState,
    /// Replica sets the run spreads the files over.
    pub sets: usize,
    #[serde(default)]
    pub dirs_fixed: u64,
    #[serde(default)]
    pub files_scanned: u64,
    #[serde(default)]
    pub files_migrated: u64,
    #[serde(default)]
    pub bytes_migrated: u64,
    #[serde(default)]
    pub files_skipped: u64,
    #[serde(default)]
    pub failures: u64,
    /// Why the run failed (or was marked stopped).
    #[serde(default)]
    pub error: Option<String>,
    /// Unix seconds.
    pub started: u64,
    pub updated: u64,
    #[serde(default)]
    pub finished: Option<u64>,
    /// Where the runner runs.
    pub host: String,
    /// 0 until the runner is spawned.
    pub pid: u32,
    /// The runner's log file ("" when it ran in the foreground).
    #[serde(default)]
    pub log: String,
}

impl RebalanceDoc {
    /// The store key of volume `name`'s document.
    pub fn key(name: &str) -> String {
        format!("{PREFIX}{name}")
    }

    /// A new run of volume `volume` over `sets` replica sets, starting now.
    pub fn new_run(volume: &str, sets: usize, now: u64, log: String) -> RebalanceDoc {
        RebalanceDoc {
            format: FORMAT,
            volume: volume.to_string(),
            run_id: uuid::Uuid::new_v4().to_string(),
            state: RunState::Running,
            sets,
            dirs_fixed: 0,
            files_scanned: 0,
            files_migrated: 0,
            bytes_migrated: 0,
            files_skipped: 0,
            failures: 0,
            error: None,
            started: now,
            updated: now,
            finished: None,
            host: hostname(),
            pid: 0,
            log,
        }
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("documents serialize");
        s.push('\n');
        s
    }

    pub fn from_json(text: &[u8]) -> std::result::Result<RebalanceDoc, String> {
        let doc: RebalanceDoc =
            serde_json::from_slice(text).map_err(|e| format!("bad JSON: {e}"))?;
        if doc.format > FORMAT {
            return Err(format!(
                "format {} is newer than this brickfs understands ({FORMAT})",
                doc.format
            ));
        }
        Ok(doc)
    }

    /// Seconds since the runner last wrote.
    pub fn silent_for(&self, now: u64) -> u64 {
        now.saturating_sub(self.updated)
    }

    /// A run that is live and was heard from within [`STALE_SECS`]: a new
    /// one must not start.
    pub fn is_active(&self, now: u64) -> bool {
        self.state.is_live() && self.silent_for(now) < STALE_SECS
    }

    /// Seconds the run took (so far).
    pub fn elapsed(&self, now: u64) -> u64 {
        self.finished.unwrap_or(now).saturating_sub(self.started)
    }

    pub fn set_progress(&mut self, p: &RebalanceProgress) {
        self.dirs_fixed = p.dirs_fixed;
        self.files_scanned = p.files_scanned;
        self.files_migrated = p.files_migrated;
        self.bytes_migrated = p.bytes_migrated;
        self.files_skipped = p.files_skipped;
        self.failures = p.failures;
    }
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This host's name (for `status`: where the runner is).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(s) if !s.is_empty() => s.to_string(),
        _ => "localhost".into(),
    }
}

/// Volume `name`'s document and its revision, if any.
pub async fn load(store: &dyn Store, name: &str) -> Result<Option<(RebalanceDoc, Revision)>> {
    let key = RebalanceDoc::key(name);
    let Some(e) = store.get(&key).await? else {
        return Ok(None);
    };
    let doc = RebalanceDoc::from_json(&e.value)
        .map_err(|why| Error::Store(StoreError::Corrupt { key, why }))?;
    Ok(Some((doc, e.revision)))
}

/// How often a compare-and-swap is retried when others write in between.
const CAS_TRIES: usize = 20;

/// Reads the document of run `run_id` of volume `name`, applies `f` and
/// writes it back (compare-and-swap, retried when someone wrote in
/// between). `None` when the document is gone or names another run (this
/// run was replaced): nothing is written then.
pub async fn update(
    store: &dyn Store,
    name: &str,
    run_id: &str,
    mut f: impl FnMut(&mut RebalanceDoc),
) -> Result<Option<RebalanceDoc>> {
    let key = RebalanceDoc::key(name);
    for _ in 0..CAS_TRIES {
        let Some((mut doc, revision)) = load(store, name).await? else {
            return Ok(None);
        };
        if doc.run_id != run_id {
            return Ok(None);
        }
        f(&mut doc);
        match store
            .put(&key, doc.to_json().as_bytes(), Some(revision))
            .await
        {
            Ok(_) => return Ok(Some(doc)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Msg(format!(
        "the rebalance status of volume {name} ({key}) keeps changing under us; \
         gave up after {CAS_TRIES} tries"
    )))
}
