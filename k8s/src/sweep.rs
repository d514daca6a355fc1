//! The sweep: sub-volumes this provisioner made for a claim that is gone
//! and that never got a PV: what a crash between creating the sub-volume
//! and its PV leaves when the claim is deleted meanwhile. It also removes
//! a sub-volume of a claim whose PV names another sub-volume (the claim's
//! labels changed a pathPattern between a crash and the retry).
//!
//! Why the order of the lists: sub-volumes are listed first, then PVs,
//! then claims (fresh from the API server, not a cache). A sub-volume made
//! after the first list is not looked at; one made before it belongs to a
//! claim that existed then, and that claim is either in the last list or
//! deleted, and if its PV was made it is in the PV list. Only sub-volumes
//! whose reclaim would have deleted them are swept (labels `k8s.reclaim`
//! Delete and `k8s.on-delete` delete or archive): a Retain volume's data
//! stays, even with its PV deleted by hand. Only this cluster's (label
//! `k8s.cluster`, the leader Lease's uid).

use std::collections::{BTreeSet, HashMap, HashSet};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::api::Subvolume;
use crate::controller::Ctx;
use crate::error::Error;
use crate::params::valid_volume_name;
use crate::provision::{
    LABEL_CLUSTER, LABEL_ON_DELETE, LABEL_PROVISIONER, LABEL_PV, LABEL_PVC_UID, LABEL_RECLAIM,
};
use crate::pv;

/// What the sweep knows of Kubernetes.
pub struct Seen {
    pub claim_uids: HashSet<String>,
    /// PV name → (claimRef uid, recorded sub-volume "volume/name").
    pub pvs: HashMap<String, (Option<String>, Option<String>)>,
}

/// Whether `sub` (of `volume`) is a leftover to delete. Pure.
pub fn is_leftover(
    volume: &str,
    sub: &Subvolume,
    provisioner: &str,
    cluster: &str,
    seen: &Seen,
) -> bool {
    let l = &sub.labels;
    if l.get(LABEL_PROVISIONER).map(String::as_str) != Some(provisioner)
        || cluster.is_empty()
        || l.get(LABEL_CLUSTER).map(String::as_str) != Some(cluster)
        || sub.archived.as_ref().is_some_and(|a| !a.is_null())
        || !(sub.state.is_empty() || sub.state == "ready")
        || l.get(LABEL_RECLAIM).map(String::as_str) != Some("Delete")
        || !matches!(
            l.get(LABEL_ON_DELETE).map(String::as_str),
            Some("delete" | "archive")
        )
    {
        return false;
    }
    let (Some(uid), Some(pv)) = (l.get(LABEL_PVC_UID), l.get(LABEL_PV)) else {
        return false;
    };
    match seen.pvs.get(pv) {
        None => !seen.claim_uids.contains(uid),
        // A PV of this claim that records another sub-volume of ours.
        Some((claim_uid, recorded)) => {
            claim_uid.as_ref() == Some(uid)
                && recorded
                    .as_ref()
                    .is_some_and(|r| *r != format!("{volume}/{}", sub.name))
        }
    }
}

