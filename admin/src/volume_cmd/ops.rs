//! The volume commands that change the store: create, start, stop, delete,
//! set. Each reads what it needs, checks everything (bricks included), and
//! only then writes, once, with a compare-and-swap on the revision it read:
//! a refused command leaves the store as it was, and two admins never
//! overwrite each other.

use std::collections::BTreeMap;

use proto::FsError;
use store::{Store, StoreError};
use volgen::spec::{
    addr_key, validate_bricks, validate_name, BrickRef, VolumeSpec, VolumeState, SPEC_FORMAT,
};

use super::admit::admit_bricks;
use super::load::{cas_put, conflict, list_volumes, load, Loaded};
use super::probe::{probe_all, probe_error, Probed, Prober};
use crate::error::{Error, Result};

fn msg(s: impl Into<String>) -> Error {
    Error::Msg(s.into())
}

/// What `volume create` needs besides the store and the bricks.
pub struct CreateReq<'a> {
    pub name: &'a str,
    pub replica: u8,
    pub addrs: &'a [String],
    /// The new volume's UUID.
    pub id: String,
    pub created_by: String,
    pub created_at: u64,
}

/// `volume create`: checks the arguments, the store (name free, bricks in
/// no other volume) and the bricks (reachable, distinct UUIDs, willing to
/// serve the volume), then writes the spec if the key still does not exist.
pub async fn create<P: Prober>(
    store: &dyn Store,
    prober: &P,
    req: CreateReq<'_>,
) -> Result<VolumeSpec> {
    let name = req.name;
    validate_name(name).map_err(|e| msg(e.0))?;
    let addrs: Vec<&str> = req.addrs.iter().map(String::as_str).collect();
    validate_bricks(req.replica, &addrs).map_err(|e| msg(e.0))?;

    let exists = || msg(format!("volume {name} already exists"));
    if store.get(&VolumeSpec::key(name)).await?.is_some() {
        return Err(exists());
    }
    let refusal = format!("volume {name} not created");
    let ids = admit_bricks(store, prober, name, &addrs, &[], &refusal).await?;

    let spec = VolumeSpec {
        format: SPEC_FORMAT,
        name: name.to_string(),
        id: req.id,
        replica: req.replica,
        bricks: addrs
            .iter()
            .zip(ids)
            .map(|(a, id)| BrickRef {
                addr: a.to_string(),
                id,
            })
            .collect(),
        options: BTreeMap::new(),
        state: VolumeState::Created,
        created_by: req.created_by,
        created_at: req.created_at,
    };
    spec.validate().map_err(|e| msg(e.0))?;
    match store
        .put(&VolumeSpec::key(name), spec.to_json().as_bytes(), None)
        .await
    {
        Ok(_) => Ok(spec),
        Err(StoreError::Conflict { .. }) => Err(exists()),
        Err(e) => Err(e.into()),
    }
}

/// `volume start`: every brick that answers must be the one the spec names
/// (a wiped or replaced disk has a new UUID) and serve the volume; every
/// replica set needs a quorum of bricks reachable. Returns the new spec and
/// notes on bricks that did not answer.
pub async fn start<P: Prober>(
    store: &dyn Store,
    prober: &P,
    name: &str,
) -> Result<(VolumeSpec, Vec<String>)> {
    let Loaded { mut spec, revision } = load(store, name).await?;
    if spec.state == VolumeState::Started {
        return Err(msg(format!("volume {name} is already started")));
    }
    let addrs: Vec<&str> = spec.bricks.iter().map(|b| b.addr.as_str()).collect();
    let mut problems = Vec::new();
    let mut offline = Vec::new();
    let mut up = vec![0usize; spec.replica_sets()];
    let r = usize::from(spec.replica);
    for (i, (b, res)) in spec
        .bricks
        .iter()
        .zip(probe_all(prober, &addrs, name).await)
        .enumerate()
    {
        match res {
            Ok(p) if p.id != b.id => problems.push(format!(
                "brick {} answers as {}, but brick {} of volume {name} is {} \
                 (a wiped or replaced disk? it is refused until replace-brick)",
                b.addr,
                p.id,
                i + 1,
                b.id
            )),
            Ok(_) => up[i / r] += 1,
            Err(e @ FsError::Refused(_)) => problems.push(probe_error(&b.addr, name, &e)),
            Err(e) => offline.push(probe_error(&b.addr, name, &e)),
        }
    }
    if !problems.is_empty() {
        return Err(msg(format!(
            "volume {name} not started: {}",
            problems.join("; ")
        )));
    }
    let quorum = r / 2 + 1;
    for (s, n) in up.iter().enumerate() {
        if *n < quorum {
            return Err(msg(format!(
                "volume {name} not started: replica set {} has {n} of {r} bricks reachable, \
                 {quorum} needed ({})",
                s + 1,
                offline.join("; ")
            )));
        }
    }
    spec.state = VolumeState::Started;
    cas_put(store, &spec, revision).await?;
    Ok((spec, offline))
}

