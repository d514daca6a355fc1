//! The store's record of a tenant, at `tenants/<name>`.

use serde::{Deserialize, Serialize};

use crate::{Cidr, TenantError};

pub const PREFIX: &str = "tenants/";

pub fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// Tenant names go into tokens (split at '.'), store keys, sub-volume
/// records and Kubernetes objects, so they are DNS-label-like.
pub fn validate_name(name: &str) -> Result<(), TenantError> {
    let ok = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(TenantError::BadName(name.to_string()))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: String,
    /// Sees and changes every tenant's sub-volumes.
    pub admin: bool,
    /// Where its NFS clients are; none: its sub-volumes are exported nowhere.
    #[serde(with = "networks")]
    pub networks: Vec<Cidr>,
    /// blake3 of the token's secret, hex.
    pub token_hash: String,
    /// Unix seconds.
    pub created: u64,
}

impl Tenant {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn decode(key: &str, value: &[u8]) -> Result<Tenant, TenantError> {
        serde_json::from_slice(value).map_err(|e| TenantError::Corrupt {
            key: key.to_string(),
            why: e.to_string(),
        })
    }

    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(ip))
    }
}

/// Networks as the strings an operator typed.
mod networks {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use crate::Cidr;

    pub fn serialize<S: Serializer>(nets: &[Cidr], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(nets.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cidr>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| Cidr::parse(s).ok_or_else(|| D::Error::custom(format!("bad network {s:?}"))))
            .collect()
    }
}