/// One sweep over the volumes our classes name; returns what it deleted.
pub async fn sweep(ctx: &Ctx) -> Result<Vec<String>, Error> {
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    let mut volumes = BTreeSet::new();
    for c in classes
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("listing StorageClasses"))?
    {
        if c.provisioner == ctx.provisioner {
            if let Some(v) = c.parameters.as_ref().and_then(|p| p.get("volume")) {
                if valid_volume_name(v.trim()) {
                    volumes.insert(v.trim().to_string());
                }
            }
        }
    }
    let mut subs = Vec::new();
    for v in &volumes {
        match ctx.api.list(v).await {
            Ok(list) => subs.extend(list.into_iter().map(|s| (v.clone(), s))),
            Err(e) => tracing::warn!(volume = %v, error = %e, "sweep: listing sub-volumes failed"),
        }
    }
    if subs.is_empty() {
        return Ok(Vec::new());
    }
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv_map = pvs
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("listing PVs"))?
        .into_iter()
        .map(|p| {
            let claim_uid = p
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|c| c.uid.clone());
            let recorded =
                pv::recorded(&p, &ctx.provisioner).map(|r| format!("{}/{}", r.volume, r.subvolume));
            (p.name_any(), (claim_uid, recorded))
        })
        .collect();
    let claims: Api<PersistentVolumeClaim> = Api::all(ctx.client.clone());
    let claim_uids = claims
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("listing PVCs"))?
        .into_iter()
        .filter_map(|c| c.uid())
        .collect();
    let seen = Seen {
        claim_uids,
        pvs: pv_map,
    };
    let mut deleted = Vec::new();
    for (volume, sub) in subs {
        if is_leftover(&volume, &sub, &ctx.provisioner, &ctx.cluster, &seen) {
            ctx.api.delete(&volume, &sub.name).await?;
            tracing::info!(subvolume = %format!("{volume}/{}", sub.name), "sweep: deleted a sub-volume without claim or PV");
            deleted.push(format!("{volume}/{}", sub.name));
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sub(name: &str, uid: &str, reclaim: &str, on_delete: &str) -> Subvolume {
        Subvolume {
            volume: "gv0".into(),
            name: name.into(),
            bytes: 1,
            labels: BTreeMap::from([
                (LABEL_PROVISIONER.to_string(), "p".to_string()),
                (LABEL_CLUSTER.to_string(), "c1".to_string()),
                (LABEL_PVC_UID.to_string(), uid.to_string()),
                (LABEL_PV.to_string(), format!("pvc-{uid}")),
                (LABEL_RECLAIM.to_string(), reclaim.to_string()),
                (LABEL_ON_DELETE.to_string(), on_delete.to_string()),
            ]),
            state: "ready".into(),
            export: format!("/gv0/{name}"),
            archived: None,
        }
    }

    #[test]
    fn leftovers() {
        let seen = Seen {
            claim_uids: HashSet::from(["alive".to_string()]),
            pvs: HashMap::from([
                (
                    "pvc-bound".to_string(),
                    (Some("bound".to_string()), Some("gv0/b".to_string())),
                ),
                (
                    "pvc-moved".to_string(),
                    (Some("moved".to_string()), Some("gv0/new".to_string())),
                ),
            ]),
        };
        // Claim gone, no PV: swept.
        assert!(is_leftover(
            "gv0",
            &sub("x", "gone", "Delete", "delete"),
            "p",
            "c1",
            &seen
        ));
        assert!(is_leftover(
            "gv0",
            &sub("x", "gone", "Delete", "archive"),
            "p",
            "c1",
            &seen
        ));
        // Claim alive (its PV not made yet): kept.
        assert!(!is_leftover(
            "gv0",
            &sub("x", "alive", "Delete", "delete"),
            "p",
            "c1",
            &seen
        ));
        // Has its PV: kept.
        assert!(!is_leftover(
            "gv0",
            &sub("b", "bound", "Delete", "delete"),
            "p",
            "c1",
            &seen
        ));
        // Its PV records another sub-volume: swept.
        assert!(is_leftover(
            "gv0",
            &sub("old", "moved", "Delete", "delete"),
            "p",
            "c1",
            &seen
        ));
        assert!(!is_leftover(
            "gv0",
            &sub("new", "moved", "Delete", "delete"),
            "p",
            "c1",
            &seen
        ));
        // Data a reclaim would keep: kept.
        assert!(!is_leftover(
            "gv0",
            &sub("x", "gone", "Retain", "delete"),
            "p",
            "c1",
            &seen
        ));
        assert!(!is_leftover(
            "gv0",
            &sub("x", "gone", "Delete", "retain"),
            "p",
            "c1",
            &seen
        ));
        // Another provisioner's, or not labelled: kept.
        assert!(!is_leftover(
            "gv0",
            &sub("x", "gone", "Delete", "delete"),
            "q",
            "c1",
            &seen
        ));
        // Another cluster's (the same tenant): kept.
        assert!(!is_leftover(
            "gv0",
            &sub("x", "gone", "Delete", "delete"),
            "p",
            "c2",
            &seen
        ));
        let mut bare = sub("x", "gone", "Delete", "delete");
        bare.labels.clear();
        assert!(!is_leftover("gv0", &bare, "", "c1", &seen));
    }
}
