//! The PersistentVolume of a provisioned claim, and what the provisioner
//! records on it. The PV carries everything its reclaim needs (volume,
//! sub-volume, what to do on delete), so the class may be gone by then.
//! Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NFSVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ObjectMeta;

use crate::params::{ClassParams, OnDelete};

pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const VOLUME_ANNOTATION: &str = "brickfs.io/volume";
pub const SUBVOLUME_ANNOTATION: &str = "brickfs.io/subvolume";
pub const ON_DELETE_ANNOTATION: &str = "brickfs.io/on-delete";
pub const ARCHIVE_KEEP_ANNOTATION: &str = "brickfs.io/archive-keep-seconds";

/// What a PV says about its sub-volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub volume: String,
    pub subvolume: String,
    pub on_delete: OnDelete,
    pub archive_keep_secs: Option<u64>,
}

/// Everything a PV is built from.
pub struct PvInput<'a> {
    pub provisioner: &'a str,
    pub pv_name: &'a str,
    pub claim: &'a PersistentVolumeClaim,
    pub class_name: &'a str,
    pub reclaim_policy: &'a str,
    pub mount_options: Option<Vec<String>>,
    pub params: &'a ClassParams,
    pub subvolume: &'a str,
    pub export: &'a str,
    /// The claim's request, as it wrote it.
    pub capacity: Quantity,
}

pub fn build(i: &PvInput<'_>) -> PersistentVolume {
    let mut ann = BTreeMap::new();
    ann.insert(PROVISIONED_BY.to_string(), i.provisioner.to_string());
    ann.insert(VOLUME_ANNOTATION.to_string(), i.params.volume.clone());
    ann.insert(SUBVOLUME_ANNOTATION.to_string(), i.subvolume.to_string());
    ann.insert(
        ON_DELETE_ANNOTATION.to_string(),
        i.params.on_delete.as_str().to_string(),
    );
    if let Some(k) = i.params.archive_keep_secs {
        ann.insert(ARCHIVE_KEEP_ANNOTATION.to_string(), k.to_string());
    }
    let spec = i.claim.spec.as_ref();
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(i.pv_name.to_string()),
            annotations: Some(ann),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([(
                "storage".to_string(),
                i.capacity.clone(),
            )])),
            access_modes: spec.and_then(|s| s.access_modes.clone()),
            nfs: Some(NFSVolumeSource {
                server: i.params.server.clone(),
                path: i.export.to_string(),
                read_only: None,
            }),
            persistent_volume_reclaim_policy: Some(i.reclaim_policy.to_string()),
            storage_class_name: Some(i.class_name.to_string()),
            mount_options: i.mount_options.clone(),
            volume_mode: Some("Filesystem".to_string()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: i.claim.metadata.namespace.clone(),
                name: i.claim.metadata.name.clone(),
                uid: i.claim.metadata.uid.clone(),
                ..ObjectReference::default()
            }),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    }
}

/// What the PV records, if it is one of ours (`provisioner` made it).
pub fn recorded(pv: &PersistentVolume, provisioner: &str) -> Option<Recorded> {
    let ann = pv.metadata.annotations.as_ref()?;
    if ann.get(PROVISIONED_BY).map(String::as_str) != Some(provisioner) {
        return None;
    }
    Some(Recorded {
        volume: ann.get(VOLUME_ANNOTATION)?.clone(),
        subvolume: ann.get(SUBVOLUME_ANNOTATION)?.clone(),
        // A PV of ours without the annotation (edited by hand) keeps its
        // data: retain is the choice that cannot lose anything.
        on_delete: ann
            .get(ON_DELETE_ANNOTATION)
            .and_then(|v| OnDelete::parse(v))
            .unwrap_or(OnDelete::Retain),
        archive_keep_secs: ann
            .get(ARCHIVE_KEEP_ANNOTATION)
            .and_then(|v| v.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;

    fn params() -> ClassParams {
        ClassParams {
            volume: "gv0".into(),
            server: "10.0.0.5".into(),
            path_pattern: None,
            on_delete: OnDelete::Archive,
            archive_keep_secs: Some(60),
            inodes: None,
            mode: 0o755,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn pv_binds_its_claim() {
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("team-a".into()),
                uid: Some("u-1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteMany".into()]),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        };
        let p = params();
        let pv = build(&PvInput {
            provisioner: "brickfs.io/nfs",
            pv_name: "pvc-u-1",
            claim: &claim,
            class_name: "brickfs",
            reclaim_policy: "Delete",
            mount_options: Some(vec!["nfsvers=3".into()]),
            params: &p,
            subvolume: "team-a-data-pvc-u-1",
            export: "/gv0/team-a-data-pvc-u-1",
            capacity: Quantity("1Gi".into()),
        });
        let spec = pv.spec.as_ref().unwrap();
        let cref = spec.claim_ref.as_ref().unwrap();
        assert_eq!(
            (
                cref.namespace.as_deref(),
                cref.name.as_deref(),
                cref.uid.as_deref()
            ),
            (Some("team-a"), Some("data"), Some("u-1"))
        );
        let nfs = spec.nfs.as_ref().unwrap();
        assert_eq!(
            (nfs.server.as_str(), nfs.path.as_str()),
            ("10.0.0.5", "/gv0/team-a-data-pvc-u-1")
        );
        assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "1Gi");
        assert_eq!(
            spec.access_modes.as_deref(),
            Some(&["ReadWriteMany".to_string()][..])
        );
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some("brickfs"));
        assert_eq!(
            spec.mount_options.as_deref(),
            Some(&["nfsvers=3".to_string()][..])
        );
        let r = recorded(&pv, "brickfs.io/nfs").unwrap();
        assert_eq!(
            r,
            Recorded {
                volume: "gv0".into(),
                subvolume: "team-a-data-pvc-u-1".into(),
                on_delete: OnDelete::Archive,
                archive_keep_secs: Some(60),
            }
        );
        assert_eq!(recorded(&pv, "other.io/nfs"), None);
    }
}
