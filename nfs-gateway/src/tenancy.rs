//! Which client networks may reach which sub-volumes: a tenant's
//! sub-volumes (`/<volume>/<name>`, owned in the store's sub-volume record)
//! are served only to the networks registered for that tenant, and a client
//! address inside some tenant's network is confined to that tenant's
//! sub-volumes. Addresses in no tenant's network see the volume as the
//! static `--export` rules say, except other tenants' sub-volumes.
//!
//! Enforced on every call: a handle reached inside a sub-volume carries the
//! sub-volume's root gfid (`handles`), and [`Table::check`] decides from it
//! and the caller's address alone, with no I/O. The table is read from the
//! store when the gateway starts and every `REFRESH` after; a new tenant or
//! sub-volume is served within that, a revoked tenant loses access within
//! it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use nfs3_types::nfs3::nfsstat3;
use proto::Gfid;
use tenant::Cidr;

pub const REFRESH: Duration = Duration::from_secs(2);

/// A sub-volume as the gateway needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    pub root: Option<Gfid>,
    /// `None`: the admin's own (no tenant).
    pub tenant: Option<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Tenant → its networks.
    networks: HashMap<String, Vec<Cidr>>,
    /// Sub-volume name → owner and root.
    by_name: HashMap<String, Owned>,
    /// Root gfid → owner and root squash.
    by_root: HashMap<Gfid, Root>,
}

#[derive(Debug, PartialEq, Eq)]
struct Root {
    /// `None`: the admin's own.
    owner: Option<String>,
    squash: bool,
}

impl Table {
    pub fn new(tenants: &[tenant::Tenant], subvolumes: &[subvolume::Subvolume]) -> Table {
        let networks = tenants
            .iter()
            .map(|t| (t.name.clone(), t.networks.clone()))
            .collect();
        let mut by_name = HashMap::new();
        let mut by_root = HashMap::new();
        for s in subvolumes {
            let root = s.id.as_deref().and_then(Gfid::from_hex);
            if let Some(r) = root {
                let owner = s.settings.tenant.clone();
                let squash = s.settings.squashes_root();
                by_root.insert(r, Root { owner, squash });
            }
            by_name.insert(
                s.name.clone(),
                Owned {
                    root,
                    tenant: s.settings.tenant.clone(),
                },
            );
        }
        Table {
            networks,
            by_name,
            by_root,
        }
    }

    /// Whether the sub-volume rooted at `subvol` squashes root.
    pub fn squashes(&self, subvol: Option<Gfid>) -> bool {
        subvol
            .and_then(|r| self.by_root.get(&r))
            .is_some_and(|r| r.squash)
    }

    /// Whether `ip` lies in any tenant's network.
    fn confined(&self, ip: IpAddr) -> bool {
        self.networks.values().flatten().any(|n| n.contains(ip))
    }

    fn tenant_allows(&self, tenant: &str, ip: IpAddr) -> bool {
        self.networks
            .get(tenant)
            .is_some_and(|nets| nets.iter().any(|n| n.contains(ip)))
    }

    /// The sub-volume whose directory at the volume root is `name`.
    pub fn subvolume(&self, name: &[u8]) -> Option<&Owned> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.by_name.get(n))
    }

    /// May `ip` use an object inside the sub-volume rooted at `subvol`
    /// (`None`: outside every sub-volume)?
    pub fn check(&self, ip: IpAddr, subvol: Option<Gfid>) -> Result<(), nfsstat3> {
        let ok = match subvol {
            None => !self.confined(ip),
            Some(root) => self
                .by_root
                .get(&root)
                // Deleted or never known: nobody's to reach.
                .is_some_and(|r| self.owner_allows(r.owner.as_deref(), ip)),
        };
        verdict(ok)
    }

    /// [`check`](Self::check) of a sub-volume by its record, for entering
    /// it by name (MOUNT, LOOKUP at the volume root).
    pub fn check_owned(&self, ip: IpAddr, owned: &Owned) -> Result<(), nfsstat3> {
        verdict(self.owner_allows(owned.tenant.as_deref(), ip))
    }

    /// A tenant's sub-volume is for its networks; the admin's own for
    /// addresses in no tenant's network.
    fn owner_allows(&self, owner: Option<&str>, ip: IpAddr) -> bool {
        match owner {
            Some(t) => self.tenant_allows(t, ip),
            None => !self.confined(ip),
        }
    }

    /// For an address confined to tenants: the sub-volumes it may mount,
    /// with the networks allowed to; `None` for an unconfined address.
    pub fn exports_for(&self, ip: IpAddr) -> Option<Vec<(String, Vec<Cidr>)>> {
        if !self.confined(ip) {
            return None;
        }
        let mut out: Vec<(String, Vec<Cidr>)> = self
            .by_name
            .iter()
            .filter_map(|(name, o)| {
                let t = o.tenant.as_deref()?;
                self.tenant_allows(t, ip)
                    .then(|| (name.clone(), self.networks[t].clone()))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Some(out)
    }

    pub fn tenants(&self) -> usize {
        self.networks.len()
    }

    pub fn subvolumes(&self) -> usize {
        self.by_name.len()
    }
}

fn verdict(ok: bool) -> Result<(), nfsstat3> {
    if ok {
        Ok(())
    } else {
        Err(nfsstat3::NFS3ERR_ACCES)
    }
}

/// The current table, swapped whole by the refresher.
#[derive(Default)]
pub struct Tenancy {
    table: RwLock<Arc<Table>>,
}

impl Tenancy {
    pub fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, table: Table) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }
}

