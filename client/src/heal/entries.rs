//! Entry heal of a directory under its lock: the names on the sinks become
//! those of the source, with the same gfids. A name the sink lacks is
//! linked to the object the sink already has (renamed while it was away)
//! or created and filled from the source; a name the source lacks is
//! removed, except that an object the source still has elsewhere keeps its
//! data (a file) or is moved there (a directory). No deleted file comes
//! back and no renamed one is duplicated.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use futures::StreamExt;
use proto::{Attr, EntryFix, FileKind, FsError, FsResult, Gfid, Name, NewObject, PendingKind};

use super::lock::HealLock;
use super::object::{Forced, Outcome, StepResult, Survey};
use super::roles::Roles;
use super::Healer;
use crate::quorum::{bit, count, indices, Mask};

/// Names repaired at once in one directory.
const ENTRY_WORKERS: usize = 16;

pub(crate) type Listing = BTreeMap<Name, Attr>;

/// What one sink should look like, name by name.
struct Plan {
    sink: usize,
    /// Names to have, with the brick to copy each object from.
    want: Vec<(Name, Attr, usize)>,
    /// Names to remove, with the brick that says whether the object lives
    /// on elsewhere.
    remove: Vec<(Name, Attr, usize)>,
}

impl Healer {
    pub(super) async fn entry_step(
        &self,
        lock: &mut HealLock,
        survey: &Survey,
        roles: Roles,
        full: bool,
    ) -> FsResult<(StepResult, bool)> {
        let gfid = lock.gfid;
        let have = survey.have();
        let plans = match roles {
            // Every replica blamed by the others, all of them here: rolling
            // outages where each missed ops the other two applied, none
            // healed in between. Every entry op reached a quorum, so the
            // two replicas that applied a name's last op agree on it: a
            // majority of all replicas decides name by name.
            Roles::SplitBrain { .. } if self.majority_decides_entries(have) => {
                let listings = self.listings(gfid, have).await?;
                match self.by_majority(have, &listings) {
                    Ok(plans) => plans,
                    Err(why) => return Ok((StepResult::Postponed(why), false)),
                }
            }
            Roles::SplitBrain { .. } => return Ok((StepResult::Split, false)),
            Roles::SourceAbsent { failed } => {
                return Ok((
                    StepResult::Postponed(Roles::waiting_for_a_source(failed)),
                    false,
                ))
            }
            Roles::Clean if !full => return Ok((StepResult::Done, false)),
            Roles::Heal { source, sinks } => {
                if sinks == 0 {
                    return Ok((StepResult::Done, false));
                }
                let mut listings = self.listings(gfid, sinks | bit(source)).await?;
                let src = listings.remove(&source).unwrap_or_default();
                indices(sinks)
                    .map(|sink| {
                        let mine = listings.remove(&sink).unwrap_or_default();
                        from_source(sink, source, &src, &mine)
                    })
                    .collect::<Vec<_>>()
            }
            Roles::Clean | Roles::Vote => {
                let listings = self.listings(gfid, have).await?;
                match self.by_majority(have, &listings) {
                    Ok(plans) => plans,
                    Err(why) => return Ok((StepResult::Postponed(why), false)),
                }
            }
        };
        let mut changed = false;
        let mut postponed = None;
        for plan in plans {
            if plan.want.is_empty() && plan.remove.is_empty() {
                continue;
            }
            changed = true;
            if let Err(why) = self.apply(gfid, &plan).await {
                let why = format!(
                    "entry heal on brick {} incomplete: {why}",
                    self.bricks[plan.sink].addr
                );
                tracing::info!(dir = %gfid, sink = plan.sink, "{why}");
                postponed.get_or_insert(why);
            }
        }
        Ok(match postponed {
            Some(why) => (StepResult::Postponed(why), changed),
            None => (StepResult::Done, changed),
        })
    }

    /// Full listings of directory `gfid` on the bricks of `on`.
    pub(crate) async fn listings(&self, gfid: Gfid, on: Mask) -> FsResult<HashMap<usize, Listing>> {
        let answers =
            crate::quorum::fan_out(
                &self.bricks,
                on,
                |b| async move { read_listing(&b, gfid).await },
            )
            .await;
        let mut out = HashMap::new();
        for (i, res) in answers {
            out.insert(i, res?);
        }
        Ok(out)
    }

