//! What `volume heal NAME info` shows: every brick's heal index, objects
//! named by path where the bricks can tell it, and split-brains.

use proto::{FileKind, FsError, FsResult, Gfid, HealEntry, Name, PendingKind};

use super::object::Forced;
use super::roles::{roles, Roles};
use super::{Healer, Outcome};
use crate::quorum::{bit, indices, Mask};

/// Deepest path `path_of` follows (guards against a corrupt pointer chain).
const PATH_DEPTH_MAX: usize = 256;

pub struct BrickHealInfo {
    pub index: usize,
    pub addr: std::net::SocketAddr,
    pub up: bool,
    pub entries: Vec<HealEntry>,
}

pub struct SplitBrainEntry {
    pub gfid: Gfid,
    pub path: String,
    pub kinds: Vec<PendingKind>,
    /// Replicas blamed by each other.
    pub blamed: Mask,
}

/// How to pick the good copy of an object in split-brain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    LatestMtime,
    BiggerFile,
    /// The brick at this position of the replica set.
    SourceBrick(usize),
}

impl Healer {
    /// Pages through the heal index of every brick in `on`.
    pub(crate) async fn index_pages(&self, on: Mask) -> FsResult<Vec<(usize, Vec<HealEntry>)>> {
        let mut out = Vec::new();
        for i in indices(on) {
            let b = &self.bricks[i];
            let mut entries = Vec::new();
            let mut after = None;
            loop {
                let from = after;
                let page = b
                    .call(|c, ctx| async move { c.heal_index(ctx, from, 4096).await })
                    .await?;
                after = page.entries.last().map(|e| e.gfid);
                entries.extend(page.entries);
                if page.eof || after.is_none() {
                    break;
                }
            }
            out.push((i, entries));
        }
        Ok(out)
    }

