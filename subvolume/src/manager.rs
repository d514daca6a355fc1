//! The operations on sub-volumes, for the CLI and the management API.
//!
//! Every change is recorded before it is made and finished after it, so a
//! command killed half-way leaves a record that says what to finish: a
//! `create` found `Creating` makes what is missing (the directory, its
//! limits) and a `delete` found `Deleting` removes what is left. Every
//! store write is a compare-and-swap on the revision read.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use client::{Layer, NewEntry};
use proto::{FileKind, FsError, Gfid, Name, QuotaLimit, QuotaUse, SetAttr};
use store::{Revision, Store};
use volgen::spec::VolumeSpec;
use volume::{Opened, Source};

use crate::record::{self, Settings, State, Subvolume, ARCHIVE_DIR};
use crate::{tree, SubvolError};

/// What `create` is asked for.
#[derive(Clone, Debug)]
pub struct CreateReq {
    pub name: String,
    pub settings: Settings,
}

/// A sub-volume with its usage as the bricks count it now.
#[derive(Clone, Debug)]
pub struct WithUsage {
    pub sub: Subvolume,
    pub usage: Option<QuotaUse>,
}

/// The sub-volumes of one volume, with a client stack of it.
pub struct Manager {
    store: Arc<dyn Store>,
    volume: String,
    opened: Opened,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Manager {
    /// Opens volume `volume` of the store at `url` (it must be started).
    pub async fn open(url: &str, volume: &str) -> Result<Manager, SubvolError> {
        let store = store::open(url).await?;
        let source = Source::Store {
            url: url.to_string(),
            name: volume.to_string(),
        };
        let opened = volume::open(&source, Box::new(|_, _| {})).await?;
        Ok(Manager {
            store,
            volume: volume.to_string(),
            opened,
        })
    }

    pub async fn close(mut self) {
        self.opened.close().await;
    }

    fn layer(&self) -> &Arc<dyn Layer> {
        &self.opened.layer
    }

    async fn get(&self, name: &str) -> Result<Option<(Subvolume, Revision)>, SubvolError> {
        let key = record::key(&self.volume, name);
        match self.store.get(&key).await? {
            Some(e) => Ok(Some((Subvolume::decode(&key, &e.value)?, e.revision))),
            None => Ok(None),
        }
    }

    async fn put(
        &self,
        sub: &Subvolume,
        expected: Option<Revision>,
    ) -> Result<Revision, SubvolError> {
        let key = record::key(&self.volume, &sub.name);
        Ok(self.store.put(&key, &sub.encode(), expected).await?)
    }

    fn not_found(&self, name: &str) -> SubvolError {
        SubvolError::NotFound {
            volume: self.volume.clone(),
            name: name.to_string(),
        }
    }

    /// The record of `name`, if there is one (no usage: no brick asked).
    pub async fn record(&self, name: &str) -> Result<Option<Subvolume>, SubvolError> {
        record::validate_name(name)?;
        Ok(self.get(name).await?.map(|(sub, _)| sub))
    }

    pub fn volume(&self) -> &str {
        &self.volume
    }

    /// Every live sub-volume of the volume (of `tenant` only, if given).
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<Subvolume>, SubvolError> {
        let found = self.records(record::PREFIX, tenant).await?;
        Ok(found.into_iter().map(|(sub, _)| sub).collect())
    }

    /// Archived sub-volumes (of `tenant` only, if given).
    pub async fn archives(&self, tenant: Option<&str>) -> Result<Vec<Subvolume>, SubvolError> {
        let found = self.records(record::ARCHIVE_PREFIX, tenant).await?;
        Ok(found.into_iter().map(|(sub, _)| sub).collect())
    }

    /// The records of this volume under `prefix`, with their store entries.
    async fn records(
        &self,
        prefix: &str,
        tenant: Option<&str>,
    ) -> Result<Vec<(Subvolume, store::Entry)>, SubvolError> {
        let prefix = format!("{prefix}{}/", self.volume);
        let mut out = Vec::new();
        for e in self.store.list(&prefix).await? {
            let sub = Subvolume::decode(&e.key, &e.value)?;
            if tenant.is_none() || sub.settings.tenant.as_deref() == tenant {
                out.push((sub, e));
            }
        }
        Ok(out)
    }

    /// A sub-volume and its usage now.
    pub async fn info(&self, name: &str) -> Result<WithUsage, SubvolError> {
        let (sub, _) = self.get(name).await?.ok_or_else(|| self.not_found(name))?;
        let usage = self.usage(&sub).await?;
        Ok(WithUsage { sub, usage })
    }

    /// `sub`'s usage as the bricks count it now (`None`: its directory is
    /// not made yet).
    pub async fn usage(&self, sub: &Subvolume) -> Result<Option<QuotaUse>, SubvolError> {
        let Some(id) = sub.id.as_deref().and_then(Gfid::from_hex) else {
            return Ok(None);
        };
        let st = self
            .layer()
            .statfs(id)
            .await
            .map_err(SubvolError::fs(format!("usage of {}", sub.name)))?;
        Ok(st.quota)
    }

    /// Refuses `more` bytes of new limits when the sub-volumes' unused
    /// limits would then pass the volume's free space times the
    /// overcommit ratio (`subvolume.overcommit`).
    async fn admit(&self, more: u64, except: &str) -> Result<(), SubvolError> {
        if more == 0 {
            return Ok(());
        }
        let ratio = match self.store.get(&VolumeSpec::key(&self.volume)).await? {
            Some(e) => VolumeSpec::from_json(&e.value)
                .map(|s| s.option_ratio("subvolume.overcommit"))
                .unwrap_or(1.0),
            None => 1.0,
        };
        let pool = self
            .layer()
            .statfs(Gfid::ROOT)
            .await
            .map_err(SubvolError::fs("free space of the volume"))?;
        let free = pool.bavail.saturating_mul(u64::from(pool.frsize.max(1)));
        // Every sub-volume's usage in one round trip per set, whatever
        // their number.
        let usages = self
            .layer()
            .quota_usage()
            .await
            .map_err(SubvolError::fs("usage of the sub-volumes"))?;
        let mut unused: u64 = 0;
        for sub in self.list(None).await? {
            if sub.name == except || sub.state == State::Deleting {
                continue;
            }
            let id = sub.id.as_deref().and_then(Gfid::from_hex);
            let used = usages
                .iter()
                .find(|u| Some(u.subvol) == id)
                .map_or(0, |u| u.bytes);
            unused = unused.saturating_add(sub.settings.bytes.saturating_sub(used));
        }
        let allowed = (free as f64 * ratio) as u64;
        let want = unused.saturating_add(more);
        if want > allowed {
            return Err(SubvolError::PoolFull(format!(
                "volume {} has {free} bytes free (overcommit {ratio}: {allowed} may be promised), \
                 the other sub-volumes hold {unused} unused, {more} more asked",
                self.volume
            )));
        }
        Ok(())
    }

    /// Creates a sub-volume, or finishes one a stopped command began. The
    /// same request again returns the same sub-volume.
    pub async fn create(&self, req: &CreateReq) -> Result<Subvolume, SubvolError> {
        record::validate_name(&req.name)?;
        if req.settings.mode & !0o7777 != 0 {
            return Err(SubvolError::Invalid(format!(
                "mode {:o}",
                req.settings.mode
            )));
        }
        let (mut sub, rev) = match self.get(&req.name).await? {
            Some((sub, rev)) => {
                if sub.settings != req.settings || sub.state == State::Deleting {
                    return Err(SubvolError::Exists {
                        volume: self.volume.clone(),
                        name: req.name.clone(),
                        what: format!(
                            "{:?}, tenant {:?}, {} bytes",
                            sub.state, sub.settings.tenant, sub.settings.bytes
                        ),
                    });
                }
                if sub.state == State::Ready {
                    return Ok(sub);
                }
                (sub, rev)
            }
            None => {
                self.admit(req.settings.bytes, &req.name).await?;
                let sub = Subvolume {
                    volume: self.volume.clone(),
                    name: req.name.clone(),
                    settings: req.settings.clone(),
                    state: State::Creating,
                    path: format!("/{}", req.name),
                    id: None,
                    created: now(),
                    archived: None,
                    expires: None,
                };
                let rev = self.put(&sub, None).await?;
                (sub, rev)
            }
        };
        let gfid = self.make_root(&sub).await?;
        let limit = QuotaLimit {
            bytes: sub.settings.bytes,
            inodes: sub.settings.inodes,
        };
        self.layer()
            .set_quota(gfid, Some(limit))
            .await
            .map_err(SubvolError::fs(format!("limits of {}", sub.name)))?;
        sub.id = Some(gfid.to_hex());
        sub.state = State::Ready;
        self.put(&sub, Some(rev)).await?;
        tracing::info!(volume = %self.volume, name = %sub.name, bytes = sub.settings.bytes, "sub-volume created");
        Ok(sub)
    }

    /// The root directory of `sub`, made if missing, with its mode and
    /// owner.
    async fn make_root(&self, sub: &Subvolume) -> Result<Gfid, SubvolError> {
        let name = Name::from(sub.name.as_str());
        let (uid, gid) = sub.settings.root_owner();
        let made = self
            .layer()
            .create(
                Gfid::ROOT,
                NewEntry {
                    name: name.clone(),
                    kind: FileKind::Dir,
                    perm: sub.settings.mode,
                    rdev: 0,
                    uid,
                    gid,
                    target: None,
                },
            )
            .await;
        let attr = match made {
            Ok(a) => a,
            Err(FsError::Exists) => {
                let a = self
                    .layer()
                    .lookup(Gfid::ROOT, &name)
                    .await
                    .map_err(SubvolError::fs(format!("looking up /{}", sub.name)))?;
                if a.kind != FileKind::Dir {
                    return Err(SubvolError::Invalid(format!(
                        "/{} exists in volume {} and is not a directory",
                        sub.name, self.volume
                    )));
                }
                // A directory a stopped create made, or one the admin made
                // to turn into a sub-volume: mode and owner as asked.
                let set = SetAttr {
                    perm: Some(sub.settings.mode),
                    uid: Some(uid),
                    gid: Some(gid),
                    ..SetAttr::default()
                };
                self.layer()
                    .setattr(a.gfid, set)
                    .await
                    .map_err(SubvolError::fs(format!("mode of /{}", sub.name)))?
            }
            Err(e) => return Err(SubvolError::fs(format!("making /{}", sub.name))(e)),
        };
        Ok(attr.gfid)
    }

    /// New limits. Growing is admitted against the pool; shrinking only
    /// down to current usage.
    pub async fn resize(
        &self,
        name: &str,
        bytes: u64,
        inodes: Option<Option<u64>>,
    ) -> Result<Subvolume, SubvolError> {
        let (mut sub, rev) = self.get(name).await?.ok_or_else(|| self.not_found(name))?;
        if sub.state != State::Ready {
            return Err(SubvolError::Invalid(format!(
                "sub-volume {name} is {:?}, not ready",
                sub.state
            )));
        }
        let usage = self.usage(&sub).await?;
        let used = usage.map_or(0, |u| u.bytes);
        if bytes < used {
            return Err(SubvolError::BelowUsage(format!(
                "{name} holds {used} bytes; a limit of {bytes} is below that"
            )));
        }
        let inodes = inodes.unwrap_or(sub.settings.inodes);
        if let (Some(max), Some(u)) = (inodes, usage) {
            if max < u.inodes {
                return Err(SubvolError::BelowUsage(format!(
                    "{name} holds {} objects; a limit of {max} is below that",
                    u.inodes
                )));
            }
        }
        if bytes > sub.settings.bytes {
            // Its own unused part counts as the others' do.
            self.admit(bytes.saturating_sub(used), name).await?;
        }
        let gfid =
            sub.id.as_deref().and_then(Gfid::from_hex).ok_or_else(|| {
                SubvolError::Invalid(format!("sub-volume {name} has no directory"))
            })?;
        self.layer()
            .set_quota(gfid, Some(QuotaLimit { bytes, inodes }))
            .await
            .map_err(SubvolError::fs(format!("limits of {name}")))?;
        sub.settings.bytes = bytes;
        sub.settings.inodes = inodes;
        self.put(&sub, Some(rev)).await?;
        tracing::info!(volume = %self.volume, %name, bytes, "sub-volume resized");
        Ok(sub)
    }

    /// Removes a sub-volume and its data. Deleting one that is gone is not
    /// an error (a retry after a crash).
    pub async fn delete(&self, name: &str) -> Result<(), SubvolError> {
        record::validate_name(name)?;
        let Some((mut sub, mut rev)) = self.get(name).await? else {
            return Ok(());
        };
        if sub.state != State::Deleting {
            sub.state = State::Deleting;
            rev = self.put(&sub, Some(rev)).await?;
        }
        tree::remove(self.layer(), Gfid::ROOT, &Name::from(sub.name.as_str()))
            .await
            .map_err(SubvolError::fs(format!("removing /{}", sub.name)))?;
        self.store
            .delete(&record::key(&self.volume, name), rev)
            .await?;
        tracing::info!(volume = %self.volume, %name, "sub-volume deleted");
        Ok(())
    }

    /// Moves a sub-volume's data aside under `/.archive` and keeps it
    /// (until `keep_secs` from now, if given); its name is free again.
    /// Where it goes is recorded first, so an archive killed half-way is
    /// finished by the next one at the same place.
    pub async fn archive(
        &self,
        name: &str,
        keep_secs: Option<u64>,
    ) -> Result<Subvolume, SubvolError> {
        let (mut sub, mut rev) = self.get(name).await?.ok_or_else(|| self.not_found(name))?;
        let at = match (sub.state, sub.archived) {
            (State::Archived, Some(at)) => at,
            _ => now(),
        };
        let aside = Name::from(format!("{}.{at}", sub.name).as_str());
        if sub.state != State::Archived {
            sub.state = State::Archived;
            sub.archived = Some(at);
            sub.expires = keep_secs.map(|k| at.saturating_add(k));
            sub.path = format!("/{ARCHIVE_DIR}/{aside}");
            rev = self.put(&sub, Some(rev)).await?;
        }
        let archive_dir = self.archive_dir().await?;
        let req = proto::RenameReq {
            parent: Gfid::ROOT,
            name: Name::from(sub.name.as_str()),
            new_parent: archive_dir,
            new_name: aside,
            flags: 0,
        };
        match self.layer().rename(req).await {
            Ok(()) => {}
            // Moved by the archive that stopped half-way, or nothing to
            // move (a create that never made its directory).
            Err(FsError::NotFound) => {}
            Err(e) => return Err(SubvolError::fs(format!("moving /{} aside", sub.name))(e)),
        }
        let key = record::archive_key(&self.volume, &sub.name, at);
        match self.store.put(&key, &sub.encode(), None).await {
            Ok(_) | Err(store::StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.store
            .delete(&record::key(&self.volume, name), rev)
            .await?;
        tracing::info!(volume = %self.volume, %name, path = %sub.path, "sub-volume archived");
        Ok(sub)
    }

    async fn archive_dir(&self) -> Result<Gfid, SubvolError> {
        let name = Name::from(ARCHIVE_DIR);
        let entry = NewEntry {
            name: name.clone(),
            kind: FileKind::Dir,
            perm: 0o700,
            rdev: 0,
            uid: 0,
            gid: 0,
            target: None,
        };
        match self.layer().create(Gfid::ROOT, entry).await {
            Ok(a) => Ok(a.gfid),
            Err(FsError::Exists) => self
                .layer()
                .lookup(Gfid::ROOT, &name)
                .await
                .map(|a| a.gfid)
                .map_err(SubvolError::fs("the archive directory")),
            Err(e) => Err(SubvolError::fs("making the archive directory")(e)),
        }
    }

    /// Removes archives whose time is up; returns how many.
    pub async fn purge_expired(&self) -> Result<usize, SubvolError> {
        let t = now();
        let mut purged = 0;
        let expired: Vec<_> = self
            .records(record::ARCHIVE_PREFIX, None)
            .await?
            .into_iter()
            .filter(|(sub, _)| sub.expires.is_some_and(|x| x <= t))
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        let dir = self.archive_dir().await?;
        for (sub, e) in expired {
            let aside = sub.path.rsplit('/').next().unwrap_or_default();
            tree::remove(self.layer(), dir, &Name::from(aside))
                .await
                .map_err(SubvolError::fs(format!("removing {}", sub.path)))?;
            self.store.delete(&e.key, e.revision).await?;
            purged += 1;
        }
        Ok(purged)
    }
}
