//! Claims: provisioning (claim → sub-volume → PV bound by claimRef) and
//! expansion (a bound claim that asks for more).
//!
//! Why this order is crash-safe: every step is idempotent and named by the
//! claim alone. The PV is `pvc-<claim uid>`, so a second attempt finds the
//! first's PV; the sub-volume's create answers 200 for the same settings,
//! and a 409 from a sub-volume labelled with this claim's uid is our own
//! earlier attempt (its settings since changed), which is adopted. A
//! sub-volume made just before a crash whose claim was then deleted is
//! found by the sweep (`sweep.rs`). Expansion raises the sub-volume, then
//! the PV, then the claim's status, each compared against the request, so
//! a crash between two of them is finished by the next reconcile.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use crate::api::CreateRequest;
use crate::controller::Ctx;
use crate::error::{ApiCode, Error};
use crate::events;
use crate::failpoints::failpoint;
use crate::naming;
use crate::params::ClassParams;
use crate::pv::{self, PvInput};
use crate::quantity;

const BETA_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
const PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// Labels every sub-volume gets; the sweep reads them.
pub const LABEL_PVC_UID: &str = "k8s.pvc-uid";
pub const LABEL_PV: &str = "k8s.pv";
pub const LABEL_NAMESPACE: &str = "k8s.namespace";
pub const LABEL_PVC: &str = "k8s.pvc";
pub const LABEL_PROVISIONER: &str = "k8s.provisioner";
/// The leader Lease's uid (see `Ctx::cluster`).
pub const LABEL_CLUSTER: &str = "k8s.cluster";
/// The PV's reclaim policy and the class's onDelete at provisioning: the
/// sweep removes only what a reclaim would have removed.
pub const LABEL_RECLAIM: &str = "k8s.reclaim";
pub const LABEL_ON_DELETE: &str = "k8s.on-delete";

/// The class a claim names (field, or the old annotation).
pub fn class_of(claim: &PersistentVolumeClaim) -> Option<String> {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .or_else(|| claim.annotations().get(BETA_CLASS).cloned())
        .filter(|c| !c.is_empty())
}

/// Whether Kubernetes' PV controller handed this claim to `provisioner`.
pub fn asks_us(claim: &PersistentVolumeClaim, provisioner: &str) -> bool {
    let a = claim.annotations();
    [BETA_PROVISIONER, PROVISIONER]
        .iter()
        .any(|k| a.get(*k).map(String::as_str) == Some(provisioner))
}

fn request(claim: &PersistentVolumeClaim) -> Option<Quantity> {
    claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .cloned()
}

fn bytes_of(q: &Quantity, what: &str) -> Result<u64, Error> {
    quantity::bytes(&q.0).ok_or_else(|| Error::Claim(format!("{what} {:?} is not a size", q.0)))
}

/// The action taken on a claim, for Events.
const PROVISIONING: &str = "Provisioning";
const EXPANDING: &str = "Expanding";

/// One reconcile of a claim. Failures are written as an Event on it first.
pub async fn reconcile(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if claim.meta().deletion_timestamp.is_some() || !asks_us(&claim, &ctx.provisioner) {
        return Ok(Action::await_change());
    }
    let bound = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    let (result, action) = match &bound {
        None => (provision(&claim, &ctx).await, PROVISIONING),
        Some(pv) => (expand(&claim, pv, &ctx).await, EXPANDING),
    };
    if let Err(e) = &result {
        let reason = e.reason();
        events::warn(
            &ctx.recorder,
            &claim.object_ref(&()),
            reason,
            action,
            e.to_string(),
        )
        .await;
    }
    result
}