    /// The listing of a directory from the first brick that is up and has it.
    pub(crate) async fn read_listing_any(&self, gfid: Gfid) -> FsResult<Listing> {
        let mut last = FsError::BrickDown("no brick up".into());
        for i in indices(self.up_mask()) {
            match read_listing(&self.bricks[i], gfid).await {
                Ok(l) => return Ok(l),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// True when a directory whose replicas all blame each other for
    /// entries heals by a majority of all replicas (`have` is all of them,
    /// and there are at least three) rather than being a split-brain.
    pub(super) fn majority_decides_entries(&self, have: Mask) -> bool {
        have == self.all_mask() && count(have) >= 3
    }

    /// For directories nobody blamed: a name (with its gfid) held by a
    /// majority of all replicas is made to exist on every one; a name held
    /// by a minority is removed, but only when every replica answered.
    fn by_majority(
        &self,
        have: Mask,
        listings: &HashMap<usize, Listing>,
    ) -> Result<Vec<Plan>, String> {
        let everyone = have == self.all_mask();
        let mut names: BTreeMap<&Name, HashMap<Gfid, Mask>> = BTreeMap::new();
        for (i, l) in listings {
            for (name, attr) in l {
                *names.entry(name).or_default().entry(attr.gfid).or_insert(0) |= bit(*i);
            }
        }
        let mut plans: HashMap<usize, Plan> = indices(have)
            .map(|i| {
                (
                    i,
                    Plan {
                        sink: i,
                        want: Vec::new(),
                        remove: Vec::new(),
                    },
                )
            })
            .collect();
        let mut undecided = 0;
        for (name, groups) in names {
            let holders: Mask = groups.values().fold(0, |m, g| m | g);
            if groups.len() == 1 && holders == have {
                continue;
            }
            let (gfid, best) = groups
                .iter()
                .max_by_key(|(_, m)| count(**m))
                .map(|(g, m)| (*g, *m))
                .unwrap_or((Gfid::ROOT, 0));
            let winner = indices(best).next();
            if count(best) >= self.quorum {
                let Some(source) = winner else { continue };
                let Some(attr) = listings.get(&source).and_then(|l| l.get(name)) else {
                    continue;
                };
                for i in indices(have & !best) {
                    let plan = plans.get_mut(&i).ok_or("internal: no plan")?;
                    if let Some(theirs) = listings.get(&i).and_then(|l| l.get(name)) {
                        plan.remove.push((name.clone(), theirs.clone(), source));
                    }
                    plan.want.push((name.clone(), attr.clone(), source));
                }
                let _ = gfid;
            } else if everyone {
                // Made by a transaction that reached only a minority.
                for i in indices(holders) {
                    let plan = plans.get_mut(&i).ok_or("internal: no plan")?;
                    if let Some(theirs) = listings.get(&i).and_then(|l| l.get(name)) {
                        let judge = indices(have & !bit(i)).next().unwrap_or(i);
                        plan.remove.push((name.clone(), theirs.clone(), judge));
                    }
                }
            } else {
                undecided += 1;
            }
        }
        if undecided > 0 {
            return Err(format!(
                "{undecided} names differ between replicas and not every replica is up to decide"
            ));
        }
        Ok(plans.into_values().collect())
    }

    /// Makes the sink's names the plan's; the first failure, with the name
    /// it was about.
    async fn apply(&self, dir: Gfid, plan: &Plan) -> Result<(), String> {
        let sink = plan.sink;
        // Removals first: a name may be removed and made again with
        // another gfid (deleted and recreated while the sink was away).
        for (name, attr, judge) in &plan.remove {
            self.remove_entry(sink, dir, name, attr, *judge)
                .await
                .map_err(|e| format!("removing {name}: {e}"))?;
        }
        let results: Vec<Result<(), String>> = futures::stream::iter(plan.want.iter())
            .map(|(name, attr, source)| async move {
                self.make_entry(sink, dir, name, attr, *source)
                    .await
                    .map_err(|e| format!("making {name}: {e}"))
            })
            .buffer_unordered(ENTRY_WORKERS)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn exists_on(&self, brick: usize, gfid: Gfid) -> FsResult<bool> {
        match self.bricks[brick]
            .call(|c, ctx| async move { c.getattr(ctx, gfid).await })
            .await
        {
            Ok(_) => Ok(true),
            Err(FsError::NotFound | FsError::Stale(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn remove_entry(
        &self,
        sink: usize,
        dir: Gfid,
        name: &Name,
        attr: &Attr,
        judge: usize,
    ) -> FsResult<()> {
        let lives_on = judge != sink && self.exists_on(judge, attr.gfid).await?;
        let b = &self.bricks[sink];
        if lives_on && attr.kind == FileKind::Dir {
            // Renamed while the sink was away: move it where it lives now.
            let g = attr.gfid;
            let place = self.bricks[judge]
                .call(|c, ctx| async move { c.locate(ctx, g).await })
                .await?;
            if let Some((parent, new_name)) = place {
                b.call(|c, ctx| async move {
                    c.heal_entry(ctx, parent, new_name, EntryFix::Link(g)).await
                })
                .await?;
                self.stats.entries_linked.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        let fix = EntryFix::Remove {
            gfid: attr.gfid,
            keep: lives_on,
        };
        let name = name.clone();
        match b
            .call(|c, ctx| async move { c.heal_entry(ctx, dir, name, fix).await })
            .await
        {
            Ok(()) | Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        self.stats.entries_removed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn make_entry(
        &self,
        sink: usize,
        dir: Gfid,
        name: &Name,
        attr: &Attr,
        source: usize,
    ) -> FsResult<()> {
        let gfid = attr.gfid;
        let b = &self.bricks[sink];
        if self.exists_on(sink, gfid).await? {
            // The sink has the object under another name (or in another
            // directory): a hard link for a file, a move for a directory.
            let n = name.clone();
            b.call(|c, ctx| async move { c.heal_entry(ctx, dir, n, EntryFix::Link(gfid)).await })
                .await?;
            self.stats.entries_linked.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let target = if attr.kind == FileKind::Symlink {
            let t = self.bricks[source]
                .call(|c, ctx| async move { c.readlink(ctx, gfid).await })
                .await?;
            Some(t)
        } else {
            None
        };
        let new = NewObject {
            name: name.clone(),
            gfid,
            kind: attr.kind,
            perm: attr.perm,
            rdev: attr.rdev,
            uid: attr.uid,
            gid: attr.gid,
            target,
            lock: false,
            data: Default::default(),
            times: Default::default(),
            xattrs: Vec::new(),
        };
        let n = name.clone();
        // Until it is filled, the new copy must not look like a good one:
        // the source blames it first, so a client that looks at the
        // replicas meanwhile reads elsewhere (heal clears the blame with
        // the rest once the copy is done).
        let kinds: &[PendingKind] = match attr.kind {
            FileKind::File => &[PendingKind::Data, PendingKind::Metadata],
            FileKind::Dir => &[PendingKind::Entry, PendingKind::Metadata],
            _ => &[PendingKind::Metadata],
        };
        for kind in kinds {
            let kind = *kind;
            self.bricks[source]
                .call(
                    |c, ctx| async move { c.mark_pending(ctx, gfid, vec![sink as u8], kind).await },
                )
                .await?;
        }
        b.call(|c, ctx| async move { c.heal_entry(ctx, dir, n, EntryFix::Create(new)).await })
            .await?;
        self.stats.entries_created.fetch_add(1, Ordering::Relaxed);
        // Fill it from the source under its own lock: clients that have it
        // open reach the new copy from now on.
        let mut lock = self.lock(gfid).await?;
        let forced = Forced {
            source,
            sinks: bit(sink),
            whatever_the_marks: false,
        };
        let res = self.heal_locked(&mut lock, false, Some(forced)).await;
        self.unlock(&mut lock).await;
        match res? {
            Outcome::Healed | Outcome::Clean | Outcome::Gone => Ok(()),
            Outcome::Postponed(why) => Err(FsError::Busy(why)),
            Outcome::SplitBrain => Err(FsError::Busy("split-brain below".into())),
        }
    }
}

/// What `sink` must change so that its names are the source's.
fn from_source(sink: usize, source: usize, src: &Listing, mine: &Listing) -> Plan {
    let mut want = Vec::new();
    let mut remove = Vec::new();
    for (name, attr) in src {
        match mine.get(name) {
            Some(m) if m.gfid == attr.gfid && m.kind == attr.kind => {}
            Some(m) => {
                remove.push((name.clone(), m.clone(), source));
                want.push((name.clone(), attr.clone(), source));
            }
            None => want.push((name.clone(), attr.clone(), source)),
        }
    }
    for (name, m) in mine {
        if !src.contains_key(name) {
            remove.push((name.clone(), m.clone(), source));
        }
    }
    Plan { sink, want, remove }
}

async fn read_listing(b: &crate::protocol::BrickConn, gfid: Gfid) -> FsResult<Listing> {
    let mut out = Listing::new();
    let mut after: Option<Name> = None;
    loop {
        let from = after.clone();
        let page = b
            .call(|c, ctx| async move { c.readdir(ctx, gfid, from, 4096).await })
            .await?;
        for e in page.entries {
            after = Some(e.name.clone());
            out.insert(e.name, e.attr);
        }
        if page.eof || after.is_none() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(gfid: Gfid, kind: FileKind) -> Attr {
        Attr::bare(gfid, kind, 0o644)
    }

    #[test]
    fn sink_gets_the_sources_names() {
        let (kept, gone, new, old, recreated) = (
            Gfid::random(),
            Gfid::random(),
            Gfid::random(),
            Gfid::random(),
            Gfid::random(),
        );
        let mut src = Listing::new();
        src.insert("kept".into(), attr(kept, FileKind::File));
        src.insert("new".into(), attr(new, FileKind::Dir));
        src.insert("again".into(), attr(recreated, FileKind::File));
        let mut mine = Listing::new();
        mine.insert("kept".into(), attr(kept, FileKind::File));
        mine.insert("deleted".into(), attr(gone, FileKind::File));
        mine.insert("again".into(), attr(old, FileKind::File));
        let plan = from_source(0, 1, &src, &mine);
        let wanted: Vec<&str> = plan
            .want
            .iter()
            .map(|(n, _, _)| std::str::from_utf8(n.as_bytes()).unwrap_or(""))
            .collect();
        assert_eq!(wanted, vec!["again", "new"]);
        let removed: Vec<Gfid> = plan.remove.iter().map(|(_, a, _)| a.gfid).collect();
        assert_eq!(removed, vec![old, gone]);
    }
}