/// `volume stop`.
pub async fn stop(store: &dyn Store, name: &str) -> Result<VolumeSpec> {
    let Loaded { mut spec, revision } = load(store, name).await?;
    if spec.state != VolumeState::Started {
        return Err(msg(format!(
            "volume {name} is not started (status: {})",
            spec.state
        )));
    }
    spec.state = VolumeState::Stopped;
    cas_put(store, &spec, revision).await?;
    Ok(spec)
}

/// `volume delete`: only a volume that is not started.
pub async fn delete(store: &dyn Store, name: &str) -> Result<VolumeSpec> {
    let Loaded { spec, revision } = load(store, name).await?;
    if spec.state == VolumeState::Started {
        return Err(msg(format!(
            "volume {name} is started: stop it first (brickfs volume stop {name})"
        )));
    }
    store
        .delete(&VolumeSpec::key(name), revision)
        .await
        .map_err(|e| conflict(e, name))?;
    Ok(spec)
}

/// `volume set`: returns the canonical value stored.
pub async fn set(store: &dyn Store, name: &str, key: &str, value: &str) -> Result<String> {
    let Loaded { mut spec, revision } = load(store, name).await?;
    let canonical = spec.set_option(key, value).map_err(|e| msg(e.0))?;
    cas_put(store, &spec, revision).await?;
    Ok(canonical)
}

/// One brick's state for `volume status`.
#[derive(Debug)]
pub struct BrickStatus {
    pub brick: BrickRef,
    pub result: std::result::Result<Probed, FsError>,
}

/// `volume status`: asks every brick of the volume.
pub async fn status<P: Prober>(
    store: &dyn Store,
    prober: &P,
    name: &str,
) -> Result<(VolumeSpec, Vec<BrickStatus>)> {
    let Loaded { spec, .. } = load(store, name).await?;
    let addrs: Vec<&str> = spec.bricks.iter().map(|b| b.addr.as_str()).collect();
    let results = probe_all(prober, &addrs, name).await;
    let bricks = spec
        .bricks
        .iter()
        .cloned()
        .zip(results)
        .map(|(brick, result)| BrickStatus { brick, result })
        .collect();
    Ok((spec, bricks))
}

/// `volume replace-brick`: brick `old` of volume `name` (by address) is
/// replaced by the brick at `new`, which must answer, be in no volume of
/// the store and serve this one. Returns the new spec and the replaced
/// brick's position (heal refills it from the others of its set).
pub async fn replace_brick<P: Prober>(
    store: &dyn Store,
    prober: &P,
    name: &str,
    old: &str,
    new: &str,
    force: bool,
) -> Result<(VolumeSpec, usize)> {
    let Loaded { mut spec, revision } = load(store, name).await?;
    let i = spec
        .bricks
        .iter()
        .position(|b| addr_key(&b.addr) == addr_key(old))
        .ok_or_else(|| msg(format!("volume {name} has no brick {old}")))?;
    if !force {
        if let Ok(alive) = prober.probe(old, "").await {
            if alive.id == spec.bricks[i].id {
                return Err(msg(format!(
                    "brick {old} is still serving volume {name}: clients that have not switched \
                     to the new brick yet could write to it, and the new brick would never learn \
                     of those writes. Stop it first (or --force, with its clients stopped)"
                )));
            }
        }
    }
    volgen::spec::validate_addr(new).map_err(|e| msg(e.0))?;
    for v in list_volumes(store).await? {
        if let Some(b) = v.bricks.iter().find(|b| addr_key(&b.addr) == addr_key(new)) {
            return Err(msg(format!(
                "brick {new} is already in volume {} (id {})",
                v.name, b.id
            )));
        }
    }
    let probed = prober.probe(new, "").await.map_err(|e| {
        msg(format!(
            "brick not replaced: {}",
            probe_error(new, name, &e)
        ))
    })?;
    for v in list_volumes(store).await? {
        if let Some(b) = v.bricks.iter().find(|b| b.id == probed.id) {
            return Err(msg(format!(
                "brick {new} (id {}) is already in volume {} (as {})",
                probed.id, v.name, b.addr
            )));
        }
    }
    // Binds the new brick to the volume (or it refuses: another volume's).
    let bound = prober.probe(new, name).await.map_err(|e| {
        msg(format!(
            "brick not replaced: {}",
            probe_error(new, name, &e)
        ))
    })?;
    if bound.id != probed.id {
        return Err(msg(format!(
            "brick {new} changed identity while being asked"
        )));
    }
    spec.bricks[i] = BrickRef {
        addr: new.to_string(),
        id: probed.id,
    };
    cas_put(store, &spec, revision).await?;
    Ok((spec, i))
}
