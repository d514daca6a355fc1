//! Tenants: the owners of sub-volumes. Each has a token for the management
//! API (`bfs1.<tenant>.<secret>`; the store keeps only the secret's hash, so
//! reading the store does not give anyone a token), an admin flag, and the
//! client networks the NFS gateway exports its sub-volumes to.
//!
//! Map: `cidr` (networks), `record` (the store's document at
//! `tenants/<name>`), `token` (making and checking tokens). The functions
//! here are the operations: create, list, revoke, authenticate.

mod cidr;
mod record;
mod token;

use std::time::{SystemTime, UNIX_EPOCH};

pub use cidr::Cidr;
pub use record::{key, validate_name, Tenant, PREFIX};
pub use token::Token;

use store::Store;

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("bad tenant name {0:?} (1 to 40 of [a-z0-9-], starting with a letter)")]
    BadName(String),
    #[error("bad network {0:?} (an address or ADDRESS/PREFIX, e.g. 10.1.0.0/16)")]
    BadNetwork(String),
    #[error("tenant {0} exists")]
    Exists(String),
    #[error("no tenant {0}")]
    NotFound(String),
    /// Deliberately says nothing about which part was wrong.
    #[error("token refused (malformed, unknown or revoked)")]
    Refused,
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("corrupt tenant record {key}: {why}")]
    Corrupt { key: String, why: String },
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Parses `--network` values.
pub fn parse_networks(specs: &[String]) -> Result<Vec<Cidr>, TenantError> {
    specs
        .iter()
        .map(|s| Cidr::parse(s).ok_or_else(|| TenantError::BadNetwork(s.clone())))
        .collect()
}

/// Makes tenant `name` and returns it with its token, the only time the
/// token exists outside the caller.
pub async fn create(
    store: &dyn Store,
    name: &str,
    networks: Vec<Cidr>,
    admin: bool,
) -> Result<(Tenant, Token), TenantError> {
    validate_name(name)?;
    let token = Token::generate(name);
    let tenant = Tenant {
        name: name.to_string(),
        admin,
        networks,
        token_hash: token.secret_hash(),
        created: now(),
    };
    match store.put(&key(name), &tenant.encode(), None).await {
        Ok(_) => Ok((tenant, token)),
        Err(store::StoreError::Conflict { .. }) => Err(TenantError::Exists(name.to_string())),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(store: &dyn Store, name: &str) -> Result<Option<Tenant>, TenantError> {
    validate_name(name)?;
    let k = key(name);
    match store.get(&k).await? {
        Some(e) => Ok(Some(Tenant::decode(&k, &e.value)?)),
        None => Ok(None),
    }
}

pub async fn list(store: &dyn Store) -> Result<Vec<Tenant>, TenantError> {
    let mut out = Vec::new();
    for e in store.list(PREFIX).await? {
        out.push(Tenant::decode(&e.key, &e.value)?);
    }
    Ok(out)
}

/// Ends the tenant and its token at once. Its sub-volumes stay (an admin
/// decides about the data), but nothing exports them any more.
pub async fn revoke(store: &dyn Store, name: &str) -> Result<(), TenantError> {
    validate_name(name)?;
    let k = key(name);
    let entry = store
        .get(&k)
        .await?
        .ok_or_else(|| TenantError::NotFound(name.to_string()))?;
    store.delete(&k, entry.revision).await?;
    Ok(())
}

/// The tenant a presented token belongs to. Read from the store every time,
/// so a revoke takes effect with the next request.
pub async fn authenticate(store: &dyn Store, presented: &str) -> Result<Tenant, TenantError> {
    let token = Token::parse(presented).ok_or(TenantError::Refused)?;
    let tenant = match get(store, token.tenant()).await {
        Ok(Some(t)) => t,
        Ok(None) | Err(TenantError::BadName(_)) => return Err(TenantError::Refused),
        Err(e) => return Err(e),
    };
    if token.matches(&tenant.token_hash) {
        Ok(tenant)
    } else {
        Err(TenantError::Refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_authenticate_revoke() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store::FileStore::open(dir.path().to_str().expect("utf-8")).expect("store");
        let nets = parse_networks(&["10.1.0.0/16".into()]).expect("networks");
        let (t, token) = create(&store, "team-a", nets, false).await.expect("create");
        assert!(!t.admin);
        assert!(matches!(
            create(&store, "team-a", Vec::new(), false).await,
            Err(TenantError::Exists(_))
        ));
        let shown = token.to_string();
        assert_eq!(
            authenticate(&store, &shown).await.expect("auth").name,
            "team-a"
        );
        // The store holds no token.
        let raw = store
            .get(&key("team-a"))
            .await
            .expect("get")
            .expect("there");
        let secret = shown.rsplit('.').next().expect("secret");
        assert!(!String::from_utf8_lossy(&raw.value).contains(secret));
        // A token of another tenant's name with this secret, a changed
        // secret, and garbage are all refused alike.
        let (_, other) = create(&store, "team-b", Vec::new(), false)
            .await
            .expect("b");
        let swapped = format!("bfs1.team-b.{secret}");
        for bad in [
            swapped.as_str(),
            "bfs1.team-a.00",
            "",
            "Bearer x",
            "bfs1.NOPE.ab",
        ] {
            assert!(
                matches!(authenticate(&store, bad).await, Err(TenantError::Refused)),
                "{bad}"
            );
        }
        assert!(authenticate(&store, &other.to_string()).await.is_ok());
        revoke(&store, "team-a").await.expect("revoke");
        assert!(matches!(
            authenticate(&store, &shown).await,
            Err(TenantError::Refused)
        ));
        assert!(matches!(
            revoke(&store, "team-a").await,
            Err(TenantError::NotFound(_))
        ));
        assert_eq!(list(&store).await.expect("list").len(), 1);
    }

    #[test]
    fn bad_input() {
        for bad in ["", "A", "1abc", "a_b", "a.b", &"a".repeat(41)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(parse_networks(&["10.0.0.0/40".into()]).is_err());
    }
}
