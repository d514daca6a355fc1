//! `brickfs dev` keeps its volume in a real cluster store (a file store in
//! `D/store`), so `brickfs --store file://D/store volume info|status|heal
//! dev` and `brickfs-mount --store … dev MNT` work on it like on any volume.
//! Dev owns its bricks: every run writes their current addresses (new free
//! ports each run) and UUIDs (read from their directories) into the spec
//! and marks it started, with a compare-and-swap like every store write.

use std::collections::BTreeMap;
use std::path::Path;

use volgen::spec::{BrickRef, VolumeSpec, VolumeState, REPLICA, SPEC_FORMAT};

use crate::error::{IoContext, Result};

/// Creates or updates volume `name` in the file store at `dir`; returns
/// the number of replica sets it had before (0 when new). A volume of more
/// bricks than given is refused (its last sets hold files the fewer bricks
/// would lose sight of); more bricks than before add sets at the end.
/// `op_timeout` (dev's `--op-timeout`), when given, becomes the volume's
/// `network.op-timeout`, which its children (started from the store) use.
pub fn register(
    dir: &Path,
    name: &str,
    bricks: &[(String, String)],
    op_timeout: Option<std::time::Duration>,
) -> Result<usize> {
    let url = store::file_url(dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ctx(|| "starting the tokio runtime".into())?;
    rt.block_on(async {
        let store = store::open(&url).await.map_err(msg)?;
        let key = VolumeSpec::key(name);
        let current = store.get(&key).await.map_err(msg)?;
        let (mut spec, revision) = match current {
            Some(e) => (
                VolumeSpec::from_json(&e.value).map_err(|e| msg(e.0))?,
                Some(e.revision),
            ),
            None => (
                VolumeSpec {
                    format: SPEC_FORMAT,
                    name: name.to_string(),
                    id: uuid::Uuid::new_v4().to_string(),
                    replica: REPLICA,
                    bricks: Vec::new(),
                    options: BTreeMap::new(),
                    state: VolumeState::Started,
                    created_by: format!("brickfs dev {}", env!("CARGO_PKG_VERSION")),
                    created_at: 0,
                },
                None,
            ),
        };
        let sets_before = spec.replica_sets();
        if spec.bricks.len() > bricks.len() {
            return Err(crate::error::Error::Msg(format!(
                "the dev volume in {} has {} replica sets; run with --replica-sets {} \
                 (or use a fresh --state-dir): fewer sets would hide the files on the others",
                dir.parent().unwrap_or(dir).display(),
                sets_before,
                sets_before
            )));
        }
        spec.bricks = bricks
            .iter()
            .map(|(addr, id)| BrickRef {
                addr: addr.clone(),
                id: id.clone(),
            })
            .collect();
        spec.state = VolumeState::Started;
        if let Some(t) = op_timeout {
            spec.set_option("network.op-timeout", &volgen::secs::canonical(t))
                .map_err(|e| msg(e.0))?;
        }
        spec.validate().map_err(|e| msg(e.0))?;
        store
            .put(&key, spec.to_json().as_bytes(), revision)
            .await
            .map_err(msg)?;
        Ok(sets_before)
    })
}

fn msg(e: impl std::fmt::Display) -> crate::error::Error {
    crate::error::Error::Msg(format!("registering the dev volume in its store: {e}"))
}
