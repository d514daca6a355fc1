//! Volume specs in the store: read (with the revision they were read at,
//! for the compare-and-swap that writes them back) and written.

use store::{Entry, Revision, Store, StoreError};
use volgen::spec::{validate_name, VolumeSpec, VOLUMES_PREFIX};

use crate::error::{Error, Result};

fn msg(s: impl Into<String>) -> Error {
    Error::Msg(s.into())
}

/// A spec and the revision it was read at.
#[derive(Debug)]
pub struct Loaded {
    pub spec: VolumeSpec,
    pub revision: Revision,
}

fn parse_entry(e: &Entry) -> Result<VolumeSpec> {
    let corrupt = |why: String| {
        Error::Store(StoreError::Corrupt {
            key: e.key.clone(),
            why,
        })
    };
    let spec = VolumeSpec::from_json(&e.value).map_err(|err| corrupt(err.0))?;
    if VolumeSpec::key(&spec.name) != e.key {
        return Err(corrupt(format!("it describes volume {}", spec.name)));
    }
    Ok(spec)
}

/// Every volume in the store, in name order.
pub async fn list_volumes(store: &dyn Store) -> Result<Vec<VolumeSpec>> {
    store
        .list(VOLUMES_PREFIX)
        .await?
        .iter()
        .map(parse_entry)
        .collect()
}

/// Volume `name` and its revision; an unknown name is an error naming the
/// volumes the store has.
pub async fn load(store: &dyn Store, name: &str) -> Result<Loaded> {
    validate_name(name).map_err(|e| msg(e.0))?;
    match store.get(&VolumeSpec::key(name)).await? {
        Some(e) => Ok(Loaded {
            spec: parse_entry(&e)?,
            revision: e.revision,
        }),
        None => Err(unknown_volume(store, name).await),
    }
}

async fn unknown_volume(store: &dyn Store, name: &str) -> Error {
    let url = store.url();
    match store.list(VOLUMES_PREFIX).await {
        Ok(entries) if entries.is_empty() => msg(format!(
            "unknown volume {name} (the store at {url} has no volumes)"
        )),
        Ok(entries) => {
            let names: Vec<&str> = entries
                .iter()
                .map(|e| e.key.strip_prefix(VOLUMES_PREFIX).unwrap_or(&e.key))
                .collect();
            msg(format!(
                "unknown volume {name} (the store at {url} has: {})",
                names.join(", ")
            ))
        }
        Err(_) => msg(format!("unknown volume {name} (store {url})")),
    }
}

/// Writes `spec` over the revision it was read at.
pub async fn cas_put(store: &dyn Store, spec: &VolumeSpec, revision: Revision) -> Result<Revision> {
    spec.validate().map_err(|e| msg(e.0))?;
    store
        .put(
            &VolumeSpec::key(&spec.name),
            spec.to_json().as_bytes(),
            Some(revision),
        )
        .await
        .map_err(|e| conflict(e, &spec.name))
}

pub fn conflict(e: StoreError, name: &str) -> Error {
    match e {
        StoreError::Conflict { .. } => msg(format!(
            "volume {name} changed in the store meanwhile (another brickfs at work?); \
             nothing was written: look again and retry"
        )),
        other => Error::Store(other),
    }
}
