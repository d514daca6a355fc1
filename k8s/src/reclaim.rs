//! PVs: the reclaim of a Released PV whose policy is Delete. What happens
//! to the sub-volume (delete, archive, retain) was recorded on the PV when
//! it was made, so a class deleted or changed since does not matter. The
//! sub-volume goes first, then the PV: killed between the two, the next
//! reconcile finds the PV still Released and the sub-volume already gone
//! (404, taken as done).

use std::sync::Arc;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use crate::controller::Ctx;
use crate::error::Error;
use crate::events;
use crate::failpoints::failpoint;
use crate::params::OnDelete;
use crate::pv;

const DELETING: &str = "Deleting";

pub async fn reconcile(volume: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(rec) = pv::recorded(&volume, &ctx.provisioner) else {
        return Ok(Action::await_change());
    };
    let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref());
    let policy = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    tracing::debug!(
        ?phase,
        ?policy,
        on_delete = rec.on_delete.as_str(),
        "PV of ours"
    );
    if phase != Some("Released")
        || policy != Some("Delete")
        || volume.meta().deletion_timestamp.is_some()
    {
        return Ok(Action::await_change());
    }
    let result = reclaim(&volume, &rec, &ctx).await;
    if let Err(e) = &result {
        events::warn(
            &ctx.recorder,
            &volume.object_ref(&()),
            e.reason(),
            DELETING,
            e.to_string(),
        )
        .await;
    }
    result
}

async fn reclaim(
    volume: &PersistentVolume,
    rec: &pv::Recorded,
    ctx: &Ctx,
) -> Result<Action, Error> {
    let name = volume.name_any();
    let done = match rec.on_delete {
        OnDelete::Delete => ctx.api.delete(&rec.volume, &rec.subvolume).await?,
        OnDelete::Archive => {
            ctx.api
                .archive(&rec.volume, &rec.subvolume, rec.archive_keep_secs)
                .await?
        }
        OnDelete::Retain => false,
    };
    tracing::info!(
        pv = %name,
        subvolume = %format!("{}/{}", rec.volume, rec.subvolume),
        on_delete = rec.on_delete.as_str(),
        done_now = done,
        "sub-volume reclaimed"
    );
    failpoint!("reclaim::after_subvolume");
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: volume.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pvs.delete(&name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(Error::kube(format!("deleting PV {name}"))(e)),
    }
    tracing::info!(pv = %name, "PV deleted");
    Ok(Action::await_change())
}
