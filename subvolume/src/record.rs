//! The store's record of a sub-volume, at `subvolumes/<volume>/<name>`;
//! archived ones at `archives/<volume>/<name>.<unix time>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::SubvolError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Recorded; its directory and limits may not be made yet (a command
    /// stopped half-way is finished by the next one).
    Creating,
    Ready,
    /// Its data is being removed.
    Deleting,
    /// Moved aside, data kept (`archives/…`).
    Archived,
}

/// What a sub-volume is asked to be: `create` with the same settings again
/// is a no-op, with others a conflict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The owner; `None` for the admin's own.
    pub tenant: Option<String>,
    /// Limit in bytes (apparent file sizes).
    pub bytes: u64,
    pub inodes: Option<u64>,
    /// Mode, owner and group of its root directory.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// What the requester tags it with (the provisioner: the PVC and PV it
    /// belongs to). Part of the settings, so two requesters that picked the
    /// same name conflict instead of sharing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Root squash: owner and group 0 act as 65534 (nobody) over NFS and
    /// on the bricks for tenants' hosts. `None`: on for a tenant's
    /// sub-volume, off for the admin's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_squash: Option<bool>,
}

/// The id root is squashed to.
pub const NOBODY: u32 = 65534;

impl Settings {
    pub fn squashes_root(&self) -> bool {
        self.root_squash.unwrap_or(self.tenant.is_some())
    }

    /// The owner and group its root directory is made with: under root
    /// squash an owner 0 is nobody, so that root in a pod (acting as
    /// nobody) owns its volume, as it would a local one.
    pub fn root_owner(&self) -> (u32, u32) {
        let squash = |id: u32| {
            if self.squashes_root() && id == 0 {
                NOBODY
            } else {
                id
            }
        };
        (squash(self.uid), squash(self.gid))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subvolume {
    pub volume: String,
    pub name: String,
    #[serde(flatten)]
    pub settings: Settings,
    pub state: State,
    /// Where it is in the volume: `/<name>`, or under `/.archive` once
    /// archived.
    pub path: String,
    /// Its root directory's gfid (hex), once made.
    pub id: Option<String>,
    /// Unix seconds.
    pub created: u64,
    pub archived: Option<u64>,
    /// An archive may be purged after this (unix seconds).
    pub expires: Option<u64>,
}

pub const PREFIX: &str = "subvolumes/";
pub const ARCHIVE_PREFIX: &str = "archives/";
/// The directory of the volume archived sub-volumes move to.
pub const ARCHIVE_DIR: &str = ".archive";

pub fn key(volume: &str, name: &str) -> String {
    format!("{PREFIX}{volume}/{name}")
}

pub fn archive_key(volume: &str, name: &str, at: u64) -> String {
    format!("{ARCHIVE_PREFIX}{volume}/{name}.{at}")
}

/// Sub-volume names: one path component a store key and an NFS export
/// path can carry, never hidden.
pub fn validate_name(name: &str) -> Result<(), SubvolError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SubvolError::BadName(name.to_string()))
    }
}

impl Subvolume {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn decode(key: &str, value: &[u8]) -> Result<Subvolume, SubvolError> {
        serde_json::from_slice(value).map_err(|e| SubvolError::Corrupt {
            key: key.to_string(),
            why: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["pvc-1", "a.b_c", "X9"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".archive", "a/b", "a b", &"x".repeat(101)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