async fn provision(claim: &PersistentVolumeClaim, ctx: &Ctx) -> Result<Action, Error> {
    let uid = claim
        .uid()
        .ok_or_else(|| Error::Claim("the claim has no uid".into()))?;
    let ns = claim.namespace().unwrap_or_default();
    let pv_name = naming::pv_name(&uid);
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    if let Some(existing) = pvs
        .get_opt(&pv_name)
        .await
        .map_err(Error::kube(format!("reading PV {pv_name}")))?
    {
        // Ours from an earlier attempt: Kubernetes binds it.
        tracing::debug!(pv = %pv_name, phase = ?existing.status.and_then(|s| s.phase), "PV exists");
        return Ok(Action::await_change());
    }
    let Some(class_name) = class_of(claim) else {
        return Ok(Action::await_change());
    };
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    let class = classes
        .get_opt(&class_name)
        .await
        .map_err(Error::kube(format!("reading StorageClass {class_name}")))?
        .ok_or_else(|| Error::Claim(format!("StorageClass {class_name} does not exist")))?;
    if class.provisioner != ctx.provisioner {
        return Ok(Action::await_change());
    }
    let params = ClassParams::parse(
        &class.parameters.clone().unwrap_or_default(),
        claim.annotations(),
    )
    .map_err(|source| Error::Param {
        class: class_name.clone(),
        source,
    })?;
    if claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block") {
        return Err(Error::Claim(
            "volumeMode Block: brickfs volumes are NFS file systems; use volumeMode Filesystem"
                .into(),
        ));
    }
    if claim.spec.as_ref().is_some_and(|s| s.selector.is_some()) {
        return Err(Error::Claim(
            "a selector cannot be honoured: provisioned volumes have no labels to select".into(),
        ));
    }
    let capacity =
        request(claim).ok_or_else(|| Error::Claim("the claim requests no storage".into()))?;
    let bytes = bytes_of(&capacity, "the request")?;
    let reclaim_policy = class
        .reclaim_policy
        .clone()
        .unwrap_or_else(|| "Delete".into());
    let name = naming::subvolume_name(
        params.path_pattern.as_deref(),
        &naming::ClaimFields {
            namespace: &ns,
            name: &claim.name_any(),
            labels: claim.labels(),
            annotations: claim.annotations(),
            pv_name: &pv_name,
        },
    )
    .map_err(|e| Error::Param {
        class: class_name.clone(),
        source: crate::params::ParamError {
            source_kind: "parameter",
            name: "pathPattern".into(),
            problem: e,
        },
    })?;
    let labels = BTreeMap::from([
        (LABEL_PVC_UID.to_string(), uid.clone()),
        (LABEL_PV.to_string(), pv_name.clone()),
        (LABEL_NAMESPACE.to_string(), ns.clone()),
        (LABEL_PVC.to_string(), claim.name_any()),
        (LABEL_PROVISIONER.to_string(), ctx.provisioner.clone()),
        (LABEL_CLUSTER.to_string(), ctx.cluster.clone()),
        (LABEL_RECLAIM.to_string(), reclaim_policy.clone()),
        (
            LABEL_ON_DELETE.to_string(),
            params.on_delete.as_str().to_string(),
        ),
    ]);
    let req = CreateRequest {
        name: name.clone(),
        bytes,
        inodes: params.inodes,
        mode: params.mode,
        uid: params.uid,
        gid: params.gid,
        labels,
    };
    let sub = match ctx.api.create(&params.volume, &req).await {
        Ok((sub, created)) => {
            tracing::info!(volume = %params.volume, subvolume = %name, created, "sub-volume ready");
            sub
        }
        Err(e) if e.api_code() == Some(&ApiCode::Exists) => {
            let existing = ctx.api.get(&params.volume, &name).await?;
            match existing {
                Some(sub) if sub.labels.get(LABEL_PVC_UID) == Some(&uid) => {
                    tracing::info!(subvolume = %name, "adopting the sub-volume an earlier attempt made");
                    if sub.bytes < bytes {
                        ctx.api.resize(&params.volume, &name, bytes).await?
                    } else {
                        sub
                    }
                }
                _ => {
                    let message = match e {
                        Error::Api { message, .. } => message,
                        other => other.to_string(),
                    };
                    return Err(Error::Collision { name, message });
                }
            }
        }
        Err(e) => return Err(e),
    };
    failpoint!("provision::after_subvolume");
    let volume = pv::build(&PvInput {
        provisioner: &ctx.provisioner,
        pv_name: &pv_name,
        claim,
        class_name: &class_name,
        reclaim_policy: &reclaim_policy,
        mount_options: class.mount_options.clone(),
        params: &params,
        subvolume: &name,
        export: &sub.export,
        capacity,
    });
    match pvs.create(&PostParams::default(), &volume).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            tracing::debug!(pv = %pv_name, "PV already made by an earlier attempt");
        }
        Err(e) => return Err(Error::kube(format!("creating PV {pv_name}"))(e)),
    }
    failpoint!("provision::after_pv");
    events::normal(
        &ctx.recorder,
        &claim.object_ref(&()),
        "ProvisioningSucceeded",
        PROVISIONING,
        format!(
            "provisioned {pv_name}: sub-volume {}/{name}, NFS {}:{}",
            params.volume, params.server, sub.export
        ),
    )
    .await;
    Ok(Action::await_change())
}