/// Reads tenants and `volume`'s sub-volumes from the store.
pub async fn load(store: &dyn store::Store, volume: &str) -> Result<Table, String> {
    let tenants = tenant::list(store).await.map_err(|e| e.to_string())?;
    let prefix = format!("{}{volume}/", subvolume::record::PREFIX);
    let mut subs = Vec::new();
    for e in store.list(&prefix).await.map_err(|e| e.to_string())? {
        subs.push(subvolume::Subvolume::decode(&e.key, &e.value).map_err(|e| e.to_string())?);
    }
    Ok(Table::new(&tenants, &subs))
}

/// Keeps `tenancy` current; a store that does not answer keeps the last
/// table (and says so once per outage).
pub async fn refresh(tenancy: Arc<Tenancy>, store: Arc<dyn store::Store>, volume: String) {
    let mut failing = false;
    loop {
        tokio::time::sleep(REFRESH).await;
        match load(store.as_ref(), &volume).await {
            Ok(t) => {
                if failing {
                    tracing::info!("tenants and sub-volumes read from the store again");
                    failing = false;
                }
                let old = tenancy.table();
                if *old != t {
                    tracing::info!(
                        tenants = t.tenants(),
                        subvolumes = t.subvolumes(),
                        "tenant exports changed"
                    );
                    tenancy.set(t);
                }
            }
            Err(e) if !failing => {
                tracing::warn!(error = %e, "cannot read tenants from the store; serving the last known exports");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, nets: &[&str]) -> tenant::Tenant {
        tenant::Tenant {
            name: name.into(),
            admin: false,
            networks: nets.iter().map(|n| Cidr::parse(n).expect("cidr")).collect(),
            token_hash: String::new(),
            created: 0,
        }
    }

    fn sub(name: &str, owner: Option<&str>, root: Gfid) -> subvolume::Subvolume {
        subvolume::Subvolume {
            volume: "v".into(),
            name: name.into(),
            settings: subvolume::Settings {
                tenant: owner.map(String::from),
                bytes: 1,
                inodes: None,
                mode: 0o755,
                uid: 0,
                gid: 0,
                labels: Default::default(),
                root_squash: None,
            },
            state: subvolume::State::Ready,
            path: format!("/{name}"),
            id: Some(root.to_hex()),
            created: 0,
            archived: None,
            expires: None,
        }
    }

    #[test]
    fn tenants_sub_volumes_squash_root_unless_told_otherwise() {
        let (ra, rb, rx) = (Gfid::random(), Gfid::random(), Gfid::random());
        let mut open = sub("pb", Some("b"), rb);
        open.settings.root_squash = Some(false);
        let mut strict = sub("px", None, rx);
        strict.settings.root_squash = Some(true);
        let t = Table::new(&[], &[sub("pa", Some("a"), ra), open, strict]);
        assert!(t.squashes(Some(ra)), "a tenant's: on by default");
        assert!(!t.squashes(Some(rb)), "turned off");
        assert!(t.squashes(Some(rx)), "the admin's own, turned on");
        assert!(!t.squashes(None));
    }

    #[test]
    fn tenants_reach_only_their_own() {
        let (ra, rb, rx, gone) = (
            Gfid::random(),
            Gfid::random(),
            Gfid::random(),
            Gfid::random(),
        );
        let t = Table::new(
            &[tenant("a", &["10.1.0.0/16"]), tenant("b", &["10.2.0.0/16"])],
            &[
                sub("pa", Some("a"), ra),
                sub("pb", Some("b"), rb),
                sub("admins", None, rx),
                sub("orphan", Some("revoked"), Gfid::random()),
            ],
        );
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let (a, b, other) = (ip("10.1.2.3"), ip("10.2.0.9"), ip("192.168.0.1"));
        assert_eq!(t.check(a, Some(ra)), Ok(()));
        assert!(t.check(a, Some(rb)).is_err());
        assert!(t.check(b, Some(ra)).is_err());
        assert!(
            t.check(other, Some(ra)).is_err(),
            "outside every tenant network"
        );
        // Outside sub-volumes and the admin's: not for tenants.
        assert!(t.check(a, None).is_err());
        assert!(t.check(a, Some(rx)).is_err());
        assert_eq!(t.check(other, None), Ok(()));
        assert_eq!(t.check(other, Some(rx)), Ok(()));
        assert!(t.check(other, Some(gone)).is_err());
        let orphan = t.subvolume(b"orphan").expect("orphan").clone();
        assert!(t.check_owned(other, &orphan).is_err(), "a revoked tenant's");
        assert!(t.check_owned(a, &orphan).is_err());
        let pa = t.subvolume(b"pa").expect("pa").clone();
        assert_eq!(t.check_owned(a, &pa), Ok(()));
        assert!(t.check_owned(b, &pa).is_err());
        // Without tenants everything is as the static rules say.
        let empty = Table::default();
        assert_eq!(empty.check(a, None), Ok(()));
    }
}
