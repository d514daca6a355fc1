//! `volume add-brick NAME B1 B2 B3 [...]`: new replica sets at the end of a
//! volume. Checked like the bricks of `volume create` (`admit`), then one
//! compare-and-swap of the spec with the bricks appended.
//!
//! Only whole replica sets are added, and only at the end: a brick's
//! position in its set is what the changelog's blame is indexed by, and
//! the sets that exist keep their numbers, so nothing already written
//! changes meaning. The new sets hold nothing until `volume rebalance`
//! moves files there; clients that read the new spec lay new directories
//! out over them at once.

use store::Store;
use volgen::spec::{validate_bricks, BrickRef, VolumeSpec};

use super::admit::admit_bricks;
use super::load::{cas_put, load, Loaded};
use super::probe::Prober;
use super::rebalance::{load_doc, now};
use crate::error::{Error, Result};

/// What `add_brick` did.
#[derive(Debug)]
pub struct Added {
    /// The spec as written.
    pub spec: VolumeSpec,
    /// Replica sets before.
    pub sets_before: usize,
}

/// `[replica N] BRICK...` of `volume add-brick`: the replica count if
/// given (it must be the volume's: add-brick adds sets, it does not change
/// their size) and the bricks.
pub fn parse_words(words: &[String]) -> Result<(Option<u8>, Vec<String>)> {
    match words {
        [kw, count, bricks @ ..] if kw.eq_ignore_ascii_case("replica") => {
            let replica = count
                .parse()
                .map_err(|_| Error::Msg(format!("bad replica count {count:?}")))?;
            if bricks.is_empty() {
                return Err(Error::Msg("no bricks given".into()));
            }
            Ok((Some(replica), bricks.to_vec()))
        }
        _ => Ok((None, words.to_vec())),
    }
}

/// Appends the bricks at `addrs` to volume `name` as new replica sets;
/// `replica`, when given, must be the volume's.
pub async fn add_brick<P: Prober>(
    store: &dyn Store,
    prober: &P,
    name: &str,
    replica: Option<u8>,
    addrs: &[String],
) -> Result<Added> {
    let Loaded { mut spec, revision } = load(store, name).await?;
    if let Some(n) = replica.filter(|n| *n != spec.replica) {
        return Err(Error::Msg(format!(
            "volume {name} is replica {}: add-brick adds whole sets of {} bricks and cannot \
             make them replica {n}",
            spec.replica, spec.replica
        )));
    }
    let r = usize::from(spec.replica);
    if addrs.is_empty() || !addrs.len().is_multiple_of(r) {
        return Err(Error::Msg(format!(
            "{} bricks given: volume {name} is replica {r}, so add-brick takes a positive \
             multiple of {r} bricks (each {r} in a row form a new replica set)",
            addrs.len()
        )));
    }
    let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    validate_bricks(spec.replica, &addrs).map_err(|e| Error::Msg(e.0))?;
    if let Some((run, _)) = load_doc(store, name).await? {
        if run.is_active(now()) {
            return Err(Error::Msg(format!(
                "a rebalance of volume {name} is running (pid {} on {}); let it finish or \
                 stop it (brickfs volume rebalance {name} stop), then add the bricks",
                run.pid, run.host
            )));
        }
    }
    let refusal = format!("bricks not added to volume {name}");
    let ids = admit_bricks(store, prober, name, &addrs, &spec.bricks, &refusal).await?;
    let sets_before = spec.replica_sets();
    spec.bricks
        .extend(addrs.iter().zip(ids).map(|(a, id)| BrickRef {
            addr: a.to_string(),
            id,
        }));
    cas_put(store, &spec, revision).await?;
    Ok(Added { spec, sets_before })
}