    /// Every brick's heal index (empty for bricks that are down).
    pub async fn info(&self) -> FsResult<Vec<BrickHealInfo>> {
        let up = self.up_mask();
        let mut pages = self.index_pages(up).await?;
        Ok(self
            .bricks
            .iter()
            .enumerate()
            .map(|(i, b)| BrickHealInfo {
                index: i,
                addr: b.addr,
                up: up & bit(i) != 0,
                entries: pages
                    .iter_mut()
                    .find(|(j, _)| *j == i)
                    .map(|(_, e)| std::mem::take(e))
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// A path for `gfid` if a brick can tell it (directories carry a pointer
    /// to their parent; files are shown by gfid, as GlusterFS does).
    pub async fn path_of(&self, gfid: Gfid) -> String {
        if gfid.is_root() {
            return "/".into();
        }
        let mut names: Vec<Name> = Vec::new();
        let mut cur = gfid;
        for _ in 0..PATH_DEPTH_MAX {
            if cur.is_root() {
                let mut path = String::new();
                for n in names.iter().rev() {
                    path.push('/');
                    path.push_str(&n.to_string());
                }
                return path;
            }
            let mut found = None;
            for i in indices(self.up_mask()) {
                let g = cur;
                if let Ok(Some(place)) = self.bricks[i]
                    .call(|c, ctx| async move { c.locate(ctx, g).await })
                    .await
                {
                    found = Some(place);
                    break;
                }
            }
            match found {
                Some((parent, name)) => {
                    names.push(name);
                    cur = parent;
                }
                None => break,
            }
        }
        format!("<gfid:{gfid}>")
    }

    /// Objects in the heal indices whose replicas all blame each other.
    pub async fn split_brains(&self) -> FsResult<Vec<SplitBrainEntry>> {
        let mut out = Vec::new();
        for gfid in self.list_index().await?.into_keys() {
            let survey = match self.survey(gfid, self.up_mask()).await {
                Ok(s) => s,
                Err(_) => continue,
            };
            let mut kinds = Vec::new();
            let mut blamed = 0;
            // Healed by a majority of all replicas (`entries.rs`): not a
            // split-brain.
            let entries_vote = self.majority_decides_entries(survey.have());
            for kind in [PendingKind::Data, PendingKind::Metadata, PendingKind::Entry] {
                if kind == PendingKind::Entry && entries_vote {
                    continue;
                }
                if let Roles::SplitBrain { blamed: b, .. } =
                    roles(kind, &survey.refs(), self.bricks.len())
                {
                    kinds.push(kind);
                    blamed |= b;
                }
            }
            if !kinds.is_empty() {
                out.push(SplitBrainEntry {
                    gfid,
                    path: self.path_of(gfid).await,
                    kinds,
                    blamed,
                });
            }
        }
        Ok(out)
    }

    /// Resolves a path by asking the bricks, name by name from the root.
    pub async fn resolve_path(&self, path: &str) -> FsResult<Gfid> {
        if let Some(hex) = path
            .strip_prefix("<gfid:")
            .and_then(|p| p.strip_suffix('>'))
        {
            let hex: String = hex.chars().filter(|c| *c != '-').collect();
            return Gfid::from_hex(&hex)
                .ok_or_else(|| FsError::Invalid(format!("bad gfid in {path}")));
        }
        let mut cur = Gfid::ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let name = Name::from(part);
            name.validate()?;
            let mut found = None;
            let mut last = FsError::NotFound;
            for i in indices(self.up_mask()) {
                let n = name.clone();
                match self.bricks[i]
                    .call(|c, ctx| async move { c.lookup(ctx, cur, n).await })
                    .await
                {
                    Ok(l) => {
                        found = Some(l.attr.gfid);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            cur = found.ok_or(last)?;
        }
        Ok(cur)
    }

    /// Heals an object in split-brain from the replica `policy` picks.
    pub async fn resolve_split_brain(
        &self,
        path: &str,
        policy: Policy,
    ) -> FsResult<(usize, Outcome)> {
        let gfid = self.resolve_path(path).await?;
        let mut lock = self.lock(gfid).await?;
        let res = async {
            let survey = self.survey(gfid, lock.held).await?;
            let pick = match &policy {
                Policy::SourceBrick(i) => survey
                    .present
                    .iter()
                    .find(|(j, _)| j == i)
                    .map(|(j, _)| *j),
                Policy::LatestMtime => survey
                    .present
                    .iter()
                    .max_by_key(|(i, l)| (l.attr.mtime, std::cmp::Reverse(*i)))
                    .map(|(i, _)| *i),
                Policy::BiggerFile => {
                    if survey.present.iter().any(|(_, l)| l.attr.kind != FileKind::File) {
                        return Err(FsError::Invalid("bigger-file applies to files only".into()));
                    }
                    survey
                        .present
                        .iter()
                        .max_by_key(|(i, l)| (l.attr.size, std::cmp::Reverse(*i)))
                        .map(|(i, _)| *i)
                }
            };
            let source = pick.ok_or_else(|| {
                FsError::Invalid(format!("the chosen brick has no copy of {path} or is down"))
            })?;
            let forced = Forced {
                source,
                sinks: survey.have() & !bit(source),
                whatever_the_marks: true,
            };
            tracing::warn!(%gfid, path, source, ?policy, "resolving split-brain by operator's choice");
            let outcome = self.heal_locked(&mut lock, false, Some(forced)).await?;
            Ok((source, outcome))
        }
        .await;
        self.unlock(&mut lock).await;
        res
    }
}

impl Healer {
    /// Bytes of file data the listed heal-index entries hold (their size on
    /// a replica that has them), over at most `limit` objects; `true` when
    /// every entry was counted.
    pub async fn pending_bytes(&self, limit: usize) -> FsResult<(u64, bool)> {
        let listed = self.list_index().await?;
        let exact = listed.len() <= limit;
        let mut total = 0u64;
        for (gfid, dir) in listed.into_iter().take(limit) {
            if dir {
                continue;
            }
            for i in indices(self.up_mask()) {
                let g = gfid;
                if let Ok(l) = self.bricks[i]
                    .call(|c, ctx| async move { c.getattr(ctx, g).await })
                    .await
                {
                    total += l.attr.size;
                    break;
                }
            }
        }
        Ok((total, exact))
    }
}