async fn expand(claim: &PersistentVolumeClaim, pv_name: &str, ctx: &Ctx) -> Result<Action, Error> {
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let Some(volume) = pvs
        .get_opt(pv_name)
        .await
        .map_err(Error::kube(format!("reading PV {pv_name}")))?
    else {
        return Ok(Action::await_change());
    };
    let Some(rec) = pv::recorded(&volume, &ctx.provisioner) else {
        return Ok(Action::await_change());
    };
    let Some(want) = request(claim) else {
        return Ok(Action::await_change());
    };
    let want_bytes = bytes_of(&want, "the request")?;
    let pv_capacity = volume
        .spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .cloned();
    let pv_bytes = match &pv_capacity {
        Some(q) => bytes_of(q, "the PV's capacity")?,
        None => 0,
    };
    let mut capacity = pv_capacity.unwrap_or_else(|| want.clone());
    if want_bytes > pv_bytes {
        if let Some(class_name) = class_of(claim) {
            let classes: Api<StorageClass> = Api::all(ctx.client.clone());
            let class = classes
                .get_opt(&class_name)
                .await
                .map_err(Error::kube(format!("reading StorageClass {class_name}")))?;
            // A deleted class: the API server admitted the new request.
            if class.is_some_and(|c| c.allow_volume_expansion != Some(true)) {
                return Err(Error::Claim(format!(
                    "StorageClass {class_name} does not allow volume expansion"
                )));
            }
        }
        ctx.api
            .resize(&rec.volume, &rec.subvolume, want_bytes)
            .await?;
        failpoint!("expand::after_subvolume");
        let patch = serde_json::json!({ "spec": { "capacity": { "storage": want.0 } } });
        pvs.patch(pv_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!("raising the capacity of PV {pv_name}")))?;
        failpoint!("expand::after_pv");
        capacity = want;
    }
    let status_bytes = claim
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| quantity::bytes(&q.0))
        .unwrap_or(0);
    // Only once the PV controller has finished binding (it sets the
    // status capacity itself as it binds).
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if bound && status_bytes < bytes_of(&capacity, "the PV's capacity")? {
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
        let patch = serde_json::json!({ "status": { "capacity": { "storage": capacity.0 } } });
        claims
            .patch_status(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(Error::kube("updating the claim's status capacity"))?;
        events::normal(
            &ctx.recorder,
            &claim.object_ref(&()),
            "VolumeResized",
            EXPANDING,
            format!(
                "sub-volume {}/{} and {pv_name} resized to {}",
                rec.volume, rec.subvolume, capacity.0
            ),
        )
        .await;
    }
    Ok(Action::await_change())
}
