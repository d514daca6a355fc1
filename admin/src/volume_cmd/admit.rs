//! Admitting new bricks to a volume, for `volume create` (all its bricks)
//! and `volume add-brick` (the new ones): the checks both make before
//! anything is written, and the binding of the bricks to the volume.
//!
//! Order matters: everything that only reads (the store, then each brick's
//! `hello` naming no volume) comes first, so that a refused command binds
//! no brick; the binding `hello` comes last, and a brick bound to a volume
//! the store does not know refuses there.

use std::collections::BTreeMap;

use proto::FsError;
use store::Store;
use volgen::spec::{addr_key, BrickRef};

use super::load::list_volumes;
use super::probe::Prober;
use super::probe::{probe_all, probe_error};
use crate::error::{Error, Result};

fn msg(s: impl Into<String>) -> Error {
    Error::Msg(s.into())
}

/// The bricks at `addrs` (syntax already checked, distinct by address)
/// joining volume `name`, which has bricks `own` already (none for a new
/// volume). Refuses a brick another volume of the store has (by address or
/// by UUID), one the volume has already (ditto), one given twice under two
/// addresses, one that does not answer and one bound to another volume;
/// `refusal` starts those messages (`volume gv0 not created`). Returns the
/// bricks' UUIDs in the order of `addrs`; they are bound to `name` then.
pub async fn admit_bricks<P: Prober>(
    store: &dyn Store,
    prober: &P,
    name: &str,
    addrs: &[&str],
    own: &[BrickRef],
    refusal: &str,
) -> Result<Vec<String>> {
    // Bricks (by address, then by UUID) of the volumes of the store; the
    // volume itself is `own` (a stored spec of `name` is the same bricks).
    let mut taken_addr = BTreeMap::new();
    let mut taken_id = BTreeMap::new();
    for v in list_volumes(store).await? {
        if v.name == name {
            continue;
        }
        for (i, b) in v.bricks.iter().enumerate() {
            taken_addr.insert(addr_key(&b.addr), (v.name.clone(), i));
            taken_id.insert(b.id.clone(), (v.name.clone(), b.addr.clone()));
        }
    }
    for (i, b) in own.iter().enumerate() {
        taken_addr.insert(addr_key(&b.addr), (name.to_string(), i));
        taken_id.insert(b.id.clone(), (name.to_string(), b.addr.clone()));
    }
    for a in addrs {
        if let Some((vol, i)) = taken_addr.get(&addr_key(a)) {
            return Err(msg(format!(
                "brick {a} is already brick {} of volume {vol}",
                i + 1
            )));
        }
    }

    // Who the bricks are, binding nothing yet.
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    for (a, r) in addrs.iter().zip(probe_all(prober, addrs, "").await) {
        match r {
            Ok(p) => ids.push(p.id),
            Err(e) => failures.push(probe_error(a, name, &e)),
        }
    }
    if !failures.is_empty() {
        return Err(msg(format!("{refusal}: {}", failures.join("; "))));
    }
    let mut seen = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(j) = seen.insert(id.as_str(), i) {
            return Err(msg(format!(
                "bricks {} and {} are the same brick (id {id}); give each brick once",
                addrs[j], addrs[i]
            )));
        }
        if let Some((vol, addr)) = taken_id.get(id.as_str()) {
            return Err(msg(format!(
                "brick {} (id {id}) is already in volume {vol} (as {addr})",
                addrs[i]
            )));
        }
    }

    // Now the bricks bind themselves to the volume (or refuse: bound to
    // another volume the store does not know).
    let mut refused = false;
    for ((a, id), r) in addrs
        .iter()
        .zip(&ids)
        .zip(probe_all(prober, addrs, name).await)
    {
        match r {
            Ok(p) if &p.id != id => failures.push(format!(
                "brick {a} changed identity while being asked ({id}, then {})",
                p.id
            )),
            Ok(_) => {}
            Err(e) => {
                refused |= matches!(e, FsError::Refused(_));
                failures.push(probe_error(a, name, &e));
            }
        }
    }
    if !failures.is_empty() {
        let hint = if refused {
            " (a brick stays with the volume it was first used for, even after \
             `volume delete`: use a fresh brick directory)"
        } else {
            ""
        };
        return Err(msg(format!("{refusal}: {}{hint}", failures.join("; "))));
    }
    Ok(ids)
}
