//! Heal of one object under its lock: survey every replica, pick sources
//! and sinks per kind (metadata, data, entries), repair, record.

use std::collections::HashMap;

use proto::{
    Attr, FileKind, FsError, FsResult, Gfid, Looked, PendingCounts, PendingKind, ReplicaIndex,
    SetAttr, TimeSet, Txn,
};

use super::lock::HealLock;
use super::roles::{roles, Roles};
use super::Healer;
use crate::accuse::{self, Change};
use crate::quorum::{bit, count, fan_out, indices, Mask, Tally};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing differed; the records are cleared.
    Clean,
    /// Sinks were repaired and the records cleared.
    Healed,
    /// The object exists on no replica any more; the records are cleared.
    Gone,
    /// Not decidable now (a replica needed for the decision is down, or a
    /// lock could not be had); left in the index for a later pass.
    Postponed(String),
    SplitBrain,
}

/// A heal forced from one source to some sinks, whatever the changelog
/// says: for objects heal just created, and for split-brain resolution.
#[derive(Clone, Copy, Debug)]
pub struct Forced {
    pub source: usize,
    pub sinks: Mask,
    /// The operator's choice (split-brain resolution): taken whatever the
    /// changelog says. Otherwise (filling a copy entry heal just made) the
    /// object's own changelog decides when it names a source, since the
    /// directory's source may hold a failed op on this object that another
    /// replica has not; waiting on it is waiting.
    pub whatever_the_marks: bool,
}

pub(crate) struct Survey {
    /// Bricks that have the object (the others answered that they do not).
    pub present: Vec<(usize, Looked)>,
}

impl Survey {
    pub fn have(&self) -> Mask {
        self.present.iter().fold(0, |m, (i, _)| m | bit(*i))
    }

    pub fn refs(&self) -> Vec<(usize, &Looked)> {
        self.present.iter().map(|(i, l)| (*i, l)).collect()
    }

    pub fn attr(&self, i: usize) -> Option<&Attr> {
        self.present
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, l)| &l.attr)
    }
}

/// What one kind of heal concluded.
pub(crate) enum StepResult {
    Done,
    Postponed(String),
    Split,
}

/// A transaction left unconfirmed on a copy present: a dirty mark, or an
/// accusation of itself.
fn unconfirmed(survey: &Survey) -> bool {
    survey
        .present
        .iter()
        .any(|(i, l)| l.dirty || !l.against(*i).is_zero())
}

impl Healer {
    pub(crate) async fn survey(&self, gfid: Gfid, on: Mask) -> FsResult<Survey> {
        let answers = fan_out(&self.bricks, on, |b| async move {
            b.call(|c, ctx| async move { c.getattr(ctx, gfid).await })
                .await
        })
        .await;
        let tally = Tally::new(answers);
        for (_, e) in &tally.failed {
            if !matches!(e, FsError::NotFound | FsError::Stale(_)) {
                return Err(e.clone());
            }
        }
        if tally.unreachable != 0 {
            return Err(FsError::BrickDown(format!(
                "bricks {:#b} did not answer",
                tally.unreachable
            )));
        }
        Ok(Survey { present: tally.ok })
    }

    /// Heals one object: locks it, repairs it, unlocks it.
    pub async fn heal_gfid(&self, gfid: Gfid, full: bool) -> FsResult<Outcome> {
        let mut lock = self.lock(gfid).await?;
        let res = self.heal_locked(&mut lock, full, None).await;
        self.unlock(&mut lock).await;
        res
    }

