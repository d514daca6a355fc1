//! What a certificate's holder is, and what that lets it do. The role is
//! part of the certificate (a URI subject alternative name,
//! `urn:brickfs:role:ROLE`), so only the CA decides it: a holder cannot
//! claim another one.

use std::fmt;
use std::str::FromStr;

use crate::TlsError;

/// The prefix of the URI name that carries the role.
pub const ROLE_URI: &str = "urn:brickfs:role:";
/// The prefix of the URI name that carries a tenant certificate's tenant.
pub const TENANT_URI: &str = "urn:brickfs:tenant:";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A brick daemon: serves, never calls a brick.
    Brick,
    /// A FUSE mount: files only.
    Client,
    /// The NFS gateway: files only.
    Gateway,
    /// heald, heal and rebalance: files, plus the heal RPCs and
    /// maintenance connections (which quotas never refuse).
    Heal,
    /// The admin CLI and the management API: everything, including binding
    /// a brick to a volume and setting sub-volume limits.
    Admin,
    /// The Kubernetes provisioner: a client of the management API only.
    Provisioner,
    /// The management API's server certificate.
    Api,
    /// The cluster store's server certificate (etcd).
    Store,
    /// A tenant's host (a FUSE mount in a tenant's cluster): files, but
    /// only inside the sub-volumes a scope token of the management API
    /// names, for the tenant the certificate names.
    Tenant,
}

pub const ALL_ROLES: [Role; 9] = [
    Role::Brick,
    Role::Client,
    Role::Gateway,
    Role::Heal,
    Role::Admin,
    Role::Provisioner,
    Role::Api,
    Role::Store,
    Role::Tenant,
];

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Brick => "brick",
            Role::Client => "client",
            Role::Gateway => "gateway",
            Role::Heal => "heal",
            Role::Admin => "admin",
            Role::Provisioner => "provisioner",
            Role::Api => "api",
            Role::Store => "store",
            Role::Tenant => "tenant",
        }
    }

    /// Lookups, reads, writes, locks: what a mount or the gateway does.
    pub fn may_use_files(self) -> bool {
        matches!(
            self,
            Role::Client | Role::Gateway | Role::Heal | Role::Admin | Role::Tenant
        )
    }

    /// Heal RPCs, and connecting as `Maintenance` (heal, rebalance,
    /// replace-brick), whose writes quotas count but never refuse.
    pub fn may_maintain(self) -> bool {
        matches!(self, Role::Heal | Role::Admin)
    }

    /// Binding a brick to a volume, setting a sub-volume's limit.
    pub fn may_administer(self) -> bool {
        self == Role::Admin
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Role, TlsError> {
        ALL_ROLES
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = ALL_ROLES.iter().map(|r| r.as_str()).collect();
                TlsError::Usage(format!("unknown role {s:?}; one of {}", known.join(", ")))
            })
    }
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Authenticated by a certificate of the cluster CA.
    Certified {
        role: Role,
        name: String,
        /// For role tenant: whose host it is.
        tenant: Option<String>,
    },
    /// A plaintext connection (`--insecure`): nobody is authenticated, so
    /// everything is allowed, as before TLS.
    Insecure,
}

impl Peer {
    fn allows(&self, check: impl Fn(Role) -> bool) -> bool {
        match self {
            Peer::Certified { role, .. } => check(*role),
            Peer::Insecure => true,
        }
    }

    pub fn may_use_files(&self) -> bool {
        self.allows(Role::may_use_files)
    }

    pub fn may_maintain(&self) -> bool {
        self.allows(Role::may_maintain)
    }

    pub fn may_administer(&self) -> bool {
        self.allows(Role::may_administer)
    }

    /// The tenant a tenant certificate names.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Peer::Certified { tenant, .. } => tenant.as_deref(),
            Peer::Insecure => None,
        }
    }

    /// A tenant's host: its connections reach nothing until a scope token
    /// says which sub-volumes.
    pub fn needs_scope(&self) -> bool {
        self.role() == Some(Role::Tenant)
    }

    pub fn role(&self) -> Option<Role> {
        match self {
            Peer::Certified { role, .. } => Some(*role),
            Peer::Insecure => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Certified {
                role,
                name,
                tenant: Some(t),
            } => write!(f, "{role} {name:?} of tenant {t:?}"),
            Peer::Certified { role, name, .. } => write!(f, "{role} {name:?}"),
            Peer::Insecure => f.write_str("an unauthenticated (insecure) peer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_ones_are_named() {
        for r in ALL_ROLES {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        let e = "root".parse::<Role>().unwrap_err().to_string();
        assert!(e.contains("root") && e.contains("heal"), "{e}");
    }

    #[test]
    fn only_heal_and_admin_maintain_and_only_admin_administers() {
        let maintain: Vec<Role> = ALL_ROLES.into_iter().filter(|r| r.may_maintain()).collect();
        assert_eq!(maintain, [Role::Heal, Role::Admin]);
        let admin: Vec<Role> = ALL_ROLES
            .into_iter()
            .filter(|r| r.may_administer())
            .collect();
        assert_eq!(admin, [Role::Admin]);
        assert!(!Role::Brick.may_use_files() && !Role::Provisioner.may_use_files());
    }
}