    pub(crate) fn heal_locked<'a>(
        &'a self,
        lock: &'a mut HealLock,
        full: bool,
        forced: Option<Forced>,
    ) -> futures::future::LocalBoxFuture<'a, FsResult<Outcome>> {
        futures::FutureExt::boxed_local(async move {
            let gfid = lock.gfid;
            let survey = self.survey(gfid, lock.held).await?;
            if survey.present.is_empty() {
                self.record(gfid, lock.held, &survey, &[]).await?;
                return Ok(Outcome::Gone);
            }
            let kind = survey.present[0].1.attr.kind;
            if survey.present.iter().any(|(_, l)| l.attr.kind != kind) {
                return Ok(Outcome::Postponed(format!(
                    "replicas of {gfid} disagree on its type"
                )));
            }
            let mut healed = false;
            let mut kinds_done = Vec::new();
            let mut blocked: Option<StepResult> = None;
            let mut steps: Vec<PendingKind> = Vec::new();
            match kind {
                FileKind::Dir => steps.push(PendingKind::Entry),
                FileKind::File => steps.push(PendingKind::Data),
                _ => {}
            }
            // Metadata last: data and entry heal move the times.
            steps.push(PendingKind::Metadata);
            for step in steps {
                let own = || roles(step, &survey.refs(), self.bricks.len());
                let roles = match forced {
                    Some(f) => {
                        let choice = Roles::Heal {
                            source: f.source,
                            sinks: f.sinks & survey.have() & !bit(f.source),
                        };
                        match own() {
                            _ if f.whatever_the_marks => choice,
                            r @ (Roles::Heal { .. } | Roles::SourceAbsent { .. }) => r,
                            _ => choice,
                        }
                    }
                    None => own(),
                };
                let result = match step {
                    PendingKind::Data => self.data_step(lock, &survey, roles, full).await?,
                    PendingKind::Entry => self.entry_step(lock, &survey, roles, full).await?,
                    PendingKind::Metadata => self.metadata_step(gfid, &survey, roles, full).await?,
                };
                match result {
                    (StepResult::Done, changed) => {
                        healed |= changed;
                        kinds_done.push(step);
                    }
                    (other, changed) => {
                        healed |= changed;
                        blocked.get_or_insert(other);
                    }
                }
            }
            match blocked {
                Some(StepResult::Split) => Ok(Outcome::SplitBrain),
                Some(StepResult::Postponed(why)) => Ok(Outcome::Postponed(why)),
                _ => {
                    let have = survey.have();
                    let away = self.all_mask() & !lock.held;
                    let blamed_away = if away != 0 && unconfirmed(&survey) {
                        // The copies here may all hold an op that never
                        // reached a quorum (a client died mid-transaction,
                        // or a failed op), which the replicas away may lack,
                        // and the marks that say so are about to go: they
                        // are accused instead, so heal compares them once
                        // they are back.
                        self.blame_away(gfid, lock.held & have, away, &kinds_done)
                            .await?;
                        away
                    } else {
                        0
                    };
                    self.record(gfid, lock.held, &survey, &kinds_done).await?;
                    let absent_blamed: Vec<String> =
                        indices(survey.present.iter().fold(blamed_away, |m, (_, l)| {
                            l.pending
                                .iter()
                                .filter(|(i, c)| !c.is_zero() && have & bit(*i as usize) == 0)
                                .fold(m, |m, (i, _)| m | bit(*i as usize))
                        }))
                        .map(|i| {
                            self.bricks
                                .get(i)
                                .map_or(format!("#{i}"), |b| b.addr.to_string())
                        })
                        .collect();
                    Ok(if !absent_blamed.is_empty() {
                        // Blame against a replica that is down (or does not
                        // have the object yet) is for a later pass.
                        Outcome::Postponed(format!(
                            "blamed on brick {}, which is down or lacks it (its directory's \
                             entry heal makes it there)",
                            absent_blamed.join(", ")
                        ))
                    } else if healed {
                        Outcome::Healed
                    } else {
                        Outcome::Clean
                    })
                }
            }
        })
    }

    async fn blame_away(
        &self,
        gfid: Gfid,
        on: Mask,
        away: Mask,
        kinds: &[PendingKind],
    ) -> FsResult<()> {
        for &kind in kinds {
            for (_, res) in accuse::send(&self.bricks, on, gfid, away, kind, Change::Accuse).await {
                res?;
            }
        }
        Ok(())
    }

    /// Tells every locked brick the heal is done: each subtracts the blame
    /// it held against replicas that were present (and so were repaired)
    /// for the kinds healed, clears the dirty mark and drops the index
    /// entry once nothing is left.
    async fn record(
        &self,
        gfid: Gfid,
        on: Mask,
        survey: &Survey,
        kinds: &[PendingKind],
    ) -> FsResult<()> {
        let have = survey.have();
        let mut seen: HashMap<usize, Vec<(ReplicaIndex, PendingCounts)>> = HashMap::new();
        for (i, looked) in &survey.present {
            let mut mine = Vec::new();
            for (idx, c) in &looked.pending {
                if have & bit(*idx as usize) == 0 {
                    continue;
                }
                let keep = |k: PendingKind, v: u32| if kinds.contains(&k) { v } else { 0 };
                mine.push((
                    *idx,
                    PendingCounts {
                        data: keep(PendingKind::Data, c.data),
                        metadata: keep(PendingKind::Metadata, c.metadata),
                        entry: keep(PendingKind::Entry, c.entry),
                    },
                ));
            }
            seen.insert(*i, mine);
        }
        let answers = fan_out(&self.bricks, on, |b| {
            let mine = seen.get(&(b.index as usize)).cloned().unwrap_or_default();
            async move {
                b.call(|c, ctx| async move { c.heal_done(ctx, gfid, mine).await })
                    .await
            }
        })
        .await;
        for (_, res) in answers {
            res?;
        }
        Ok(())
    }

    async fn metadata_step(
        &self,
        gfid: Gfid,
        survey: &Survey,
        roles: Roles,
        full: bool,
    ) -> FsResult<(StepResult, bool)> {
        let (source, sinks) = match roles {
            Roles::Heal { source, sinks } => (source, sinks),
            Roles::SplitBrain {
                likely: Some(likely),
                ..
            } => {
                let vote = self.vote(survey, |a| (a.perm, a.uid, a.gid));
                match vouched(gfid, "metadata", likely, vote) {
                    Vote::Agree => return Ok((StepResult::Done, false)),
                    Vote::Winner { source, sinks } => (source, sinks),
                    Vote::Undecided(_) => return Ok((StepResult::Split, false)),
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
            Roles::Clean | Roles::Vote => match self.vote(survey, |a| (a.perm, a.uid, a.gid)) {
                Vote::Agree => return Ok((StepResult::Done, false)),
                Vote::Undecided(why) => return Ok((StepResult::Postponed(why), false)),
                Vote::Winner { source, sinks } => (source, sinks),
            },
        };
        if sinks == 0 {
            return Ok((StepResult::Done, false));
        }
        // The source's attributes as they are now (data or entry heal may
        // have just changed the sinks' times, not the source's).
        let src = self.bricks[source]
            .call(|c, ctx| async move { c.getattr(ctx, gfid).await })
            .await?
            .attr;
        for sink in indices(sinks) {
            self.copy_metadata(gfid, source, &src, sink, survey.attr(sink))
                .await?;
        }
        Ok((StepResult::Done, true))
    }

    /// Makes `sink`'s mode, owner, times and xattrs those of `source`.
    pub(crate) async fn copy_metadata(
        &self,
        gfid: Gfid,
        source: usize,
        src: &Attr,
        sink: usize,
        had: Option<&Attr>,
    ) -> FsResult<()> {
        let owner_differs = had.is_none_or(|a| a.uid != src.uid || a.gid != src.gid);
        let set = SetAttr {
            // chown clears setuid/setgid: restore the mode after any chown.
            perm: (src.kind != FileKind::Symlink
                && (owner_differs || had.is_none_or(|a| a.perm != src.perm)))
            .then_some(src.perm),
            uid: owner_differs.then_some(src.uid),
            gid: owner_differs.then_some(src.gid),
            size: None,
            atime: Some(TimeSet::At(src.atime)),
            mtime: Some(TimeSet::At(src.mtime)),
        };
        let b = &self.bricks[sink];
        b.call(|c, ctx| async move { c.setattr(ctx, Txn::none(), gfid, set).await })
            .await?;
        if src.kind == FileKind::Symlink {
            return Ok(());
        }
        let s = &self.bricks[source];
        let src_names = s
            .call(|c, ctx| async move { c.listxattr(ctx, gfid).await })
            .await?;
        let sink_names = b
            .call(|c, ctx| async move { c.listxattr(ctx, gfid).await })
            .await?;
        for name in &src_names {
            let n = name.clone();
            let value = s
                .call(|c, ctx| async move { c.getxattr(ctx, gfid, n).await })
                .await?;
            let current = if sink_names.contains(name) {
                let n = name.clone();
                b.call(|c, ctx| async move { c.getxattr(ctx, gfid, n).await })
                    .await
                    .ok()
            } else {
                None
            };
            if current.as_ref() != Some(&value) {
                let n = name.clone();
                b.call(
                    |c, ctx| async move { c.setxattr(ctx, Txn::none(), gfid, n, value, 0).await },
                )
                .await?;
            }
        }
        for name in sink_names.iter().filter(|n| !src_names.contains(n)) {
            let n = name.clone();
            match b
                .call(|c, ctx| async move { c.removexattr(ctx, Txn::none(), gfid, n).await })
                .await
            {
                Ok(_) | Err(FsError::NoAttr) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Majority over the replicas' values of `key`, for objects nobody
    /// blamed: deciding against a replica needs every replica to answer.
    pub(crate) fn vote<K: Eq + std::hash::Hash + Clone>(
        &self,
        survey: &Survey,
        key: impl Fn(&Attr) -> K,
    ) -> Vote {
        let mut groups: HashMap<K, Mask> = HashMap::new();
        for (i, l) in &survey.present {
            *groups.entry(key(&l.attr)).or_insert(0) |= bit(*i);
        }
        self.decide(groups.into_values().collect(), survey.have())
    }

    pub(crate) fn decide(&self, groups: Vec<Mask>, have: Mask) -> Vote {
        if groups.len() <= 1 {
            return Vote::Agree;
        }
        let best = groups
            .iter()
            .copied()
            .max_by_key(|m| count(*m))
            .unwrap_or(0);
        if count(best) >= self.quorum && have == self.all_mask() {
            if let Some(source) = indices(best).next() {
                return Vote::Winner {
                    source,
                    sinks: have & !best,
                };
            }
        }
        Vote::Undecided("replicas differ and no majority of all replicas agrees".into())
    }
}

/// The replicas' `vote` on a split-brain with a likely source (roles.rs):
/// the majority wins only if the likely source is in it, and heal says why
/// it took a side accusations alone leave open.
pub(super) fn vouched(gfid: Gfid, what: &str, likely: usize, vote: Vote) -> Vote {
    match vote {
        Vote::Winner { source, sinks } if sinks & bit(likely) == 0 => {
            tracing::info!(
                %gfid,
                source = likely,
                sinks = ?indices(sinks).collect::<Vec<_>>(),
                "stale accusations: the likely source's {what} is the majority's; healing from it"
            );
            Vote::Winner { source, sinks }
        }
        Vote::Winner { .. } => {
            Vote::Undecided(format!("the majority's {what} is not the likely source's"))
        }
        other => other,
    }
}

pub(crate) enum Vote {
    Agree,
    Winner { source: usize, sinks: Mask },
    Undecided(String),
}
